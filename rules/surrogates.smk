# Stage 4: train surrogates on the cached responses. One job trains the whole budget sweep
# of one (victim, attack, granularity, arch, seed): budgets share the cache and the pool,
# and one torch start-up (~2 s) serves them all.


rule train_surrogates:
    input:
        queries="results/queries/{victim}/{attack}.parquet",
        pool=attack_pool,
        victim_dataset=victim_dataset,
        victim_test="results/victims/{victim}/test_outputs.parquet",
        victim_metrics="results/victims/{victim}/metrics.json",
    output:
        metrics=expand(
            "results/surrogates/{{victim}}/{{attack}}/{{granularity}}/b{budget}/{{arch}}/s{{seed}}/metrics.json",
            budget=BUDGETS,
        ),
    params:
        budgets=BUDGETS,
        victim=lambda wildcards: config["victims"][wildcards.victim],
        attack=lambda wildcards: config["attacks"][wildcards.attack],
        realistic=lambda wildcards: stealbench_config.is_realistic(
            config, wildcards.victim, wildcards.attack
        ),
        surrogates=S,
        device=config["device"],
    log:
        "results/logs/surrogates/{victim}/{attack}/{granularity}/{arch}/s{seed}.log",
    benchmark:
        "results/benchmarks/surrogates/{victim}/{attack}/{granularity}/{arch}/s{seed}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        ENV
    script:
        "../workflow/scripts/train_surrogates.py"
