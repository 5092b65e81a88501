"""Training surrogates on what the API answered: the attacker's side.

The attacker sees only its transfer set: the images its seed sent and the API's answers at
one granularity (through the defense it faced). By default it trains on all B queries with a
fixed schedule and keeps the final model, as Knockoff nets' reference code and ART do; model
selection on a held-out slice of the transfer set, labelled by the victim, is an option
(``selection: transfer-val``). The victim's test split is touched only to score the final
model, never to select it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ..data.datasets import Dataset
from ..metrics import accuracy, agreement, kl_divergence, per_class_accuracy, recovery
from ..models.architectures import create_model
from ..models.training import TrainConfig, fit, predict_proba
from .api import response_to_targets
from .cache import QueryCache

log = logging.getLogger(__name__)


def surrogate_seed(master_seed: int, victim: str, attack: str, arch: str, seed: int) -> int:
    """The initial-weights seed of seed ``seed``'s surrogates of one architecture against one
    victim and attack: one draw shared by the cells of that seed (granularities, budgets,
    starts, defenses), so comparisons between them are paired."""
    from ..runtime import derive_seed

    return derive_seed(master_seed, "surrogate", victim, attack, arch, seed)


@dataclass
class VictimTestSet:
    """The victim's test split and the victim's own posteriors on it (for scoring only)."""

    images: np.ndarray
    labels: np.ndarray
    victim_probs: np.ndarray

    @property
    def num_classes(self) -> int:
        return self.victim_probs.shape[1]

    @property
    def victim_acc(self) -> float:
        return accuracy(self.victim_probs.argmax(1), self.labels)

    @property
    def victim_class_acc(self) -> np.ndarray:
        return per_class_accuracy(self.victim_probs.argmax(1), self.labels, self.num_classes)


SELECTIONS = ("none", "transfer-val")


@dataclass(frozen=True)
class SurrogateSpec:
    """How the attacker builds and trains its surrogate.

    ``init``: ``scratch``, ``imagenet`` (torchvision weights) or the name of a pretrained
    backbone, whose weights are ``backbone`` (a state dict; its head is replaced).
    ``selection``: ``none`` trains on all B queries and keeps the final model;
    ``transfer-val`` holds out the last ``val_fraction`` of them to pick the epoch.
    """

    arch: str
    training: TrainConfig
    selection: str = "none"
    val_fraction: float = 0.1
    init: str = "scratch"
    backbone: dict | None = None
    input_size: int | None = None
    device: str = "cpu"


def split_transfer_set(n: int, selection: str, val_fraction: float) -> tuple[slice, slice]:
    """Train/val slices of a transfer set of ``n`` queries (val: the last ones, at least one,
    and only with ``selection: transfer-val``)."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; allowed: {', '.join(SELECTIONS)}")
    n_val = max(1, math.ceil(n * val_fraction)) if selection == "transfer-val" else 0
    return slice(0, n - n_val), slice(n - n_val, n)


def take(images, rows):
    """``images[rows]`` (a slice or an index array), staying lazy for a lazy store."""
    if hasattr(images, "subset"):
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(len(images)))
        return images.subset(rows)
    return images[rows]


def score(model, test: VictimTestSet) -> dict:
    """Test accuracy, agreement, recovery, KL and per-class accuracy against the victim."""
    probs = predict_proba(model, test.images)
    predictions = probs.argmax(1)
    test_acc = accuracy(predictions, test.labels)
    return {
        "test_acc": test_acc,
        "agreement": agreement(predictions, test.victim_probs.argmax(1)),
        "victim_acc": test.victim_acc,
        "recovery": recovery(test_acc, test.victim_acc),
        "kl_divergence": kl_divergence(test.victim_probs, probs),
        "class_acc": per_class_accuracy(predictions, test.labels, test.num_classes).tolist(),
        "victim_class_acc": test.victim_class_acc.tolist(),
    }


def build_surrogate(spec: SurrogateSpec, num_classes: int, seed: int):
    """A fresh surrogate of ``spec``, its initial weights drawn from ``seed`` (and the
    backbone's or ImageNet's weights when it starts pretrained)."""
    return create_model(
        spec.arch,
        num_classes,
        spec.device,
        pretrained=spec.init == "imagenet",
        input_size=spec.input_size,
        seed=seed,
        backbone=spec.backbone,
    )


def train_surrogate(
    cache: QueryCache,
    pool: Dataset,
    test: VictimTestSet,
    granularity: str,
    budget: int,
    spec: SurrogateSpec,
    model_seed: int,
    defense=None,
    checkpoint=None,
):
    """Train one surrogate on the attacker's first ``budget`` queries, answered at
    ``granularity`` (through ``defense``); its initial weights are drawn from
    ``model_seed``. Return (model, metrics). ``checkpoint``: fit's
    :class:`~stealbench.models.checkpoint.Checkpointer` (None: none).

    Answers that carry no mass (rounded to nothing) are dropped from training.
    """
    rows = cache.transfer_set(budget)
    images = cache.query_images(pool, rows)  # lazy for a pool too large for memory
    answers = cache.answers(rows, granularity, images if defense is not None else None, defense)
    targets, kept = response_to_targets(answers)
    kept_rows = np.flatnonzero(kept)
    train, val = split_transfer_set(len(kept_rows), spec.selection, spec.val_fraction)
    model = build_surrogate(spec, answers.shape[1], model_seed)
    result = fit(
        model,
        take(images, kept_rows[train]),
        targets[train],
        take(images, kept_rows[val]) if val.stop > val.start else None,
        targets[val].argmax(1),
        spec.training,
        model_seed,
        desc=f"{spec.arch} {granularity} b{budget}",
        checkpoint=checkpoint,
    )
    metrics = {
        **score(model, test),
        "transfer_val_acc": result.best_val_acc,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "train_images": train.stop - train.start,
        "dropped_answers": int(len(rows) - len(kept_rows)),
        "images_seen": result.images_seen,
        "train_seconds": result.seconds,
    }
    log.info(
        "surrogate %s %s b%d: test_acc %.4f agreement %.4f recovery %.3f kl %.3f",
        spec.arch,
        granularity,
        budget,
        metrics["test_acc"],
        metrics["agreement"],
        metrics["recovery"],
        metrics["kl_divergence"],
    )
    return model, metrics


def load_victim_test(victim_dataset: Dataset, victim_test_path) -> VictimTestSet:
    """The victim's test split with the victim's posteriors, checked against the dataset."""
    from ..io import ArtefactError, read_parquet

    table, meta = read_parquet(victim_test_path, kind="victim_test_outputs")
    if meta["dataset_checksum"] != victim_dataset.checksum:
        raise ArtefactError(
            f"{victim_test_path} was made from another version of "
            f"{victim_dataset.name}; rerun the victim"
        )
    probs = table.column("probs").combine_chunks()
    return VictimTestSet(
        images=victim_dataset.images[table.column("id").to_numpy()],
        labels=table.column("label").to_numpy().astype(np.int64),
        victim_probs=probs.flatten().to_numpy().reshape(len(probs), -1),
    )


@dataclass
class AttackInputs:
    """Everything a surrogate-training job reads, loaded and cross-checked."""

    pool: Dataset
    victim_dataset: Dataset
    victim_meta: dict
    test: VictimTestSet

    @property
    def expect(self) -> dict:
        """What every query cache of this victim and pool must record (else it is stale)."""
        return {
            "pool_checksum": self.pool.checksum,
            "victim_checksum": self.victim_meta["weights_checksum"],
        }


def load_attack_inputs(paths) -> AttackInputs:
    """Load the pool, the victim's data, metrics and test outputs (``paths`` has those names)."""
    from ..data import datasets
    from ..io import read_json

    victim_dataset = datasets.load(paths.victim_dataset)
    return AttackInputs(
        datasets.load(paths.pool),
        victim_dataset,
        read_json(paths.victim_metrics),
        load_victim_test(victim_dataset, paths.victim_test),
    )


def load_backbones(paths: dict) -> dict[str, dict]:
    """The state dicts of the pretrained backbones a job's inits name (init -> state dict)."""
    from ..io import load_state_dict

    return {init: load_state_dict(path) for init, path in paths.items()}


def spec_from_config(
    arch: str, init: str, surrogates: dict, device: str, backbones: dict | None = None
) -> SurrogateSpec:
    return SurrogateSpec(
        arch=arch,
        training=TrainConfig.from_dict(surrogates["training"]),
        selection=surrogates["selection"],
        val_fraction=surrogates["val_fraction"],
        init=init,
        backbone=(backbones or {}).get(init),
        input_size=surrogates["input_size"],
        device=device,
    )


def cell_axes(wildcards, params) -> dict:
    """The axes every cell row of a training job carries."""
    return {
        "victim": wildcards.victim,
        "victim_arch": params.victim["arch"],
        "victim_init": params.victim["init"],
        "dataset": params.victim["dataset"],
        "attack": wildcards.attack,
        "strategy": params.attack["strategy"],
        "pool": params.attack["pool"],
        "adversary": "realistic" if params.realistic else "out-of-distribution",
        "surrogate_arch": wildcards.arch,
        "seed": int(wildcards.seed),
    }
