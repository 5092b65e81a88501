"""Training surrogates on the cached responses: the attacker's side.

The attacker sees only its transfer set: the images it sent and the API's responses at one
granularity. Model selection uses a held-out slice of that transfer set, labelled by the
victim; the victim's test split is touched only to score the final model.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from .attacks import QueryCache
from .blackbox import apply_granularity, response_to_targets
from .datasets import Dataset
from .metrics import accuracy, agreement, kl_divergence, per_class_accuracy, recovery
from .models import create_model
from .training import TrainConfig, fit, predict_proba

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class SurrogateSpec:
    """How the attacker builds and trains its surrogate."""

    arch: str
    training: TrainConfig
    val_fraction: float = 0.1
    pretrained: bool = False
    input_size: int | None = None
    device: str = "cpu"


def split_transfer_set(budget: int, val_fraction: float) -> tuple[slice, slice]:
    """Train/val slices of the first ``budget`` queries (val: the last ones, at least one)."""
    n_val = max(1, math.ceil(budget * val_fraction)) if val_fraction > 0 else 0
    return slice(0, budget - n_val), slice(budget - n_val, budget)


def _rows(images, rows: slice):
    """``images[rows]``, staying lazy when ``images`` is a lazy store (large transfer sets)."""
    if hasattr(images, "subset"):
        return images.subset(np.arange(rows.start, rows.stop))
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


def train_surrogate(
    cache: QueryCache,
    pool: Dataset,
    test: VictimTestSet,
    granularity: str,
    budget: int,
    spec: SurrogateSpec,
    seed: int,
):
    """Train one surrogate on the first ``budget`` cached queries; return (model, metrics)."""
    _, probs = cache.prefix(budget)
    response = apply_granularity(probs, granularity)
    train, val = split_transfer_set(budget, spec.val_fraction)
    images = cache.query_images(pool, budget)  # lazy for a pool too large for memory
    model = create_model(
        spec.arch, probs.shape[1], spec.device, spec.pretrained, spec.input_size, seed=seed
    )
    result = fit(
        model,
        _rows(images, train),
        response_to_targets(response[train]),
        images[val],
        response[val].argmax(1),
        spec.training,
        seed,
        desc=f"{spec.arch} {granularity} b{budget}",
    )
    metrics = {
        **score(model, test),
        "transfer_val_acc": result.best_val_acc,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "train_images": train.stop - train.start,
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
    from .io import ArtefactError, read_parquet

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
    cache: QueryCache


def load_attack_inputs(paths) -> AttackInputs:
    """Load pool, victim data, test outputs and the query cache (``paths`` has those names).

    The cache must come from this victim model and this pool: a stale one is an error.
    """
    from . import datasets
    from .attacks import load_cache
    from .io import read_json

    pool = datasets.load(paths.pool)
    victim_dataset = datasets.load(paths.victim_dataset)
    victim_meta = read_json(paths.victim_metrics)
    cache = load_cache(
        paths.queries,
        expect={"pool_checksum": pool.checksum, "victim_checksum": victim_meta["weights_checksum"]},
    )
    return AttackInputs(
        pool,
        victim_dataset,
        victim_meta,
        load_victim_test(victim_dataset, paths.victim_test),
        cache,
    )


def spec_from_config(arch: str, surrogates: dict, device: str) -> SurrogateSpec:
    return SurrogateSpec(
        arch=arch,
        training=TrainConfig.from_dict(surrogates["training"]),
        val_fraction=surrogates["val_fraction"],
        pretrained=surrogates["pretrained"],
        input_size=surrogates["input_size"],
        device=device,
    )


def cell_axes(wildcards, params) -> dict:
    """The axes every cell row of a training job carries."""
    return {
        "victim": wildcards.victim,
        "victim_arch": params.victim["arch"],
        "dataset": params.victim["dataset"],
        "attack": wildcards.attack,
        "strategy": params.attack["strategy"],
        "pool": params.attack["pool"],
        "adversary": "realistic" if params.realistic else "out-of-distribution",
        "surrogate_arch": wildcards.arch,
        "seed": int(wildcards.seed),
    }
