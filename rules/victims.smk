# Stage 2: train each victim on its dataset's train split, select on val, score on test.


rule train_victim:
    input:
        dataset=victim_dataset,
    output:
        model="results/victims/{victim}/model.pt",
        metrics="results/victims/{victim}/metrics.json",
        test_outputs="results/victims/{victim}/test_outputs.parquet",
    log:
        "results/logs/victims/{victim}.log",
    benchmark:
        "results/benchmarks/victims/{victim}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=GPUS,
    params:
        victim=lambda wildcards: config["victims"][wildcards.victim],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/train_victim.py"
