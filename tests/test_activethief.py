"""ActiveThief: each selection rule picks what its definition says, budgets are prefixes of
one run, the budget is spent exactly, and only the API's answers steer the run."""

import inspect

import numpy as np
import pytest
import torch
from torch import nn

from stealbench.attack.api import PredictionAPI
from stealbench.attack.query import run_sequential
from stealbench.attack.strategies import activethief, lookup
from stealbench.data.datasets import Dataset

FAST = {"epochs": 2, "min_steps": 0, "batch_size": 32, "candidates": None}


class LinearVictim(nn.Module):
    """Fixed logits ``temperature * (W x + b)`` on flattened [0, 1] images: the temperature
    changes every probability and no argmax."""

    def __init__(self, pixels: int, classes: int = 3, temperature: float = 1.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.linear = nn.Linear(pixels, classes)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(classes, pixels, generator=g) / 2)
            self.linear.bias.copy_(-self.linear.weight.sum(1) / 2)  # balanced around grey
        self.temperature = temperature

    def forward(self, x):
        return self.temperature * self.linear(x.flatten(1))


def toy_pool(n=400, size=8, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 1), dtype=np.uint8)
    splits = np.array(["pool"] * (n - 20) + ["test"] * 20, dtype=object)
    return Dataset("toy", images, np.full(n, -1), splits, {"classes": []})


def run(budget, selection, victim=None, granularity="probs", pool=None, **options):
    pool = pool or toy_pool()
    victim = victim or LinearVictim(64)
    options = {
        "selection": selection,
        "seed_size": 20,
        "val_size": 10,
        "round_size": 25,
        "round_growth": 1.0,
        **FAST,
        **options,
    }
    log = run_sequential(
        "activethief", victim, pool, budget, seed=0, rng_seed=7, granularity=granularity, **options
    )
    return log


# ---------------------------------------------------------------- selection rules


def test_k_center_picks_farthest_from_labelled_then_from_its_own_picks():
    labelled = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    candidates = np.array(
        [
            [0.9, 0.1, 0.0],  # near the first labelled point
            [0.0, 0.0, 1.0],  # farthest from both labelled points
            [0.05, 0.05, 0.9],  # far from labelled, but next to candidate 1
            [0.5, 0.5, 0.0],  # between the labelled points
        ]
    )
    picks = activethief.select_k_center(candidates, labelled, 2)
    # 1 is farthest; once it is a centre, 2 is near it and 3 is now the farthest.
    assert picks.tolist() == [1, 3]


def test_uncertainty_picks_largest_entropy_first():
    probs = np.array([[0.98, 0.01, 0.01], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.4, 0.0], [0.8, 0.1, 0.1]])
    assert activethief.select_uncertainty(probs, 3).tolist() == [1, 2, 3]


def linear_substitute(pixels=16, classes=3, seed=0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(pixels, classes))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(classes, pixels, generator=g))
        model[1].bias.copy_(-model[1].weight.sum(1) / 2)
    return model


def analytic_distance(model, images) -> np.ndarray:
    """Distance to the nearest decision boundary of a linear classifier, in [0, 1] pixels."""
    w, b = model[1].weight.detach().double(), model[1].bias.detach().double()
    x = torch.as_tensor(images.reshape(len(images), -1), dtype=torch.float64) / 255
    f = x @ w.T + b
    k = f.argmax(1)
    rows = torch.arange(len(x))
    gap = (f[rows, k][:, None] - f).abs()
    wn = (w[k][:, None, :] - w[None]).norm(dim=2)
    ratio = gap / wn
    ratio[rows, k] = float("inf")
    return ratio.min(1).values.numpy()


def test_dfal_distance_matches_the_analytic_distance_of_a_linear_substitute():
    model = linear_substitute()
    images = np.random.default_rng(1).integers(0, 256, size=(40, 4, 4, 1), dtype=np.uint8)
    norm, flipped = activethief.deepfool_distances(model, images, overshoot=0.02)
    assert flipped.all()
    np.testing.assert_allclose(norm, 1.02 * analytic_distance(model, images), rtol=1e-3, atol=1e-4)


def test_dfal_with_two_classes_measures_the_distance_to_the_runner_up_only():
    """``classes=2``: the only candidate boundary is the one with the second largest logit."""
    model = linear_substitute(classes=4)
    images = np.random.default_rng(4).integers(0, 256, size=(40, 4, 4, 1), dtype=np.uint8)
    w, b = model[1].weight.detach().double(), model[1].bias.detach().double()
    f = torch.as_tensor(images.reshape(40, -1) / 255, dtype=torch.float64) @ w.T + b
    first, second = torch.topk(f, 2, dim=1).indices.T
    rows = torch.arange(40)
    runner_up = (f[rows, first] - f[rows, second]) / (w[first] - w[second]).norm(dim=1)
    norm, flipped = activethief.deepfool_distances(model, images, classes=2)
    assert flipped.all()
    np.testing.assert_allclose(norm, 1.02 * runner_up.numpy(), rtol=1e-3, atol=1e-4)
    assert (runner_up.numpy() > analytic_distance(model, images) + 1e-6).any()


def test_dfal_picks_the_points_nearest_the_boundary():
    model = linear_substitute()
    images = np.random.default_rng(2).integers(0, 256, size=(60, 4, 4, 1), dtype=np.uint8)
    nearest = np.argsort(analytic_distance(model, images))[:5]
    assert activethief.select_dfal(model, images, 5).tolist() == nearest.tolist()


def test_dfal_k_center_picks_from_the_dfal_shortlist_only():
    model = linear_substitute()
    images = np.random.default_rng(3).integers(0, 256, size=(60, 4, 4, 1), dtype=np.uint8)
    with torch.no_grad():
        outputs = torch.softmax(model(torch.as_tensor(images / 255, dtype=torch.float32)), 1)
    outputs = outputs.numpy()
    shortlist = set(np.argsort(analytic_distance(model, images))[:12].tolist())
    picks = activethief.select_dfal_k_center(model, images, outputs, outputs[:0], 4, shortlist=12)
    assert set(picks.tolist()) <= shortlist
    # k-center inside the shortlist: the same as k-center run on the shortlist's outputs.
    short = np.sort(list(shortlist))
    expected = short[activethief.select_k_center(outputs[short], outputs[:0], 4)]
    assert picks.tolist() == expected.tolist()


# ----------------------------------------------------------------- whole attack


@pytest.mark.parametrize("selection", activethief.SELECTIONS)
def test_budgets_are_prefixes_and_spent_exactly(selection):
    # 70 = seed 20 + val 10 + a round of 25 + 15 of a truncated round; 150 runs 5 rounds.
    # Each round scores a random subset of 120 unused images (the draw must not break it).
    options = {"candidates": 120, "dfal_iter": 5}
    small, large = run(70, selection, **options), run(150, selection, **options)
    assert len(small.sample_ids) == 70 and len(large.sample_ids) == 150
    np.testing.assert_array_equal(small.sample_ids, large.sample_ids[:70])
    assert len(set(large.sample_ids.tolist())) == 150  # no pool image is asked twice


def test_query_count_equals_budget_through_the_api():
    pool, victim = toy_pool(), LinearVictim(64)
    api = PredictionAPI(victim)
    ids = lookup("activethief").fn(
        api, pool, 80, np.random.default_rng(0), seed_size=20, val_size=10, round_size=25, **FAST
    )
    assert api.queries == 80 and len(ids) == 80  # 20 + 10 + 25 + 25 of a round of 25
    images, _, _ = api.record()
    np.testing.assert_array_equal(images, pool.images[ids])


class CallSizes(PredictionAPI):
    """The API, remembering how many images each call asked about."""

    def __init__(self, model):
        super().__init__(model)
        self.calls = []

    def __call__(self, images):
        self.calls.append(len(images))
        return super().__call__(images)


def test_schedule_is_seed_validation_then_growing_rounds_truncated_at_the_budget():
    api = CallSizes(LinearVictim(64))
    options = {**FAST, "seed_size": 20, "val_size": 10, "round_size": 25, "round_growth": 1.5}
    lookup("activethief").fn(api, toy_pool(), 95, np.random.default_rng(0), **options)
    # rounds of round(25 * 1.5**r) = 25, 38, 56, ...: 20 + 10 + 25 + 38 = 93, then 2 of 56.
    assert api.calls == [20, 10, 25, 38, 2]


def test_label_granularity_never_depends_on_the_probabilities():
    """Two victims with the same argmax everywhere: identical runs at 'label', different
    runs at 'probs' (so the test can tell the answers apart)."""
    cold, hot = LinearVictim(64, temperature=1.0), LinearVictim(64, temperature=4.0)
    pool = toy_pool()
    images = pool.images[pool.ids("pool")]
    assert np.array_equal(
        PredictionAPI(cold)(images).argmax(1), PredictionAPI(hot)(images).argmax(1)
    )
    label = [run(120, "uncertainty", v, "label", pool).sample_ids for v in (cold, hot)]
    probs = [run(120, "uncertainty", v, "probs", pool).sample_ids for v in (cold, hot)]
    np.testing.assert_array_equal(label[0], label[1])
    assert not np.array_equal(probs[0], probs[1])


def test_share_of_the_budget_is_refused():
    with pytest.raises(ValueError, match="count of queries"):
        run(70, "k-center", seed_size=0.1)


def test_unknown_selection_lists_allowed():
    with pytest.raises(ValueError, match="allowed: uncertainty, k-center, dfal"):
        run(70, "random")


# ------------------------------------------- validation set, early stopping, whole pool


def spy(monkeypatch, name):
    """Record the arguments of every call to ``activethief.<name>`` (and still call it)."""
    calls = []
    original = getattr(activethief, name)

    def recording(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    monkeypatch.setattr(activethief, name, recording)
    return calls


def test_validation_queries_count_and_are_never_selected_or_trained_on(monkeypatch):
    fits = spy(monkeypatch, "fit")
    api = CallSizes(LinearVictim(64))
    pool = toy_pool()
    options = {**FAST, "seed_size": 20, "val_size": 30, "round_size": 25, "round_growth": 1.0}
    ids = lookup("activethief").fn(api, pool, 120, np.random.default_rng(0), **options)
    # budget 120 = seed 20 + validation 30 + 25 + 25 + 20: the validation set is spent
    assert api.calls == [20, 30, 25, 25, 20] and api.queries == 120 and len(ids) == 120
    val = ids[20:50]
    assert not set(val.tolist()) & set(ids[50:].tolist())  # never selected again
    for r, (args, _, _) in enumerate(fits):
        _, images, _, val_images, val_labels, cfg = args[:6]
        assert len(images) == 20 + 25 * r  # the seed and the rounds so far, no validation
        np.testing.assert_array_equal(val_images, pool.images[val])
        # the labels the substitute is judged on are the victim's top-1 answers
        answers = PredictionAPI(LinearVictim(64))(val_images)
        np.testing.assert_array_equal(val_labels, answers.argmax(1))


def test_substitutes_early_stop_on_macro_f1_with_the_configured_patience(monkeypatch):
    fits = spy(monkeypatch, "fit")
    run(100, "uncertainty", epochs=40, patience=3)
    cfgs = [args[5] for args, _, _ in fits]
    assert cfgs and all(c.patience == 3 and c.val_metric == "macro-f1" for c in cfgs)
    assert all(c.epochs == 40 for c in cfgs)
    for _, _, result in fits:  # each stopped 3 epochs after its best, or ran all 40
        assert result.epochs in (40, result.best_epoch + 3)
    assert any(result.epochs < 40 for _, _, result in fits)


def test_defaults_are_the_published_setting():
    parameters = inspect.signature(activethief.run_activethief).parameters
    defaults = {name: p.default for name, p in parameters.items()}
    assert defaults["seed_size"] == 200 and defaults["val_size"] == 1000
    assert defaults["round_size"] == 100 and defaults["round_growth"] == 1.0
    assert defaults["epochs"] == 1000 and defaults["patience"] == 20
    assert defaults["val_metric"] == "macro-f1" and defaults["candidates"] is None


def test_every_unused_pool_image_is_scored_by_default(monkeypatch):
    selects = spy(monkeypatch, "_select")
    pool = toy_pool()
    options = {k: v for k, v in FAST.items() if k != "candidates"}  # the default
    log = run(100, "k-center", pool=pool, **options)
    pool_size = len(pool.ids("pool"))
    assert len(selects) == 3  # 20 + 10, then rounds of 25, 25, 20
    for r, (args, _, _) in enumerate(selects):
        candidate_ids = args[3]
        assert len(candidate_ids) == pool_size - 30 - 25 * r
        assert not set(candidate_ids.tolist()) & set(log.sample_ids[: 30 + 25 * r].tolist())


@pytest.mark.parametrize("selection", ["uncertainty", "k-center"])
def test_budgets_are_prefixes_with_validation_and_early_stopping(selection):
    options = {"epochs": 30, "patience": 2, "val_size": 40}
    small, large = run(110, selection, **options), run(160, selection, **options)
    np.testing.assert_array_equal(small.sample_ids, large.sample_ids[:110])
    assert len(set(large.sample_ids.tolist())) == 160


def test_patience_without_a_validation_set_is_refused():
    with pytest.raises(ValueError, match="patience needs a validation set"):
        run(70, "k-center", val_size=0, patience=5)
