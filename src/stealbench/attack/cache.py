"""The query cache: the images an attacker sent, and the victim's posterior for each.

One file per attacker run, one row per query in the order it was sent:

- ``sample_id``    the pool image the query is (or, for a synthetic query, descends from;
                   -1 for a query that comes from no pool image);
- ``probs``        the victim's full posterior, the owner's view (float32, C values); null
                   where another file of the same attack already holds it (``answered_by``);
- ``answered_by``  the seed whose file holds the posterior (this file's seed where the victim
                   answered the query for this file);
- ``image``        the image itself, when it is not a pool image as it is (synthetic,
                   augmented or generated queries);
- ``answer``       what the API served, when the run talked to an API at one granularity and
                   behind one defense (sequential strategies): the only thing that attacker saw.

Who shares answers follows from what the attacker saw (design.md). Random sampling never looks
at answers: seed s draws its own sample of the pool, and its file asks the victim only for the
images no earlier seed of the attack drew (earlier: a smaller seed number), so the files of an
attack together hold the union of the seeds' samples, each image answered once; any
granularity or defense is then computed from ``probs`` (:func:`stealbench.attack.api.serve`).
Adding a seed adds a file and changes none. A sequential strategy chooses its queries from the
answers: one file per (victim, attack, defense, granularity, seed). A budget B is the first B
rows of a file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)

from ..io import ArtefactError, read_parquet, write_parquet
from .api import serve


@dataclass
class QueryLog:
    """One attacker's queries, in the order sent, with the victim's posteriors."""

    seed: int
    sample_ids: np.ndarray  # int64 (B,)
    probs: np.ndarray  # float32 (B, C)
    answered_by: np.ndarray  # int64 (B,): the seed whose file holds each posterior
    images: np.ndarray | None = None  # uint8 (B, H, W, C) when not pool images as they are
    answers: np.ndarray | None = None  # float32 (B, C): what the API served (sequential runs)
    online: dict | None = None  # budget -> the attacker's online model there (never saved)

    @property
    def answered_here(self) -> np.ndarray:
        return self.answered_by == self.seed

    @property
    def victim_passes(self) -> int:
        """Posteriors the victim computed for this file (queries no earlier seed asked)."""
        return int(self.answered_here.sum())


def _fixed_list(values: np.ndarray, dtype) -> pa.FixedSizeListArray:
    values = np.ascontiguousarray(values, dtype=dtype)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])


def _list_where(values: np.ndarray, present: np.ndarray) -> pa.ListArray:
    """Rows of ``values`` as a list column, null (and stored as nothing) where not present."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    width = values.shape[1]
    offsets = np.concatenate([[0], np.cumsum(np.where(present, width, 0))]).astype(np.int32)
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(values[present].ravel()), mask=pa.array(~present)
    )


def _matrix(column: pa.ChunkedArray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """A (fixed-size or nullable) list column as (N, width) values, 0 where null, and the
    rows that hold values."""
    column = column.combine_chunks()
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    values = column.flatten().to_numpy().astype(dtype)  # a null row stores no values
    width = len(values) // max(1, int(valid.sum()))
    out = np.zeros((len(column), width), dtype=dtype)
    if valid.any():  # with no row holding values, the width is unknown here (0)
        out[valid] = values.reshape(-1, width)
    return out, valid


def save_runs(logs: dict[str, QueryLog], path, meta: dict) -> None:
    """Write the runs of one sequential attacker (one per granularity) into one file, each
    run's rows marked with its ``granularity``; ``meta`` holds what they share."""
    tables = []
    for granularity, log in logs.items():
        table = _table(log)
        tables.append(table.append_column("granularity", pa.array([granularity] * len(table))))
    first = next(iter(logs.values()))
    meta = {
        **meta,
        "seed": int(first.seed),
        "granularities": list(logs),
        "queries": {g: len(log.sample_ids) for g, log in logs.items()},
        "victim_passes": sum(log.victim_passes for log in logs.values()),
    }
    if first.images is not None:
        meta["image_shape"] = list(first.images.shape[1:])
    write_parquet(
        pa.concat_tables(tables, promote_options="default"), path, {"kind": "query_cache", **meta}
    )


def _table(log: QueryLog) -> pa.Table:
    n = len(log.sample_ids)
    columns = {
        "sample_id": pa.array(np.asarray(log.sample_ids, dtype=np.int64)),
        "probs": _list_where(log.probs, log.answered_here),
        "answered_by": pa.array(np.asarray(log.answered_by, dtype=np.int64)),
    }
    if log.answers is not None:
        columns["answer"] = _fixed_list(log.answers, np.float32)
    if log.images is not None:
        size = int(np.prod(log.images.shape[1:]))
        columns["image"] = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(size), n, [None, pa.py_buffer(np.ascontiguousarray(log.images))]
        )
    return pa.table(columns)


def save_cache(log: QueryLog, path, meta: dict) -> None:
    """Write one attacker's queries (posteriors only where this file answered them)."""
    meta = {
        **meta,
        "seed": int(log.seed),
        "queries": len(log.sample_ids),
        "victim_passes": log.victim_passes,
    }
    if log.images is not None:
        meta["image_shape"] = list(log.images.shape[1:])
    write_parquet(_table(log), path, {"kind": "query_cache", **meta})


@dataclass
class QueryCache:
    """One attacker's transfer sequence, loaded with every posterior filled in."""

    sample_ids: np.ndarray
    probs: np.ndarray
    meta: dict
    images: np.ndarray | None = None
    stored_answers: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.sample_ids)

    def transfer_set(self, budget: int) -> np.ndarray:
        """The rows of the first ``budget`` queries: what an attacker with that budget got."""
        if budget > len(self):
            raise ValueError(f"budget {budget} exceeds the {len(self)} cached queries")
        return np.arange(budget)

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
        return serve(
            self.probs[rows], np.asarray(images) if defense else None, granularity, defense
        )


def _check(meta: dict, path, expect: dict | None) -> None:
    for key, value in (expect or {}).items():
        if meta.get(key) != value:
            raise ArtefactError(
                f"{path}: stale query cache: {key} is {meta.get(key)!r} but the current inputs "
                f"have {value!r}; delete the file and rerun to query the victim again"
            )


def _images(table: pa.Table, meta: dict) -> np.ndarray | None:
    if "image" not in table.column_names:
        return None
    column = table.column("image").combine_chunks()
    shape = tuple(meta["image_shape"])
    size = int(np.prod(shape))
    return np.frombuffer(
        column.buffers()[1], dtype=np.uint8, count=len(column) * size, offset=column.offset * size
    ).reshape(len(column), *shape)


def load_cache(
    path, earlier=(), expect: dict | None = None, granularity: str | None = None
) -> QueryCache:
    """Load one attacker's queries; ``earlier``: the files of the same attack's earlier seeds,
    which hold the posteriors this file leaves to them; ``granularity``: which run of a
    sequential attacker's file. ``expect`` maps metadata keys (e.g. checksums) to required
    values: a cache of another victim or pool is an error, never reused.
    """
    table, meta = read_parquet(path, kind="query_cache")
    _check(meta, path, expect)
    if "granularity" in table.column_names:
        if granularity not in meta["granularities"]:
            raise ArtefactError(
                f"{path}: holds runs at granularities {meta['granularities']}, not {granularity!r}"
            )
        table = table.filter(pa.compute.equal(table.column("granularity"), granularity))
        meta = {**meta, "granularity": granularity}
    sample_ids = table.column("sample_id").to_numpy()
    probs, valid = _matrix(table.column("probs"), np.float32)
    answered_by = table.column("answered_by").to_numpy()
    missing = ~valid
    if missing.any():
        known: dict[int, np.ndarray] = {}
        for other in earlier:
            other_table, other_meta = read_parquet(other, kind="query_cache")
            _check(other_meta, other, expect)
            other_probs, other_valid = _matrix(other_table.column("probs"), np.float32)
            other_ids = other_table.column("sample_id").to_numpy()
            for i in np.flatnonzero(other_valid):
                known.setdefault(int(other_ids[i]), other_probs[i])
        if not valid.any() and known:  # earlier seeds drew every image of this one
            probs = np.zeros((len(sample_ids), len(next(iter(known.values())))), np.float32)
        for i in np.flatnonzero(missing):
            found = known.get(int(sample_ids[i]))
            if found is None:
                raise ArtefactError(
                    f"{path}: query {i} (pool image {sample_ids[i]}) was answered in seed "
                    f"{answered_by[i]}'s file, which is not among the files given"
                )
            probs[i] = found
    answers = (
        _matrix(table.column("answer"), np.float32)[0] if "answer" in table.column_names else None
    )
    return QueryCache(sample_ids, probs, meta, _images(table, meta), answers)
