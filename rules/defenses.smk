# The defense stage (Atli et al.'s pre-classifier, PRADA, defended responses). Every
# defense reads the query caches: adding one queries no victim again.


rule train_detector:
    input:
        victim_dataset=victim_dataset,
        out=lambda wildcards: dataset_path(DEFENSES["detector"]["out"]),
    output:
        model="results/defenses/{victim}/detector.pt",
        info="results/defenses/{victim}/detector.json",
    log:
        "results/logs/defenses/{victim}/train_detector.log",
    benchmark:
        "results/benchmarks/defenses/{victim}/train_detector.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPUS,
    params:
        detector=lambda wildcards: DEFENSES["detector"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/train_detector.py"


rule evaluate_detector:
    input:
        detector="results/defenses/{victim}/detector.pt",
        victim_dataset=victim_dataset,
        pools=lambda wildcards: [dataset_path(d) for d in POOL_DATASETS],
        queries=victim_caches,
        attack_pools=victim_attack_pools,
    output:
        "results/defenses/{victim}/detection.parquet",
    log:
        "results/logs/defenses/{victim}/evaluate_detector.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=GPUS,
    params:
        attacks=lambda wildcards: config["victims"][wildcards.victim]["attacks"],
        pool_names=POOL_DATASETS,
        tasks={name: spec.get("task") for name, spec in config["datasets"].items()},
        victim=lambda wildcards: config["victims"][wildcards.victim],
        out=lambda wildcards: DEFENSES["detector"]["out"],
        device=config["device"],
    script:
        "../workflow/scripts/evaluate_detector.py"


rule run_prada:
    input:
        model="results/victims/{victim}/model.pt",
        victim_metrics="results/victims/{victim}/metrics.json",
        victim_dataset=victim_dataset,
        victim_test="results/victims/{victim}/test_outputs.parquet",
        queries=victim_caches,
        attack_pools=victim_attack_pools,
        benign_sources=lambda wildcards: [
            dataset_path(d) for d in benign_sources(wildcards)
        ],
    output:
        "results/defenses/{victim}/prada.parquet",
    log:
        "results/logs/defenses/{victim}/prada.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPUS,
    params:
        attacks=lambda wildcards: config["victims"][wildcards.victim]["attacks"],
        strategies={name: spec["strategy"] for name, spec in config["attacks"].items()},
        prada=lambda wildcards: DEFENSES["prada"],
        benign=lambda wildcards: DEFENSES["benign"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/run_prada.py"


rule train_defended_surrogates:
    input:
        queries="results/queries/{victim}/{attack}.parquet",
        pool=attack_pool,
        victim_dataset=victim_dataset,
        victim_test="results/victims/{victim}/test_outputs.parquet",
        victim_metrics="results/victims/{victim}/metrics.json",
        detector="results/defenses/{victim}/detector.pt",
    output:
        cells="results/defended/{victim}/{attack}/{arch}/s{seed}/cells.parquet",
    log:
        "results/logs/defended/{victim}/{attack}/{arch}/s{seed}.log",
    benchmark:
        "results/benchmarks/defended/{victim}/{attack}/{arch}/s{seed}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=GPUS,
    params:
        defended=lambda wildcards: DEFENSES["defended"],
        victim=lambda wildcards: config["victims"][wildcards.victim],
        attack=lambda wildcards: config["attacks"][wildcards.attack],
        realistic=lambda wildcards: stealbench_config.is_realistic(
            config, wildcards.victim, wildcards.attack
        ),
        surrogates=S,
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/train_defended_surrogates.py"


rule aggregate_defenses:
    input:
        detection=expand("results/defenses/{victim}/detection.parquet", victim=VICTIMS),
        prada=expand("results/defenses/{victim}/prada.parquet", victim=VICTIMS),
        defended=all_defended_cells,
    output:
        **{
            name: report(
                f"results/tables/{name}.parquet",
                caption=f"../report/tables/{name}.rst",
                category="Defenses",
                labels={"table": name, "format": "parquet"},
            )
            for name in DEFENSE_TABLES
        },
        **{f"{name}_csv": f"results/tables/{name}.csv" for name in DEFENSE_TABLES},
    log:
        "results/logs/report/aggregate_defenses.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        deltas=lambda wildcards: DEFENSES["prada"]["deltas"],
        victim_papers={v: spec.get("paper") for v, spec in config["victims"].items()},
    script:
        "../workflow/scripts/aggregate_defenses.py"


rule plot_defense_tradeoff:
    input:
        defended="results/tables/defended.parquet",
    output:
        png=report(
            "results/figures/defense_tradeoff.png",
            caption="../report/defense_tradeoff.rst",
            category="Defenses",
            labels={"figure": "attacker accuracy vs benign utility", "format": "png"},
        ),
        svg="results/figures/defense_tradeoff.svg",
    log:
        "results/logs/report/defense_tradeoff.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/plot_defense_tradeoff.py"
