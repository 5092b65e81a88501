# Stage 2b: train each victim on its dataset's train split (from scratch, ImageNet weights or
# a pretrained backbone), select on val, score on test. An external victim (a checkpoint, a
# TorchScript or torchvision model, a remote endpoint) is imported instead: the same files,
# scored on its dataset's test split.


rule train_victim:
    input:
        dataset=victim_dataset,
        backbone=lambda wildcards: backbone_paths(
            [config["victims"][wildcards.victim]["init"]]
        ),
        # Outlier Exposure's data: the defender's generic datasets (train splits).
        outliers=lambda wildcards: [
            dataset_path(d)
            for d in stealbench_config.outlier_exposure_data(config, wildcards.victim)
        ],
    output:
        model="results/victims/{victim}/model.pt",
        metrics="results/victims/{victim}/metrics.json",
        test_outputs="results/victims/{victim}/test_outputs.parquet",
    log:
        "results/logs/victims/{victim}.log",
    benchmark:
        "results/benchmarks/victims/{victim}.tsv"
    wildcard_constraints:
        victim=_alternatives(TRAINED_VICTIMS),
    priority: 40
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=RESOURCES.mem_mb("train_victim"),
        runtime=RESOURCES.runtime("train_victim"),
        gpu=RESOURCES.gpu("train_victim"),
    params:
        victim=lambda wildcards: stealbench_config.victim_spec(config, wildcards.victim),
        seed=config["seed"],
        device=config["device"],
        checkpoints=lambda wildcards: CheckpointPlan.for_rule(
            config, "train_victim", wildcards
        ),
    script:
        "../workflow/scripts/train_victim.py"


rule import_victim:
    input:
        dataset=victim_dataset,
    output:
        model="results/victims/{victim}/model.pt",
        metrics="results/victims/{victim}/metrics.json",
        test_outputs="results/victims/{victim}/test_outputs.parquet",
    log:
        "results/logs/victims/{victim}.log",
    wildcard_constraints:
        victim=_alternatives(LOCAL_VICTIMS),
    priority: 40
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=RESOURCES.mem_mb("import_victim"),
        runtime=RESOURCES.runtime("import_victim"),
        gpu=RESOURCES.gpu("import_victim"),
    params:
        victim=lambda wildcards: stealbench_config.victim_spec(config, wildcards.victim),
        device=config["device"],
    script:
        "../workflow/scripts/import_victim.py"


# A remote victim has no model file; its answers (test-set evaluation included) are kept in
# results/victims/{victim}/answers.sqlite, not an output, so that a failed job keeps them.
rule import_remote_victim:
    input:
        dataset=victim_dataset,
    output:
        metrics="results/victims/{victim}/metrics.json",
        test_outputs="results/victims/{victim}/test_outputs.parquet",
    log:
        "results/logs/victims/{victim}.log",
    wildcard_constraints:
        victim=_alternatives(REMOTE_VICTIMS),
    priority: 40
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        victim=lambda wildcards: stealbench_config.victim_spec(config, wildcards.victim),
        device=config["device"],
    script:
        "../workflow/scripts/import_victim.py"
