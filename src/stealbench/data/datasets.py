"""Datasets: the one Parquet layout every dataset is stored in, and reading it back.

A dataset is a fixed set of uint8 images (N, H, W, C) with integer labels (-1 where unknown),
split into ``train``/``val``/``test`` (the victim's task) and ``pool`` (data an attacker may
query with). The victim never sees the ``pool`` split; attacks draw only from it. Every image
also records its *source* (``Dataset.sources``, uint8 (N, 16)): a content hash of what it was
made from (a font file and character, a photograph, or the image itself; see
:mod:`stealbench.data.builders`), so that datasets given to different roles can be checked
for a common origin (:mod:`stealbench.data.roles`).

Columns: ``id`` (int64, 0..N-1), ``split`` (dictionary-encoded), ``label`` (int16),
``source`` (fixed-size binary, 16 bytes) and ``image`` (fixed-size binary, H*W*C bytes).

Builders of the embedded default (:mod:`stealbench.data.builders`) use only data that ships
inside pip packages or is generated, so the default benchmark runs offline. Real datasets
(``torchvision`` by name, ``imagefolder`` trees) live in :mod:`stealbench.data.realdata`.

Files are written in row groups (:func:`write_dataset`), so materialising never holds a whole
dataset in memory. :func:`load` returns in-memory arrays for small files and a lazy
:class:`ImageStore` (row groups read on demand, LRU-cached) for large ones; :func:`open`
always returns the lazy store.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..io import (
    META_KEY,
    ArtefactError,
    _json_default,
    atomic_path,
    open_parquet,
    read_parquet,
    write_parquet,
)
from .builders import BUILDERS, SOURCE_BYTES, RawImages, image_sources

SPLITS = ("train", "val", "test", "pool")
# Row groups hold up to this many images, and at most ROW_GROUP_BYTES of them.
ROW_GROUP_ROWS = 1024
ROW_GROUP_BYTES = 16 << 20
# load() keeps images in memory up to this many bytes and returns an ImageStore beyond.
LAZY_THRESHOLD_BYTES = 256 << 20
# An ImageStore epoch shuffles within windows of this many row groups.
BUFFER_GROUPS = 4


# ---------------------------------------------------------------------- materialising


def split_count(value: float, n: int) -> int:
    """A split's image count: an integer count (-1: the rest), or a fraction 0 < f < 1 of n."""
    if isinstance(value, float) and not value.is_integer():
        if not 0 < value < 1:
            raise ValueError(f"a split fraction must lie strictly between 0 and 1, got {value}")
        return math.floor(value * n + 0.5)
    return int(value)


def assign_splits(n: int, splits: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """A split name per image: a random permutation cut into the requested counts.

    Counts of -1 mean "all the rest" (at most one split may say so); a fraction 0 < f < 1
    means round(f * n) images.
    """
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; allowed: {', '.join(SPLITS)}")
    splits = {name: split_count(count, n) for name, count in splits.items()}
    rest = [name for name, count in splits.items() if count == -1]
    if len(rest) > 1:
        raise ValueError(f"only one split may take the rest (-1), got {rest}")
    fixed = sum(c for c in splits.values() if c != -1)
    if fixed > n:
        raise ValueError(f"splits {splits} ask for {fixed} images but the dataset has {n}")
    counts = {name: (n - fixed if c == -1 else c) for name, c in splits.items()}
    order = rng.permutation(n)
    assigned = np.full(n, "", dtype=object)
    start = 0
    for name in SPLITS:  # a fixed order, so the same counts always cut the same way
        count = counts.get(name, 0)
        assigned[order[start : start + count]] = name
        start += count
    return assigned


class ContentHash:
    """The content checksum, fed incrementally: the shape, the images in row order, then the
    labels, split names and sources. Streamed and in-memory datasets hash the same bytes in
    the same order, so a dataset has one checksum however it was written or is read."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(int(d) for d in shape)
        self._digest = hashlib.sha256(repr(self.shape).encode())
        self._expected, self._seen = math.prod(self.shape), 0

    def update(self, images: np.ndarray) -> None:
        images = np.ascontiguousarray(images, dtype=np.uint8)
        self._seen += images.size
        self._digest.update(images.reshape(-1).data)

    def hexdigest(self, labels: np.ndarray, splits: Iterable[str], sources: np.ndarray) -> str:
        if self._seen != self._expected:
            raise ValueError(f"hashed {self._seen} image bytes, expected {self._expected}")
        sources = _check_sources(sources, self.shape[0])
        self._digest.update(np.asarray(labels, dtype=np.int64).tobytes())
        self._digest.update("\n".join(list(splits)).encode())
        self._digest.update(sources.tobytes())
        return self._digest.hexdigest()


def _check_sources(sources: np.ndarray, n: int) -> np.ndarray:
    sources = np.ascontiguousarray(sources, dtype=np.uint8)
    if sources.shape != (n, SOURCE_BYTES):
        raise ValueError(f"sources of shape {sources.shape}, expected ({n}, {SOURCE_BYTES})")
    return sources


def checksum(
    images: np.ndarray, labels: np.ndarray, splits: np.ndarray, sources: np.ndarray
) -> str:
    """The content checksum of a dataset's images, labels, splits and sources."""
    digest = ContentHash(images.shape)
    digest.update(images)
    return digest.hexdigest(labels, splits, sources)


def _build(
    spec: dict, seed: int
) -> tuple[RawImages, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    source = spec["source"]
    if source not in BUILDERS:
        raise ValueError(
            f"source {source!r} is not a builder ({', '.join(BUILDERS)}); a source on disk "
            f"is written by stealbench.data.sources.materialise_to"
        )
    # One stream for building, one for splitting: changing split counts never redraws images.
    build_rng, split_rng = (np.random.default_rng([seed, k]) for k in (0, 1))
    raw = BUILDERS[source](build_rng, **spec.get("options", {}))
    splits = assign_splits(len(raw.images), spec["splits"], split_rng)
    keep = splits != ""
    images = raw.images[keep]
    sources = image_sources(images) if raw.sources is None else raw.sources[keep]
    return raw, images, raw.labels[keep], splits[keep], sources


def materialise(name: str, spec: dict, seed: int) -> tuple[pa.Table, dict]:
    """Build dataset ``name`` from its config ``spec``; return the table and its metadata.

    Images not assigned to any split are dropped, so the file holds exactly what is used.
    Builders only; :func:`stealbench.data.sources.materialise_to` handles every source.
    """
    raw, images, labels, splits, sources = _build(spec, seed)
    return to_table(name, images, labels, splits, raw.classes, raw.source, seed, spec, sources)


def materialise_builder_to(name: str, spec: dict, seed: int, path: str | Path) -> dict:
    """Materialise a builder's dataset ``name`` straight into the Parquet file ``path``; return
    its meta. Written in row groups with the checksum computed on the way. Any source:
    :func:`stealbench.data.sources.materialise_to`.
    """
    raw, images, labels, splits, sources = _build(spec, seed)
    meta = dataset_meta(name, images.shape[1:], raw.classes, raw.source, seed, spec, splits)
    step = rows_per_group(images[0].size if len(images) else 1)
    chunks = ((images[i : i + step], sources[i : i + step]) for i in range(0, len(images), step))
    return write_dataset(path, meta, chunks, labels, splits)


def dataset_meta(
    name: str,
    shape: tuple[int, ...],
    classes: list[str],
    source: str,
    seed: int,
    spec: dict,
    splits: np.ndarray,
) -> dict:
    """The file metadata of a dataset, less its checksum."""
    h, w, c = (int(d) for d in shape)
    return {
        "kind": "dataset",
        "name": name,
        "source": source,
        "shape": [h, w, c],
        "classes": classes,
        "num_classes": len(classes),
        "seed": seed,
        "spec": spec,
        "split_counts": {s: int((splits == s).sum()) for s in SPLITS},
    }


def rows_per_group(image_bytes: int) -> int:
    """Images per row group: ROW_GROUP_ROWS, fewer for large images (16 at the least)."""
    return int(max(16, min(ROW_GROUP_ROWS, ROW_GROUP_BYTES // max(1, image_bytes))))


_SPLIT_DICTIONARY = pa.array(list(SPLITS), pa.string())


def _source_array(sources: np.ndarray) -> pa.FixedSizeBinaryArray:
    sources = np.ascontiguousarray(sources, dtype=np.uint8)
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(SOURCE_BYTES), len(sources), [None, pa.py_buffer(sources)]
    )


def _sources_of(column: pa.ChunkedArray | pa.Array, path) -> np.ndarray:
    """The ``source`` column as uint8 (N, SOURCE_BYTES)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.type != pa.binary(SOURCE_BYTES):
        raise ArtefactError(
            f"{path}: source column is {column.type}, expected {SOURCE_BYTES} bytes"
        )
    n = len(column)
    return np.frombuffer(
        column.buffers()[1],
        dtype=np.uint8,
        count=n * SOURCE_BYTES,
        offset=column.offset * SOURCE_BYTES,
    ).reshape(n, SOURCE_BYTES)


class _RowGroupWriter:
    """Buffers images into fixed-size row groups and writes each with its rows' columns."""

    def __init__(self, writer: pq.ParquetWriter, shape, labels, codes, rows: int):
        self.writer, self.labels, self.codes, self.rows = writer, labels, codes, rows
        self.size = math.prod(shape)
        self.buffer = np.empty((rows, *shape), dtype=np.uint8)
        self.sources = np.empty((len(labels), SOURCE_BYTES), dtype=np.uint8)
        self.start = self.filled = 0

    def add(self, chunk: np.ndarray, sources: np.ndarray) -> None:
        pos = 0
        self.sources[self.start + self.filled : self.start + self.filled + len(chunk)] = sources
        while pos < len(chunk):
            take = min(self.rows - self.filled, len(chunk) - pos)
            self.buffer[self.filled : self.filled + take] = chunk[pos : pos + take]
            self.filled += take
            pos += take
            if self.filled == self.rows:
                self.flush()

    def flush(self) -> None:
        if not self.filled:
            return
        lo, hi = self.start, self.start + self.filled
        group = pa.table(
            {
                "id": pa.array(np.arange(lo, hi, dtype=np.int64)),
                "split": pa.DictionaryArray.from_arrays(
                    pa.array(self.codes[lo:hi]), _SPLIT_DICTIONARY
                ),
                "label": pa.array(self.labels[lo:hi]),
                "source": _source_array(self.sources[lo:hi]),
                "image": pa.FixedSizeBinaryArray.from_buffers(
                    pa.binary(self.size), hi - lo, [None, pa.py_buffer(self.buffer[: hi - lo])]
                ),
            }
        )
        self.writer.write_table(group, row_group_size=self.rows)
        self.start, self.filled = hi, 0


def write_dataset(
    path: str | Path,
    meta: dict,
    chunks: Iterable[np.ndarray | tuple[np.ndarray, np.ndarray]],
    labels: np.ndarray,
    splits: np.ndarray,
    group_rows: int | None = None,
) -> dict:
    """Write a dataset whose images arrive as ``chunks``, in row order.

    A chunk is uint8 images (k, H, W, C), each then its own source (the hash of its bytes),
    or a pair (images, sources) with sources uint8 (k, SOURCE_BYTES). ``labels`` and
    ``splits`` give every row up front (they are small); the images are buffered one row
    group at a time and hashed as they pass (:class:`ContentHash`), so memory stays at about
    one row group. The columns are those of :func:`to_table`; the file is written
    atomically, with the metadata (and checksum) in its footer. Returns the meta.
    """
    n = len(labels)
    shape = tuple(meta["shape"])
    codes = np.full(n, -1, dtype=np.int32)
    for k, name in enumerate(SPLITS):
        codes[np.asarray(splits) == name] = k
    if (codes < 0).any():
        raise ValueError(f"every row needs a split in {SPLITS}")
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("split", pa.dictionary(pa.int32(), pa.string())),
            ("label", pa.int16()),
            ("source", pa.binary(SOURCE_BYTES)),
            ("image", pa.binary(math.prod(shape))),
        ]
    )
    digest = ContentHash((n, *shape))
    seen = 0
    with atomic_path(path) as tmp:
        # store_schema=False: the footer's key-value metadata is then what readers see as the
        # schema metadata, and it can be added last, once the checksum is known.
        writer = pq.ParquetWriter(
            tmp,
            schema,
            compression="zstd",
            store_schema=False,
            use_dictionary=["split"],
            write_statistics=["id", "label"],
        )
        try:
            groups = _RowGroupWriter(
                writer,
                shape,
                np.asarray(labels).astype(np.int16),
                codes,
                group_rows or rows_per_group(math.prod(shape)),
            )
            for chunk in chunks:
                chunk, sources = chunk if isinstance(chunk, tuple) else (chunk, None)
                chunk = np.asarray(chunk, dtype=np.uint8)
                if chunk.shape[1:] != shape:
                    raise ValueError(f"image chunk of shape {chunk.shape}, expected (k, *{shape})")
                sources = _check_sources(
                    image_sources(chunk) if sources is None else sources, len(chunk)
                )
                seen += len(chunk)
                if seen > n:
                    raise ValueError(f"more images than the {n} rows announced")
                digest.update(chunk)
                groups.add(chunk, sources)
            groups.flush()
            if seen != n:
                raise ValueError(f"got {seen} images for {n} rows")
            meta = {**meta, "checksum": digest.hexdigest(labels, splits, groups.sources)}
            encoded = json.dumps(meta, sort_keys=True, default=_json_default)
            writer.add_key_value_metadata({META_KEY.decode(): encoded})
        finally:
            writer.close()
    return meta


def to_table(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    classes: list[str],
    source: str,
    seed: int,
    spec: dict,
    sources: np.ndarray | None = None,
) -> tuple[pa.Table, dict]:
    """A dataset held in memory as a table and its metadata (checksum included).

    ``sources``: uint8 (N, SOURCE_BYTES); None makes each image its own source.
    """
    n, h, w, c = images.shape
    sources = _check_sources(image_sources(images) if sources is None else sources, n)
    flat = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(h * w * c), n, [None, pa.py_buffer(np.ascontiguousarray(images).tobytes())]
    )
    table = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "split": pa.array(splits.tolist()).dictionary_encode(),
            "label": pa.array(labels.astype(np.int16)),
            "source": _source_array(sources),
            "image": flat,
        }
    )
    meta = dataset_meta(name, (h, w, c), classes, source, seed, spec, splits)
    meta["checksum"] = checksum(images, labels, splits, sources)
    return table, meta


@dataclass
class Dataset:
    """A materialised dataset; ``images`` row i has ``id`` i.

    ``images`` is a uint8 ndarray (N, H, W, C), or for large files an :class:`ImageStore`
    that reads the same rows lazily; labels, splits and ``sources`` (uint8 (N, 16), the
    source hash of each image) are always in memory. ``sources`` is None only for a Dataset
    built in memory without them.
    """

    name: str
    images: np.ndarray | ImageStore
    labels: np.ndarray
    splits: np.ndarray
    meta: dict
    sources: np.ndarray | None = None

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    @property
    def checksum(self) -> str:
        return self.meta["checksum"]

    def ids(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def split(self, split: str) -> tuple[np.ndarray | ImageStore, np.ndarray]:
        """Images and labels of one split (a lazy view when ``images`` is a store)."""
        ids = self.ids(split)
        if isinstance(self.images, ImageStore):
            return self.images.subset(ids), self.labels[ids]
        return self.images[ids], self.labels[ids]


def save(table: pa.Table, meta: dict, path: str | Path) -> None:
    write_parquet(table, path, meta)


def load(path: str | Path, verify: bool = True, lazy: bool | None = None) -> Dataset:
    """Load a materialised dataset; with ``verify``, recompute and check its checksum.

    ``lazy=None`` keeps the images in memory when they take at most
    :data:`LAZY_THRESHOLD_BYTES` and returns a lazy :class:`ImageStore` (see :func:`open`)
    beyond; ``True``/``False`` force either.
    """
    if lazy is None:
        file, meta = _parquet_file(path)
        h, w, c = meta["shape"]
        lazy = file.metadata.num_rows * h * w * c > LAZY_THRESHOLD_BYTES
    if lazy:
        return open(path, verify=verify)
    table, meta = read_parquet(path, kind="dataset")
    h, w, c = meta["shape"]
    column = table.column("image").combine_chunks()
    if column.type != pa.binary(h * w * c):
        raise ArtefactError(f"{path}: image column is {column.type}, expected {h}x{w}x{c} bytes")
    n = len(column)
    buffer = column.buffers()[1]
    images = np.frombuffer(
        buffer, dtype=np.uint8, count=n * h * w * c, offset=column.offset * h * w * c
    ).reshape(n, h, w, c)
    labels = table.column("label").to_numpy().astype(np.int64)
    splits = np.asarray(table.column("split").to_pylist(), dtype=object)
    _require_source_column(table.schema, path)
    sources = _sources_of(table.column("source"), path)
    if not np.array_equal(table.column("id").to_numpy(), np.arange(n)):
        raise ArtefactError(f"{path}: ids are not 0..N-1 in order")
    if verify and checksum(images, labels, splits, sources) != meta["checksum"]:
        raise ArtefactError(
            f"{path}: content does not match its checksum (corrupt or edited); delete it and rerun"
        )
    return Dataset(meta["name"], images, labels, splits, meta, sources)


def _require_source_column(schema: pa.Schema, path) -> None:
    if "source" not in schema.names:
        raise ArtefactError(
            f"{path}: no source column (written by an older stealbench); delete it and rerun"
        )


# --------------------------------------------------------------------- the lazy store


def _parquet_file(path: str | Path) -> tuple[pq.ParquetFile, dict]:
    """Open a dataset file without reading its rows."""
    return open_parquet(path, kind="dataset")


def _numpy_rng(generator) -> np.random.Generator:
    """A numpy Generator from a numpy Generator, a seed, None, or a torch.Generator.

    A torch.Generator (what training.fit holds) gives up one draw as the seed, so epoch
    orders follow the fit's seed as ``torch.randperm`` would.
    """
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is None or isinstance(generator, int | np.integer):
        return np.random.default_rng(generator)
    import torch

    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))


class _RowGroups:
    """The image column of one dataset file, decoded a row group at a time, LRU-cached."""

    def __init__(
        self, path: Path, file: pq.ParquetFile, shape: tuple[int, int, int], cache_groups: int
    ):
        self.path, self.file, self.shape = path, file, shape
        counts = [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_groups = max(1, cache_groups)
        self.reads = 0  # row groups decoded so far (cache misses)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def group_of(self, ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, ids, side="right") - 1

    def read(self, g: int) -> np.ndarray:
        """Row group ``g`` decoded, bypassing the cache: uint8 (rows, H, W, C)."""
        column = self.file.read_row_group(g, columns=["image"]).column(0).combine_chunks()
        size = math.prod(self.shape)
        return np.frombuffer(
            column.buffers()[1],
            dtype=np.uint8,
            count=len(column) * size,
            offset=column.offset * size,
        ).reshape(len(column), *self.shape)

    def get(self, g: int) -> np.ndarray:
        block = self.cache.get(g)
        if block is not None:
            self.cache.move_to_end(g)
            return block
        block = self.read(g)
        self.reads += 1
        self.cache[g] = block
        while len(self.cache) > self.cache_groups:
            self.cache.popitem(last=False)
        return block

    def gather(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` (any order, repeats allowed), reading each row group needed once."""
        out = np.empty((len(ids), *self.shape), dtype=np.uint8)
        if not len(ids):
            return out
        groups = self.group_of(ids)
        order = np.argsort(groups, kind="stable")
        bounds = np.flatnonzero(np.diff(groups[order])) + 1
        for rows in np.split(order, bounds):
            g = int(groups[rows[0]])
            out[rows] = self.get(g)[ids[rows] - self.starts[g]]
        return out


class ImageStore:
    """The images of a dataset file, read lazily by row group: an ndarray stand-in.

    Supports ``len()``, ``.shape``, ``.dtype``, ``.ndim``, ``np.asarray(store)`` and indexing
    with an int (one image), a slice, an integer index array or a boolean mask; indexing
    returns a uint8 ndarray (k, H, W, C) and reads only the row groups it needs. Decoded row
    groups stay in a small LRU cache (``cache_groups``, 2 * BUFFER_GROUPS + 1 by default, at
    most ROW_GROUP_BYTES each). :meth:`subset` gives a lazy view of some rows;
    :meth:`epoch_order` a block-shuffled order that reads each row group about once.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, groups: _RowGroups, ids: np.ndarray | None = None):
        self._groups = groups
        self._ids = None if ids is None else np.asarray(ids, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self._groups.shape)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape)

    @property
    def reads(self) -> int:
        """Row groups decoded so far by this store and the views that share its cache."""
        return self._groups.reads

    def __len__(self) -> int:
        return len(self._groups) if self._ids is None else len(self._ids)

    def __repr__(self) -> str:
        return f"ImageStore({self._groups.path}, shape={self.shape})"

    def _positions(self, key) -> np.ndarray:
        n = len(self)
        if isinstance(key, slice):
            return np.arange(*key.indices(n), dtype=np.int64)
        if hasattr(key, "numpy"):  # a torch tensor
            key = key.numpy()
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (n,):
                raise IndexError(f"boolean index of shape {key.shape} for {n} images")
            return np.flatnonzero(key)
        if not np.issubdtype(key.dtype, np.integer) or key.ndim != 1:
            raise IndexError(
                f"index an ImageStore with an int, a slice or a 1-D integer or boolean array "
                f"(got {key.dtype} of shape {key.shape}); slice the returned array further"
            )
        if len(key) and (key.min() < -n or key.max() >= n):
            raise IndexError(f"index out of range for {n} images")
        return np.where(key < 0, key + n, key)

    def _global(self, positions: np.ndarray) -> np.ndarray:
        return positions if self._ids is None else self._ids[positions]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, int | np.integer):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"index {key} out of range for {len(self)} images")
            return self._groups.gather(self._global(np.array([i])))[0]
        return self._groups.gather(self._global(self._positions(key)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def subset(self, ids) -> ImageStore:
        """A lazy view of rows ``ids`` of this store (sharing its file and cache)."""
        return ImageStore(self._groups, self._global(self._positions(ids)))

    def row_groups(self) -> np.ndarray:
        """The row groups of the file that this store's rows lie in."""
        return np.unique(self._groups.group_of(self._global(np.arange(len(self)))))

    def epoch_order(self, generator=None, buffer_groups: int = BUFFER_GROUPS) -> np.ndarray:
        """A permutation of ``range(len(self))`` that reads each row group about once.

        The row groups this store touches are shuffled; their rows follow in that group
        order, and are then shuffled within windows of ``buffer_groups`` consecutive groups.
        With the default cache, each row group is decoded once per epoch. Rows are stored
        in random order within each split, so a window is a random sample of its split.
        ``generator``: a torch.Generator (as training.fit passes), numpy Generator or seed.
        """
        rng = _numpy_rng(generator)
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        groups = self._groups.group_of(self._global(np.arange(len(self))))
        present = np.unique(groups)
        rank = np.zeros(int(present[-1]) + 1, dtype=np.int64)
        rank[rng.permutation(present)] = np.arange(len(present))
        key = rank[groups]
        order = np.argsort(key, kind="stable")
        window = key[order] // max(1, buffer_groups)
        bounds = np.flatnonzero(np.diff(window)) + 1
        return np.concatenate([rng.permutation(w) for w in np.split(order, bounds)])

    def checksum(self, labels: np.ndarray, splits: np.ndarray, sources: np.ndarray) -> str:
        """The content checksum of a whole-file store, streamed one row group at a time."""
        if self._ids is not None:
            raise ValueError("checksum of a view: the checksum covers a whole file")
        digest = ContentHash(self.shape)
        for g in range(self._groups.file.num_row_groups):
            digest.update(self._groups.read(g))
        return digest.hexdigest(labels, splits, sources)


# Named like the builtin on purpose (datasets.open(path), as xarray.open_dataset); nothing in
# this module uses the builtin ``open``.
def open(path: str | Path, verify: bool = True, cache_groups: int | None = None) -> Dataset:
    """Open a dataset lazily: labels, splits and sources in memory, images an
    :class:`ImageStore`.

    With ``verify`` the checksum is recomputed by streaming through the row groups (one
    pass, one row group in memory at a time).
    """
    path = Path(path)
    file, meta = _parquet_file(path)
    h, w, c = meta["shape"]
    field = file.schema_arrow.field("image")
    if field.type != pa.binary(h * w * c):
        raise ArtefactError(f"{path}: image column is {field.type}, expected {h}x{w}x{c} bytes")
    _require_source_column(file.schema_arrow, path)
    columns = file.read(columns=["id", "split", "label", "source"])
    n = columns.num_rows
    if not np.array_equal(columns.column("id").to_numpy(), np.arange(n)):
        raise ArtefactError(f"{path}: ids are not 0..N-1 in order")
    labels = columns.column("label").to_numpy().astype(np.int64)
    splits = columns.column("split").cast(pa.string()).to_numpy(zero_copy_only=False)
    splits = splits.astype(object)
    sources = _sources_of(columns.column("source"), path)
    groups = _RowGroups(path, file, (h, w, c), cache_groups or 2 * BUFFER_GROUPS + 1)
    images = ImageStore(groups)
    if verify and images.checksum(labels, splits, sources) != meta["checksum"]:
        raise ArtefactError(
            f"{path}: content does not match its checksum (corrupt or edited); delete it and rerun"
        )
    return Dataset(meta["name"], images, labels, splits, meta, sources)
