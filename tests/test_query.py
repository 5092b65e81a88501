"""Running attacks against the victim: sampling a pool (sample_pool) and talking to the API
(run_sequential), with every query counted."""

import numpy as np
import pytest
from toys import Counting, labelled_pool, linear_victim, toy_pool

from stealbench.attack.api import apply_granularity, serve
from stealbench.attack.query import run_sequential, sample_pool
from stealbench.attack.strategies import STRATEGIES, StrategySpec, declared
from stealbench.defense import DefenseContext, create
from stealbench.models.architectures import create_model
from stealbench.models.training import predict_proba


@pytest.fixture(scope="module")
def lenet_victim():
    return Counting(create_model("lenet", 4, seed=0)).eval()


def test_random_sampling_queries_the_pool_split_once_without_replacement():
    pool, victim = toy_pool(), linear_victim()
    log = sample_pool("random", victim, pool, budget=30, seed=0, rng_seed=1)
    assert victim.seen == 30 == log.victim_passes
    assert len(set(log.sample_ids.tolist())) == 30
    assert set(log.sample_ids) <= set(pool.ids("pool"))
    np.testing.assert_allclose(log.probs, predict_proba(victim, pool.images[log.sample_ids]))
    assert log.images is None and log.answers is None  # pool images as they are, no API run


def test_random_sampling_is_seeded_and_budgets_are_prefixes():
    pool = toy_pool()

    def ids(budget, rng_seed):
        return sample_pool("random", linear_victim(), pool, budget, 0, rng_seed).sample_ids

    assert np.array_equal(ids(20, 3), ids(20, 3))
    assert not np.array_equal(ids(20, 3), ids(20, 4))
    np.testing.assert_array_equal(ids(10, 3), ids(30, 3)[:10])


def test_budget_beyond_pool_is_an_error():
    with pytest.raises(ValueError, match="budget 41 exceeds the 40 images of the pool split"):
        sample_pool("random", linear_victim(), toy_pool(), budget=41, seed=0, rng_seed=0)


def test_unknown_strategy_lists_allowed():
    with pytest.raises(
        ValueError,
        match="unknown strategy 'copycat'; allowed: " + ", ".join(sorted(declared())),
    ):
        sample_pool("copycat", linear_victim(), toy_pool(), 5, seed=0, rng_seed=0)
    with pytest.raises(ValueError, match="allowed: " + ", ".join(sorted(declared()))):
        run_sequential("copycat", linear_victim(), toy_pool(), 5, seed=0, rng_seed=0)


def test_each_kind_of_strategy_runs_through_its_own_entry_point():
    with pytest.raises(ValueError, match="'adaptive' is sequential: use run_sequential"):
        sample_pool("adaptive", linear_victim(), toy_pool(), 5, seed=0, rng_seed=0)
    with pytest.raises(ValueError, match="'random' never looks at answers: use sample_pool"):
        run_sequential("random", linear_victim(), toy_pool(), 5, seed=0, rng_seed=0)


@pytest.mark.parametrize("granularity", ["probs", "top2", "label"])
def test_run_sequential_counts_queries_and_stores_the_apis_answers(lenet_victim, granularity):
    pool = labelled_pool(n=80)
    lenet_victim.seen = 0
    log = run_sequential(
        "adaptive",
        lenet_victim,
        pool,
        40,
        seed=2,
        rng_seed=5,
        granularity=granularity,
        batch_size=10,
        train_steps=1,
    )
    assert lenet_victim.seen == 40  # every query reached the victim exactly once
    assert len(log.sample_ids) == 40 and log.seed == 2 and (log.answered_by == 2).all()
    assert log.images is None  # adaptive sends pool images as they are
    # float32 posteriors: a batch of another size may round the last bit differently
    np.testing.assert_allclose(
        log.probs, predict_proba(lenet_victim, pool.images[log.sample_ids]), rtol=1e-6
    )
    np.testing.assert_array_equal(log.answers, apply_granularity(log.probs, granularity))


def test_run_sequential_answers_through_the_defense(lenet_victim):
    pool = labelled_pool(n=80)
    noise = create("gaussian-noise", DefenseContext(), scale=0.2)
    log = run_sequential(
        "adaptive", lenet_victim, pool, 20, 0, 5, "probs", noise, batch_size=10, train_steps=1
    )
    images = pool.images[log.sample_ids]
    np.testing.assert_array_equal(log.answers, serve(log.probs, images, "probs", noise))
    assert not np.allclose(log.answers, log.probs)


def test_jbda_run_stores_its_synthetic_images(lenet_victim):
    pool = labelled_pool(n=80)
    lenet_victim.seen = 0
    log = run_sequential("jbda", lenet_victim, pool, 50, 0, 1, seed_size=20, epochs=1)
    assert lenet_victim.seen == 50
    assert log.images.shape == (50, 28, 28, 1) and log.images.dtype == np.uint8
    np.testing.assert_array_equal(log.images[:20], pool.images[log.sample_ids[:20]])
    np.testing.assert_allclose(log.probs, predict_proba(lenet_victim, log.images), rtol=1e-6)
    assert not np.array_equal(log.images[20:40], pool.images[log.sample_ids[20:40]])


def _register(monkeypatch, name, fn):
    monkeypatch.setitem(STRATEGIES, name, StrategySpec(name, "sequential", fn=fn))


def test_a_strategy_that_overspends_or_miscounts_is_an_error(monkeypatch):
    pool = toy_pool()

    def overspends(api, pool, budget, rng, device="cpu"):
        ids = pool.ids("pool")[: budget + 1]
        api(pool.images[ids])
        return ids[:budget]

    def hides_queries(api, pool, budget, rng, device="cpu"):
        ids = pool.ids("pool")[:budget]
        api(pool.images[ids])
        return ids[:-1]

    _register(monkeypatch, "overspends", overspends)
    _register(monkeypatch, "hides-queries", hides_queries)
    with pytest.raises(RuntimeError, match="sent 11 queries and returned 10 sample ids; expec"):
        run_sequential("overspends", linear_victim(), pool, 10, 0, 0)
    with pytest.raises(RuntimeError, match="sent 10 queries and returned 9 sample ids"):
        run_sequential("hides-queries", linear_victim(), pool, 10, 0, 0)
