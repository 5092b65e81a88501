# Stage 2a: backbones pretrained once on a public corpus (the offline stand-in for ImageNet
# weights); victims and surrogates start from one with `init`.


rule pretrain_backbone:
    input:
        dataset=lambda wildcards: dataset_path(
            config["pretrain"][wildcards.backbone]["dataset"]
        ),
    output:
        model="results/pretrain/{backbone}/model.pt",
        metrics="results/pretrain/{backbone}/metrics.json",
    log:
        "results/logs/pretrain/{backbone}.log",
    benchmark:
        "results/benchmarks/pretrain/{backbone}.tsv"
    priority: 50
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=RESOURCES.mem_mb("pretrain_backbone"),
        runtime=RESOURCES.runtime("pretrain_backbone"),
        gpu=RESOURCES.gpu("pretrain_backbone"),
    params:
        spec=lambda wildcards: config["pretrain"][wildcards.backbone],
        seed=config["seed"],
        device=config["device"],
        checkpoints=lambda wildcards: CheckpointPlan.for_rule(
            config, "pretrain_backbone", wildcards
        ),
    script:
        "../workflow/scripts/pretrain_backbone.py"
