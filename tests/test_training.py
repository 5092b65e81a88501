import numpy as np
import pytest
import torch

from stealbench.models import training
from stealbench.models.architectures import create_model
from stealbench.models.training import TrainConfig, fit, predict_proba, soft_cross_entropy


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


# ------------------------------------------------------ which model fit keeps, and its schedule


def _tiny_fit(monkeypatch, val_accuracies, cfg=None):
    """Fit a small model for len(val_accuracies) epochs (or on ``cfg``); validation is faked to
    score ``val_accuracies`` epoch by epoch (None: no validation data). Returns the model, the
    result, the weights and learning rate at the end of every epoch, and the optimiser."""
    x, y = _toy(48)
    epochs = len(val_accuracies)
    cfg = cfg or TrainConfig(epochs=epochs, batch_size=16, lr=1e-2)
    validate = val_accuracies[0] is not None
    val_labels = np.zeros(10, dtype=int)
    snapshots, lrs, optimisers = [], [], []

    original = training.make_optimizer

    def spy_optimizer(model, cfg):
        optimisers.append(original(model, cfg))
        return optimisers[-1]

    def fake_predict(model, images, batch_size=1000):
        """Validation after each epoch: snapshot the weights, score the scripted accuracy."""
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        lrs.append(optimisers[0].param_groups[0]["lr"])
        right = int(round(val_accuracies[len(snapshots) - 1] * len(images)))
        predicted = np.where(np.arange(len(images)) < right, 0, 1)
        return np.eye(2, dtype=np.float32)[predicted]

    monkeypatch.setattr(training, "make_optimizer", spy_optimizer)
    monkeypatch.setattr(training, "predict_proba", fake_predict)
    model = create_model("lenet", 2, seed=0)
    targets = np.eye(2, dtype=np.float32)[y]
    val = (x[:10], val_labels) if validate else (None, None)
    result = fit(model, x, targets, *val, cfg, seed=1)
    return model, result, snapshots, lrs, optimisers[0]


def _same_weights(model, state):
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_fit_with_validation_keeps_the_best_epoch(monkeypatch):
    model, result, snapshots, _, _ = _tiny_fit(monkeypatch, [0.5, 1.0, 0.2])
    assert result.best_epoch == 2 and result.best_val_acc == 1.0
    assert _same_weights(model, snapshots[1])
    assert not _same_weights(model, snapshots[2])  # the last epoch trained on
    assert [h["val_acc"] for h in result.history] == [0.5, 1.0, 0.2]
    # ties keep the later epoch
    model, result, snapshots, _, _ = _tiny_fit(monkeypatch, [1.0, 1.0, 0.5])
    assert result.best_epoch == 2 and _same_weights(model, snapshots[1])


def test_fit_without_validation_keeps_the_final_model(monkeypatch):
    # the same run, validated with the best score last: its last snapshot is the final model
    _, _, snapshots, _, _ = _tiny_fit(monkeypatch, [0.0, 0.5, 1.0])
    model, result, none_taken, _, _ = _tiny_fit(monkeypatch, [None, None, None])
    assert none_taken == []  # nothing is validated
    assert result.best_epoch == result.epochs == 3 and np.isnan(result.best_val_acc)
    assert _same_weights(model, snapshots[2])
    assert not _same_weights(model, snapshots[0])


def test_step_schedule_multiplies_the_lr_by_gamma_every_lr_step_epochs(monkeypatch):
    cfg = TrainConfig(epochs=5, batch_size=16, lr=0.1, lr_step=2, lr_gamma=0.5)
    _, _, _, lrs, optimiser = _tiny_fit(monkeypatch, [0.5] * 5, cfg)
    # the lr after epoch e: 0.1 * 0.5 ** (e // 2)
    np.testing.assert_allclose(lrs, [0.1, 0.05, 0.05, 0.025, 0.025])
    assert optimiser.param_groups[0]["lr"] == pytest.approx(0.025)
    constant = TrainConfig(epochs=3, batch_size=16, lr=0.1)
    _, _, _, lrs, _ = _tiny_fit(monkeypatch, [0.5] * 3, constant)
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.1])


def test_sgd_uses_the_configured_momentum(monkeypatch):
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.01, optimizer="sgd", momentum=0.5)
    _, _, _, _, optimiser = _tiny_fit(monkeypatch, [None], cfg)
    assert optimiser.kind == "sgd" and optimiser.param_groups[0]["momentum"] == 0.5
    cfg = TrainConfig(epochs=1, batch_size=16, weight_decay=1e-4)
    _, _, _, _, optimiser = _tiny_fit(monkeypatch, [None], cfg)
    assert optimiser.kind == "adam" and optimiser.param_groups[0]["weight_decay"] == 1e-4
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; allowed: adam, sgd"):
        training.make_optimizer(create_model("lenet", 2), TrainConfig(optimizer="rmsprop"))


def test_train_config_from_dict_ignores_unknown_keys():
    cfg = TrainConfig.from_dict({"epochs": 3, "lr_step": 2, "not_a_field": 1})
    assert (cfg.epochs, cfg.lr_step, cfg.batch_size) == (3, 2, TrainConfig().batch_size)


@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(optimizer="adam", lr=1e-3, weight_decay=1e-4),
        TrainConfig(optimizer="sgd", lr=0.05, momentum=0.5, weight_decay=5e-4),
    ],
)
def test_the_optimizer_does_what_torch_optim_does_without_importing_dynamo(cfg):
    """stealbench's optimiser runs torch.optim's functional kernels: the same weights as
    torch.optim.Adam / SGD step for step, and no torch._dynamo import (1.5 s a job)."""
    import subprocess
    import sys

    x, y = _toy(32)
    targets = torch.as_tensor(np.eye(2, dtype=np.float32)[y])
    ours, theirs = create_model("lenet", 2, seed=3), create_model("lenet", 2, seed=3)
    mine = training.make_optimizer(ours, cfg)
    if cfg.optimizer == "adam":
        ref = torch.optim.Adam(theirs.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        ref = torch.optim.SGD(
            theirs.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    batch = training.to_tensor(x)
    for _ in range(4):
        for model, optimiser in ((ours, mine), (theirs, ref)):
            optimiser.zero_grad(set_to_none=True)
            soft_cross_entropy(model(batch), targets).backward()
            optimiser.step()
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    script = (
        "import sys, torch; sys.path.insert(0, 'src');"
        "from stealbench.models import training, architectures as a;"
        "m = a.create_model('lenet', 2); o = training.make_optimizer(m, training.TrainConfig());"
        "m(torch.rand(4, 1, 28, 28)).sum().backward(); o.step();"
        "print('torch._dynamo' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.stdout.strip() == "False", run.stderr


# ------------------------------------------------------------- early stopping, val metric


def _scripted_fit(monkeypatch, predictions, labels, cfg):
    """Fit on toy data; validation epoch e predicts ``predictions[e - 1]`` (class indices)
    for the validation rows whose labels are ``labels``. Returns the result and the weights
    at the end of every epoch."""
    x, y = _toy(48)
    snapshots = []

    def fake_predict(model, images, batch_size=1000):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return np.eye(2, dtype=np.float32)[np.asarray(predictions[len(snapshots) - 1])]

    monkeypatch.setattr(training, "predict_proba", fake_predict)
    model = create_model("lenet", 2, seed=0)
    targets = np.eye(2, dtype=np.float32)[y]
    labels = np.asarray(labels)
    result = fit(model, x, targets, x[: len(labels)], labels, cfg, seed=1)
    return model, result, snapshots


def test_early_stopping_stops_after_patience_epochs_without_improvement(monkeypatch):
    # accuracies 0.5, 0.8, 0.8 (a tie is no improvement), 0.7: two stale epochs, stop;
    # the 1.0 of epoch 5 is never reached.
    labels = [0] * 10
    right = [5, 8, 8, 7, 10, 10]
    predictions = [[0] * r + [1] * (10 - r) for r in right]
    cfg = TrainConfig(epochs=6, batch_size=16, lr=1e-2, patience=2)
    model, result, snapshots = _scripted_fit(monkeypatch, predictions, labels, cfg)
    assert len(snapshots) == 4 and result.epochs == 4 and result.images_seen == 4 * 48
    assert [h["val_acc"] for h in result.history] == [0.5, 0.8, 0.8, 0.7]
    # the first best epoch is kept (not the tie of epoch 3, not the last trained)
    assert result.best_epoch == 2 and result.best_val_acc == 0.8
    assert _same_weights(model, snapshots[1])
    assert not _same_weights(model, snapshots[2]) and not _same_weights(model, snapshots[3])


def test_without_patience_every_epoch_runs_however_long_validation_stalls(monkeypatch):
    """The default (patience None) is the fixed schedule every existing caller had: all the
    epochs, the best kept with ties going to the later epoch."""
    assert TrainConfig().patience is None and TrainConfig().val_metric == "accuracy"
    labels = [0] * 10
    predictions = [[0] * 9 + [1]] + [[0] * 5 + [1] * 5] * 24 + [[0] * 9 + [1]]
    cfg = TrainConfig(epochs=26, batch_size=16, lr=1e-2)
    model, result, snapshots = _scripted_fit(monkeypatch, predictions, labels, cfg)
    assert result.epochs == 26 and len(snapshots) == 26
    assert result.best_epoch == 26 and _same_weights(model, snapshots[25])


def test_unset_options_leave_an_existing_call_unchanged():
    """fit as every caller used it (no patience, accuracy) and with the new options spelled
    out as unset: the same weights, the same history; a patience never reached trains the
    same epochs too."""
    x, y = _toy(200)
    targets = np.eye(2, dtype=np.float32)[y]
    runs = []
    for extra in ({}, {"patience": None, "val_metric": "accuracy"}, {"patience": 50}):
        model = create_model("lenet", 2, seed=0)
        cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3, **extra)
        result = fit(model, x[:150], targets[:150], x[150:], y[150:], cfg, seed=5)
        runs.append((result, {k: v.clone() for k, v in model.state_dict().items()}))
    (base, weights), (explicit, weights_explicit), (patient, _) = runs
    assert all(torch.equal(weights[k], weights_explicit[k]) for k in weights)
    assert base.history == explicit.history and base.best_epoch == explicit.best_epoch
    assert [h["loss"] for h in patient.history] == [h["loss"] for h in base.history]


def test_macro_f1_judges_epochs_where_accuracy_would_not(monkeypatch):
    # 8 rows of class 0, 2 of class 1. Epoch 1 predicts 0 everywhere: accuracy 0.8, macro-F1
    # (2*8/(2*8+2) + 0) / 2 = 4/9. Epoch 2 gets both 1s and 5 of the 0s: accuracy 0.7,
    # macro-F1 (10/13 + 4/7) / 2.
    labels = [0] * 8 + [1] * 2
    predictions = [[0] * 10, [0] * 5 + [1] * 3 + [1] * 2]
    for metric, best, value in (
        ("accuracy", 1, 0.8),
        ("macro-f1", 2, (10 / 13 + 4 / 7) / 2),
    ):
        cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, val_metric=metric)
        model, result, snapshots = _scripted_fit(monkeypatch, predictions, labels, cfg)
        assert result.best_epoch == best and result.best_val_acc == pytest.approx(value)
        assert _same_weights(model, snapshots[best - 1])


def test_unknown_val_metric_lists_allowed():
    x, y = _toy(20)
    with pytest.raises(ValueError, match="allowed: accuracy, macro-f1"):
        fit(
            create_model("lenet", 2),
            x,
            np.eye(2, dtype=np.float32)[y],
            x,
            y,
            TrainConfig(epochs=1, val_metric="f1"),
            seed=0,
        )
