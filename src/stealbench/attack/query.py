"""Running an attack against the victim: what fills a query cache.

:func:`sample_pool` draws one seed's sample with a sampling strategy and asks the victim only
for the images no earlier seed of the attack drew; :func:`run_sequential` runs a sequential
strategy against a :class:`~stealbench.attack.api.PredictionAPI` at the attacker's
granularity and defense. Both return the :class:`~stealbench.attack.cache.QueryLog` that
:func:`~stealbench.attack.cache.save_cache` writes.
"""

from __future__ import annotations

import logging

import numpy as np

from .api import PredictionAPI
from .cache import QueryCache, QueryLog
from .strategies import lookup

log = logging.getLogger(__name__)


def attacker_seed(master_seed: int, attack: str, seed: int) -> int:
    """The random-generator seed of seed ``seed`` of an attack. It does not depend on the
    victim, granularity or defense: runs of one seed differ only by the answers they got."""
    from ..runtime import derive_seed

    return derive_seed(master_seed, "attack", attack, seed)


def cache_meta(victim: str, attack: str, spec: dict, pool, victim_meta: dict, budget: int) -> dict:
    """What every query cache records: whom it attacked, with what, and the checksums of the
    victim and pool it was made from (a cache whose inputs changed is rejected as stale)."""
    return {
        "pool_checksum": pool.checksum,
        "victim_checksum": victim_meta["weights_checksum"],
        "victim": victim,
        "attack": attack,
        "strategy": spec["strategy"],
        "options": spec["options"],
        "pool": pool.name,
        "budget": budget,
    }


def sample_pool(
    strategy: str,
    model,
    pool,
    budget: int,
    seed: int,
    rng_seed: int,
    earlier: list[QueryCache] = (),
    batch_size: int = 1000,
    **options,
) -> QueryLog:
    """Seed ``seed``'s sample of the pool, answered by the victim where no ``earlier`` seed's
    file already holds the answer (jittered images are always new queries)."""
    spec = lookup(strategy)
    if spec.sequential:
        raise ValueError(f"strategy {strategy!r} is sequential: use run_sequential")
    draw = spec.fn(pool, budget, np.random.default_rng(rng_seed), **options)
    ids = np.asarray(draw.sample_ids, dtype=np.int64)
    api = PredictionAPI(model)
    if draw.images is not None:
        return QueryLog(
            seed, ids, api.posteriors(draw.images), np.full(len(ids), seed), draw.images
        )
    # Pool images an earlier seed drew: (its seed, the posterior its file holds).
    known: dict[int, tuple[int, np.ndarray]] = {}
    for cache in earlier:
        if cache.images is None:
            for i, p in zip(cache.sample_ids, cache.probs, strict=True):
                known.setdefault(int(i), (int(cache.meta["seed"]), p))
    answered_by = np.array([known.get(int(i), (seed,))[0] for i in ids], dtype=np.int64)
    new = np.flatnonzero(answered_by == seed)
    # The API is stateless: ask in storage order (one pass over a lazily read pool).
    new = new[np.argsort(ids[new], kind="stable")]
    answered = [
        api.posteriors(pool.images[ids[new[i : i + batch_size]]])
        for i in range(0, len(new), batch_size)
    ]
    width = answered[0].shape[1] if answered else len(next(iter(known.values()))[1])
    probs = np.zeros((len(ids), width), dtype=np.float32)
    if answered:
        probs[new] = np.concatenate(answered)
    for i in np.flatnonzero(answered_by != seed):
        probs[i] = known[int(ids[i])][1]
    log.info(
        "%s seed %d: %d queries, %d answered by the victim now, %d by earlier seeds",
        strategy,
        seed,
        len(ids),
        len(new),
        len(ids) - len(new),
    )
    return QueryLog(seed, ids, probs, answered_by)


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
    snapshot_at=(),
    **options,
) -> QueryLog:
    """One run of a sequential strategy against the API the attacker faces. A strategy that
    tracks an online model (:meth:`PredictionAPI.track`) leaves its snapshots at the budgets
    ``snapshot_at`` in the log's ``online`` (None when it tracks none)."""
    spec = lookup(strategy)
    if not spec.sequential:
        raise ValueError(f"strategy {strategy!r} never looks at answers: use sample_pool")
    api = PredictionAPI(
        model, granularity, defense, snapshot_at=[b for b in snapshot_at if b <= budget]
    )
    sample_ids = np.asarray(
        spec.fn(api, pool, budget, np.random.default_rng(rng_seed), device=device, **options),
        dtype=np.int64,
    )
    if api.queries != budget or len(sample_ids) != budget:
        raise RuntimeError(
            f"strategy {strategy} sent {api.queries} queries and returned {len(sample_ids)} "
            f"sample ids; expected {budget}"
        )
    api.close_snapshots()
    online = api.snapshots if any(m is not None for m in api.snapshots.values()) else None
    images, probs, answers = api.record()
    from_pool = bool((sample_ids >= 0).all()) and np.array_equal(
        images, np.asarray(pool.images[sample_ids])
    )
    return QueryLog(
        seed,
        sample_ids,
        probs,
        np.full(budget, seed),
        None if from_pool else images,
        answers,
        online,
    )


def online_metrics(snapshots: dict, test) -> list[dict]:
    """The online model's scores at each budget on the victim's test split (``test``: a
    :class:`stealbench.attack.surrogates.VictimTestSet`): top-1 accuracy and agreement with
    the victim. Evaluation only: nothing the attacker selects depends on it. A budget reached
    before the model existed scores NaN."""
    from ..metrics import accuracy, agreement
    from ..models.training import predict_proba

    rows = []
    for budget, model in sorted(snapshots.items()):
        acc = agree = float("nan")
        if model is not None:
            predicted = predict_proba(model, test.images).argmax(1)
            acc = accuracy(predicted, test.labels)
            agree = agreement(predicted, test.victim_probs.argmax(1))
        rows.append({"budget": int(budget), "online_acc": acc, "online_agreement": agree})
    return rows
