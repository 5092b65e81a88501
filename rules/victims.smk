# Stage 2b: train each victim on its dataset's train split (from scratch, ImageNet weights or
# a pretrained backbone), select on val, score on test.


rule train_victim:
    input:
        dataset=victim_dataset,
        backbone=lambda wildcards: backbone_paths(
            [config["victims"][wildcards.victim]["init"]]
        ),
    output:
        model="results/victims/{victim}/model.pt",
        metrics="results/victims/{victim}/metrics.json",
        test_outputs="results/victims/{victim}/test_outputs.parquet",
    log:
        "results/logs/victims/{victim}.log",
    benchmark:
        "results/benchmarks/victims/{victim}.tsv"
    priority: 40
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=GPUS,
    params:
        victim=lambda wildcards: stealbench_config.victim_spec(config, wildcards.victim),
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/train_victim.py"
