"""Pretrain one backbone on its public corpus; write its state dict and metrics."""

from stealbench import io
from stealbench.data import datasets
from stealbench.models.checkpoint import JobCheckpoints
from stealbench.models.pretrain import pretrain_backbone
from stealbench.models.training import TrainConfig
from stealbench.runtime import derive_seed, setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
spec = sm.params.spec
dataset = datasets.load(sm.input.dataset)
seed = derive_seed(sm.params.seed, "pretrain", sm.wildcards.backbone)
# Saved every checkpoint_minutes outside the outputs; a rerun of a killed job resumes.
checkpoints = JobCheckpoints.for_job(sm)
model, fit = pretrain_backbone(
    dataset,
    spec["arch"],
    TrainConfig.from_dict(spec["training"]),
    seed,
    sm.params.device,
    checkpoints.fit("model"),
)
io.save_state_dict(model.state_dict(), sm.output.model)
io.write_json(
    {
        "backbone": sm.wildcards.backbone,
        "arch": spec["arch"],
        "dataset": dataset.name,
        "dataset_checksum": dataset.checksum,
        "task": dataset.meta.get("spec", {}).get("task"),
        "num_classes": len(dataset.classes),
        "val_acc": fit.best_val_acc,
        "best_epoch": fit.best_epoch,
        "epochs": fit.epochs,
        "train_seconds": fit.seconds,
        "seed": seed,
        "training": spec["training"],
        "weights_checksum": io.state_dict_checksum(model.state_dict()),
    },
    sm.output.metrics,
)
checkpoints.remove()  # the outputs are written: nothing left to resume
log.info("backbone %s: val accuracy %.4f", sm.wildcards.backbone, fit.best_val_acc)
