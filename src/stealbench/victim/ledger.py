"""The answer ledger of a remote victim: every answer a paid API gave, kept durably.

One SQLite file per victim (stdlib :mod:`sqlite3`, WAL journal, ``synchronous=FULL``, a busy
timeout), so that several jobs of one victim can share it and a killed job loses at most the
requests it had in flight: :meth:`Ledger.put` commits each response's answers in one
transaction as soon as they are checked, before the worker that received them sends its next
batch.

A row is keyed by ``sha256(endpoint checksum, the bytes sent for one image)``: the bytes are
the prepared float32 (C, H, W) tensor of the image (what the input contract makes of it), so
two images that the API cannot tell apart are one query, and an answer from another endpoint
(another URL, model, version or response format) is never taken for this one's. The value is
the answer as the API returned it (float32, at the API's granularity); ``purpose`` says which
job paid for it (``attack`` or ``evaluation``: evaluation queries are counted apart from the
attacker's budget) and ``time`` when (Unix seconds). An answer already in the ledger is never
replaced: the first one paid for is the one every later job reads.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

PURPOSES = ("attack", "evaluation")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key        BLOB PRIMARY KEY,  -- sha256(endpoint checksum, bytes sent)
    endpoint   TEXT NOT NULL,     -- the endpoint checksum
    answer     BLOB NOT NULL,     -- float32 (classes,), as the API returned it
    classes    INTEGER NOT NULL,
    purpose    TEXT NOT NULL CHECK (purpose IN ('attack', 'evaluation')),
    request_id TEXT NOT NULL,     -- the request that paid for it
    time       REAL NOT NULL
) WITHOUT ROWID
"""


def answer_hasher(endpoint: str):
    """sha256 seeded with the endpoint checksum: :func:`answer_key` of an image is this,
    updated with the image's float32 bytes (copy it per image)."""
    return hashlib.sha256(endpoint.encode() + b"\0")


def answer_key(endpoint: str, sent: np.ndarray) -> bytes:
    """The ledger key of one image: sha256 of the endpoint checksum and the float32 bytes sent."""
    digest = answer_hasher(endpoint)
    digest.update(np.ascontiguousarray(sent, dtype=np.float32).tobytes())
    return digest.digest()


class Ledger:
    """Durable answers of one endpoint, shared by threads of one process and by processes.

    A single connection guarded by a lock serves the threads of a process (commits are short);
    other processes wait on SQLite's lock for up to ``busy_timeout_s``.
    """

    def __init__(self, path, endpoint: str, busy_timeout_s: float = 60.0):
        self.path, self.endpoint = Path(path), endpoint
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise OSError(f"{self.path}: SQLite refused the WAL journal (got {mode!r})")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        """The stored answers among ``keys`` (a key absent from the result is a miss)."""
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite's limit on bound parameters
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, answer FROM answers WHERE key IN ({marks})", chunk
                )
                for key, blob in rows:
                    found[bytes(key)] = np.frombuffer(blob, dtype=np.float32).copy()
        return found

    def put(self, keys: list[bytes], answers: np.ndarray, purpose: str, request_id: str) -> None:
        """Commit one response's answers (float32 (N, C)) durably, in one transaction."""
        if purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {PURPOSES}, not {purpose!r}")
        answers = np.ascontiguousarray(answers, dtype=np.float32)
        if len(keys) != len(answers):
            raise ValueError(f"{len(keys)} keys for {len(answers)} answers")
        now = time.time()
        rows = [
            (key, self.endpoint, answer.tobytes(), answers.shape[1], purpose, request_id, now)
            for key, answer in zip(keys, answers, strict=True)
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)", rows
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def count(self, purpose: str | None = None) -> int:
        """Answers of this endpoint in the ledger, of one purpose or all."""
        sql, args = "SELECT COUNT(*) FROM answers WHERE endpoint = ?", [self.endpoint]
        if purpose is not None:
            sql, args = sql + " AND purpose = ?", [*args, purpose]
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def counts(self) -> dict[str, int]:
        """Answers of this endpoint per purpose (every purpose, zero included)."""
        return {purpose: self.count(purpose) for purpose in PURPOSES}
