"""Train one victim; write its state dict, metrics and test-split posteriors. With
``training.outlier_exposure``, the train splits of its datasets are the outliers."""

import numpy as np

from stealbench import io
from stealbench.data import datasets
from stealbench.models.checkpoint import JobCheckpoints
from stealbench.models.training import TrainConfig
from stealbench.models.victims import train_victim, write_test_outputs
from stealbench.runtime import derive_seed, setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
spec = sm.params.victim
dataset = datasets.load(sm.input.dataset)
seed = derive_seed(sm.params.seed, "victim", sm.wildcards.victim)
backbone = io.load_state_dict(sm.input.backbone[0]) if sm.input.backbone else None
oe = spec["training"].get("outlier_exposure")
outlier_data = [datasets.load(path) for path in sm.input.outliers]
outliers = np.concatenate([np.asarray(d.split("train")[0]) for d in outlier_data]) if oe else None
# Saved every checkpoint_minutes outside the outputs; a rerun of a killed job resumes.
checkpoints = JobCheckpoints.for_job(sm)
model, fit, test_probs, test_acc = train_victim(
    dataset,
    spec["arch"],
    TrainConfig.from_dict(spec["training"]),
    seed,
    sm.params.device,
    spec["init"],
    backbone,
    spec["input_size"],
    outliers,
    oe["weight"] if oe else 1.0,
    checkpoints.fit("model"),
)

io.save_state_dict(model.state_dict(), sm.output.model)
write_test_outputs(sm.output.test_outputs, sm.wildcards.victim, dataset, test_probs)
io.write_json(
    {
        "victim": sm.wildcards.victim,
        "arch": spec["arch"],
        "init": spec["init"],
        "backbone_checksum": io.state_dict_checksum(backbone) if backbone else None,
        "input_size": spec["input_size"],
        "dataset": dataset.name,
        "dataset_checksum": dataset.checksum,
        "num_classes": len(dataset.classes),
        "test_acc": test_acc,
        "val_acc": fit.best_val_acc,
        "best_epoch": fit.best_epoch,
        "epochs": fit.epochs,
        "train_seconds": fit.seconds,
        "seed": seed,
        "training": spec["training"],
        "weights_checksum": io.state_dict_checksum(model.state_dict()),
        # Outlier Exposure: its weight, datasets and their checksums (null: none).
        "outlier_exposure": (
            {
                "weight": oe["weight"],
                "data": [d.name for d in outlier_data],
                "checksums": {d.name: d.checksum for d in outlier_data},
                "images": len(outliers),
            }
            if oe
            else None
        ),
    },
    sm.output.metrics,
)
checkpoints.remove()  # the outputs are written: nothing left to resume
log.info("victim %s: test accuracy %.4f", sm.wildcards.victim, test_acc)
