"""A remote victim: an Open Inference Protocol (KServe V2 REST) endpoint, queried through a
durable ledger so that no image is paid for twice.

``victims.<name>.remote`` says where and how::

    url: http://127.0.0.1:8080      # POST {url}/v2/models/{model}/infer
    model: mnist-lenet
    returns: probs                  # probs | top<k> | label: what the API answers
    input_name: input
    datatype: FP32                  # FP32 (FP64 too here; the config schema allows FP32)
    auth: {env: STEALBENCH_API_KEY, header: Authorization, scheme: Bearer}   # optional
    batch_size: 64                  # images per request
    concurrency: 4                  # requests in flight
    timeout_s: 30                   # connect and read timeout of one attempt
    retries: 8                      # attempts after the first (429, 5xx, connection errors)
    backoff_s: 0.25                 # exponential backoff factor (with jitter)
    max_requests: null              # this run's budget of inference requests (null: none)

The HTTP stack is urllib3: one thread-safe ``PoolManager`` (``maxsize`` = concurrency), its
``Retry`` (exponential backoff with jitter on 429, 500, 502, 503, 504 and on connection and
read errors, honouring ``Retry-After``) and ``Timeout``; a ``ThreadPoolExecutor`` of
``concurrency`` workers sends the batches. Nothing here retries by hand.

:meth:`RemoteVictim.posteriors` prepares the images as the input contract says
(:mod:`.contract`), dedupes them, reads the answers already paid for from the ledger
(:mod:`.ledger`), sends only the misses, checks every response (:func:`check_answers`: a bad
answer is an error naming the request and is never stored), commits each response's answers
before its worker sends the next batch, and returns the answers in the order asked.

Departures from the issue, and choices it leaves open:

- ``max_requests`` counts inference requests (one per batch), not HTTP attempts: a retried
  request is one request (retries are counted apart, in :attr:`RemoteVictim.stats`), since a
  refused or failed attempt is not an answer paid for. The budget is per
  :class:`RemoteVictim` (one job); a rerun has a fresh one and starts from the ledger.
- A request that times out after the server computed its answer is paid twice (once for the
  lost answer, once for the retry): no client can avoid that without an idempotency key on
  the server's side, which the protocol does not define.
- A bad answer (malformed JSON, wrong shape, NaN, off the simplex) is not retried: the run
  fails naming the request, and a rerun resends only that request's images (the server is
  paid for them again).
- Transport: the protocol's JSON, or, when the server lists Triton's binary tensor extension
  (``GET /v2``: ``extensions``, as ``stealbench serve`` and Triton do), that extension (a JSON
  header, then the tensor's little-endian bytes; answers come back as bytes too): JSON spends
  most of a request's time printing and parsing floats (benchmarks/remote.py). Both carry
  the exact float32 values. In JSON, the ``data`` array is spliced into the envelope from the
  shortest exact text of each distinct value (images have few distinct values: ~10 times
  faster than ``json.dumps`` of the list, the same text).
- Retries are urllib3's: ``remote.retries`` counts every retried attempt (connection errors,
  read timeouts, 429, 5xx) of one request; ``Retry-After`` of a 429 or 503 is waited, however
  long it says. ``stats.retries`` adds up ``Retry.history`` of the answered requests, and
  ``remote.retries`` for a request that exhausted them.
- The endpoint checksum (the ledger's key beside the bytes sent) holds the model's version
  from the metadata endpoint; an answer whose ``model_version`` is another one is refused, so
  answers of a redeployed model are never kept under the old one's key.
- A label API declared ``returns: probs`` cannot be told apart (one-hot rows are on the
  simplex); every other mismatch of ``returns`` shows in the rows and is refused.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import urllib3
from urllib3.util import Retry, Timeout

from .contract import InputContract
from .ledger import PURPOSES, Ledger, answer_hasher
from .sources import num_classes

log = logging.getLogger(__name__)

BINARY_HEADER = "Inference-Header-Content-Length"
RETRY_STATUS = (429, 500, 502, 503, 504)
DATATYPES = {"FP32": np.float32, "FP64": np.float64}
SUM_TOLERANCE = 1e-3  # float32 softmax outputs sum to 1 within ~1e-6; JSON keeps them exact
DEFAULTS = {
    "returns": "probs",
    "input_name": "input",
    "datatype": "FP32",
    "auth": None,
    "batch_size": 64,
    "concurrency": 4,
    "timeout_s": 30.0,
    "retries": 8,
    "backoff_s": 0.25,
    "max_requests": None,
}


class RemoteError(ValueError):
    """A remote victim that cannot be used as configured; the message names the key."""


class BadAnswer(RemoteError):
    """A response refused (never stored); the message names the request."""


class BudgetExceeded(RemoteError):
    """The run's ``max_requests`` is spent; the answers received so far are in the ledger."""


@dataclass(frozen=True)
class Endpoint:
    """``victims.<name>.remote`` with its defaults filled in (no secret: only the env name)."""

    name: str
    url: str
    model: str
    returns: str
    input_name: str
    datatype: str
    auth: dict | None
    batch_size: int
    concurrency: int
    timeout_s: float
    retries: int
    backoff_s: float
    max_requests: int | None

    @classmethod
    def from_spec(cls, name: str, spec: dict) -> Endpoint:
        remote = {**DEFAULTS, **(spec.get("remote") or {})}
        for key in ("url", "model"):
            if not remote.get(key):
                raise RemoteError(
                    f"config key 'victims.{name}.remote.{key}' is required for a remote victim"
                )
        if remote["datatype"] not in DATATYPES:
            raise RemoteError(
                f"config key 'victims.{name}.remote.datatype': {remote['datatype']!r} is not "
                f"one of {sorted(DATATYPES)}"
            )
        returns = str(remote["returns"])
        if returns not in ("probs", "label") and not (
            returns.startswith("top") and returns[3:].isdigit() and int(returns[3:]) >= 1
        ):
            raise RemoteError(
                f"config key 'victims.{name}.remote.returns': {returns!r} is not probs, label or "
                f"top<k>"
            )
        return cls(
            name=name,
            url=str(remote["url"]).rstrip("/"),
            model=str(remote["model"]),
            returns=returns,
            input_name=str(remote["input_name"]),
            datatype=str(remote["datatype"]),
            auth=dict(remote["auth"]) if remote["auth"] else None,
            batch_size=int(remote["batch_size"]),
            concurrency=int(remote["concurrency"]),
            timeout_s=float(remote["timeout_s"]),
            retries=int(remote["retries"]),
            backoff_s=float(remote["backoff_s"]),
            max_requests=None if remote["max_requests"] is None else int(remote["max_requests"]),
        )

    @property
    def infer_url(self) -> str:
        return f"{self.url}/v2/models/{self.model}/infer"

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/v2/models/{self.model}"

    def key(self, what: str) -> str:
        """The config key ``victims.<name>.remote.<what>`` as errors name it."""
        return f"config key 'victims.{self.name}.remote.{what}'"


def pool_manager(endpoint: Endpoint) -> urllib3.PoolManager:
    """The HTTP stack of one endpoint: a pool of ``concurrency`` connections, its retry policy
    and timeouts."""
    retry = Retry(
        total=endpoint.retries,
        backoff_factor=endpoint.backoff_s,
        backoff_jitter=endpoint.backoff_s,
        status_forcelist=RETRY_STATUS,
        # Inference is a pure function of the request body, so POST is idempotent here: an
        # attempt that failed (or whose answer was lost) can be sent again. (A lost answer the
        # server computed is paid twice: see the module's docstring.)
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=True,
        raise_on_redirect=True,
    )
    return urllib3.PoolManager(
        num_pools=4,
        maxsize=max(1, endpoint.concurrency),
        block=True,
        retries=retry,
        timeout=Timeout(connect=endpoint.timeout_s, read=endpoint.timeout_s),
    )


def _auth_headers(endpoint: Endpoint, environ=None) -> dict[str, str]:
    """The auth header, read from the environment (the value is never stored or shown)."""
    if not endpoint.auth:
        return {}
    environ = os.environ if environ is None else environ
    var = endpoint.auth.get("env")
    if not var or not environ.get(var):
        raise RemoteError(
            f"{endpoint.key('auth.env')}: the environment variable {var!r} that holds the "
            f"API key is not set"
        )
    scheme = endpoint.auth.get("scheme", "Bearer")
    value = f"{scheme} {environ[var]}" if scheme else environ[var]
    return {endpoint.auth.get("header", "Authorization"): value}


def binary_extension(endpoint: Endpoint, http: urllib3.PoolManager, headers: dict) -> bool:
    """Whether the server lists Triton's binary tensor extension (``GET /v2``: its
    ``extensions``); False when it does not say."""
    try:
        response = http.request(
            "GET", f"{endpoint.url}/v2", headers=headers, retries=Retry(total=2, backoff_factor=0.1)
        )
        return response.status == 200 and "binary_tensor_data" in (
            json.loads(response.data).get("extensions") or []
        )
    except (urllib3.exceptions.HTTPError, ValueError, AttributeError, TypeError):
        return False


def model_version(
    endpoint: Endpoint, http: urllib3.PoolManager | None = None, headers: dict | None = None
) -> str | None:
    """The model's version(s) from the protocol's metadata endpoint (GET /v2/models/{model}),
    or None when the server keeps no metadata (404) or declares no version."""
    http = http or pool_manager(endpoint)
    try:
        response = http.request(
            "GET",
            endpoint.metadata_url,
            headers=_auth_headers(endpoint) if headers is None else headers,
            retries=Retry(total=min(endpoint.retries, 2), backoff_factor=0.1),
        )
    except urllib3.exceptions.HTTPError as error:
        raise RemoteError(
            f"{endpoint.key('url')}: {endpoint.url} does not answer "
            f"(GET {endpoint.metadata_url}: {type(error).__name__}: {error})"
        ) from None
    if response.status in (404, 405, 501):
        return None
    if response.status in (401, 403):
        raise RemoteError(
            f"{endpoint.key('auth')}: {endpoint.metadata_url} refused the API key "
            f"(HTTP {response.status})"
        )
    if response.status != 200:
        raise RemoteError(
            f"{endpoint.key('model')}: GET {endpoint.metadata_url} answered HTTP {response.status}"
        )
    try:
        versions = json.loads(response.data).get("versions")
    except (ValueError, AttributeError):
        return None
    return ",".join(map(str, versions)) if versions else None


def endpoint_checksum(spec: dict, version: str | None | bool = True, name: str = "<name>") -> str:
    """What identifies a remote victim's answers: url, model, the model's version (from the
    metadata endpoint, which this asks: a server that does not answer is a
    :class:`RemoteError` naming ``victims.<name>.remote.url``; ``version=False`` skips asking,
    a string gives it) and ``returns``. Never the auth secret (only the name of its variable
    is config, and it is left out too). ``name`` only names the victim in errors."""
    endpoint = Endpoint.from_spec(name, spec)
    if version is True:
        version = model_version(endpoint)
    ident = {
        "url": endpoint.url,
        "model": endpoint.model,
        "version": version or None,
        "returns": endpoint.returns,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def encode_data(values: np.ndarray) -> str:
    """A flat array as the text of a JSON array's items: the shortest repr of each value
    (what ``json.dumps`` writes), from a table of the distinct values when they are few."""
    values = np.asarray(values).ravel()
    distinct, inverse = np.unique(values, return_inverse=True)
    if len(distinct) * 4 > len(values):
        return json.dumps(values.tolist())[1:-1]
    table = np.array([repr(v) for v in distinct.tolist()], dtype=object)
    return ",".join(table[inverse].tolist())


def request_body(
    endpoint: Endpoint, request_id: str, sent: np.ndarray, binary: bool = False
) -> tuple[bytes, dict]:
    """(body, content headers) of the protocol's inference request for a float32 (N, C, H, W)
    batch: JSON, or with ``binary`` Triton's binary tensor extension (a JSON header, then the
    tensor's little-endian bytes; the answers asked back as bytes too)."""
    sent = np.asarray(sent, dtype=DATATYPES[endpoint.datatype])
    if binary:
        raw = np.ascontiguousarray(sent, dtype=sent.dtype.newbyteorder("<")).tobytes()
        head = json.dumps(
            {
                "id": request_id,
                "inputs": [
                    {
                        "name": endpoint.input_name,
                        "shape": list(sent.shape),
                        "datatype": endpoint.datatype,
                        "parameters": {"binary_data_size": len(raw)},
                    }
                ],
                "parameters": {"binary_data_output": True},
            }
        ).encode()
        headers = {"Content-Type": "application/octet-stream", BINARY_HEADER: str(len(head))}
        return head + raw, headers
    envelope = {
        "id": request_id,
        "inputs": [
            {
                "name": endpoint.input_name,
                "shape": list(sent.shape),
                "datatype": endpoint.datatype,
                "data": ["@"],
            }
        ],
    }
    head, tail = json.dumps(envelope).split('["@"]')
    body = f"{head}[{encode_data(sent)}]{tail}".encode()
    return body, {"Content-Type": "application/json"}


def decode_response(body: bytes, headers=None) -> tuple[dict, list[int], np.ndarray]:
    """(the JSON reply, shape, flat float64 values) of a response's ``outputs[0]``, JSON or
    with Triton's binary tensor extension (``Inference-Header-Content-Length``); ValueError
    otherwise."""
    split = (headers or {}).get(BINARY_HEADER)
    try:
        n = int(split) if split is not None else len(body)
        if not 0 <= n <= len(body):
            raise ValueError(f"{BINARY_HEADER} {split} for a body of {len(body)} bytes")
        reply = json.loads(body[:n])
    except ValueError as error:
        raise ValueError(f"malformed JSON ({error})") from None
    try:
        output = reply["outputs"][0]
        shape = [int(s) for s in output["shape"]]
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if int(size) != len(body) - n or output.get("datatype", "FP32") != "FP32":
                raise ValueError
            return reply, shape, np.frombuffer(body[n:], dtype="<f4").astype(np.float64)
        data = output["data"]
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise ValueError("no outputs[0] with a shape and data") from None
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("outputs[0].data is not a flat list of numbers") from None
    return reply, shape, values


def check_answers(
    body: bytes, n: int, classes: int, returns: str, headers=None, version: str | None = None
) -> np.ndarray:
    """The answers of one response, float32 (n, classes), or ValueError saying what is wrong:
    malformed JSON, no output, a shape other than (n, classes), a value that is not finite,
    off the simplex (negative, or a row summing above one; for ``probs`` not summing to one),
    a ``label`` answer that is not one-hot, a ``top<k>`` answer with more than k non-zeros,
    or (given the ``version`` the answers are kept under) another ``model_version``."""
    reply, shape, values = decode_response(body, headers)
    answered_by = reply.get("model_version") if isinstance(reply, dict) else None
    if version and "," not in version and answered_by not in (None, "", version):
        raise ValueError(
            f"answered by model version {answered_by!r}, not {version!r} (the version this "
            f"run's answers are kept under: the model changed; rerun to ask the new one)"
        )
    if len(shape) != 2 or shape[0] != n:
        raise ValueError(f"outputs[0] has shape {shape}, expected [{n}, {classes}]")
    if shape[1] != classes:
        raise ValueError(f"{shape[1]} classes answered, {classes} declared (classes)")
    if values.shape != (n * classes,):
        raise ValueError(f"outputs[0].data has {values.size} values for shape {shape}")
    values = values.reshape(n, classes)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise ValueError(f"non-finite values (NaN or inf) in answer rows {_rows(bad)}")
    if (values < 0).any():
        raise ValueError(f"negative probabilities in answer rows {_rows((values < 0).any(1))}")
    total = values.sum(axis=1)
    if (total > 1 + SUM_TOLERANCE).any():
        raise ValueError(f"rows sum above 1 (off the simplex): {_rows(total > 1 + SUM_TOLERANCE)}")
    if returns == "probs" and (abs(total - 1) > SUM_TOLERANCE).any():
        raise ValueError(
            f"rows do not sum to 1 (returns: probs): {_rows(abs(total - 1) > SUM_TOLERANCE)}"
        )
    if returns == "label":
        onehot = ((values == 0) | (values == 1)).all(axis=1) & ((values == 1).sum(axis=1) == 1)
        if not onehot.all():
            raise ValueError(f"rows are not one-hot (returns: label): {_rows(~onehot)}")
    if returns.startswith("top"):
        k = int(returns[3:])
        many = (values != 0).sum(axis=1) > k
        if many.any():
            raise ValueError(
                f"rows with more than {k} non-zeros (returns: {returns}): {_rows(many)}"
            )
    return values.astype(np.float32)


def _rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return ", ".join(map(str, rows[:5])) + more


@dataclass
class Stats:
    """What one :class:`RemoteVictim` did: images sent, inference requests, retried attempts
    (urllib3's ``Retry.history``), images answered from the ledger."""

    images_sent: int = 0
    requests: int = 0
    retries: int = 0
    ledger_hits: int = 0
    waited_s: list = field(default_factory=list)  # seconds per request, retries included


class RemoteVictim:
    """An Open Inference Protocol endpoint as a victim: ``posteriors(uint8 NHWC) -> (N, C)``.

    What it returns is what the API answers (``remote.returns``): full posteriors, top-k or
    one-hot labels. Every answer comes from, or goes to, the ledger at ``ledger_path``, tagged
    with ``purpose`` (``attack`` or ``evaluation``).
    """

    def __init__(
        self,
        name: str,
        spec: dict,
        ledger_path,
        purpose: str = "attack",
        environ=None,
        checksum: str | None = None,
        binary: bool | None = None,
    ):
        if purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {PURPOSES}, not {purpose!r}")
        self.name, self.purpose = name, purpose
        self.endpoint = Endpoint.from_spec(name, spec)
        self.classes = num_classes(spec)
        self.contract = InputContract.from_spec(spec["input"])
        self._auth = _auth_headers(self.endpoint, environ)
        self._http = pool_manager(self.endpoint)
        if binary is None:
            binary = binary_extension(self.endpoint, self._http, self._auth)
        self.binary = binary
        self.version = None
        if checksum is None:
            self.version = model_version(self.endpoint, self._http, self._auth)
            checksum = endpoint_checksum(spec, version=self.version or False, name=name)
        self.checksum = checksum
        self.ledger = Ledger(ledger_path, checksum)
        self.stats = Stats()
        self._lock = threading.Lock()
        self._run = uuid.uuid4().hex[:12]
        self._ids = itertools.count()  # request numbers of this victim, over every call

    @classmethod
    def from_spec(cls, name: str, spec: dict, ledger_path, purpose: str = "attack", **kwargs):
        return cls(name, spec, ledger_path, purpose, **kwargs)

    def __repr__(self) -> str:
        e = self.endpoint
        return (
            f"RemoteVictim({self.name!r}, url={e.url!r}, model={e.model!r}, returns={e.returns!r})"
        )

    def close(self) -> None:
        self._http.clear()
        self.ledger.close()

    # ------------------------------------------------------------------------ querying

    def posteriors(self, images: np.ndarray) -> np.ndarray:
        """The API's answers for uint8 (N, H, W, C) images, float32 (N, classes), in order.

        Answers already in the ledger are not asked again; a duplicate image is sent once.
        The images are prepared, hashed and looked up a few batches at a time, so the first
        requests leave while later images are still being prepared. On an error (bad answer,
        budget spent, endpoint down), no further request is sent, the answers received before
        it stay in the ledger, and the error is raised once the requests in flight are done.
        """
        images = np.asarray(images)
        if len(images) == 0:
            return np.zeros((0, self.classes), np.float32)
        size = max(1, self.endpoint.batch_size)
        chunk = size * max(1, self.endpoint.concurrency) * 2
        sent = np.empty((len(images), *self._sent_shape(images)), np.float32)
        keys: list[bytes] = []
        first: dict[bytes, int] = {}  # key -> the first image of the call that has it
        answers: dict[bytes, np.ndarray] = {}
        pending: list[int] = []  # images to send, not yet in a batch
        stop = threading.Event()
        futures: list[cf.Future] = []
        workers = max(1, self.endpoint.concurrency)
        with cf.ThreadPoolExecutor(workers, thread_name_prefix=f"remote-{self.name}") as pool:

            def submit(rows: list[int]) -> None:
                futures.append(pool.submit(self._work, len(futures), rows, sent, keys, stop))

            try:  # an error here (or an interrupt) sends nothing more
                for start in range(0, len(images), chunk):
                    if stop.is_set():
                        break
                    block = self.prepare(images[start : start + chunk])
                    sent[start : start + len(block)] = block
                    pending += self._lookup(block, start, keys, first, answers)
                    while len(pending) >= size:
                        submit(pending[:size])
                        pending = pending[size:]
                if pending and not stop.is_set():
                    submit(pending)
            except BaseException:
                stop.set()
                raise
            cf.wait(futures)
        errors = [f.exception() for f in futures if not f.cancelled() and f.exception()]
        if errors:
            raise errors[0]
        for future in futures:
            answers.update(future.result())
        log.debug(
            "%s: %d images, %d answered from the ledger, %d requests",
            self.name,
            len(images),
            len(first) - sum(len(f.result()) for f in futures),
            len(futures),
        )
        return np.stack([answers[key] for key in keys]).astype(np.float32)

    def _lookup(self, block, start: int, keys: list, first: dict, answers: dict) -> list[int]:
        """Key the prepared images ``block`` (images ``start``... of the call), read those
        not seen before in this call from the ledger into ``answers``; the images to send."""
        new = []
        for i, key in enumerate(self._keys(block), start):
            keys.append(key)
            if key not in first:
                first[key] = i
                new.append(key)
        found = self.ledger.get(new)
        if any(len(answer) != self.classes for answer in found.values()):
            sizes = sorted({len(answer) for answer in found.values()})
            raise RemoteError(
                f"config key 'victims.{self.name}.classes': {self.classes} classes declared, "
                f"but the ledger {self.ledger.path} holds answers of this endpoint with {sizes} "
                f"(the declaration changed, not the endpoint)"
            )
        answers.update(found)
        with self._lock:
            self.stats.ledger_hits += len(found)
        return [first[key] for key in new if key not in found]

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """What is sent for uint8 (N, H, W, C) images: the input contract's float32 tensor.
        Images already of the contract's size and channels, for a model that takes [0, 1],
        are scaled by numpy (the same float32 values as :meth:`InputContract.prepare`, whose
        torch path is twice as slow for them)."""
        c = self.contract
        if c.mean is None and images.shape[1:] == (c.size, c.size, c.channels):
            return images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
        return c.prepare(images)

    def _sent_shape(self, images: np.ndarray) -> tuple[int, ...]:
        return self.prepare(images[:1]).shape[1:]

    def _keys(self, block: np.ndarray) -> list[bytes]:
        """:func:`~.ledger.answer_key` of each prepared image (a pre-seeded hash)."""
        seeded = answer_hasher(self.checksum)
        out = []
        for row in np.ascontiguousarray(block, dtype=np.float32):
            digest = seeded.copy()
            digest.update(row)
            out.append(digest.digest())
        return out

    def _work(self, number: int, rows: list[int], sent, keys, stop) -> dict:
        """One batch: sent, checked, committed to the ledger before this worker takes its next
        batch. After another batch's error, nothing is sent."""
        if stop.is_set():
            return {}
        request_id = f"{self._run}-{next(self._ids)}"
        try:
            answer = self._request(request_id, number, rows, sent[rows])
        except BaseException:
            stop.set()  # before this worker takes its next batch
            raise
        batch_keys = [keys[i] for i in rows]
        self.ledger.put(batch_keys, answer, self.purpose, request_id)
        return dict(zip(batch_keys, answer, strict=True))

    def _request(
        self, request_id: str, number: int, rows: list[int], batch: np.ndarray
    ) -> np.ndarray:
        """One inference request (retried by urllib3), its answers checked."""
        e = self.endpoint
        with self._lock:
            if e.max_requests is not None and self.stats.requests >= e.max_requests:
                raise BudgetExceeded(
                    f"{e.key('max_requests')}: this run's budget of {e.max_requests} requests "
                    f"is spent (request {request_id} for images {_span(rows)} of this call not "
                    f"sent; the answers received so far are kept: {self.ledger.count()} in "
                    f"the ledger)"
                )
            self.stats.requests += 1
        where = (
            f"request {request_id} to {e.infer_url} "
            f"(batch {number}: images {_span(rows)} of this call)"
        )
        body, content = request_body(e, request_id, batch, self.binary)
        start = time.perf_counter()
        try:
            response = self._http.request(
                "POST", e.infer_url, body=body, headers={**content, **self._auth}
            )
        except urllib3.exceptions.MaxRetryError as error:
            with self._lock:
                self.stats.retries += e.retries
            raise RemoteError(
                f"victim '{self.name}': {where} failed after {e.retries} retries "
                f"({type(error.reason).__name__}: {error.reason}); answers received before "
                f"it are kept in the ledger (see {e.key('url')} and {e.key('retries')})"
            ) from None
        except urllib3.exceptions.HTTPError as error:
            raise RemoteError(
                f"victim '{self.name}': {where} failed ({type(error).__name__}: {error})"
            ) from None
        elapsed = time.perf_counter() - start
        retried = len(response.retries.history) if response.retries is not None else 0
        with self._lock:
            self.stats.retries += retried
            self.stats.waited_s.append(elapsed)
        if response.status != 200:
            hint = {401: "auth", 403: "auth", 404: "model", 400: "input", 422: "input"}
            key = e.key(hint[response.status]) if response.status in hint else e.key("url")
            if hint.get(response.status) == "input":
                key = f"config key 'victims.{self.name}.input'"
            raise RemoteError(
                f"victim '{self.name}': {where} answered HTTP {response.status} "
                f"({_excerpt(response.data)}); check {key}"
            )
        try:
            answer = check_answers(
                response.data, len(rows), self.classes, e.returns, response.headers, self.version
            )
        except ValueError as error:
            raise BadAnswer(f"victim '{self.name}': {where} refused, not stored: {error}") from None
        with self._lock:
            self.stats.images_sent += len(rows)
        return answer


def _span(rows: list[int]) -> str:
    if rows == list(range(rows[0], rows[-1] + 1)):
        return f"{rows[0]}..{rows[-1]}"
    return ", ".join(map(str, rows[:8])) + (f" ... ({len(rows)} images)" if len(rows) > 8 else "")


def _excerpt(data: bytes, limit: int = 200) -> str:
    text = data[:limit].decode("utf-8", "replace").replace("\n", " ")
    return text + ("..." if len(data) > limit else "")


def probe(name: str, spec: dict, images: np.ndarray | None = None) -> np.ndarray:
    """Check a remote victim before any job: the endpoint answers one batch, its class count is
    the declared one, and it takes the declared input. Nothing is stored; a mismatch is a
    :class:`RemoteError` naming the key (``victims.<name>.remote.url``, ``.classes``,
    ``.input``). ``images``: uint8 NHWC to send (default: one batch of grey images)."""
    endpoint = Endpoint.from_spec(name, spec)
    contract = InputContract.from_spec(spec["input"])
    classes = num_classes(spec)
    if images is None:
        n = max(1, min(endpoint.batch_size, 4))
        images = np.full((n, contract.size, contract.size, contract.channels), 128, np.uint8)
    sent = contract.prepare(images)
    http = pool_manager(endpoint)
    request_id = f"probe-{uuid.uuid4().hex[:8]}"
    body, content = request_body(endpoint, request_id, sent)
    headers = {**content, **_auth_headers(endpoint)}
    where = f"probe request {request_id} to {endpoint.infer_url}"
    try:
        response = http.request(
            "POST",
            endpoint.infer_url,
            body=body,
            headers=headers,
            retries=Retry(
                total=min(endpoint.retries, 2),
                backoff_factor=0.1,
                status_forcelist=RETRY_STATUS,
                allowed_methods=None,
            ),
        )
    except urllib3.exceptions.HTTPError as error:
        reason = getattr(error, "reason", error)
        raise RemoteError(
            f"{endpoint.key('url')}: {endpoint.url} does not answer ({where}: "
            f"{type(reason).__name__}: {reason})"
        ) from None
    finally:
        http.clear()
    if response.status in (401, 403):
        raise RemoteError(f"{endpoint.key('auth')}: {where} was refused (HTTP {response.status})")
    if response.status == 404:
        raise RemoteError(
            f"{endpoint.key('model')}: {where} answered 404: no model {endpoint.model!r} there "
            f"(or {endpoint.key('url')} is not an Open Inference Protocol server)"
        )
    if response.status in (400, 422):
        raise RemoteError(
            f"config key 'victims.{name}.input': the server rejected inputs of shape "
            f"{list(sent.shape)} "
            f"({where}: HTTP {response.status}: {_excerpt(response.data)})"
        )
    if response.status != 200:
        raise RemoteError(
            f"{endpoint.key('url')}: {where} answered HTTP {response.status} "
            f"({_excerpt(response.data)})"
        )
    try:
        reply = json.loads(response.data)
        answered = int(reply["outputs"][0]["shape"][-1])
    except (ValueError, KeyError, IndexError, TypeError):
        raise RemoteError(
            f"{endpoint.key('url')}: {where}: not an Open Inference Protocol answer "
            f"({_excerpt(response.data)})"
        ) from None
    if answered != classes:
        raise RemoteError(
            f"config key 'victims.{name}.classes': {classes} classes declared, the endpoint "
            f"answers "
            f"{answered} ({where})"
        )
    try:
        return check_answers(response.data, len(sent), classes, endpoint.returns)
    except ValueError as error:
        raise RemoteError(
            f"{endpoint.key('returns')}: {where}: the answer does not fit "
            f"returns: {endpoint.returns} ({error})"
        ) from None
