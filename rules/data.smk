# Stage 1: materialise every dataset once into Parquet (images, labels, splits, checksum).


rule materialise_dataset:
    output:
        "results/data/{dataset}.parquet",
    log:
        "results/logs/data/{dataset}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        spec=lambda wildcards: config["datasets"][wildcards.dataset],
        seed=config["seed"],
    script:
        "../workflow/scripts/materialise_dataset.py"
