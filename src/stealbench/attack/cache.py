"""The query cache: every image an attack sent, and the victim's posterior for it.

One file per attack run, one row per image the victim answered:

- ``sample_id``  the pool image the query is (or, for a synthetic query, descends from;
                 -1 for a query that comes from no pool image);
- ``probs``      the victim's full posterior, the owner's view (float32, C values);
- ``order``      for each seed of the file, the position of the row in that seed's query
                 sequence, or -1 where that seed never sent it (int32, S values);
- ``image``      the image itself, when it is not a pool image as it is (synthetic,
                 augmented or generated queries);
- ``answer``     what the API served, when the run talked to an API at one granularity and
                 defense (sequential strategies): the only thing the attacker saw.

Who shares a file follows from what the attacker saw (design.md): random sampling never looks
at answers, so one file per (victim, attack) holds the union of every seed's sample of the
pool, each image answered once, and any granularity or defense is computed from ``probs``
(:func:`stealbench.attack.api.serve`). A sequential strategy chooses its queries from the
answers: one file per (victim, attack, defense, granularity, seed). In both, seed s with
budget B trains on the first B queries of its sequence, so a smaller budget is a prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..io import ArtefactError, read_parquet, write_parquet
from .api import serve


@dataclass
class QueryLog:
    """What an attack sent and what the victim computed, one row per image answered."""

    sample_ids: np.ndarray  # int64 (N,)
    probs: np.ndarray  # float32 (N, C)
    orders: np.ndarray  # int32 (N, S): position in seed s's sequence, -1 if s did not send it
    seeds: list[int]
    images: np.ndarray | None = None  # uint8 (N, H, W, C) when not pool images as they are
    answers: np.ndarray | None = None  # float32 (N, C): what the API served (sequential runs)

    def __post_init__(self):
        n = len(self.sample_ids)
        self.orders = np.asarray(self.orders, dtype=np.int32).reshape(n, -1)
        if self.orders.shape[1] != len(self.seeds) or len(self.probs) != n:
            raise ValueError(
                f"{n} queries, {len(self.probs)} posteriors and an order of shape "
                f"{self.orders.shape} for {len(self.seeds)} seed(s)"
            )
        for s, seed in enumerate(self.seeds):
            sent = np.sort(self.orders[:, s][self.orders[:, s] >= 0])
            if not np.array_equal(sent, np.arange(len(sent))):
                raise ValueError(f"the query order of seed {seed} is not 0..B-1")

    @classmethod
    def sequence(cls, sample_ids, probs, seed: int, images=None, answers=None) -> QueryLog:
        """The log of one run that sent its queries in the given order (one seed)."""
        n = len(sample_ids)
        return cls(
            np.asarray(sample_ids, dtype=np.int64),
            np.asarray(probs, dtype=np.float32),
            np.arange(n, dtype=np.int32)[:, None],
            [seed],
            images,
            answers,
        )


def _fixed_list(values: np.ndarray, dtype) -> pa.FixedSizeListArray:
    values = np.ascontiguousarray(values, dtype=dtype)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])


def _matrix(column: pa.ChunkedArray, dtype) -> np.ndarray:
    column = column.combine_chunks()
    width = column.type.list_size
    return column.flatten().to_numpy().astype(dtype).reshape(len(column), width)


def save_cache(log: QueryLog, path, meta: dict) -> None:
    n = len(log.sample_ids)
    columns = {
        "sample_id": pa.array(np.asarray(log.sample_ids, dtype=np.int64)),
        "probs": _fixed_list(log.probs, np.float32),
        "order": _fixed_list(log.orders, np.int32),
    }
    meta = {**meta, "seeds": [int(s) for s in log.seeds], "queries_answered": n}
    if log.answers is not None:
        columns["answer"] = _fixed_list(log.answers, np.float32)
    if log.images is not None:
        size = int(np.prod(log.images.shape[1:]))
        columns["image"] = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(size), n, [None, pa.py_buffer(np.ascontiguousarray(log.images))]
        )
        meta["image_shape"] = list(log.images.shape[1:])
    write_parquet(pa.table(columns), path, {"kind": "query_cache", **meta})


@dataclass
class QueryCache:
    """A loaded query cache (see the module docstring)."""

    sample_ids: np.ndarray
    probs: np.ndarray
    orders: np.ndarray
    meta: dict
    images: np.ndarray | None = None
    stored_answers: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def seeds(self) -> list[int]:
        return list(self.meta["seeds"])

    def sequence(self, seed: int) -> np.ndarray:
        """The rows seed ``seed`` sent, in the order it sent them."""
        if seed not in self.seeds:
            raise ValueError(f"the cache holds seeds {self.seeds}, not seed {seed}")
        order = self.orders[:, self.seeds.index(seed)]
        rows = np.flatnonzero(order >= 0)
        return rows[np.argsort(order[rows], kind="stable")]

    def transfer_set(self, seed: int, budget: int) -> np.ndarray:
        """The rows of seed ``seed``'s first ``budget`` queries: what that attacker received."""
        rows = self.sequence(seed)
        if budget > len(rows):
            raise ValueError(f"budget {budget} exceeds the {len(rows)} queries of seed {seed}")
        return rows[:budget]

    def query_images(self, pool, rows: np.ndarray):
        """The images the given rows sent (a lazy view when the pool is a lazy store)."""
        if self.images is not None:
            return self.images[rows]
        if hasattr(pool.images, "subset"):
            return pool.images.subset(self.sample_ids[rows])
        return pool.images[self.sample_ids[rows]]

    def answers(self, rows: np.ndarray, granularity: str, images=None, defense=None):
        """What the API answered to the given rows at ``granularity`` through ``defense``.

        A run that talked to an API stored its answers: only that granularity (and the
        defense it faced) can be asked of it. Otherwise the answers are computed from the
        cached posteriors (``images`` are needed by defenses that look at the query).
        """
        if self.stored_answers is not None:
            if granularity != self.meta.get("granularity") or defense is not None:
                raise ValueError(
                    f"this cache holds the answers of a run at granularity "
                    f"{self.meta.get('granularity')!r} behind defense "
                    f"{self.meta.get('defense_id')!r}; it cannot answer at {granularity!r}"
                    + (" behind another defense" if defense is not None else "")
                )
            return self.stored_answers[rows]
        if defense is not None and images is None:
            raise ValueError("a defense needs the queried images")
        return serve(self.probs[rows], np.asarray(images) if defense else None, granularity, defense)


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
    answers = _matrix(table.column("answer"), np.float32) if "answer" in table.column_names else None
    return QueryCache(
        table.column("sample_id").to_numpy(),
        _matrix(table.column("probs"), np.float32),
        _matrix(table.column("order"), np.int32),
        meta,
        images,
        answers,
    )
