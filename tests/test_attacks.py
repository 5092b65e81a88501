import numpy as np
import pytest

from stealbench import attacks, datasets
from stealbench.blackbox import Blackbox
from stealbench.io import ArtefactError


class CountingVictim:
    """A stand-in blackbox: the posterior is a fixed function of the image's mean pixel."""

    def __init__(self, classes=3):
        self.classes, self.queries = classes, 0

    def __call__(self, images):
        self.queries += len(images)
        means = images.reshape(len(images), -1).mean(1)
        logits = np.stack([np.cos(means / 40 + k) for k in range(self.classes)], 1)
        e = np.exp(logits)
        return (e / e.sum(1, keepdims=True)).astype(np.float32)


def _pool(n=50):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 4, 4, 1), dtype=np.uint8)
    splits = np.array(["pool"] * (n - 10) + ["test"] * 10, dtype=object)
    table, meta = datasets.to_table("toy", images, np.full(n, -1), splits, [], "toy", 0, {})
    return datasets.Dataset("toy", images, np.full(n, -1), splits, meta)


def test_random_strategy_queries_pool_split_once_without_replacement():
    pool, victim = _pool(), CountingVictim()
    log = attacks.run_attack("random", victim, pool, budget=30, seed=1)
    assert victim.queries == 30
    assert len(set(log.sample_ids.tolist())) == 30
    assert set(log.sample_ids) <= set(pool.ids("pool"))
    np.testing.assert_allclose(log.probs, CountingVictim()(pool.images[log.sample_ids]))


def test_random_strategy_is_seeded():
    a = attacks.run_attack("random", CountingVictim(), _pool(), 20, seed=3).sample_ids
    b = attacks.run_attack("random", CountingVictim(), _pool(), 20, seed=3).sample_ids
    c = attacks.run_attack("random", CountingVictim(), _pool(), 20, seed=4).sample_ids
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_budget_beyond_pool_is_an_error():
    with pytest.raises(ValueError, match="exceeds the 40 images of the pool split"):
        attacks.run_attack("random", CountingVictim(), _pool(), budget=41, seed=0)


def test_unknown_strategy_lists_allowed():
    with pytest.raises(ValueError, match="allowed: random"):
        attacks.run_attack("copycat", CountingVictim(), _pool(), 5, seed=0)


def test_cache_round_trip_and_budget_prefixes(tmp_path):
    log = attacks.run_attack("random", CountingVictim(), _pool(), 30, seed=0)
    path = tmp_path / "cache.parquet"
    attacks.save_cache(log, path, {"victim_checksum": "v", "pool_checksum": "p"})
    cache = attacks.load_cache(path, expect={"victim_checksum": "v", "pool_checksum": "p"})
    assert len(cache) == 30
    for budget in (1, 10, 30):
        ids, probs = cache.prefix(budget)
        np.testing.assert_array_equal(ids, log.sample_ids[:budget])
        np.testing.assert_array_equal(probs, log.probs[:budget])
    with pytest.raises(ValueError, match="exceeds the 30 cached queries"):
        cache.prefix(31)


def test_stale_cache_is_rejected(tmp_path):
    log = attacks.run_attack("random", CountingVictim(), _pool(), 5, seed=0)
    path = tmp_path / "cache.parquet"
    attacks.save_cache(log, path, {"victim_checksum": "old", "pool_checksum": "p"})
    with pytest.raises(ArtefactError, match="stale query cache: victim_checksum"):
        attacks.load_cache(path, expect={"victim_checksum": "new"})


def test_blackbox_with_real_model_matches_counts():
    import torch

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    box = Blackbox(model)
    log = attacks.run_attack("random", box, _pool(), 25, seed=0)
    assert box.queries == 25 == len(log.sample_ids)
