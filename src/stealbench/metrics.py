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


def kl_divergence(
    victim_probs: np.ndarray, surrogate_probs: np.ndarray, eps: float = 1e-8
) -> float:
    """Mean KL(victim || surrogate) over images, in nats (MEBench's fidelity measure)."""
    p = np.asarray(victim_probs, dtype=np.float64)
    q = np.clip(np.asarray(surrogate_probs, dtype=np.float64), eps, None)
    terms = np.where(p > 0, p * (np.log(np.clip(p, eps, None)) - np.log(q)), 0.0)
    return float(terms.sum(axis=1).mean()) if len(p) else 0.0


def per_class_accuracy(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy on the images of each true class (NaN for a class with no test image)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    correct = np.bincount(labels[predictions == labels], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, correct / counts, np.nan)
