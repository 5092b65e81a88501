"""Attack strategies and the query cache they fill.

A strategy decides which images to send to the victim; it is run once per (victim, attack)
up to the largest budget, and every response is cached in query order. A budget B is then
the first B rows of the cache, and a granularity is a transformation of the cached vectors
(see :mod:`stealbench.blackbox`), so no cell of the grid ever queries the victim again.

Strategies are looked up by name in :data:`STRATEGIES`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .blackbox import Blackbox
from .datasets import Dataset
from .io import ArtefactError, read_parquet, write_parquet

log = logging.getLogger(__name__)


@dataclass
class QueryLog:
    """What an attack sent and what the API answered, in query order."""

    sample_ids: np.ndarray  # ids of pool images, int64 (N,)
    probs: np.ndarray  # the victim's full posteriors, float32 (N, C)


Strategy = Callable[..., QueryLog]
STRATEGIES: dict[str, Strategy] = {}


def register(name: str) -> Callable[[Strategy], Strategy]:
    def decorate(fn: Strategy) -> Strategy:
        STRATEGIES[name] = fn
        return fn

    return decorate


@register("random")
def random_strategy(
    blackbox: Blackbox, pool: Dataset, budget: int, rng: np.random.Generator, batch_size: int = 500
) -> QueryLog:
    """Knockoff nets' random strategy: sample the pool without replacement, i.i.d."""
    candidates = pool.ids("pool")
    if budget > len(candidates):
        raise ValueError(
            f"budget {budget} exceeds the {len(candidates)} images of the pool split of "
            f"'{pool.name}'; lower the budget or enlarge the pool"
        )
    ids = rng.permutation(candidates)[:budget]
    probs = [blackbox(pool.images[ids[i : i + batch_size]]) for i in range(0, budget, batch_size)]
    return QueryLog(ids.astype(np.int64), np.concatenate(probs))


def run_attack(
    strategy: str, blackbox: Blackbox, pool: Dataset, budget: int, seed: int, **options
) -> QueryLog:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
    rng = np.random.default_rng(seed)
    return STRATEGIES[strategy](blackbox, pool, budget, rng, **options)


# -------------------------------------------------------------------- the query cache


def cache_table(queries: QueryLog) -> pa.Table:
    n, c = queries.probs.shape
    probs = pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(queries.probs, dtype=np.float32).ravel()), c
    )
    return pa.table(
        {
            "step": pa.array(np.arange(n, dtype=np.int64)),
            "sample_id": pa.array(queries.sample_ids),
            "label": pa.array(queries.probs.argmax(axis=1).astype(np.int16)),
            "probs": probs,
        }
    )


def save_cache(queries: QueryLog, path, meta: dict) -> None:
    write_parquet(cache_table(queries), path, {"kind": "query_cache", **meta})


@dataclass
class QueryCache:
    sample_ids: np.ndarray
    probs: np.ndarray
    meta: dict

    def __len__(self) -> int:
        return len(self.sample_ids)

    def prefix(self, budget: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``budget`` queries: what an attacker with that budget received."""
        if budget > len(self):
            raise ValueError(f"budget {budget} exceeds the {len(self)} cached queries")
        return self.sample_ids[:budget], self.probs[:budget]


def load_cache(path, expect: dict | None = None) -> QueryCache:
    """Load a query cache; ``expect`` maps metadata keys (e.g. checksums) to required values.

    A cache built from another victim or pool than the current one is an error, never reused.
    """
    table, meta = read_parquet(path, kind="query_cache")
    for key, value in (expect or {}).items():
        if meta.get(key) != value:
            raise ArtefactError(
                f"{path}: stale query cache: {key} is {meta.get(key)!r} but the current inputs "
                f"have {value!r}; delete the file and rerun to query the victim again"
            )
    probs = table.column("probs").combine_chunks()
    c = probs.type.list_size
    values = probs.flatten().to_numpy().astype(np.float32).reshape(len(probs), c)
    return QueryCache(table.column("sample_id").to_numpy(), values, meta)
