# Stage 4: train surrogates on the cached responses. By default one job ({part} = all) trains
# every granularity x budget cell of one (victim, attack, arch, seed): the cells share the
# cache, the pool and one torch start-up (~2 s), and land in one table written atomically.
# With surrogates.job_size: cell, each cell is its own job ({part} = <granularity>-b<budget>).


rule train_surrogates:
    input:
        queries="results/queries/{victim}/{attack}.parquet",
        pool=attack_pool,
        victim_dataset=victim_dataset,
        victim_test="results/victims/{victim}/test_outputs.parquet",
        victim_metrics="results/victims/{victim}/metrics.json",
    output:
        **(
            {
                "models": directory(
                    "results/surrogates/{victim}/{attack}/{arch}/s{seed}/{part}.models"
                )
            }
            if S["save_models"]
            else {}
        ),
        cells="results/surrogates/{victim}/{attack}/{arch}/s{seed}/{part}.parquet",
    log:
        "results/logs/surrogates/{victim}/{attack}/{arch}/s{seed}/{part}.log",
    benchmark:
        "results/benchmarks/surrogates/{victim}/{attack}/{arch}/s{seed}/{part}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=GPUS,
    params:
        cells=lambda wildcards: stealbench_config.part_cells(
            config, wildcards.attack, wildcards.part
        ),
        victim=lambda wildcards: config["victims"][wildcards.victim],
        attack=lambda wildcards: config["attacks"][wildcards.attack],
        realistic=lambda wildcards: stealbench_config.is_realistic(
            config, wildcards.victim, wildcards.attack
        ),
        surrogates=S,
        device=config["device"],
    script:
        "../workflow/scripts/train_surrogates.py"
