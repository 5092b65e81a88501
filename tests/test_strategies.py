"""Sequential strategies against the prediction API: Knockoff adaptive (rewards, bandit,
hierarchy) and JbDA. They see only the API's answers, spend exactly their budget, and a smaller
budget is a prefix of a larger one."""

import numpy as np
import pytest
from toys import Scaled, labelled_pool

from stealbench.attack import query as query_module
from stealbench.attack.api import PredictionAPI
from stealbench.attack.query import run_sequential
from stealbench.attack.strategies import adaptive
from stealbench.models.architectures import create_model
from stealbench.models.training import predict_proba


@pytest.fixture(scope="module")
def victim():
    return create_model("lenet", 10, seed=0).eval()


# ----------------------------------------------------------------- rewards and bandit


def test_certainty_and_diversity_rewards_on_known_vectors():
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2]])
    np.testing.assert_allclose(adaptive.certainty_reward(probs), [0.5, 0.0])
    mean = np.array([0.5, 0.3, 0.2])
    np.testing.assert_allclose(adaptive.diversity_reward(probs, mean), [0.2, 0.1])


def test_loss_reward_is_finite_even_for_confident_wrong_surrogates():
    victim_probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    logits = np.array([[-1e4, 1e4], [0.0, 0.0]])
    reward = adaptive.loss_reward(victim_probs, logits)
    assert np.isfinite(reward).all()
    np.testing.assert_allclose(reward, [2e4, np.log(2)], rtol=1e-9)


def test_standardiser_is_finite_from_the_first_value():
    s = adaptive.RunningStandardiser()
    values = [s(v) for v in [3.0, 3.0, 5.0, 1.0]]
    assert values[0] == 0.0 and values[1] == 0.0 and np.isfinite(values).all()
    assert values[2] > 0 > values[3]


def test_gradient_bandit_update_matches_sutton_barto():
    bandit = adaptive.GradientBandit(3, lr=0.5)
    bandit.preferences = np.array([0.0, np.log(2), 0.0])
    pi = bandit.policy()
    np.testing.assert_allclose(pi, [0.25, 0.5, 0.25])
    bandit.update(arm=1, reward=3.0, baseline=1.0)
    np.testing.assert_allclose(bandit.preferences, [-0.25, np.log(2) + 0.5, -0.25])


def test_gradient_bandit_learns_the_best_arm_of_a_toy_bandit():
    rng = np.random.default_rng(0)
    means = np.array([0.0, 0.2, 1.0, 0.1])
    bandit, baseline = adaptive.GradientBandit(4, lr=0.1), 0.0
    for t in range(1, 2001):
        arm = bandit.sample(rng)
        reward = rng.normal(means[arm], 1.0)
        bandit.update(arm, reward, baseline)
        baseline += (reward - baseline) / t
    assert bandit.policy().argmax() == 2 and bandit.policy()[2] > 0.6


def test_exhausted_arms_are_never_sampled():
    bandit = adaptive.GradientBandit(3)
    bandit.available[[0, 2]] = False
    rng = np.random.default_rng(0)
    assert {bandit.sample(rng) for _ in range(50)} == {1}


def test_hierarchy_groups_and_rejects_unknown_classes():
    root = adaptive.build_hierarchy(["a", "b", "c"], {"g1": ["a", "b"]}, lr=0.1)
    assert [n.name for n in root.children] == ["g1", "other"]
    assert [n.label for n in root.children[0].children] == [0, 1]
    with pytest.raises(ValueError, match="unknown classes"):
        adaptive.build_hierarchy(["a"], {"g": ["z"]}, lr=0.1)


# ------------------------------------------------------------- runs against the API


def test_adaptive_queries_without_replacement_and_rewards_finite(victim):
    log = run_sequential("adaptive", victim, labelled_pool(), 120, 0, 0, batch_size=20)
    assert len(log.sample_ids) == 120 and len(set(log.sample_ids.tolist())) == 120
    assert np.isfinite(log.probs).all() and np.isfinite(log.answers).all()


def test_adaptive_exhausts_classes_and_still_fills_the_budget(victim):
    pool = labelled_pool(n=40, classes=4)
    log = run_sequential("adaptive", victim, pool, 40, 0, 1)
    assert sorted(log.sample_ids.tolist()) == list(range(40))


def test_adaptive_needs_labels(victim):
    pool = labelled_pool()
    pool.labels[:] = -1
    with pytest.raises(ValueError, match="needs a labelled pool"):
        run_sequential("adaptive", victim, pool, 10, 0, 0)


def test_unknown_reward_lists_allowed(victim):
    with pytest.raises(ValueError, match="allowed: certainty, diversity, loss"):
        run_sequential("adaptive", victim, labelled_pool(), 10, 0, 0, rewards=("margin",))


OPTIONS = {"jbda": {"seed_size": 20, "epochs": 1}, "adaptive": {"batch_size": 16}}


@pytest.mark.parametrize("strategy", ["adaptive", "jbda"])
def test_smaller_budget_is_a_prefix_of_the_larger_run(victim, strategy):
    pool = labelled_pool()
    small = run_sequential(strategy, victim, pool, 70, 0, 3, "label", **OPTIONS[strategy])
    large = run_sequential(strategy, victim, pool, 150, 0, 3, "label", **OPTIONS[strategy])
    np.testing.assert_array_equal(small.sample_ids, large.sample_ids[:70])
    np.testing.assert_array_equal(small.answers, large.answers[:70])
    np.testing.assert_allclose(small.probs, large.probs[:70], rtol=1e-6)
    if strategy == "jbda":
        np.testing.assert_array_equal(small.images, large.images[:70])


def test_jbda_shapes_and_budget_accounting(victim):
    pool = labelled_pool()
    log = run_sequential("jbda", victim, pool, 90, 0, 0, seed_size=20, epochs=1)
    assert log.images.shape == (90, 28, 28, 1) and log.images.dtype == np.uint8
    assert log.probs.shape == (90, 10)
    np.testing.assert_array_equal(log.images[:20], pool.images[log.sample_ids[:20]])
    # each later image is a +-step move of its ancestor seed, quantised
    diff = np.abs(log.images[20:40].astype(int) - pool.images[log.sample_ids[20:40]].astype(int))
    assert diff.max() <= 26 and diff.mean() > 1


# ------------------------------------ a label run sees labels and nothing more


@pytest.fixture(scope="module")
def twin_victims(victim):
    """Two victims with the same top-1 on every image but other probabilities."""
    sharper = Scaled(victim, 20.0).eval()
    images = labelled_pool().images
    a, b = predict_proba(victim, images), predict_proba(sharper, images)
    assert np.array_equal(a.argmax(1), b.argmax(1))  # the premise: same labels ...
    assert np.abs(a - b).max() > 0.1  # ... other probabilities
    return victim, sharper


RUNS = {
    "adaptive": {"budget": 60, "batch_size": 10, "train_steps": 1},
    "jbda": {"budget": 60, "seed_size": 15, "epochs": 1},
}


def _run(strategy, model, granularity):
    options = dict(RUNS[strategy])
    budget = options.pop("budget")
    return run_sequential(strategy, model, labelled_pool(), budget, 0, 11, granularity, **options)


@pytest.mark.parametrize("strategy", ["adaptive", "jbda"])
def test_a_label_run_does_not_depend_on_the_probabilities_it_was_not_served(twin_victims, strategy):
    """Victims that agree on every label must get the same queries from a label attacker."""
    a, b = (_run(strategy, model, "label") for model in twin_victims)
    np.testing.assert_array_equal(a.sample_ids, b.sample_ids)
    np.testing.assert_array_equal(a.answers, b.answers)
    if strategy == "jbda":
        np.testing.assert_array_equal(a.images, b.images)
    assert not np.allclose(a.probs, b.probs)  # the owner's record does tell them apart


def test_a_probs_run_of_adaptive_does_tell_the_twins_apart(twin_victims):
    """The check above can fail: with full probabilities the same attacker diverges."""
    a, b = (_run("adaptive", model, "probs") for model in twin_victims)
    assert not np.array_equal(a.sample_ids, b.sample_ids)


class SpyAPI(PredictionAPI):
    """The API, recording what it returned and any peek at posteriors outside a call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.returned, self.peeks, self._in_call = [], 0, False

    def __call__(self, images):
        self._in_call = True
        try:
            answers = super().__call__(images)
        finally:
            self._in_call = False
        self.returned.append(answers.copy())
        return answers

    def posteriors(self, images):
        self.peeks += not self._in_call
        return super().posteriors(images)


@pytest.mark.parametrize("strategy", ["adaptive", "jbda"])
def test_every_answer_a_label_run_receives_is_one_hot(victim, strategy, monkeypatch):
    spies = []

    def spy(*args, **kwargs):
        spies.append(SpyAPI(*args, **kwargs))
        return spies[-1]

    monkeypatch.setattr(query_module, "PredictionAPI", spy)
    log = _run(strategy, victim, "label")
    (api,) = spies
    received = np.concatenate(api.returned)
    assert len(received) == len(log.sample_ids) == api.queries
    assert set(np.unique(received)) == {0.0, 1.0} and (received.sum(1) == 1).all()
    assert api.peeks == 0  # never asked for the victim's posteriors behind the API's back
