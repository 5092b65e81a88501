"""Train one victim's out-of-distribution pre-classifier (Atli et al.'s defense): the
victim's train split (in) against the defender's generic data of other kinds (out)."""

import numpy as np

from stealbench import io
from stealbench.data import datasets
from stealbench.defense import detector
from stealbench.models.training import TrainConfig
from stealbench.runtime import derive_seed, setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
p, victim = sm.params, sm.wildcards.victim
victim_data = datasets.load(sm.input.victim_dataset)
in_images, _ = victim_data.split("train")
out = [datasets.load(path) for path in sm.input.out]
ood = detector.train_ood_detector(
    in_images,
    np.concatenate([np.asarray(d.split("train")[0]) for d in out]),
    p.detector["arch"],
    TrainConfig.from_dict(p.detector["training"]),
    derive_seed(p.seed, "detector", victim),
    p.detector["val_fraction"],
    p.device,
)
detector.save_detector(ood, sm.output.model)
io.write_json(
    {
        **ood.metadata(),
        "out": [d.name for d in out],
        "in": victim_data.name,
        "in_checksum": victim_data.checksum,
        "out_checksums": {d.name: d.checksum for d in out},
        "train_seconds": ood.info["seconds"],
    },
    sm.output.info,
)
log.info(
    "detector: threshold %.3f, validation TPR(in) %.3f TNR(out) %.3f",
    ood.threshold,
    ood.info["val_tpr_in"],
    ood.info["val_tnr_out"],
)
