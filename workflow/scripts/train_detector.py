"""Train the victim's out-of-distribution pre-classifier (Atli et al.'s defense)."""

from stealbench import datasets, detector, io
from stealbench.runtime import derive_seed, setup
from stealbench.training import TrainConfig

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
cfg = sm.params.detector
victim_data = datasets.load(sm.input.victim_dataset)
out = datasets.load(sm.input.out)
in_images, _ = victim_data.split("train")
out_images, _ = out.split("train")
ood = detector.train_ood_detector(
    in_images,
    out_images,
    cfg["arch"],
    TrainConfig.from_dict(cfg["training"]),
    derive_seed(sm.params.seed, "detector", sm.wildcards.victim),
    cfg["val_fraction"],
    sm.params.device,
)
detector.save_detector(ood, sm.output.model)
io.write_json(
    {
        **ood.metadata(),
        "out": out.name,
        "in": victim_data.name,
        "in_checksum": victim_data.checksum,
        "out_checksum": out.checksum,
    },
    sm.output.info,
)
log.info(
    "detector: threshold %.3f, validation TPR(in) %.3f TNR(out) %.3f",
    ood.threshold,
    ood.info["val_tpr_in"],
    ood.info["val_tnr_out"],
)
