# Stage 4: train surrogates on what each attacker received. By default one job ({part} = all)
# trains every init x granularity x budget cell of one (victim, attack, arch, seed): the cells
# share the attacker's queries and one torch start-up, and land in one table written
# atomically. With surrogates.job_size: cell, each cell is its own job.


rule train_surrogates:
    input:
        unpack(surrogate_inputs),
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
    priority: 20
    # Short jobs share a SLURM job, under cluster.max_group_runtime_minutes (the profile's
    # group-components merge each surrogates-x<k> group's jobs k at a time).
    group:
        RESOURCES.group("train_surrogates")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=RESOURCES.mem_mb("train_surrogates"),
        runtime=RESOURCES.runtime("train_surrogates"),
        gpu=RESOURCES.gpu("train_surrogates"),
    params:
        cells=lambda wildcards: stealbench_config.part_cells(
            config, wildcards.attack, wildcards.victim, wildcards.part
        ),
        victim=lambda wildcards: stealbench_config.victim_spec(config, wildcards.victim),
        attack=lambda wildcards: stealbench_config.attack_spec(config, wildcards.attack),
        realistic=lambda wildcards: stealbench_config.is_realistic(
            config, wildcards.victim, wildcards.attack
        ),
        sequential=lambda wildcards: stealbench_config.is_sequential(
            config, wildcards.attack
        ),
        backbones=lambda wildcards: {
            i: f"results/pretrain/{i}/model.pt"
            for i in stealbench_config.axes(
                config, wildcards.attack, wildcards.victim
            )["inits"]
            if i in config["pretrain"]
        },
        surrogates=stealbench_config.training_spec(config),
        seed=config["seed"],
        device=config["device"],
        checkpoints=lambda wildcards: CheckpointPlan.for_rule(
            config, "train_surrogates", wildcards
        ),
    script:
        "../workflow/scripts/train_surrogates.py"
