"""Attack strategies and the query cache they fill.

A strategy decides which images to send to the victim; it is run once per (victim, attack)
up to the largest budget, and every response is cached in query order. A budget B is then
the first B rows of the cache, and a granularity is a transformation of the cached vectors
(see :mod:`stealbench.blackbox`), so no cell of the grid ever queries the victim again.
Sequential strategies (adaptive, JbDA) keep the promise: a run with budget B sends exactly the
first B queries of a run with a larger budget (tests check it).

Strategies are looked up by name in :data:`STRATEGIES`:

- ``random``: Knockoff nets' random strategy; with ``augment``, the realistic adversary that
  jitters its in-distribution images before querying.
- ``adaptive``: Knockoff nets' adaptive strategy, a gradient bandit over the pool's labels
  (see :mod:`stealbench.adaptive`).
- ``jbda``: Jacobian-based dataset augmentation (Papernot et al., AsiaCCS 2017), synthetic
  queries grown from a small seed set: the attack PRADA was designed against.
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

    sample_ids: np.ndarray  # ids of the pool images the queries came from, int64 (N,)
    probs: np.ndarray  # the victim's full posteriors, float32 (N, C)
    # The images sent, uint8 (N, H, W, C), when they are not pool images as they are
    # (synthetic or augmented queries); None means pool.images[sample_ids].
    images: np.ndarray | None = None


Strategy = Callable[..., QueryLog]
STRATEGIES: dict[str, Strategy] = {}


def register(name: str) -> Callable[[Strategy], Strategy]:
    def decorate(fn: Strategy) -> Strategy:
        STRATEGIES[name] = fn
        return fn

    return decorate


def pool_candidates(pool: Dataset, budget: int) -> np.ndarray:
    candidates = pool.ids("pool")
    if budget > len(candidates):
        raise ValueError(
            f"budget {budget} exceeds the {len(candidates)} images of the pool split of "
            f"'{pool.name}'; lower the budget or enlarge the pool"
        )
    return candidates


def query_in_batches(
    blackbox: Blackbox, images, ids: np.ndarray | None = None, batch_size: int = 500
) -> np.ndarray:
    """The blackbox's answers for ``images`` (or ``images[ids]``), gathered batch by batch."""
    n = len(images) if ids is None else len(ids)
    batches = []
    for i in range(0, n, batch_size):
        rows = slice(i, i + batch_size) if ids is None else ids[i : i + batch_size]
        batches.append(blackbox(images[rows]))
    return np.concatenate(batches)


def jitter(
    images: np.ndarray,
    rng: np.random.Generator,
    degrees: float = 10.0,
    shift: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
) -> np.ndarray:
    """Random affine jitter (rotation, shift, scale) of uint8 images, one draw per image."""
    from PIL import Image

    out = np.empty_like(images)
    h, w = images.shape[1:3]
    for i, img in enumerate(images):
        angle = rng.uniform(-degrees, degrees)
        factor = rng.uniform(*scale)
        dx, dy = rng.uniform(-shift, shift, size=2) * (w, h)
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        pil = pil.rotate(angle, resample=Image.Resampling.BILINEAR, translate=(dx, dy))
        if factor != 1.0:
            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            scaled = pil.resize(size, Image.Resampling.BILINEAR)
            canvas = Image.new(pil.mode, (w, h))
            canvas.paste(scaled, ((w - size[0]) // 2, (h - size[1]) // 2))
            pil = canvas
        arr = np.asarray(pil)
        out[i] = arr[..., None] if arr.ndim == 2 else arr
    return out


@register("random")
def random_strategy(
    blackbox: Blackbox,
    pool: Dataset,
    budget: int,
    rng: np.random.Generator,
    augment: bool = False,
) -> QueryLog:
    """Sample the pool without replacement, i.i.d.; optionally jitter each image first."""
    ids = rng.permutation(pool_candidates(pool, budget))[:budget].astype(np.int64)
    if augment:
        images = jitter(pool.images[ids], rng)
        return QueryLog(ids, query_in_batches(blackbox, images), images)
    # The API is stateless, so answers do not depend on the order they are asked in: ask in
    # storage order (one sequential pass over a lazily read pool), keep the attack's order.
    order = np.argsort(ids, kind="stable")
    probs = query_in_batches(blackbox, pool.images, ids[order])
    answers = np.empty_like(probs)
    answers[order] = probs
    return QueryLog(ids, answers)


@register("adaptive")
def adaptive_strategy(
    blackbox: Blackbox, pool: Dataset, budget: int, rng: np.random.Generator, **options
) -> QueryLog:
    from .adaptive import run_adaptive

    return run_adaptive(blackbox, pool, budget, rng, **options)


@register("jbda")
def jbda_strategy(
    blackbox: Blackbox, pool: Dataset, budget: int, rng: np.random.Generator, **options
) -> QueryLog:
    from .jbda import run_jbda

    return run_jbda(blackbox, pool, budget, rng, **options)


def run_attack(
    strategy: str, blackbox: Blackbox, pool: Dataset, budget: int, seed: int, **options
) -> QueryLog:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
    rng = np.random.default_rng(seed)
    queries = STRATEGIES[strategy](blackbox, pool, budget, rng, **options)
    if len(queries.sample_ids) != budget or len(queries.probs) != budget:
        raise RuntimeError(
            f"strategy {strategy} returned {len(queries.probs)} queries, expected {budget}"
        )
    return queries


# -------------------------------------------------------------------- the query cache


def cache_table(queries: QueryLog) -> pa.Table:
    n, c = queries.probs.shape
    probs = pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(queries.probs, dtype=np.float32).ravel()), c
    )
    columns = {
        "step": pa.array(np.arange(n, dtype=np.int64)),
        "sample_id": pa.array(queries.sample_ids),
        "label": pa.array(queries.probs.argmax(axis=1).astype(np.int16)),
        "probs": probs,
    }
    if queries.images is not None:
        size = int(np.prod(queries.images.shape[1:]))
        columns["image"] = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(size), n, [None, pa.py_buffer(np.ascontiguousarray(queries.images))]
        )
    return pa.table(columns)


def save_cache(queries: QueryLog, path, meta: dict) -> None:
    if queries.images is not None:
        meta = {**meta, "image_shape": list(queries.images.shape[1:])}
    write_parquet(cache_table(queries), path, {"kind": "query_cache", **meta})


@dataclass
class QueryCache:
    sample_ids: np.ndarray
    probs: np.ndarray
    meta: dict
    images: np.ndarray | None = None  # the queried images, when not pool images as they are

    def __len__(self) -> int:
        return len(self.sample_ids)

    def prefix(self, budget: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``budget`` queries: what an attacker with that budget received."""
        if budget > len(self):
            raise ValueError(f"budget {budget} exceeds the {len(self)} cached queries")
        return self.sample_ids[:budget], self.probs[:budget]

    def query_images(self, pool: Dataset, budget: int):
        """The images the first ``budget`` queries sent (a lazy view for a lazy pool)."""
        if self.images is not None:
            return self.images[:budget]
        if hasattr(pool.images, "subset"):
            return pool.images.subset(self.sample_ids[:budget])
        return pool.images[self.sample_ids[:budget]]


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
    images = None
    if "image" in table.column_names:
        column = table.column("image").combine_chunks()
        shape = tuple(meta["image_shape"])
        size = int(np.prod(shape))
        images = np.frombuffer(
            column.buffers()[1],
            dtype=np.uint8,
            count=len(column) * size,
            offset=column.offset * size,
        ).reshape(len(column), *shape)
    return QueryCache(table.column("sample_id").to_numpy(), values, meta, images)
