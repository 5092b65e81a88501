# The defense stage: the models a defended API needs (Atli et al.'s pre-classifier, Adaptive
# Misinformation's model, DAWN's independent models for false claims), the detectors scored on
# every stream, and surrogates trained on defended answers. Random sampling reads its query
# caches through every defense (no victim is queried again); sequential attackers are rerun
# against the defended API (rules/queries.smk).

# The stream monitors replayed over every stream: every registered one (built-in or plug-in)
# whose section is in the config (PRADA's always is, by its schema default).
MONITOR_SETTINGS = {
    name: DEFENSES[name]
    for name in stealbench_monitors.MONITORS
    if DEFENSES and name in DEFENSES
}


rule train_detector:
    input:
        victim_dataset=victim_dataset,
        out=lambda wildcards: [
            dataset_path(d)
            for d in stealbench_config.detector_out(config, wildcards.victim)
        ],
    output:
        model="results/defenses/{victim}/detector.pt",
        info="results/defenses/{victim}/detector.json",
    log:
        "results/logs/defenses/{victim}/train_detector.log",
    benchmark:
        "results/benchmarks/defenses/{victim}/train_detector.tsv"
    wildcard_constraints:
        victim=_alternatives(DEFENSE_VICTIMS),
    priority: 35
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=RESOURCES.mem_mb("train_detector"),
        runtime=RESOURCES.runtime("train_detector"),
        gpu=RESOURCES.gpu("train_detector"),
    params:
        detector=lambda wildcards: {
            **DEFENSES["detector"],
            "out": stealbench_config.detector_out(config, wildcards.victim),
        },
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/train_detector.py"


rule train_defense_models:
    input:
        **victim_files("{victim}"),
        victim_dataset=victim_dataset,
        outlier=lambda wildcards: [
            dataset_path(d) for d in DEFENSES["misinformation"]["outlier"]
        ],
    output:
        **defense_model_outputs(),
    log:
        "results/logs/defenses/{victim}/train_defense_models.log",
    benchmark:
        "results/benchmarks/defenses/{victim}/train_defense_models.tsv"
    wildcard_constraints:
        victim=_alternatives(DEFENDED_VICTIMS),
    priority: 35
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=RESOURCES.mem_mb("train_defense_models"),
        runtime=RESOURCES.runtime("train_defense_models"),
        gpu=RESOURCES.gpu("train_defense_models"),
    params:
        misinformation=lambda wildcards: DEFENSES["misinformation"],
        dawn=lambda wildcards: DEFENSES["dawn"],
        independent_archs=lambda wildcards: DEFENSES["defended"]["archs"],
        victim=lambda wildcards: stealbench_config.victim_spec(config, wildcards.victim),
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/train_defense_models.py"


rule evaluate_detectors:
    input:
        **victim_files("{victim}"),
        detector="results/defenses/{victim}/detector.pt",
        victim_dataset=victim_dataset,
        victim_test="results/victims/{victim}/test_outputs.parquet",
        pools=lambda wildcards: [dataset_path(d) for d in POOL_DATASETS],
        queries=victim_streams,
        attack_pools=victim_attack_pools,
        benign_sources=lambda wildcards: [
            dataset_path(d) for d in benign_sources(wildcards)
        ],
    output:
        detection="results/defenses/{victim}/detection.parquet",
        prada="results/defenses/{victim}/prada.parquet",
    log:
        "results/logs/defenses/{victim}/evaluate_detectors.log",
    wildcard_constraints:
        victim=_alternatives(DEFENSE_VICTIMS),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=RESOURCES.mem_mb("evaluate_detectors"),
        runtime=RESOURCES.runtime("evaluate_detectors"),
        gpu=RESOURCES.gpu("evaluate_detectors"),
    params:
        streams=lambda wildcards: [
            (a, s, stealbench_config.is_sequential(config, a))
            for v, a, d, s in stealbench_config.query_runs(config)
            if v == wildcards.victim and d in (None, "none")
        ],
        strategies={name: spec["strategy"] for name, spec in config["attacks"].items()},
        pools={name: spec["pool"] for name, spec in config["attacks"].items()},
        pool_names=POOL_DATASETS,
        tasks={name: spec.get("task") for name, spec in config["datasets"].items()},
        detector_out=lambda wildcards: stealbench_config.detector_out(
            config, wildcards.victim
        ),
        victim=lambda wildcards: stealbench_config.victim_spec(config, wildcards.victim),
        monitors=lambda wildcards: MONITOR_SETTINGS,
        benign=lambda wildcards: DEFENSES["benign"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/evaluate_detectors.py"


rule train_defended_surrogates:
    input:
        unpack(defended_inputs),
    output:
        cells="results/defended/{victim}/{attack}/{arch}/s{seed}/cells.parquet",
    log:
        "results/logs/defended/{victim}/{attack}/{arch}/s{seed}.log",
    benchmark:
        "results/benchmarks/defended/{victim}/{attack}/{arch}/s{seed}.tsv"
    priority: 10
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=RESOURCES.mem_mb("train_defended_surrogates"),
        runtime=RESOURCES.runtime("train_defended_surrogates"),
        gpu=RESOURCES.gpu("train_defended_surrogates"),
    params:
        instances=lambda wildcards: [
            vars(d)
            for d in stealbench_config.attack_defenses(
                config, wildcards.attack, wildcards.victim
            )
        ],
        budgets=lambda wildcards: DEFENSES["defended"]["budgets"][wildcards.attack],
        granularities=lambda wildcards: DEFENSES["defended"]["granularities"],
        # Each defense's config section, if it has one, holds its audit settings.
        audit=lambda wildcards: {
            d.name: DEFENSES[d.name]
            for d in stealbench_config.attack_defenses(
                config, wildcards.attack, wildcards.victim
            )
            if d.name in DEFENSES
        },
        victim=lambda wildcards: stealbench_config.victim_spec(config, wildcards.victim),
        attack=lambda wildcards: stealbench_config.attack_spec(config, wildcards.attack),
        sequential=lambda wildcards: stealbench_config.is_sequential(
            config, wildcards.attack
        ),
        realistic=lambda wildcards: stealbench_config.is_realistic(
            config, wildcards.victim, wildcards.attack
        ),
        surrogates=stealbench_config.training_spec(config),
        seed=config["seed"],
        device=config["device"],
        checkpoints=lambda wildcards: CheckpointPlan.for_rule(
            config, "train_defended_surrogates", wildcards
        ),
    script:
        "../workflow/scripts/train_defended_surrogates.py"


rule aggregate_defenses:
    input:
        detection=expand(
            "results/defenses/{victim}/detection.parquet", victim=DEFENSE_VICTIMS
        ),
        prada=expand("results/defenses/{victim}/prada.parquet", victim=DEFENSE_VICTIMS),
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
        monitors=lambda wildcards: MONITOR_SETTINGS,
        victim_papers={v: spec.get("paper") for v, spec in config["victims"].items()},
    script:
        "../workflow/scripts/aggregate_defenses.py"


rule plot_defenses:
    input:
        defended="results/tables/defended.parquet",
        matched="results/tables/matched_cost.parquet",
    output:
        **{
            f"{figure}_{ext}": (
                report(
                    f"results/figures/{figure}.png",
                    caption=f"../report/{figure}.rst",
                    category="Defenses",
                    labels={"figure": figure.replace("_", " "), "format": "png"},
                )
                if ext == "png"
                else f"results/figures/{figure}.{ext}"
            )
            for figure in DEFENSE_FIGURES
            for ext in ("png", "svg")
        },
    log:
        "results/logs/report/plot_defenses.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/plot_defenses.py"
