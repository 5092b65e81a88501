"""DFME: every query counts (gradient estimation included) and the budget is spent exactly,
budgets are prefixes of one run, the zeroth-order estimate points along the true gradient
through the uint8 quantisation, and the student learns the victim."""

import numpy as np
import pytest
import torch
from torch import nn

from stealbench.attack import query
from stealbench.attack.api import PredictionAPI
from stealbench.attack.query import run_sequential
from stealbench.attack.strategies import dfme, lookup
from stealbench.data.datasets import Dataset
from stealbench.models.training import predict_proba

TINY = {"batch_size": 8, "grad_m": 2, "g_iter": 1, "d_iter": 3, "nz": 16, "ngf": 8}


class LinearVictim(nn.Module):
    """Fixed logits ``W x + b`` on flattened [0, 1] images, balanced around mid-grey."""

    def __init__(self, pixels: int = 64, classes: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.linear = nn.Linear(pixels, classes)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(classes, pixels, generator=g) / 2)
            self.linear.bias.copy_(-self.linear.weight.sum(1) / 2)

    def forward(self, x):
        return self.linear(x.flatten(1))


class CallSizes(PredictionAPI):
    """The API, remembering how many images each call asked about."""

    def __init__(self, model):
        super().__init__(model)
        self.calls = []

    def __call__(self, images):
        self.calls.append(len(images))
        return super().__call__(images)


def shape_pool(size=8, channels=1) -> Dataset:
    """A pool that only gives DFME its image shape."""
    images = np.zeros((4, size, size, channels), dtype=np.uint8)
    return Dataset("shape", images, np.full(4, -1), np.array(["pool"] * 4), {"classes": []})


def test_every_query_is_counted_and_the_budget_is_spent_exactly():
    cost = dfme.queries_per_iteration(8, g_iter=1, grad_m=2, d_iter=3)
    assert cost == 8 * (1 * (2 + 1) + 3)
    budget = 2 * cost + 37  # not a multiple of the per-iteration cost
    api = CallSizes(LinearVictim())
    ids = lookup("dfme").fn(api, shape_pool(), budget, np.random.default_rng(0), **TINY)
    assert api.queries == budget == len(ids)
    assert (ids == -1).all()
    # Per iteration: a generator step's batch plus 2 perturbed copies, then 3 student batches;
    # the third iteration stops mid-way, its last call cut to what is left.
    assert api.calls == [24, 8, 8, 8] * 2 + [24, 8, 5]


def test_run_sequential_accepts_the_run_and_keeps_the_generated_images():
    log = run_sequential("dfme", LinearVictim(), shape_pool(), 61, seed=0, rng_seed=3, **TINY)
    assert len(log.sample_ids) == 61 and (log.sample_ids == -1).all()
    assert log.images is not None and log.images.shape == (61, 8, 8, 1)


def test_budgets_are_prefixes_of_one_run():
    images = []
    for budget in (100, 180):
        api = PredictionAPI(LinearVictim())
        lookup("dfme").fn(api, shape_pool(), budget, np.random.default_rng(5), **TINY)
        images.append(api.record()[0])
    assert len(images[0]) == 100 and len(images[1]) == 180
    np.testing.assert_array_equal(images[0], images[1][:100])


def test_generator_fits_odd_image_shapes_and_stays_in_range():
    gen = dfme.Generator((30, 26, 3), nz=8, ngf=4)
    x = gen.image(torch.randn(5, 8))
    assert x.shape == (5, 3, 30, 26) and x.min() >= 0 and x.max() <= 1
    assert dfme.to_uint8(dfme.quantise(x)).shape == (5, 30, 26, 3)


# ------------------------------------------------------------ zeroth-order estimate


def smooth_toy():
    """f(x) = sum_i a_i sin(6 x_i) per image, and images on the uint8 grid away from 0 and 1."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1, 1, 8, 8, generator=g)

    def f(x):
        return (a * torch.sin(6 * x)).flatten(1).sum(1)

    x = dfme.quantise(0.3 + 0.4 * torch.rand(16, 1, 8, 8, generator=g))
    xg = x.clone().requires_grad_(True)
    f(xg).sum().backward()
    return f, x, xg.grad.flatten(1), g


def estimate(f, x, g, m=1, epsilon=2.0):
    moved, displacement = dfme.perturb(x, m, epsilon, g)
    losses = f(moved.flatten(0, 1)).view(m, len(x))
    return dfme.zo_gradient(f(x), losses, displacement).flatten(1)


def test_zo_estimate_points_along_the_true_gradient_through_quantisation():
    f, x, true, g = smooth_toy()
    draws = torch.stack([estimate(f, x, g) for _ in range(200)])  # (draws, images, d)
    cosines = nn.functional.cosine_similarity(draws, true[None], dim=2)
    # One direction in d = 64 dimensions: cos ~ sqrt(2 / (pi d)) ~ 0.1 on average.
    assert cosines.mean() > 0.05
    mean = draws.mean(0)
    assert nn.functional.cosine_similarity(mean, true, dim=1).min() > 0.8
    # Unbiased in size too: the mean's projection onto the true gradient is about 1.
    projection = ((mean * true).sum(1) / (true * true).sum(1)).mean()
    assert 0.8 < projection < 1.2


def test_zo_step_below_half_a_grey_level_is_refused():
    """DFME's pre-tanh step of 1e-3 is ~1e-4 grey levels a pixel: quantisation erases it."""
    f, x, _, g = smooth_toy()
    assert (dfme.perturb(x, 1, 0.5, g)[1] != 0).any()
    with pytest.raises(ValueError, match="half a grey level"):
        dfme.perturb(x, 1, 0.01, g)


def test_zo_estimate_skips_answers_with_no_mass():
    f, x, _, g = smooth_toy()
    moved, displacement = dfme.perturb(x, 2, 2.0, g)
    losses = f(moved.flatten(0, 1)).view(2, len(x))
    losses[1, 0] = float("nan")  # the second direction of image 0 had an empty answer
    both = dfme.zo_gradient(f(x), losses, displacement)
    first = dfme.zo_gradient(f(x), losses[:1], displacement[:1])
    assert torch.isfinite(both).all()
    torch.testing.assert_close(both[0], first[0])


def test_victim_logits_are_centred_log_probabilities_and_empty_rows_are_flagged():
    answers = np.array([[0.7, 0.2, 0.1], [0.0, 0.0, 0.0], [0.5, 0.5, 0.0]], np.float32)
    t, kept = dfme.victim_logits(answers)
    assert kept.tolist() == [True, False, True]
    log_p = np.log(np.array([0.7, 0.2, 0.1]))
    np.testing.assert_allclose(t[0].numpy(), log_p - log_p.mean(), rtol=1e-5)
    torch.testing.assert_close(t.sum(1), torch.zeros(3), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------ learning


class QuadrantVictim(nn.Module):
    """Logits linear in the mean brightness of the four image quadrants: a victim a small
    student can learn from a few hundred generated images."""

    def __init__(self, classes: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        weight = torch.randn(classes, 4, generator=g) * 8
        self.w = nn.Parameter(weight, requires_grad=False)  # a parameter: it has a device

    def forward(self, x):
        quadrants = nn.functional.avg_pool2d(x.mean(1, keepdim=True), x.shape[-1] // 2)
        return (quadrants.flatten(1) - 0.5) @ self.w.T


def test_student_agreement_with_the_victim_improves():
    victim = QuadrantVictim()
    levels = np.random.default_rng(5).uniform(0, 1, (400, 2, 2, 1))
    test = (np.kron(levels, np.ones((1, 4, 4, 1))) * 255).astype(np.uint8)  # blocky images
    labels = predict_proba(victim, test).argmax(1)
    assert np.bincount(labels, minlength=4).min() > 50  # every class is on the test set
    agreement = {}

    def record(iteration, student):
        agreement[iteration] = float((predict_proba(student, test).argmax(1) == labels).mean())

    options = {"batch_size": 32, "grad_m": 1, "d_iter": 5, "nz": 32, "ngf": 16}
    cost = dfme.queries_per_iteration(32, 1, 1, 5)
    result = dfme.extract(
        PredictionAPI(victim),
        (8, 8, 1),
        15 * cost,
        np.random.default_rng(0),
        lr_S=0.05,
        lr_G=1e-3,
        on_iteration=record,
        **options,
    )
    assert result.iterations == 15
    assert agreement[15] > agreement[1] + 0.2


# ------------------------------------------------------------ schedule and online student


def test_schedule_milestones_fire_at_their_query_counts_whatever_the_budget():
    cost = dfme.queries_per_iteration(8, g_iter=1, grad_m=2, d_iter=3)  # 48
    options = {**TINY, "schedule_queries": 500, "lr_steps": (0.1, 0.3, 0.5), "lr_scale": 0.3}
    runs = {}
    for budget in (250, 600):
        api = PredictionAPI(LinearVictim())
        runs[budget] = dfme.extract(api, (8, 8, 1), budget, np.random.default_rng(1), **options)
    # Milestones at 50, 150 and 250 queries: the rates drop at the first iteration that
    # starts at or past each, for the student and the generator alike.
    starts = [s for s, _, _ in runs[600].schedule]
    assert starts == [0, *(cost * -(-m // cost) for m in (50, 150, 250))]
    for i, (_, lr_s, lr_g) in enumerate(runs[600].schedule):
        assert lr_s == pytest.approx(0.1 * 0.3**i) and lr_g == pytest.approx(1e-4 * 0.3**i)
    # The budget does not move them: the shorter run's schedule is a prefix of the longer's.
    assert runs[250].schedule == runs[600].schedule[: len(runs[250].schedule)]
    assert len(runs[250].schedule) == 3
    assert dfme.lr_factor(149, 500, (0.1, 0.3, 0.5), 0.3) == pytest.approx(0.3)
    assert dfme.lr_factor(150, 500, (0.1, 0.3, 0.5), 0.3) == pytest.approx(0.09)


def test_without_a_schedule_the_rates_stay_constant_and_the_run_is_unchanged():
    runs = []
    for schedule in (None, 10**9):  # no schedule; one whose first milestone is never reached
        api = PredictionAPI(LinearVictim())
        result = dfme.extract(
            api, (8, 8, 1), 400, np.random.default_rng(2), schedule_queries=schedule, **TINY
        )
        runs.append((api.record()[0], result))
    assert runs[0][1].schedule == [(0, 0.1, 1e-4)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    for key, value in runs[0][1].student.state_dict().items():
        torch.testing.assert_close(value, runs[1][1].student.state_dict()[key], rtol=0, atol=0)


def victim_test_set(victim, n=200, seed=7):
    from stealbench.attack.surrogates import VictimTestSet

    images = np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    probs = predict_proba(victim, images)
    labels = np.random.default_rng(seed + 1).integers(0, 4, n)  # true labels != the victim's
    return VictimTestSet(images, labels, probs)


@pytest.mark.parametrize("budget", [100, 96])  # cut mid-iteration; at an iteration's end
def test_online_student_at_a_budget_is_the_student_a_run_with_that_budget_returns(budget):
    """The API snapshots the student by the prefix rule: a run to 250 queries holds, at
    budget B, the student of a run that stops at B, and that is what is scored."""
    options = {**TINY, "schedule_queries": 200}
    log = run_sequential(
        "dfme", LinearVictim(), shape_pool(), 250, 0, 3, snapshot_at=[10, budget, 250], **options
    )
    assert sorted(log.online) == [10, budget, 250]
    assert log.online[10] is None  # 10 queries: the first call (24) is cut, no student yet
    alone = dfme.extract(
        PredictionAPI(LinearVictim()), (8, 8, 1), budget, np.random.default_rng(3), **options
    ).student
    snapshot = log.online[budget].state_dict()
    for key, value in alone.state_dict().items():
        torch.testing.assert_close(snapshot[key], value, rtol=0, atol=0)
    assert any(
        not torch.equal(v, log.online[250].state_dict()[k]) for k, v in snapshot.items()
    )  # the student moved on after B: the snapshot is a copy
    test = victim_test_set(LinearVictim())
    scores = {row["budget"]: row for row in query.online_metrics(log.online, test)}
    predicted = predict_proba(alone, test.images).argmax(1)
    assert scores[budget]["online_acc"] == pytest.approx((predicted == test.labels).mean())
    assert scores[budget]["online_agreement"] == pytest.approx(
        (predicted == test.victim_probs.argmax(1)).mean()
    )
    assert np.isnan(scores[10]["online_acc"]) and np.isnan(scores[10]["online_agreement"])


def test_a_strategy_without_an_online_model_reports_none():
    images = np.random.default_rng(0).integers(0, 256, (60, 8, 8, 1), dtype=np.uint8)
    pool = Dataset("toy", images, np.full(60, -1), np.array(["pool"] * 60), {"classes": []})
    log = run_sequential("jbda", LinearVictim(), pool, 40, 0, 3, snapshot_at=[20, 40])
    assert log.online is None


def test_online_scores_reach_the_undefended_cells_of_their_budget():
    import pandas as pd

    from stealbench.report.tables import add_online

    cells = pd.DataFrame(
        {
            "victim": ["v"] * 3,
            "attack": ["dfme", "dfme", "random"],
            "granularity": ["probs"] * 3,
            "seed": [0, 0, 0],
            "budget": [100, 200, 100],
            "test_acc": [0.5, 0.6, 0.4],
        }
    )
    meta = {"victim": "v", "attack": "dfme", "seed": 0, "defense_id": "none"}
    scores = [
        {"budget": 100, "online_acc": 0.7, "online_agreement": 0.8},
        {"budget": 200, "online_acc": 0.9, "online_agreement": 0.95},
    ]
    defended = {
        **meta,
        "defense_id": "mad@0.5",
        "online": {"probs": [{**scores[0], "online_acc": 0.1}]},
    }
    out = add_online(cells, [{**meta, "online": {"probs": scores}}, defended, {"victim": "v"}])
    assert out["online_acc"].tolist()[:2] == [0.7, 0.9] and np.isnan(out["online_acc"][2])
    assert out["online_agreement"].tolist()[:2] == [0.8, 0.95]
    assert out["test_acc"].tolist() == [0.5, 0.6, 0.4]


def test_behind_a_defense_the_run_still_spends_its_budget_and_snapshots_its_student():
    def flatten(probs, images):  # a defense: answers pulled halfway to uniform
        return (probs + 1 / probs.shape[1]) / 2

    log = run_sequential(
        "dfme", LinearVictim(), shape_pool(), 150, 0, 3, "probs", flatten, snapshot_at=[100], **TINY
    )
    assert len(log.sample_ids) == 150 and sorted(log.online) == [100]
    np.testing.assert_allclose(log.answers, flatten(log.probs, None), rtol=1e-6)
