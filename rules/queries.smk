# Stage 3: query each victim once per attack, up to the largest budget, and cache every
# full probability vector. Budgets are prefixes and granularities transformations of it.


rule query_victim:
    input:
        model="results/victims/{victim}/model.pt",
        victim_metrics="results/victims/{victim}/metrics.json",
        pool=attack_pool,
    output:
        "results/queries/{victim}/{attack}.parquet",
    log:
        "results/logs/queries/{victim}/{attack}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPUS,
    params:
        victim=lambda wildcards: config["victims"][wildcards.victim],
        attack=lambda wildcards: config["attacks"][wildcards.attack],
        budget=max(BUDGETS),
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/query_victim.py"
