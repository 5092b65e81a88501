"""Adaptive Misinformation: the mixing rule, the loss, and a misinformation model that learns
to avoid the right class."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stealbench.defense import DefenseContext, create
from stealbench.defense.misinformation import (
    misinformation_loss,
    misinformation_weight,
    train_misinformation_model,
)
from stealbench.models.architectures import create_model
from stealbench.models.training import TrainConfig, predict_proba

K = 4


def _quadrant_images(n: int, seed: int):
    """Class c lights quadrant c of an 8x8 grey image; the rest is dim noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, n)
    images = rng.integers(0, 60, size=(n, 8, 8, 1)).astype(np.uint8)
    for c in range(K):
        rows, cols = divmod(c, 2)
        images[labels == c, 4 * rows : 4 * rows + 4, 4 * cols : 4 * cols + 4] += 180
    return images, labels


def _probs(n: int, seed: int, scale: float = 2.0):
    logits = np.random.default_rng(seed).normal(0, scale, size=(n, K))
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_loss_is_minus_log_one_minus_p_and_the_authors_cross_entropy_up_to_a_constant():
    logits = torch.randn(16, K, generator=torch.Generator().manual_seed(0)) * 3
    targets = torch.arange(16) % K
    p_true = F.softmax(logits, dim=1)[torch.arange(16), targets]
    ours = misinformation_loss(logits, targets)
    assert ours.item() == pytest.approx(-torch.log(1 - p_true).mean().item(), rel=1e-5)
    authors = F.cross_entropy(torch.log(1 - F.softmax(logits, dim=1) + 1e-7), targets)
    assert authors.item() == pytest.approx(ours.item() + np.log(K - 1), abs=1e-4)


def _flat_images(n: int, seed: int) -> np.ndarray:
    """Outliers of another kind: uniform grey 8x8 images."""
    levels = np.random.default_rng(seed).integers(0, 256, size=(n, 1, 1, 1))
    return np.broadcast_to(levels, (n, 8, 8, 1)).astype(np.uint8)


def _victim_says_two(images: np.ndarray) -> np.ndarray:
    """A stand-in victim whose top-1 on the outliers is class 2."""
    return np.tile(np.eye(K)[2], (len(images), 1))


def test_trained_misinformation_model_avoids_the_true_class_and_the_victims_top1():
    images, labels = _quadrant_images(160, seed=0)
    model = train_misinformation_model(
        images, labels, "lenet", TrainConfig(epochs=4, batch_size=32, lr=3e-3), seed=0,
        outlier_images=_flat_images(64, seed=1), victim_predict=_victim_says_two,
    )  # fmt: skip
    test_images, test_labels = _quadrant_images(200, seed=2)
    p = predict_proba(model, test_images)
    assert p[np.arange(200), test_labels].mean() < 0.3 / K  # chance would be 1/K
    # On new outliers, little mass on the victim's top-1 there (class 2).
    assert predict_proba(model, _flat_images(100, seed=3))[:, 2].mean() < 0.1 / K


def test_training_is_seeded():
    images, labels = _quadrant_images(32, seed=0)
    outliers = _flat_images(16, seed=1)

    def train(seed):
        return train_misinformation_model(
            images, labels, "lenet", TrainConfig(epochs=1, batch_size=16), seed,
            outlier_images=outliers, victim_predict=_victim_says_two,
        )  # fmt: skip

    first, again, other = (predict_proba(train(s), outliers) for s in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_outliers_without_a_victim_are_refused():
    images, labels = _quadrant_images(8, seed=0)
    with pytest.raises(ValueError, match="victim_predict"):
        train_misinformation_model(images, labels, "lenet", TrainConfig(), 0, outlier_images=images)


def _defense(tau, nu=10000.0):
    context = DefenseContext(misinformation=create_model("lenet", K, seed=3))
    return create("adaptive-misinformation", context, tau=tau, nu=nu)


def test_tau_zero_serves_the_victim_and_tau_one_the_misinformation():
    images, _ = _quadrant_images(50, seed=4)
    probs = _probs(50, seed=5)
    assert probs.max() < 0.999  # so that tau = 1 is well above every score
    np.testing.assert_array_equal(_defense(0.0)(probs, images), probs.astype(np.float32))
    misinformation = predict_proba(_defense(0.0).context.misinformation, images)
    np.testing.assert_allclose(_defense(1.0)(probs, images), misinformation, atol=1e-5)


def test_the_switch_follows_the_victims_maximum_probability():
    images, _ = _quadrant_images(400, seed=6)
    probs = _probs(400, seed=7)
    tau = 0.6
    answers = _defense(tau)(probs, images)
    misinformation = predict_proba(_defense(tau).context.misinformation, images)
    score = probs.max(axis=1)
    unsure, sure = score < tau - 0.01, score > tau + 0.01
    assert unsure.sum() > 50 and sure.sum() > 50
    np.testing.assert_allclose(answers[unsure], misinformation[unsure], atol=1e-5)
    np.testing.assert_allclose(answers[sure], probs[sure], atol=1e-6)
    # A gentle slope mixes: y' = (1 - a) y + a y^ with a = sigmoid(nu (tau - s)).
    alpha = 1 / (1 + np.exp(-5.0 * (tau - score)))
    np.testing.assert_allclose(misinformation_weight(probs, tau, 5.0), alpha, rtol=1e-12)
    expected = (1 - alpha[:, None]) * probs + alpha[:, None] * misinformation
    np.testing.assert_allclose(_defense(tau, nu=5.0)(probs, images), expected, atol=1e-5)


@pytest.mark.parametrize("tau", [-0.1, 1.5, float("nan")])
def test_tau_outside_the_unit_interval_is_refused_by_name(tau):
    with pytest.raises(ValueError, match="tau"):
        _defense(tau)


@pytest.mark.parametrize("nu", [0.0, -1.0, float("inf")])
def test_a_slope_that_is_not_positive_is_refused_by_name(nu):
    with pytest.raises(ValueError, match="nu"):
        _defense(0.5, nu=nu)
