"""Knockoff adaptive (rewards, bandit, hierarchy) and JbDA."""

import numpy as np
import pytest

from stealbench import adaptive, attacks, datasets
from stealbench.blackbox import Blackbox
from stealbench.models import create_model


def _labelled_pool(n=400, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 40, size=(n, 28, 28, 1)).astype(np.uint8)
    for i, y in enumerate(labels):  # class y is a bright band at rows 7y..7y+7
        images[i, 7 * y : 7 * y + 7] += 180
    splits = np.array(["pool"] * n, dtype=object)
    names = [f"c{k}" for k in range(classes)]
    _, meta = datasets.to_table("toy", images, labels, splits, names, "toy", 0, {})
    return datasets.Dataset("toy", images, labels, splits, meta)


@pytest.fixture(scope="module")
def victim():
    import torch

    torch.manual_seed(0)
    return create_model("lenet", 10).eval()


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


def test_adaptive_queries_without_replacement_and_rewards_finite(victim):
    pool = _labelled_pool()
    box = Blackbox(victim)
    log = attacks.run_attack("adaptive", box, pool, budget=120, seed=0, batch_size=20)
    assert box.queries == 120 and len(set(log.sample_ids.tolist())) == 120
    assert np.isfinite(log.probs).all()


def test_adaptive_exhausts_classes_and_still_fills_the_budget(victim):
    pool = _labelled_pool(n=40, classes=4)
    log = attacks.run_attack("adaptive", Blackbox(victim), pool, budget=40, seed=1)
    assert sorted(log.sample_ids.tolist()) == list(range(40))


def test_adaptive_needs_labels(victim):
    pool = _labelled_pool()
    pool.labels[:] = -1
    with pytest.raises(ValueError, match="needs a labelled pool"):
        attacks.run_attack("adaptive", Blackbox(victim), pool, 10, seed=0)


@pytest.mark.parametrize("strategy", ["adaptive", "jbda", "random"])
def test_smaller_budget_is_a_prefix_of_the_larger_run(victim, strategy):
    pool = _labelled_pool()
    options = {"jbda": {"seed_size": 20, "epochs": 1}, "adaptive": {"batch_size": 16}}
    small = attacks.run_attack(
        strategy, Blackbox(victim), pool, 70, seed=3, **options.get(strategy, {})
    )
    large = attacks.run_attack(
        strategy, Blackbox(victim), pool, 150, seed=3, **options.get(strategy, {})
    )
    if strategy == "random":  # random draws a permutation of the pool: same order either way
        np.testing.assert_array_equal(small.sample_ids, large.sample_ids[:70])
        return
    np.testing.assert_array_equal(small.sample_ids, large.sample_ids[:70])
    np.testing.assert_allclose(small.probs, large.probs[:70], rtol=1e-6)


def test_jbda_shapes_and_budget_accounting(victim):
    pool = _labelled_pool()
    box = Blackbox(victim)
    log = attacks.run_attack("jbda", box, pool, budget=90, seed=0, seed_size=20, epochs=1)
    assert box.queries == 90
    assert log.images.shape == (90, 28, 28, 1) and log.images.dtype == np.uint8
    assert log.probs.shape == (90, 10)
    np.testing.assert_array_equal(log.images[:20], pool.images[log.sample_ids[:20]])
    # each later image is a +-step move of its ancestor seed, quantised
    diff = np.abs(log.images[20:40].astype(int) - pool.images[log.sample_ids[20:40]].astype(int))
    assert diff.max() <= 26 and diff.mean() > 1


def test_random_with_augmentation_caches_the_jittered_images(tmp_path, victim):
    pool = _labelled_pool()
    log = attacks.run_attack("random", Blackbox(victim), pool, 30, seed=0, augment=True)
    assert log.images is not None and not np.array_equal(log.images, pool.images[log.sample_ids])
    attacks.save_cache(log, tmp_path / "c.parquet", {})
    cache = attacks.load_cache(tmp_path / "c.parquet")
    np.testing.assert_array_equal(cache.query_images(pool, 10), log.images[:10])
