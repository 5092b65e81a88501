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
from .metrics import accuracy, agreement, recovery
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
    def victim_acc(self) -> float:
        return accuracy(self.victim_probs.argmax(1), self.labels)


def split_transfer_set(budget: int, val_fraction: float) -> tuple[slice, slice]:
    """Train/val slices of the first ``budget`` queries (val: the last ones, at least one)."""
    n_val = max(1, math.ceil(budget * val_fraction)) if val_fraction > 0 else 0
    return slice(0, budget - n_val), slice(budget - n_val, budget)


def train_surrogate(
    cache: QueryCache,
    pool: Dataset,
    test: VictimTestSet,
    granularity: str,
    budget: int,
    arch: str,
    cfg: TrainConfig,
    seed: int,
    val_fraction: float = 0.1,
    device: str = "cpu",
):
    """Train one surrogate on the first ``budget`` cached queries; return (model, metrics)."""
    sample_ids, probs = cache.prefix(budget)
    response = apply_granularity(probs, granularity)
    train, val = split_transfer_set(budget, val_fraction)
    images = pool.images[sample_ids]
    model = create_model(arch, probs.shape[1], device)
    result = fit(
        model,
        images[train],
        response_to_targets(response[train]),
        images[val],
        response[val].argmax(1),
        cfg,
        seed,
        desc=f"{arch} {granularity} b{budget}",
    )
    predictions = predict_proba(model, test.images).argmax(1)
    test_acc = accuracy(predictions, test.labels)
    metrics = {
        "test_acc": test_acc,
        "agreement": agreement(predictions, test.victim_probs.argmax(1)),
        "victim_acc": test.victim_acc,
        "recovery": recovery(test_acc, test.victim_acc),
        "transfer_val_acc": result.best_val_acc,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "train_images": train.stop - train.start,
        "images_seen": result.images_seen,
        "train_seconds": result.seconds,
    }
    log.info(
        "surrogate %s %s b%d: test_acc %.4f agreement %.4f recovery %.3f",
        arch,
        granularity,
        budget,
        test_acc,
        metrics["agreement"],
        metrics["recovery"],
    )
    return model, metrics
