"""Real Open Inference Protocol servers on loopback for the remote-victim tests.

- :func:`toy_victim` a lenet trained in a fraction of a second on :func:`toys.labelled_pool`;
- :func:`served`     that victim behind ``stealbench serve`` (FastAPI + uvicorn in a thread,
                     127.0.0.1, a free port), with the server's own bill (:func:`answered`);
- :class:`FaultFront` a real HTTP proxy on 127.0.0.1 that forwards to a server and injects
                     faults by request number (dropped connections, 500, 429 with Retry-After,
                     slow answers, malformed JSON, NaN), or holds requests (the kill test);
- run as a script, an attacker that queries a served victim (the kill test's child process).

The served victim computes each image's posterior on its own (batch size 1), so an answer is
a function of the image alone, as a deterministic API's is: a resumed run, whose batches are
other groupings of the same images, must then get bit-identical answers.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import urllib3

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

MODEL = "toy-lenet"
CLASSES = 4
BINARY_HEADER = "Inference-Header-Content-Length"


def toy_victim(seed: int = 0):
    """A lenet trained on 400 images of :func:`toys.labelled_pool` (4 classes, 28x28x1)."""
    from toys import labelled_pool

    from stealbench.models.architectures import create_model
    from stealbench.models.training import TrainConfig, fit

    data = labelled_pool(400, CLASSES, seed=seed)
    model = create_model("lenet", CLASSES, seed=seed)
    targets = np.eye(CLASSES, dtype=np.float32)[data.labels]
    fit(model, data.images, targets, None, None, TrainConfig(epochs=2, batch_size=32), seed)
    return model.eval()


def per_image_posteriors(model):
    """The victim's posteriors for uint8 NHWC images, each computed alone (batch-invariant)."""
    from stealbench.models.training import predict_proba

    return lambda images: predict_proba(model, images, batch_size=1)


def query_images(n: int, seed: int) -> np.ndarray:
    """``n`` uint8 (28, 28, 1) images, the same for the same seed (attacker's queries)."""
    from toys import labelled_pool

    return labelled_pool(n, CLASSES, seed=seed).images


def spec(url: str, **remote) -> dict:
    """The config of the served toy victim as a remote victim (``victims.toy``)."""
    return {
        "source": "remote",
        "dataset": "toy",
        "classes": CLASSES,
        "input": {"size": 28, "channels": 1, "normalize": "none"},
        "remote": {
            "url": url,
            "model": MODEL,
            "returns": "probs",
            "batch_size": 16,
            "concurrency": 2,
            "timeout_s": 10,
            "retries": 4,
            "backoff_s": 0.05,
            **remote,
        },
    }


@contextlib.contextmanager
def served(posteriors, granularity: str = "probs", gate=None):
    """``posteriors`` served by ``stealbench serve`` on 127.0.0.1 (a free port): its URL."""
    from stealbench.serve.app import ServedModel, create_app
    from stealbench.serve.runner import background

    model = ServedModel(MODEL, posteriors, (28, 28, 1), CLASSES, granularity=granularity)
    with background(create_app([model], gate)) as url:
        yield url


def answered(url: str) -> int:
    """The server's own count of images answered (Triton's statistics extension)."""
    response = urllib3.request("GET", f"{url}/v2/models/{MODEL}/stats", timeout=10, retries=False)
    return int(json.loads(response.data)["model_stats"][0]["inference_count"])


def split_body(body: bytes, headers) -> tuple[dict, bytes]:
    """(JSON part, binary part) of a request or response body (binary tensor extension)."""
    n = headers.get(BINARY_HEADER)
    n = int(n) if n is not None else len(body)
    return json.loads(body[:n]), body[n:]


class FaultFront:
    """A fault-injecting HTTP front on 127.0.0.1 that forwards to ``upstream``.

    ``faults`` maps the number of an inference request as it arrives at the front (0, 1, ...;
    a retry is a new arrival) to a fault:

    - ``drop``       the connection is closed before anything is forwarded or answered;
    - ``500``        an HTTP 500, not forwarded;
    - ``429``        an HTTP 429 with ``Retry-After: 1``, not forwarded;
    - ``slow``       no answer for ``slow_s`` (beyond the client's timeout), then the
                     connection is closed; not forwarded (the server never sees it);
    - ``malformed``  forwarded (the server answers and bills it), the answer's JSON truncated;
    - ``nan``        forwarded, the answer's first value replaced by NaN;
    - ``delay``      forwarded after ``delay_s`` (within the client's timeout).

    With ``hold_after`` set, once the server has answered that many images through the front,
    every later inference request is held (not forwarded) until :meth:`release`, then its
    connection is closed. ``log`` records (number, request id, fault, arrival, departure);
    ``most_in_flight`` is the most inference requests the front held at once.
    """

    def __init__(
        self, upstream: str, faults=None, slow_s: float = 2.0, hold_after=None, delay_s=0.2
    ):
        self.upstream, self.faults, self.slow_s = upstream, dict(faults or {}), slow_s
        self.delay_s, self.in_flight, self.most_in_flight = delay_s, 0, 0
        self.hold_after, self.forwarded_images = hold_after, 0
        self.held = 0
        self.log: list[dict] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._http = urllib3.PoolManager(maxsize=8, retries=False, timeout=30)
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                front.forward(self, "GET", b"")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not self.path.endswith("/infer"):
                    return front.forward(self, "POST", body)
                front.infer(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.release()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def release(self) -> None:
        self._released.set()

    # --------------------------------------------------------------------- handling

    def forward(self, handler, method: str, body: bytes, mangle=None) -> int:
        """Send the request upstream and its answer back (``mangle``d); the images answered."""
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host",)}
        upstream = self._http.request(
            method, self.upstream + handler.path, body=body or None, headers=headers
        )
        data, out_headers = upstream.data, dict(upstream.headers)
        images = 0
        if upstream.status == 200 and handler.path.endswith("/infer"):
            reply, _ = split_body(data, upstream.headers)
            images = int(reply["outputs"][0]["shape"][0])
            if mangle is not None:
                data, out_headers = mangle(data, upstream.headers)
        self.reply(handler, upstream.status, data, out_headers)
        return images

    @staticmethod
    def reply(handler, status: int, data: bytes, headers: dict) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            if key.lower() not in (
                "content-length",
                "transfer-encoding",
                "connection",
                "date",
                "server",
            ):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def infer(self, handler, body: bytes) -> None:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self._infer(handler, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _infer(self, handler, body: bytes) -> None:
        request, _ = split_body(body, handler.headers)
        with self._lock:
            number = len(self.log)
            fault = self.faults.get(number)
            hold = self.hold_after is not None and self.forwarded_images >= self.hold_after
            entry = {
                "number": number,
                "id": request.get("id"),
                "fault": fault,
                "images": int(request["inputs"][0]["shape"][0]),
                "arrived": time.monotonic(),
                "held": hold,
            }
            self.log.append(entry)
        if hold:
            with self._lock:
                self.held += 1
            self._released.wait(timeout=120)
            handler.close_connection = True
            return
        if fault in ("drop", "slow"):
            if fault == "slow":
                self._released.wait(self.slow_s)  # cut short when the front closes
            handler.close_connection = True
            return
        if fault == "500":
            self.reply(handler, 500, b'{"error": "injected"}', {"Content-Type": "application/json"})
        elif fault == "429":
            self.reply(
                handler,
                429,
                b'{"error": "slow down"}',
                {"Content-Type": "application/json", "Retry-After": "1"},
            )
        else:
            if fault == "delay":
                time.sleep(self.delay_s)
            mangle = {"malformed": _malformed, "nan": _nan}.get(fault)
            images = self.forward(handler, "POST", body, mangle)
            with self._lock:
                self.forwarded_images += images
        entry["left"] = time.monotonic()

    def arrivals(self, request_id: str) -> list[dict]:
        return [e for e in self.log if e["id"] == request_id]


def _malformed(data: bytes, headers) -> tuple[bytes, dict]:
    reply, _ = split_body(data, headers)
    text = json.dumps(reply).encode()
    return text[: len(text) // 2], {"Content-Type": "application/json"}


def _nan(data: bytes, headers) -> tuple[bytes, dict]:
    reply, raw = split_body(data, headers)
    if raw:
        values = np.frombuffer(raw, dtype="<f4").copy()
        values[0] = np.nan
        head = json.dumps(reply).encode()
        return head + values.tobytes(), {
            "Content-Type": "application/octet-stream",
            BINARY_HEADER: str(len(head)),
        }
    reply["outputs"][0]["data"][0] = float("nan")
    return json.dumps(reply).encode(), {"Content-Type": "application/json"}


def attack(url: str, ledger: str, n: int, seed: int, out: str) -> None:
    """The kill test's attacker: ``n`` images of ``seed`` through a remote victim; its answers
    and counters written to ``out`` (.npz)."""
    from stealbench.victim.remote import RemoteVictim

    # A timeout beyond the kill test's wait: a held request is never given up and retried
    # (that would end the run on its own, not by the kill).
    victim = RemoteVictim.from_spec("toy", spec(url, timeout_s=300), ledger)
    answers = victim.posteriors(query_images(n, seed))
    s = victim.stats
    np.savez(
        out,
        answers=answers,
        images_sent=s.images_sent,
        requests=s.requests,
        retries=s.retries,
        ledger_hits=s.ledger_hits,
    )


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    url, ledger, n, seed, out = sys.argv[1:6]
    attack(url, ledger, int(n), int(seed), out)
