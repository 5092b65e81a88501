"""Train the models a defended victim's API needs beyond the detector: Adaptive
Misinformation's misinformation model, and DAWN's independent models (trained on the victim's
task data without any query, to count false ownership claims)."""

import time

import numpy as np

from stealbench import io
from stealbench.data import datasets
from stealbench.defense.context import save_model
from stealbench.models.training import TrainConfig
from stealbench.models.victims import load_victim, train_on_splits
from stealbench.runtime import derive_seed, setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
p, victim = sm.params, sm.wildcards.victim
victim_data = datasets.load(sm.input.victim_dataset)
num_classes = len(victim_data.classes)
seconds = {}
if "misinformation" in sm.output.keys():
    from stealbench.defense.misinformation import train_misinformation_model
    from stealbench.models.training import predict_proba

    in_images, in_labels = victim_data.split("train")
    victim_model = load_victim(sm.input.model, io.read_json(sm.input.victim_metrics), p.device)
    outlier = [np.asarray(datasets.load(path).split("train")[0]) for path in sm.input.outlier]
    start = time.perf_counter()
    model = train_misinformation_model(
        in_images,
        in_labels,
        p.victim["arch"],
        TrainConfig.from_dict(p.misinformation["training"]),
        derive_seed(p.seed, "misinformation", victim),
        outlier_images=np.concatenate(outlier) if outlier else None,
        victim_predict=lambda images: predict_proba(victim_model, images),
        device=p.device,
        num_classes=num_classes,
    )
    seconds["misinformation"] = time.perf_counter() - start
    save_model(
        model,
        sm.output.misinformation,
        "misinformation",
        arch=p.victim["arch"],
        num_classes=num_classes,
    )
if "independent" in sm.output.keys():
    # Same task data as the victim, no query at all: a model DAWN must not claim.
    cfg = TrainConfig.from_dict(p.victim["training"])
    models = {}
    for arch in p.independent_archs:
        for s in p.dawn["independent_seeds"]:
            seed = derive_seed(p.seed, "independent", victim, arch, s)
            model, fit = train_on_splits(victim_data, arch, cfg, seed, p.device)
            models[f"{arch}/s{s}"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            seconds[f"independent {arch}/s{s}"] = fit.seconds
            log.info("independent %s seed %d: val accuracy %.4f", arch, s, fit.best_val_acc)
    io.save_state_dict(
        {"kind": "independent", "num_classes": num_classes, "models": models},
        sm.output.independent,
    )
io.write_json({"victim": victim, "train_seconds": seconds}, sm.output.models_info)
