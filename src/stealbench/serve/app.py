"""The Open Inference Protocol's REST endpoints (KServe V2) over stealbench victims.

Routes (https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/):
``GET /v2``, ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2/models/{name}``,
``GET /v2/models/{name}/ready``, ``POST /v2/models/{name}/infer`` (also under
``/versions/{version}``), and Triton's statistics extension ``GET /v2/models/{name}/stats``,
whose ``inference_count`` is the number of images answered: the owner's bill.

A request carries one input tensor of shape [N, C, H, W], FP32 in [0, 1] or UINT8. Departure:
the service quantises FP32 pixels to 8 bits (``round(255 x)``), as an image API that receives
PNG files would: stealbench's defenses and monitors look at uint8 images, and stealbench's own
client sends pixels that are exactly k/255, so nothing is lost for it.

Tensors travel as JSON or, with Triton's binary tensor data extension (the
``Inference-Header-Content-Length`` header: a JSON header, then the raw little-endian bytes of
each tensor whose ``parameters.binary_data_size`` is set), as bytes: JSON spends most of a
request's time printing and parsing floats. Answers come back binary when the request asks for
it (``parameters.binary_data_output`` or ``outputs[i].parameters.binary_data``), as
tritonclient does.

Who asks is the business of a :class:`Gate`: it names the client of a request (API keys),
may refuse it (a monitor that flagged it), and sees every answer served to it (accounting,
per-client monitors, watermark records). :class:`Gate` itself lets everyone in as one client.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

OUTPUT_NAME = "probabilities"


class Refused(Exception):
    """A request the service will not answer: an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class ServedModel:
    """One victim as the service answers for it: its posteriors for uint8 (N, H, W, C)
    images, then ``defense`` (a :class:`~stealbench.defense.registry.Defense` or None), then
    the ``granularity`` (:func:`stealbench.attack.api.serve`)."""

    name: str
    posteriors: Callable[[np.ndarray], np.ndarray]
    image_shape: tuple[int, int, int]  # (H, W, C) of the images it takes
    num_classes: int
    granularity: str = "probs"
    defense: Any = None
    version: str = "1"
    info: dict = field(default_factory=dict)  # shown in the model's metadata

    def answer(self, images: np.ndarray, defense: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(the victim's posteriors, the answers served) for uint8 images. ``defense``: this
        request's defense in place of the model's own (a per-client instance: DAWN keyed per
        client, :meth:`Gate.defense`); None applies ``self.defense``."""
        from ..attack.api import serve

        probs = self.posteriors(images)
        return probs, serve(probs, images, self.granularity, defense or self.defense)

    def metadata(self) -> dict:
        h, w, c = self.image_shape
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "stealbench",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, c, h, w]}],
            "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, self.num_classes]}],
            "parameters": {"granularity": self.granularity, **self.info},
        }


class Gate:
    """Who may ask, and what the owner keeps of what they asked (see the module docstring).
    The base class lets everyone in as one client, ``anonymous``, and counts."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Counter = Counter()  # client -> requests answered
        self.images: Counter = Counter()  # client -> images answered

    def client(self, headers: dict) -> str:
        """The client a request comes from (``headers``: lower-case names), or Refused."""
        return "anonymous"

    def turn(self, client: str, model: ServedModel):
        """A context manager held around one request's ``before``, answer and ``after`` (in
        the thread pool): a gate whose per-client state depends on the order of a client's
        requests (a stream monitor) serialises them here. The base class holds nothing."""
        return contextlib.nullcontext()

    def before(self, client: str, model: ServedModel, images: np.ndarray) -> None:
        """Raise :class:`Refused` to refuse ``client``'s request before it is answered."""

    def defense(self, client: str, model: ServedModel) -> Any:
        """The defense that answers ``client`` (None: the model's own, ``model.defense``)."""
        return None

    def after(
        self,
        client: str,
        model: ServedModel,
        images: np.ndarray,
        probs: np.ndarray,
        answers: np.ndarray,
        request_id: str = "",
    ) -> dict:
        """Account for a request answered (``request_id``: the request's ``id``, or "");
        returns parameters added to the response."""
        with self._lock:
            self.requests[client] += 1
            self.images[client] += len(images)
        return {}

    def stats(self) -> dict:
        with self._lock:
            return {
                client: {"requests": self.requests[client], "images": self.images[client]}
                for client in self.requests
            }

    def stats_for(self, client: str, model: str | None = None) -> dict:
        """What ``client`` may see of :meth:`stats` for ``model`` (the statistics route; the
        base class counts no model apart and shows everything)."""
        return self.stats()


BINARY_HEADER = "inference-header-content-length"
_DTYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}


def parse_request(body: bytes, headers: dict) -> tuple[dict, bytes]:
    """(the JSON part, the binary part) of an inference request body."""
    split = headers.get(BINARY_HEADER)
    try:
        n = int(split) if split is not None else len(body)
        if not 0 <= n <= len(body):
            raise ValueError
        request = json.loads(body[:n])
        if not isinstance(request, dict) or not isinstance(request["inputs"][0], dict):
            raise TypeError
    except (ValueError, KeyError, IndexError, TypeError):
        raise Refused(400, "the body must be an inference request: {inputs: [tensor]}") from None
    return request, body[n:]


def decode_images(tensor: dict, model: ServedModel, binary: bytes = b"") -> np.ndarray:
    """The uint8 (N, H, W, C) images of a request's input tensor; Refused (400) otherwise.
    ``binary``: the request's bytes after its JSON header (the binary extension)."""
    h, w, c = model.image_shape
    shape, datatype, data = tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
    if not isinstance(shape, list) or len(shape) != 4 or list(shape[1:]) != [c, h, w]:
        raise Refused(400, f"input shape must be [N, {c}, {h}, {w}], got {shape}")
    if datatype not in _DTYPES:
        raise Refused(400, f"input datatype must be FP32 or UINT8, got {datatype!r}")
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    try:
        if size is not None:
            if int(size) != len(binary):
                raise ValueError
            values = np.frombuffer(binary, dtype=_DTYPES[datatype]).astype(np.float64)
        else:
            values = np.asarray(data, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise Refused(
            400, "input data must be a flat list of numbers or binary_data_size bytes"
        ) from None
    if values.size != int(np.prod(shape)) or shape[0] < 1:
        raise Refused(400, f"input data holds {values.size} values; shape {shape} needs more")
    if not np.isfinite(values).all():
        raise Refused(400, "input data holds NaN or infinite values")
    if datatype == "FP32":
        if values.min() < 0 or values.max() > 1:
            raise Refused(400, "FP32 input must lie in [0, 1]")
        values = np.rint(values * 255.0)
    elif values.min() < 0 or values.max() > 255:
        raise Refused(400, "UINT8 input must lie in [0, 255]")
    return values.astype(np.uint8).reshape(shape).transpose(0, 2, 3, 1).copy()


def wants_binary(request: dict) -> bool:
    """Whether a request asks for its answers as bytes (binary tensor data extension)."""
    if (request.get("parameters") or {}).get("binary_data_output"):
        return True
    return any(
        (o.get("parameters") or {}).get("binary_data")
        for o in request.get("outputs") or []
        if isinstance(o, dict)
    )


def create_app(models: list[ServedModel], gate: Gate | None = None):
    """The FastAPI app that serves ``models`` behind ``gate`` (default: open to everyone)."""
    gate = gate or Gate()
    by_name = {m.name: m for m in models}
    app = FastAPI(title="stealbench", docs_url=None, redoc_url=None)
    app.state.gate, app.state.models = gate, by_name

    def error(status: int, message: str, headers: dict | None = None):
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def lookup(name: str) -> ServedModel:
        if name not in by_name:
            raise Refused(404, f"no model {name!r}; served: {', '.join(by_name)}")
        return by_name[name]

    @app.exception_handler(Refused)
    async def refused(_request, exc: Refused):
        return error(exc.status, exc.message, exc.headers)

    @app.get("/v2")
    def server_metadata():
        from importlib.metadata import version

        return {
            "name": "stealbench",
            "version": version("stealbench"),
            "extensions": ["statistics", "binary_tensor_data"],
        }

    @app.get("/v2/health/live")
    def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    def ready():
        return {"ready": True}

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    def model_metadata(name: str, version: str | None = None):
        return lookup(name).metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    def model_ready(name: str, version: str | None = None):
        lookup(name)
        return {"name": name, "ready": True}

    @app.get("/v2/models/{name}/stats")
    def model_stats(name: str, request: Request):
        model = lookup(name)
        client = gate.client({k.lower(): v for k, v in request.headers.items()})
        clients = gate.stats_for(client, name)
        return {
            "model_stats": [
                {
                    "name": name,
                    "version": model.version,
                    "inference_count": sum(c["images"] for c in clients.values()),
                    "execution_count": sum(c["requests"] for c in clients.values()),
                    "clients": clients,
                }
            ]
        }

    # The gate and the model run in the thread pool (torch releases the GIL; a gate may write
    # to disk), the JSON on the event loop.
    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None):
        model = lookup(name)
        headers = {k.lower(): v for k, v in request.headers.items()}
        client = gate.client(headers)
        body, binary = parse_request(await request.body(), headers)
        request_id = str(body.get("id", ""))
        images = decode_images(body["inputs"][0], model, binary)

        def respond():
            with gate.turn(client, model):
                gate.before(client, model, images)
                probs, answers = model.answer(images, gate.defense(client, model))
                return answers, gate.after(client, model, images, probs, answers, request_id)

        answers, parameters = await run_in_threadpool(respond)
        output = {"name": OUTPUT_NAME, "shape": list(answers.shape), "datatype": "FP32"}
        raw = b""
        if wants_binary(body):
            raw = np.ascontiguousarray(answers, dtype="<f4").tobytes()
            output["parameters"] = {"binary_data_size": len(raw)}
        else:  # float32 -> float64 -> repr: the exact float32 value comes back
            output["data"] = answers.astype(np.float64).ravel().tolist()
        response = {
            "model_name": model.name,
            "model_version": model.version,
            "id": request_id,
            "outputs": [output],
        }
        if parameters:
            response["parameters"] = parameters
        head = json.dumps(response).encode()
        if not raw:
            return Response(head, media_type="application/json")
        return Response(
            head + raw,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(len(head))},
        )

    return app
