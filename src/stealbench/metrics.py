"""Metrics of a stolen model against its victim (Knockoff nets, Atli et al.)."""

from __future__ import annotations

import numpy as np


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Share of test images classified correctly."""
    return float(np.mean(np.asarray(predictions) == np.asarray(labels))) if len(labels) else 0.0


def agreement(surrogate_predictions: np.ndarray, victim_predictions: np.ndarray) -> float:
    """Fidelity: share of test images on which surrogate and victim give the same top-1."""
    return accuracy(surrogate_predictions, victim_predictions)


def recovery(surrogate_accuracy: float, victim_accuracy: float) -> float:
    """Performance recovery (Atli et al.): surrogate accuracy / victim accuracy."""
    return surrogate_accuracy / victim_accuracy if victim_accuracy > 0 else float("nan")
