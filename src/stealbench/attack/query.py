"""Running an attack against the victim: what fills a query cache.

:func:`sample_pool` runs a sampling strategy for every seed and asks the victim once per
distinct image; :func:`run_sequential` runs a sequential strategy against a
:class:`~stealbench.attack.api.PredictionAPI` at the attacker's granularity and defense.
Both return the :class:`~stealbench.attack.cache.QueryLog` that
:func:`~stealbench.attack.cache.save_cache` writes.
"""

from __future__ import annotations

import logging

import numpy as np

from .api import PredictionAPI
from .cache import QueryLog
from .strategies import lookup

log = logging.getLogger(__name__)


def sample_pool(
    strategy: str, model, pool, budget: int, seeds: dict[int, int], batch_size: int = 1000, **options
) -> QueryLog:
    """Every seed's sample of the pool (``seeds`` maps a seed to its random-generator seed),
    answered once per distinct image: the union of the samples, with each seed's order.

    Images drawn by several seeds are one query to the victim; jittered images are
    distinct queries. The victim answers in storage order (one pass over a lazily read
    pool); the API is stateless, so the order of asking changes no answer.
    """
    spec = lookup(strategy)
    if spec.sequential:
        raise ValueError(f"strategy {strategy!r} is sequential: use run_sequential")
    draws = {s: spec.fn(pool, budget, np.random.default_rng(value), **options) for s, value in seeds.items()}
    api = PredictionAPI(model, batch_size=batch_size)
    seed_list = list(seeds)
    if any(d.images is not None for d in draws.values()):
        ids = np.concatenate([d.sample_ids for d in draws.values()])
        images = np.concatenate(
            [d.images if d.images is not None else pool.images[d.sample_ids] for d in draws.values()]
        )
        orders = np.full((len(ids), len(seed_list)), -1, dtype=np.int32)
        start = 0
        for s, d in enumerate(draws.values()):
            orders[start : start + len(d.sample_ids), s] = np.arange(len(d.sample_ids))
            start += len(d.sample_ids)
        return QueryLog(ids, api.posteriors(images), orders, seed_list, images)
    ids = np.unique(np.concatenate([d.sample_ids for d in draws.values()]))  # sorted
    orders = np.full((len(ids), len(seed_list)), -1, dtype=np.int32)
    for s, d in enumerate(draws.values()):
        orders[np.searchsorted(ids, d.sample_ids), s] = np.arange(len(d.sample_ids))
    probs = np.concatenate(
        [api.posteriors(pool.images[ids[i : i + batch_size]]) for i in range(0, len(ids), batch_size)]
    )
    log.info(
        "%s: %d seeds x %d queries, %d distinct images answered",
        strategy,
        len(seeds),
        budget,
        len(ids),
    )
    return QueryLog(ids, probs, orders, seed_list)


def run_sequential(
    strategy: str,
    model,
    pool,
    budget: int,
    seed: int,
    rng_seed: int,
    granularity: str = "probs",
    defense=None,
    device: str = "cpu",
    **options,
) -> QueryLog:
    """One run of a sequential strategy against the API the attacker faces."""
    spec = lookup(strategy)
    if not spec.sequential:
        raise ValueError(f"strategy {strategy!r} never looks at answers: use sample_pool")
    api = PredictionAPI(model, granularity, defense)
    sample_ids = np.asarray(
        spec.fn(api, pool, budget, np.random.default_rng(rng_seed), device=device, **options),
        dtype=np.int64,
    )
    if api.queries != budget or len(sample_ids) != budget:
        raise RuntimeError(
            f"strategy {strategy} sent {api.queries} queries and returned {len(sample_ids)} "
            f"sample ids; expected {budget}"
        )
    images, probs, answers = api.record()
    from_pool = (sample_ids >= 0).all() and np.array_equal(
        images, np.asarray(pool.images[sample_ids])
    )
    return QueryLog.sequence(sample_ids, probs, seed, None if from_pool else images, answers)
