import numpy as np
import pytest
import torch

from stealbench.models import create_model
from stealbench.training import TrainConfig, fit, predict_proba, soft_cross_entropy


def _toy(n=300, seed=0):
    """Two classes: bright left half vs bright right half."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.integers(0, 60, size=(n, 28, 28, 1)).astype(np.uint8)
    for i, y in enumerate(labels):
        images[i, :, (0 if y == 0 else 14) : (14 if y == 0 else 28)] += 150
    return images, labels


def test_soft_cross_entropy_equals_hard_on_one_hot():
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, 3, 1, 1, 2])
    one_hot = torch.nn.functional.one_hot(labels, 4).float()
    torch.testing.assert_close(
        soft_cross_entropy(logits, one_hot), torch.nn.functional.cross_entropy(logits, labels)
    )


def test_fit_learns_and_is_deterministic():
    x, y = _toy()
    targets = np.eye(2, dtype=np.float32)[y]
    cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = create_model("lenet", 2)
        result = fit(model, x[:200], targets[:200], x[200:], y[200:], cfg, seed=5)
        runs.append(predict_proba(model, x[200:]))
        assert result.best_val_acc > 0.9
    np.testing.assert_array_equal(runs[0], runs[1])


def test_min_steps_extends_small_training_sets():
    cfg = TrainConfig(epochs=2, batch_size=10, min_steps=50)
    assert cfg.epochs_for(100) == 5  # 10 steps per epoch
    assert cfg.epochs_for(1000) == 2


def test_nan_loss_fails_with_a_fix():
    x, y = _toy(64)
    targets = np.full((64, 2), np.nan, dtype=np.float32)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(create_model("lenet", 2), x, targets, x[:8], y[:8], TrainConfig(epochs=1), seed=0)
