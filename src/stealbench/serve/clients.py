"""The service's clients: API keys, a durable bill, PRADA per client, DAWN keyed per client.

:class:`ClientGate` is the :class:`~.app.Gate` of a real deployment:

- **keys** (:func:`create_key`, :func:`load_keys`): a YAML file names each client and the
  SHA-256 of its key, never the key. A request authenticates with ``Authorization: Bearer
  <key>`` or ``X-API-Key: <key>``; no key or an unknown one is a 401 with
  ``WWW-Authenticate``. The key is hashed on arrival and never logged, counted or stored.
- **accounting** (:class:`Accounts`): one row per answered request (time, client, model,
  request id, images, flagged) in SQLite, WAL journal, ``synchronous=FULL``: committed before
  the answer leaves, so a restarted service keeps its bill (``stats()``, shown by
  ``/v2/models/{name}/stats``).
- **a stream monitor per client** (PRADA, :mod:`stealbench.defense.prada`, or any registered
  monitor): one instance per (client, model), fed that client's batches with the answers
  served, in the order the service answered them: a client's requests are serialised (a lock
  per client held around the check, the answer and the update, :meth:`Gate.turn`), so
  concurrent requests of one client cannot interleave their updates. On a flag, ``refuse``
  (every later request of the client is a 403) or ``flag`` (answered, with ``parameters:
  {flagged: true, flagged_at: n}``). Flags are stored, so a flagged client stays flagged
  after a restart; an unflagged client's monitor is rebuilt by replaying its record (the
  monitors' decisions do not depend on how the stream was cut into batches).
- **DAWN per client** (:mod:`stealbench.defense.dawn`): when the served defense is DAWN, each
  client is answered by its own instance, keyed by :func:`client_key` (the owner's key and
  the client's name), so the watermarks in a stolen copy point at the client that stole it.
  The record of each client (:class:`Records`) keeps what verification needs:
  :func:`verify_client`.

Where this departs from the papers or the issue:

- PRADA (Juuti et al. 2019) decides per query; the service answers a request's whole batch
  and then feeds it to the monitor. **The request whose batch raises the flag is answered**
  (with ``flagged: true``), and refusal starts with the next request. Why: PRADA classes each
  query by the answer served (its top-1), so the decision comes after the answer; answering
  keeps the monitor's stream equal to what the client was served, so the service's
  ``flagged_at`` equals an offline replay of the client's queries; an attacker gains at most
  one batch. An owner who minds that batch can cap the batch size at the front.
- DAWN (Szyller et al. 2021) keys its watermarks per client, as here. It keeps, per client,
  the watermarked queries and the labels served: here the record keeps **every** query image
  of the client (uint8), the answer served, whether it was watermarked and the wrong label.
  The images are needed because verification asks the suspect to classify the watermarked
  queries; hashes could not be classified. The unwatermarked images are kept too, because
  the stream monitor is rebuilt from them after a restart. Verification counts each distinct
  watermarked image once, however often the client sent it.
- The issue asks for DAWN's answers kept per client; the key stays with the owner and is not
  written to the record, so :func:`verify_client` reads the watermark mask and labels that
  were stored at serving time instead of recomputing them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .app import Gate, Refused, ServedModel

log = logging.getLogger(__name__)

KEY_PREFIX = "sbk_"
CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
ACTIONS = ("refuse", "flag")
ANONYMOUS = "anonymous"


# ------------------------------------------------------------------ keys


def hash_key(key: str) -> str:
    """The SHA-256 (hex) of an API key: what the keys file holds."""
    return hashlib.sha256(key.encode()).hexdigest()


def _check_client(name: str) -> str:
    if not isinstance(name, str) or not CLIENT_NAME.match(name):
        raise ValueError(
            f"client name {name!r}: use 1-64 letters, digits, '_', '.', '-' (it names a folder "
            f"of the service's state)"
        )
    return name


def load_keys(path: str | os.PathLike) -> dict[str, str]:
    """{sha256 of a key: its client} from a keys file (``clients: {name: {sha256: hex}}``)."""
    return read_keys_file(path)[0]


def read_keys_file(path: str | os.PathLike) -> tuple[dict[str, str], set[str]]:
    """({sha256 of a key: its client}, the clients with ``owner: true``: they see every
    client's statistics) from a keys file."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"keys file {path} is missing; create one with `stealbench keys add CLIENT --keys`"
        )
    data = yaml.safe_load(path.read_text()) or {}
    clients = data.get("clients") if isinstance(data, dict) else None
    if not isinstance(clients, dict):
        raise ValueError(f"{path}: expected `clients: {{name: {{sha256: <hex>}}}}`")
    out, owners = {}, set()
    for name, entry in clients.items():
        _check_client(name)
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ValueError(f"{path}: clients.{name}.sha256 must be 64 lower-case hex digits")
        if digest in out:
            raise ValueError(f"{path}: clients {out[digest]!r} and {name!r} share a key")
        out[digest] = name
        if entry.get("owner") is True:
            owners.add(name)
    return out, owners


def create_key(
    path: str | os.PathLike, client: str, replace: bool = False, owner: bool = False
) -> str:
    """A new key for ``client``; its hash is written to the keys file ``path`` (created if
    absent), the key itself only returned: show it once. An existing client keeps its key
    unless ``replace``. An ``owner`` sees every client's statistics; others see their own."""
    import yaml

    from ..io import atomic_path

    _check_client(client)
    path = Path(path)
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    data = data if isinstance(data, dict) else {}
    clients = data.setdefault("clients", {}) or {}
    data["clients"] = clients
    if client in clients and not replace:
        raise ValueError(f"client {client!r} already has a key in {path}; pass replace to rotate")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    clients[client] = {"sha256": hash_key(key), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if owner:
        clients[client]["owner"] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(
            "# stealbench serve: API keys. Each client's sha256 of its key; the keys are not "
            "kept.\n" + yaml.safe_dump(data, sort_keys=True)
        )
    os.chmod(path, 0o600)
    return key


def client_key(owner_key: bytes, client: str) -> bytes:
    """The secret key that keys ``client``'s DAWN watermarks: HMAC-SHA256 of its name under
    the owner's key (one owner key gives every client its own, unguessable by the client)."""
    return hmac.new(owner_key, b"stealbench/client/" + client.encode(), hashlib.sha256).digest()


# ------------------------------------------------------------------ the bill


class Accounts:
    """The durable bill: one row per answered request, in SQLite (WAL, synchronous=FULL).
    ``path`` None keeps it in memory (tests, a throwaway service)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            ":memory:" if self.path is None else str(self.path),
            check_same_thread=False,
            isolation_level=None,  # autocommit: each insert is its own durable transaction
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS requests (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "time REAL NOT NULL, client TEXT NOT NULL, model TEXT NOT NULL, "
            "request_id TEXT NOT NULL, images INTEGER NOT NULL, flagged INTEGER NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS flags (client TEXT NOT NULL, model TEXT NOT NULL, "
            "monitor TEXT NOT NULL, flagged_at INTEGER NOT NULL, time REAL NOT NULL, "
            "PRIMARY KEY (client, model))"
        )

    def add(self, client: str, model: str, request_id: str, images: int, flagged: bool) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO requests (time, client, model, request_id, images, flagged) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), client, model, request_id, int(images), int(flagged)),
            )

    def flag(self, client: str, model: str, monitor: str, flagged_at: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO flags VALUES (?, ?, ?, ?, ?)",
                (client, model, monitor, int(flagged_at), time.time()),
            )

    def flags(self) -> dict[tuple[str, str], int]:
        """{(client, model): the 1-based query of the client's stream that raised the flag}."""
        with self._lock:
            rows = self._db.execute("SELECT client, model, flagged_at FROM flags").fetchall()
        return {(c, m): n for c, m, n in rows}

    def totals(self) -> dict[tuple[str, str], tuple[int, int]]:
        """{(client, model): (requests, images)} answered so far."""
        with self._lock:
            rows = self._db.execute(
                "SELECT client, model, COUNT(*), SUM(images) FROM requests GROUP BY client, model"
            ).fetchall()
        return {(c, m): (int(r), int(i)) for c, m, r, i in rows}

    def rows(self) -> list[tuple]:
        """Every row: (seq, time, client, model, request_id, images, flagged)."""
        with self._lock:
            return self._db.execute("SELECT * FROM requests ORDER BY seq").fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()


# ------------------------------------------------------------------ per-client records


class Records:
    """What the owner keeps of each client's queries, one file per answered request:
    ``<root>/<model>/<client>/<n>.npz`` (n: the client's 0-based request number) with
    ``images`` (uint8 (N, H, W, C)), ``answers`` (the answers served), ``watermarked`` (bool
    (N,)) and ``watermark_labels`` (the wrong label served, -1 where none). Written atomically
    before the request is billed; a file beyond the bill (a crash between the two) is
    overwritten by the client's next request and ignored by :meth:`load` with ``count``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def folder(self, model: str, client: str) -> Path:
        return self.root / model / client

    def write(self, model: str, client: str, n: int, **arrays) -> None:
        folder = self.folder(model, client)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{n:09d}.npz"
        tmp = folder / f".{n:09d}.npz.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(folder, os.O_RDONLY)  # the rename itself survives a power cut
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def load(self, model: str, client: str, count: int | None = None) -> list[dict]:
        """The client's batches in the order they were answered (the first ``count``)."""
        return load_record(self.folder(model, client), count)


def load_record(folder: str | os.PathLike, count: int | None = None) -> list[dict]:
    files = sorted(Path(folder).glob("[0-9]*.npz"))
    if count is not None:
        files = [f for f in files if int(f.stem) < count]
    out = []
    for f in files:
        with np.load(f) as data:
            out.append({k: data[k] for k in data.files})
    return out


def verify_client(
    record_dir: str | os.PathLike,
    client: str,
    suspect_model,
    threshold: float = 0.5,
    batch_size: int = 1000,
) -> dict:
    """Does ``suspect_model`` reproduce the DAWN watermarks ``client`` was served?

    ``record_dir``: the records of one served model (``<state>/records/<model>``). The
    suspect classifies the distinct watermarked images of the client's record and
    :func:`stealbench.defense.dawn.verify` compares its top-1 with the wrong labels served.
    Returns verify's ``watermarks``, ``reproduced``, ``watermark_acc``, ``stolen``,
    ``p_value``, plus ``client`` and ``caught`` (= ``stolen``)."""
    from ..defense.dawn import verify
    from ..models.training import predict_proba

    batches = load_record(Path(record_dir) / _check_client(client))
    if not batches:
        raise FileNotFoundError(f"no record of client {client!r} in {record_dir}")
    batches = [b for b in batches if "watermarked" in b]  # those answered through DAWN
    if not batches:
        raise ValueError(f"{record_dir}: the service did not answer {client!r} through DAWN")
    num_classes = int(batches[0]["answers"].shape[1])
    images = np.concatenate([b["images"][b["watermarked"]] for b in batches])
    labels = np.concatenate([b["watermark_labels"][b["watermarked"]] for b in batches])
    if len(images):  # each distinct image once (a repeated query was served the same)
        _, first = np.unique(images.reshape(len(images), -1), axis=0, return_index=True)
        first = np.sort(first)
        images, labels = images[first], labels[first]
        predictions = predict_proba(suspect_model, images, batch_size).argmax(1)
    else:
        predictions = np.empty(0, dtype=np.int64)
    verdict = verify(predictions, labels, threshold, num_classes=num_classes)
    return {"client": client, **verdict, "caught": verdict["stolen"]}


# ------------------------------------------------------------------ the gate


class ClientGate(Gate):
    """Keys, a durable bill, a stream monitor and DAWN per client (module docstring).

    ``keys``: a keys file, or a dict {sha256 of a key: client}; None lets everyone in as
    ``anonymous`` (one client). ``owners``: the clients that see every client's statistics
    (also ``owner: true`` in the keys file). ``state``: the folder of the bill
    (``accounts.sqlite``) and the records (``records/``); None keeps the bill in memory and
    no record. ``monitor``: a registered stream monitor's name (``prada``) with
    ``monitor_params``; ``on_flag``: ``refuse`` or ``flag``.
    """

    def __init__(
        self,
        keys: str | os.PathLike | dict | None = None,
        state: str | os.PathLike | None = None,
        monitor: str | None = None,
        monitor_params: dict | None = None,
        on_flag: str = "refuse",
        owners: set[str] | None = None,
    ):
        super().__init__()
        if on_flag not in ACTIONS:
            raise ValueError(f"on_flag must be one of {', '.join(ACTIONS)}, got {on_flag!r}")
        if monitor is not None:
            from ..defense.monitor import create_monitor

            create_monitor(monitor, **(monitor_params or {}))  # fail now on a bad parameter
        self.owners: set[str] = set(owners or ())
        if isinstance(keys, str | os.PathLike):
            keys, in_file = read_keys_file(keys)
            self.owners |= in_file
        self.keys = keys
        self.state = None if state is None else Path(state)
        self.accounts = Accounts(None if state is None else self.state / "accounts.sqlite")
        self.records = None if state is None else Records(self.state / "records")
        self.monitor_name, self.monitor_params = monitor, dict(monitor_params or {})
        self.on_flag = on_flag
        self._turns: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._monitors: dict[tuple[str, str], Any] = {}
        self._defenses: dict[tuple[str, str], Any] = {}
        self._flags = self.accounts.flags()
        # (client, model) -> [requests, images]: the bill, from the database at start.
        self._totals = {k: list(v) for k, v in self.accounts.totals().items()}

    # -- who asks

    def client(self, headers: dict) -> str:
        if self.keys is None:
            return ANONYMOUS
        key = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if key is None and auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
        challenge = 'Bearer realm="stealbench"'
        if not key:
            raise Refused(
                401,
                "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key`",
                {"WWW-Authenticate": challenge},
            )
        client = self.keys.get(hash_key(key))
        if client is None:
            raise Refused(
                401, "unknown API key", {"WWW-Authenticate": challenge + ', error="invalid_token"'}
            )
        return client

    # -- ordering and refusal

    def keeps_record(self, model: ServedModel) -> bool:
        """Whether the service keeps the client's queries of ``model``: only with a state
        folder, and only when something needs them (a monitor rebuilt after a restart, DAWN's
        verification): an undefended, unmonitored service keeps no image, only the bill."""
        from ..defense.dawn import Dawn

        return self.records is not None and (
            self.monitor_name is not None or isinstance(model.defense, Dawn)
        )

    def turn(self, client: str, model: ServedModel):
        """The client's lock when a monitor or a record depends on the order of its requests
        (else nothing: the bill has a lock of its own)."""
        if self.monitor_name is None and not self.keeps_record(model):
            return contextlib.nullcontext()
        with self._lock:
            return self._turns[client]

    def before(self, client: str, model: ServedModel, images: np.ndarray) -> None:
        flagged_at = self._flags.get((client, model.name))
        if flagged_at is not None and self.on_flag == "refuse":
            raise Refused(
                403,
                f"client {client!r} was flagged as a model-extraction attacker by "
                f"{self.monitor_name or 'the monitor'} at its query {flagged_at}; "
                f"its requests are refused",
            )

    # -- DAWN per client

    def defense(self, client: str, model: ServedModel) -> Any:
        from ..defense.dawn import Dawn

        if not isinstance(model.defense, Dawn):
            return None
        with self._lock:
            mine = self._defenses.get((client, model.name))
            if mine is None:
                owner = model.defense.context
                context = dataclasses.replace(owner, key=client_key(owner.key, client))
                mine = Dawn(context, share=model.defense.share)
                self._defenses[(client, model.name)] = mine
        return mine

    def _watermarks(self, client, model, images, probs) -> dict:
        from ..defense.dawn import watermark_labels, watermark_mask

        dawn = self.defense(client, model)
        if dawn is None:
            return {}
        key = dawn.context.key
        mask = watermark_mask(images, key, dawn.share)
        labels = np.full(len(images), -1, dtype=np.int64)
        if mask.any():
            labels[mask] = watermark_labels(images[mask], probs[mask], key)
        return {"watermarked": mask, "watermark_labels": labels}

    # -- the monitor

    def monitor(self, client: str, model: ServedModel):
        """The client's monitor on ``model`` (None without one), rebuilt from its record the
        first time it is needed after a restart."""
        if self.monitor_name is None:
            return None
        with self._lock:
            monitor = self._monitors.get((client, model.name))
        if monitor is None:
            from ..defense.monitor import create_monitor

            monitor = create_monitor(self.monitor_name, **self.monitor_params)
            answered = self._totals.get((client, model.name), [0, 0])[0]
            if self.records is not None and answered:
                for batch in self.records.load(model.name, client, answered):
                    monitor.observe(batch["images"], batch["answers"])
            with self._lock:
                self._monitors[(client, model.name)] = monitor
        return monitor

    # -- after an answer

    def after(self, client, model, images, probs, answers, request_id: str = "") -> dict:
        parameters = {}
        monitor = self.monitor(client, model)
        if monitor is not None:
            was = monitor.flagged_at
            monitor.observe(images, answers)
            if monitor.flagged_at is not None:
                if was is None:
                    self.accounts.flag(client, model.name, self.monitor_name, monitor.flagged_at)
                    with self._lock:
                        self._flags[(client, model.name)] = monitor.flagged_at
                    log.warning(
                        "client %s flagged by %s at its query %d (%s)",
                        client,
                        self.monitor_name,
                        monitor.flagged_at,
                        self.on_flag,
                    )
                parameters = {"flagged": True, "flagged_at": int(monitor.flagged_at)}
        with self._lock:
            totals = self._totals.setdefault((client, model.name), [0, 0])
            n = totals[0]
        if self.keeps_record(model):
            self.records.write(
                model.name,
                client,
                n,
                images=np.asarray(images, dtype=np.uint8),
                answers=np.asarray(answers, dtype=np.float32),
                **self._watermarks(client, model, images, probs),
            )
        self.accounts.add(client, model.name, request_id, len(images), bool(parameters))
        with self._lock:
            totals[0] += 1
            totals[1] += len(images)
            self.requests[client] += 1
            self.images[client] += len(images)
        return parameters

    def stats(self, model: str | None = None) -> dict:
        """Per client: ``requests`` and ``images`` answered (since the state was created),
        and ``flagged``: {model: the query that raised the flag} (empty if never); of one
        ``model``, or of all."""
        with self._lock:
            out: dict[str, dict] = {}
            for (client, name), (requests, images) in sorted(self._totals.items()):
                if model is not None and name != model:
                    continue
                entry = out.setdefault(client, {"requests": 0, "images": 0, "flagged": {}})
                entry["requests"] += requests
                entry["images"] += images
            for (client, name), n in sorted(self._flags.items()):
                if model is not None and name != model:
                    continue
                entry = out.setdefault(client, {"requests": 0, "images": 0, "flagged": {}})
                entry["flagged"][name] = n
            return out

    def stats_for(self, client: str, model: str | None = None) -> dict:
        """Everything for an owner (or without keys); a client sees only its own entry: the
        names and volumes of the others are not its business."""
        stats = self.stats(model)
        if self.keys is None or client in self.owners:
            return stats
        return {client: stats[client]} if client in stats else {}

    def close(self) -> None:
        self.accounts.close()
