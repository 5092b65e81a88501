# Stage 1: materialise every dataset once into Parquet (images, labels, splits, checksum).


rule materialise_dataset:
    output:
        "results/data/{dataset}.parquet",
    params:
        spec=lambda wildcards: config["datasets"][wildcards.dataset],
        seed=config["seed"],
    log:
        "results/logs/data/{dataset}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        ENV
    script:
        "../workflow/scripts/materialise_dataset.py"
