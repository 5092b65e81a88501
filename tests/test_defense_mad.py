"""MAD and MAD-argmax against a literal autograd reference of the authors' algorithm."""

import itertools

import numpy as np
import pytest
import torch
from mad_reference import jacobian, line_search, objective, subset_target
from torch import nn

from stealbench.defense import DefenseContext, create
from stealbench.defense import mad as mad_module
from stealbench.defense.mad import angular_objective, proxy_posteriors
from stealbench.models.training import to_tensor


def _proxy(k: int, seed: int = 0, hidden: int = 8) -> nn.Module:
    """A tiny random-init proxy on 4x4 grey images; its head is the last Linear."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, hidden), nn.Tanh(), nn.Linear(hidden, k))


def _queries(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 4, 4, 1), dtype=np.uint8)
    logits = rng.normal(0, 2, size=(n, k))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return images, probs


def test_closed_form_gradient_and_objective_match_autograd():
    """G^T y = (p - y) h^T, so the normalised objective is 2 - 2 cos(p - y~, p - y)."""
    k = 5
    proxy = _proxy(k)
    images, probs = _queries(6, k)
    p, h_norm = proxy_posteriors(proxy, images)
    rng = np.random.default_rng(1)
    for i, image in enumerate(images):
        g = jacobian(proxy, image)
        with torch.no_grad():
            h = proxy[:-1](to_tensor(image[None]))[0].double().numpy()
        y = probs[i]
        np.testing.assert_allclose(g.T @ y, np.outer(p[i] - y, h).ravel(), atol=1e-7)
        assert h_norm[i] == pytest.approx(np.linalg.norm(h), rel=1e-6)
        served = rng.dirichlet(np.ones(k))
        expected = objective(g, served, y)
        # the proxy's posteriors are float32: agreement to a few float32 epsilons (1.2e-7)
        assert angular_objective(p[i : i + 1], y[None], served[None])[0] == pytest.approx(
            expected, rel=1e-6
        )


def _reference_extreme(proxy, images, probs, eps):
    out = []
    for image, y in zip(images, probs, strict=True):
        g = jacobian(proxy, image)
        scores = [objective(g, e, y) for e in np.eye(len(y))]
        out.append(line_search(y, np.eye(len(y))[int(np.argmax(scores))], eps))
    return np.array(out)


def _reference_argmax_exhaustive(proxy, images, probs, eps):
    out = []
    for image, y in zip(images, probs, strict=True):
        g, k, top = jacobian(proxy, image), len(y), int(np.argmax(y))
        others = [c for c in range(k) if c != top]
        best, best_score = None, -np.inf
        for r in range(k):
            for extra in itertools.combinations(others, r):
                target = subset_target((top, *extra), top, k)
                score = objective(g, target, y)
                if score > best_score:
                    best, best_score = target, score
        out.append(line_search(y, best, eps))
    return np.array(out)


def _reference_argmax_greedy(proxy, images, probs, eps, max_candidates):
    out = []
    for image, y in zip(images, probs, strict=True):
        g, k, top = jacobian(proxy, image), len(y), int(np.argmax(y))
        chosen, best, best_score, scored = [top], None, -np.inf, 0
        while len(chosen) < k and scored < max_candidates:
            trials = {
                c: objective(g, subset_target([*chosen, c], top, k), y)
                for c in range(k)
                if c not in chosen
            }
            scored += len(trials)
            pick = max(trials, key=lambda c: (trials[c], -c))  # first of equals
            if trials[pick] > best_score:
                best, best_score = subset_target([*chosen, pick], top, k), trials[pick]
            chosen.append(pick)
        out.append(line_search(y, best, eps))
    return np.array(out)


@pytest.mark.parametrize("eps", [0.1, 0.5, 3.0])
def test_mad_serves_the_best_vertex_of_the_autograd_objective_in_the_ball(eps):
    k = 5
    proxy = _proxy(k)
    images, probs = _queries(24, k)
    answers = create("mad", DefenseContext(proxy=proxy), epsilon=eps)(probs, images)
    np.testing.assert_allclose(answers, _reference_extreme(proxy, images, probs, eps), atol=1e-6)
    assert np.all(np.abs(answers - probs).sum(axis=1) <= eps + 1e-6)


def test_mad_argmax_enumerates_every_subset_that_keeps_the_top1():
    k, eps = 6, 0.8
    proxy = _proxy(k, seed=2)
    images, probs = _queries(16, k, seed=3)
    answers = create("mad-argmax", DefenseContext(proxy=proxy), epsilon=eps)(probs, images)
    expected = _reference_argmax_exhaustive(proxy, images, probs, eps)
    np.testing.assert_allclose(answers, expected, atol=1e-6)
    np.testing.assert_array_equal(answers.argmax(axis=1), probs.argmax(axis=1))
    # Not the vertex oracle in disguise: some targets spread over several classes.
    assert np.any(np.sum(expected > probs + 1e-9, axis=1) > 1)


@pytest.mark.parametrize("k", [12, 60])  # 60 classes: the greedy search stops at its bound
def test_mad_argmax_searches_greedily_above_ten_classes(k):
    eps = 1.0
    proxy = _proxy(k, seed=4, hidden=12)
    images, probs = _queries(8, k, seed=5)
    answers = create("mad-argmax", DefenseContext(proxy=proxy), epsilon=eps)(probs, images)
    expected = _reference_argmax_greedy(
        proxy, images, probs, eps, max_candidates=mad_module.GREEDY_MAX_CANDIDATES
    )
    np.testing.assert_allclose(answers, expected, atol=1e-6)
    np.testing.assert_array_equal(answers.argmax(axis=1), probs.argmax(axis=1))


@pytest.mark.parametrize("eps", [0.5, 2.0])  # 2: the ball holds the simplex, y~ = y*
def test_mad_argmax_keeps_the_top1_of_many_queries_and_stays_in_the_ball(eps):
    k = 10
    proxy = _proxy(k, seed=6)
    images, probs = _queries(3000, k, seed=7)
    plain = create("mad", DefenseContext(proxy=proxy), epsilon=eps)(probs, images)
    kept = create("mad-argmax", DefenseContext(proxy=proxy), epsilon=eps)(probs, images)
    np.testing.assert_array_equal(kept.argmax(axis=1), probs.argmax(axis=1))
    assert np.all(np.abs(kept - probs).sum(axis=1) <= eps + 1e-6)
    assert np.mean(plain.argmax(axis=1) != probs.argmax(axis=1)) > 0.05  # plain MAD does not


def test_epsilon_zero_serves_the_posteriors():
    proxy = _proxy(4)
    images, probs = _queries(10, 4)
    for name in ("mad", "mad-argmax"):
        answers = create(name, DefenseContext(proxy=proxy), epsilon=0)(probs, images)
        np.testing.assert_array_equal(answers, probs.astype(np.float32))


def test_a_proxy_without_gradient_leaves_the_answer_alone():
    """Head input h = 0 (every ReLU dead): G = 0, there is no direction to turn."""
    proxy = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    with torch.no_grad():
        proxy[1].weight.zero_()
        proxy[1].bias.fill_(-1.0)
    images, probs = _queries(10, 4)
    answers = create("mad", DefenseContext(proxy=proxy), epsilon=0.5)(probs, images)
    np.testing.assert_array_equal(answers, probs.astype(np.float32))


def test_a_proxy_that_transforms_its_logits_is_refused():
    proxy = nn.Sequential(_proxy(4), nn.LogSoftmax(dim=1))
    images, probs = _queries(3, 4)
    with pytest.raises(ValueError, match="last Linear"):
        create("mad", DefenseContext(proxy=proxy), epsilon=0.5)(probs, images)


@pytest.mark.parametrize("name", ["mad", "mad-argmax"])
@pytest.mark.parametrize("eps", [-0.1, float("nan"), "big"])
def test_bad_epsilon_is_refused_by_name(name, eps):
    with pytest.raises(ValueError, match="epsilon"):
        create(name, DefenseContext(proxy=_proxy(3)), epsilon=eps)


def test_mad_needs_a_proxy():
    with pytest.raises(ValueError, match="proxy"):
        create("mad", DefenseContext(), epsilon=0.5)


@pytest.mark.parametrize("name", ["mad", "mad-argmax"])
def test_the_proxy_mode_share_counts_the_proxys_most_frequent_class(name):
    """MAD's diagnostic: the share of queries whose proxy top-1 is the proxy's modal class."""
    k = 5
    proxy = _proxy(k, seed=3)
    images, probs = _queries(200, k, seed=4)
    top = proxy_posteriors(proxy, images)[0].argmax(axis=1)
    expected = np.bincount(top).max() / len(top)
    assert expected < 1  # the check below can tell a constant proxy from this one
    defense = create(name, DefenseContext(proxy=proxy), epsilon=0.5)
    assert defense.diagnose(probs, images) == {"proxy_mode_share": pytest.approx(expected)}
    # a proxy whose head always favours class 2 predicts it for every query
    biased = _proxy(k, seed=3)
    with torch.no_grad():
        biased[-1].bias[2] = 1e3
    constant = create(name, DefenseContext(proxy=biased), epsilon=0.5)
    assert constant.diagnose(probs, images)["proxy_mode_share"] == 1.0
