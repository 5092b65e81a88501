"""Atomic, self-describing artefacts: Parquet with metadata, JSON, state dicts.

Every writer goes through :func:`atomic_path`, so a killed job never leaves a file that
looks complete: the data is written to a temporary sibling and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

#: The key under which stealbench stores its JSON metadata in a Parquet schema.
META_KEY = b"stealbench"


class ArtefactError(RuntimeError):
    """An artefact on disk is missing, corrupt, foreign or stale."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays appear in metrics; JSON has no notion of them.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def write_parquet(
    table: pa.Table,
    path: str | os.PathLike,
    meta: dict | None = None,
    fields: dict[str, dict[str, str]] | None = None,
) -> None:
    """Write ``table`` atomically, with ``meta`` stored as JSON in the schema metadata and
    ``fields`` (column name -> {key: text}, e.g. a description) in its fields' metadata."""
    if fields:
        schema = pa.schema(
            [
                f.with_metadata({**(f.metadata or {}), **fields.get(f.name, {})})
                for f in table.schema
            ],
            metadata=table.schema.metadata,
        )
        table = pa.Table.from_arrays(table.columns, schema=schema)
    if meta is not None:
        encoded = json.dumps(meta, sort_keys=True, default=_json_default).encode()
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: encoded})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def open_parquet(path: str | os.PathLike, kind: str | None = None) -> tuple[pq.ParquetFile, dict]:
    """Open a stealbench Parquet file without reading its rows; reject foreign or truncated
    files, and (with ``kind``) files of another kind of artefact."""
    path = Path(path)
    if not path.exists():
        raise ArtefactError(f"{path}: file not found")
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise ArtefactError(
            f"{path}: not a readable Parquet file ({err}); delete it and rerun the workflow"
        ) from err
    meta = read_meta(file.schema_arrow, path)
    if kind is not None and meta.get("kind") != kind:
        raise ArtefactError(
            f"{path}: expected a stealbench '{kind}' artefact, found '{meta.get('kind')}'"
        )
    return file, meta


def read_parquet(path: str | os.PathLike, kind: str | None = None) -> tuple[pa.Table, dict]:
    """Read a stealbench Parquet file and its metadata (checked as by :func:`open_parquet`)."""
    file, meta = open_parquet(path, kind)
    try:
        return file.read(), meta
    except (pa.ArrowInvalid, OSError) as err:
        raise ArtefactError(
            f"{path}: not a readable Parquet file ({err}); delete it and rerun the workflow"
        ) from err


def read_meta(table: pa.Table | pa.Schema, path: str | os.PathLike = "<table>") -> dict:
    schema = table if isinstance(table, pa.Schema) else table.schema
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise ArtefactError(
            f"{path}: Parquet file has no stealbench metadata; it was not written by stealbench"
        )
    return json.loads(raw)


def save_state_dict(state_dict: dict, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(state_dict, tmp)


def load_state_dict(path: str | os.PathLike) -> dict:
    import torch

    # weights_only=True: a checkpoint is data, never code to unpickle.
    return torch.load(path, map_location="cpu", weights_only=True)


def write_rows(rows: list[dict], path: str | os.PathLike, meta: dict | None = None) -> None:
    """Rows (dicts of scalars and lists) as a stealbench Parquet artefact, without pandas
    (model jobs then skip importing it). A key missing from some rows is null there."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    write_parquet(pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows]), path, meta)


def write_dataframe(
    frame, path: str | os.PathLike, meta: dict | None = None, fields: dict | None = None
) -> None:
    """A pandas DataFrame as a stealbench Parquet artefact (atomic, with metadata)."""
    write_parquet(pa.Table.from_pandas(frame, preserve_index=False), path, meta, fields)


def read_parquet_meta(path: str | os.PathLike) -> dict:
    """Only the stealbench metadata of a Parquet file (reads the footer, not the data)."""
    return read_meta(pq.read_schema(path), path)


def provenance(paths, **values) -> dict:
    """What an artefact was built from: the SHA-256 of every input file, and config values."""
    return {"inputs": {str(p): sha256_file(p) for p in paths}, **values}


def state_dict_checksum(state_dict: dict) -> str:
    """SHA-256 of a model's weights (names, dtypes, shapes, values).

    Not of the checkpoint file: torch.save writes a random serialization id into every file,
    so identical weights saved twice differ byte for byte.
    """
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
