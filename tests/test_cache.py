"""The query cache: one file per attacker run, budgets as prefixes, the union economy across
seeds of a sampling attack, stored answers of sequential runs, stale caches refused."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from toys import linear_victim, toy_pool

from stealbench.attack.api import apply_granularity, serve
from stealbench.attack.cache import QueryLog, load_cache, save_cache, save_runs
from stealbench.attack.query import sample_pool
from stealbench.defense import DefenseContext, create
from stealbench.io import ArtefactError
from stealbench.models.training import predict_proba

META = {"victim_checksum": "v", "pool_checksum": "p"}


def _seed_files(tmp_path, budget=30):
    """Seeds 0 and 1 of one random attack, each file written as the workflow writes it."""
    pool, victim = toy_pool(), linear_victim()
    paths = [tmp_path / f"s{s}.parquet" for s in (0, 1)]
    log0 = sample_pool("random", victim, pool, budget, seed=0, rng_seed=100)
    save_cache(log0, paths[0], META)
    seen_before = victim.seen
    log1 = sample_pool(
        "random", victim, pool, budget, seed=1, rng_seed=101, earlier=[load_cache(paths[0])]
    )
    save_cache(log1, paths[1], META)
    return pool, victim, paths, log0, log1, victim.seen - seen_before


def test_round_trip_and_budgets_are_prefixes(tmp_path):
    pool, victim = toy_pool(), linear_victim()
    log = sample_pool("random", victim, pool, 30, seed=0, rng_seed=7)
    path = tmp_path / "cache.parquet"
    save_cache(log, path, META)
    cache = load_cache(path, expect=META)
    assert len(cache) == 30 and cache.meta["queries"] == 30 and cache.meta["seed"] == 0
    np.testing.assert_array_equal(cache.sample_ids, log.sample_ids)
    np.testing.assert_array_equal(cache.probs, log.probs)
    for budget in (1, 10, 30):
        rows = cache.transfer_set(budget)
        np.testing.assert_array_equal(rows, np.arange(budget))
        np.testing.assert_array_equal(cache.sample_ids[rows], log.sample_ids[:budget])
        np.testing.assert_array_equal(
            cache.query_images(pool, rows), pool.images[log.sample_ids[:budget]]
        )
    with pytest.raises(ValueError, match="exceeds the 30 cached queries"):
        cache.transfer_set(31)


def test_seeds_draw_different_transfer_sets(tmp_path):
    """A seed redraws the attacker's sample: two seeds never share one transfer set."""
    _, _, paths, log0, log1, _ = _seed_files(tmp_path)
    assert not np.array_equal(np.sort(log0.sample_ids), np.sort(log1.sample_ids))
    cache0 = load_cache(paths[0])
    cache1 = load_cache(paths[1], earlier=[paths[0]])
    assert set(cache0.sample_ids) != set(cache1.sample_ids)


def test_a_later_seed_asks_the_victim_only_for_images_no_earlier_seed_drew(tmp_path):
    pool, victim, paths, log0, log1, forward_passes = _seed_files(tmp_path)
    overlap = np.isin(log1.sample_ids, log0.sample_ids)
    assert 0 < overlap.sum() < 30  # 30 of 40 pool images each: the samples must overlap
    assert log0.victim_passes == 30
    assert log1.victim_passes == forward_passes == 30 - overlap.sum() < 30
    np.testing.assert_array_equal(log1.answered_by, np.where(overlap, 0, 1))
    # seed 1's file stores no posterior for the images seed 0's file already holds
    stored = pq.read_table(paths[1]).column("probs").is_null().to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(stored, overlap)
    assert load_cache(paths[1], earlier=[paths[0]]).meta["victim_passes"] == 30 - overlap.sum()


def test_loading_a_later_seed_with_the_earlier_files_gives_the_victims_posteriors(tmp_path):
    pool, victim, paths, _, log1, _ = _seed_files(tmp_path)
    cache = load_cache(paths[1], earlier=[paths[0]], expect=META)
    np.testing.assert_array_equal(cache.sample_ids, log1.sample_ids)
    truth = predict_proba(victim, pool.images[cache.sample_ids])
    np.testing.assert_allclose(cache.probs, truth, rtol=1e-6, atol=1e-7)
    assert not (cache.probs == 0).all(axis=1).any()  # no posterior left unfilled


def test_loading_a_later_seed_without_the_earlier_file_names_it(tmp_path):
    _, _, paths, _, _, _ = _seed_files(tmp_path)
    with pytest.raises(ArtefactError, match=r"answered in seed 0's file, which is not among"):
        load_cache(paths[1])
    # the first seed stands alone
    assert len(load_cache(paths[0])) == 30


def test_stale_cache_is_rejected(tmp_path):
    pool, victim = toy_pool(), linear_victim()
    log = sample_pool("random", victim, pool, 5, seed=0, rng_seed=0)
    path = tmp_path / "cache.parquet"
    save_cache(log, path, {"victim_checksum": "old", "pool_checksum": "p"})
    with pytest.raises(ArtefactError, match="stale query cache: victim_checksum is 'old'"):
        load_cache(path, expect={"victim_checksum": "new"})


def test_a_stale_earlier_file_is_rejected_too(tmp_path):
    _, _, paths, log0, _, _ = _seed_files(tmp_path)
    save_cache(log0, paths[0], {"victim_checksum": "old", "pool_checksum": "p"})
    with pytest.raises(ArtefactError, match="s0.parquet: stale query cache"):
        load_cache(paths[1], earlier=[paths[0]], expect={"victim_checksum": "v"})


def test_cached_posteriors_answer_at_any_granularity_and_defense(tmp_path):
    pool, victim = toy_pool(), linear_victim()
    log = sample_pool("random", victim, pool, 20, seed=0, rng_seed=3)
    save_cache(log, tmp_path / "c.parquet", META)
    cache = load_cache(tmp_path / "c.parquet")
    rows = cache.transfer_set(12)
    images = cache.query_images(pool, rows)
    for granularity in ("probs", "top2", "round1", "label"):
        np.testing.assert_array_equal(
            cache.answers(rows, granularity), apply_granularity(log.probs[:12], granularity)
        )
    noise = create("gaussian-noise", DefenseContext(), scale=0.1)
    np.testing.assert_array_equal(
        cache.answers(rows, "probs", images, noise), serve(log.probs[:12], images, "probs", noise)
    )
    with pytest.raises(ValueError, match="a defense needs the queried images"):
        cache.answers(rows, "probs", defense=noise)


def test_augmented_random_sampling_caches_the_jittered_images(tmp_path):
    pool, victim = toy_pool(shape=(8, 8, 1)), linear_victim(pixels=64)
    log = sample_pool("random", victim, pool, 30, seed=0, rng_seed=0, augment=True)
    assert log.images is not None and log.images.dtype == np.uint8
    assert not np.array_equal(log.images, pool.images[log.sample_ids])
    np.testing.assert_allclose(log.probs, predict_proba(victim, log.images), rtol=1e-6)
    save_cache(log, tmp_path / "c.parquet", {})
    cache = load_cache(tmp_path / "c.parquet")
    rows = cache.transfer_set(10)
    np.testing.assert_array_equal(cache.query_images(pool, rows), log.images[:10])
    # jittered images are new queries even when an earlier seed drew the same pool images
    plain = sample_pool("random", victim, pool, 30, seed=0, rng_seed=0)
    save_cache(plain, tmp_path / "plain.parquet", {})
    earlier = [load_cache(tmp_path / "plain.parquet")]
    again = sample_pool(
        "random", victim, pool, 30, seed=1, rng_seed=0, augment=True, earlier=earlier
    )
    np.testing.assert_array_equal(again.sample_ids, plain.sample_ids)
    assert again.victim_passes == 30


def _sequential_log(seed=0, n=6, classes=3, granularity="label"):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(classes), size=n).astype(np.float32)
    return QueryLog(
        seed, np.arange(n), probs, np.full(n, seed), answers=apply_granularity(probs, granularity)
    )


def test_a_sequential_runs_cache_answers_only_at_its_own_granularity(tmp_path):
    """A sequential attacker's queries depend on what it was answered: its file cannot be
    replayed at another granularity or behind another defense."""
    logs = {"label": _sequential_log(0), "probs": _sequential_log(1, granularity="probs")}
    path = tmp_path / "runs.parquet"
    save_runs(logs, path, {**META, "defense_id": "none"})
    label = load_cache(path, granularity="label")
    rows = label.transfer_set(4)
    np.testing.assert_array_equal(label.answers(rows, "label"), logs["label"].answers[:4])
    np.testing.assert_array_equal(label.probs, logs["label"].probs)
    probs = load_cache(path, granularity="probs")
    np.testing.assert_array_equal(probs.answers(rows, "probs"), logs["probs"].answers[:4])
    assert label.meta["queries"] == {"label": 6, "probs": 6}
    with pytest.raises(ValueError, match="at granularity 'label' behind defense 'none'; it"):
        label.answers(rows, "probs")
    with pytest.raises(ValueError, match="behind another defense"):
        label.answers(rows, "label", images=np.zeros((4, 2, 2, 1)), defense=object())
    with pytest.raises(ArtefactError, match=r"holds runs at granularities \['label', 'probs'\]"):
        load_cache(path, granularity="top2")


def test_a_seed_whose_every_image_an_earlier_seed_drew_loads(tmp_path):
    """Budget = pool size (the default's random-mnist5k at 1000): seeds 1 and 2 ask the victim
    for nothing, and their files hold no posterior at all."""
    pool, victim = toy_pool(), linear_victim()
    paths = [tmp_path / f"s{s}.parquet" for s in range(3)]
    for seed, path in enumerate(paths):
        earlier = [load_cache(p, earlier=paths[:i]) for i, p in enumerate(paths[:seed])]
        log = sample_pool("random", victim, pool, 40, seed, rng_seed=seed, earlier=earlier)
        assert log.victim_passes == (40 if seed == 0 else 0)
        save_cache(log, path, META)
    for seed, path in enumerate(paths):
        cache = load_cache(path, earlier=paths[:seed])
        truth = predict_proba(victim, pool.images[cache.sample_ids])
        np.testing.assert_allclose(cache.probs, truth, rtol=1e-6, atol=1e-7)
