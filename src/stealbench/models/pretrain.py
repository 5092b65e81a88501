"""Pretrained backbones: a model trained once on a public corpus, the offline stand-in for
ImageNet weights (Atli et al.'s victims and Knockoff's attacker both start from ImageNet).

The corpus is public data both sides could download (letters and photographs, never a
victim's own task data: the config rejects that), and a victim or surrogate whose ``init``
names the backbone starts from all its weights but the classification head
(:func:`stealbench.models.architectures.load_backbone`), then trains on its own data.
"""

from __future__ import annotations

from ..data.datasets import Dataset
from .training import TrainConfig
from .victims import train_on_splits


def pretrain_backbone(
    dataset: Dataset, arch: str, cfg: TrainConfig, seed: int, device="cpu", checkpoint=None
):
    """Train ``arch`` from scratch on the corpus's train split (epoch chosen on its val
    split); return (model, fit result). ``checkpoint``: fit's checkpointer (None: none)."""
    return train_on_splits(dataset, arch, cfg, seed, device, checkpoint=checkpoint)


def load_backbone_state(path, metrics: dict | None = None) -> dict:
    """A backbone's state dict, checked against its metrics' weights checksum when given."""
    from ..io import ArtefactError, load_state_dict, state_dict_checksum

    state = load_state_dict(path)
    if metrics is not None and state_dict_checksum(state) != metrics["weights_checksum"]:
        raise ArtefactError(f"{path} does not match its metrics.json; delete it and rerun")
    return state
