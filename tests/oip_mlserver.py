"""MLServer (Seldon's Open Inference Protocol server) on loopback, in a virtualenv of its own.

MLServer 1.7.1 pins fastapi 0.115 and starlette 0.46, which clash with this project's pins, so
it gets its own virtualenv, built once and cached under ``~/.cache/stealbench-envtest``
(``STEALBENCH_ENVTEST_CACHE`` moves it), keyed by the requirements and the interpreter. Torch is
not installed there a second time (a CUDA build of several GB): a ``.pth`` file appends this
interpreter's site-packages to the end of that venv's path, so MLServer's own packages come
first and torch comes from here. The model is served by MLServer's documented custom-runtime
extension (tests/fixtures/mlserver/runtime.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

REQUIREMENTS = ["mlserver==1.7.1", "numpy==2.3.5"]
RUNTIME = Path(__file__).parent / "fixtures" / "mlserver" / "runtime.py"
CACHE = Path(
    os.environ.get("STEALBENCH_ENVTEST_CACHE", Path.home() / ".cache" / "stealbench-envtest")
)


def mlserver_venv() -> Path:
    """The cached virtualenv with MLServer (built on first use: about 30 s)."""
    key = hashlib.sha256(
        json.dumps([REQUIREMENTS, sys.version, sysconfig.get_paths()["purelib"]]).encode()
    ).hexdigest()[:16]
    venv = CACHE / f"mlserver-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"mlserver-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "ready").exists():
            shutil.rmtree(venv, ignore_errors=True)
            base = getattr(sys, "_base_executable", sys.executable)
            subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
            subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *REQUIREMENTS],
                check=True,
                timeout=900,
            )
            purelib = subprocess.run(
                [
                    str(venv / "bin" / "python"),
                    "-c",
                    "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            # Appended after the venv's own site-packages: MLServer's pins win, torch is ours.
            Path(purelib, "zz_stealbench_torch.pth").write_text(
                sysconfig.get_paths()["purelib"] + "\n"
            )
            (venv / "ready").touch()
    return venv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlserver(torchscript_file: Path, workdir: Path, name: str = "victim", timeout_s: float = 120):
    """Serve a TorchScript classifier with MLServer on 127.0.0.1; yields the base URL."""
    venv = mlserver_venv()
    models = workdir / "mlserver"
    model_dir = models / name
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(RUNTIME, model_dir / "runtime.py")
    shutil.copy(torchscript_file, model_dir / "model.pt")
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": name,
                "implementation": "runtime.TorchScriptClassifier",
                "parameters": {"uri": "./model.pt"},
            }
        )
    )
    port = _free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": _free_port(),
        "metrics_port": _free_port(),
        "metrics_endpoint": None,
        "parallel_workers": 0,
    }
    (models / "settings.json").write_text(json.dumps(settings))
    log = open(workdir / "mlserver.log", "w")
    process = subprocess.Popen(
        [str(venv / "bin" / "mlserver"), "start", "."],
        cwd=models,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": ""},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"MLServer did not start: {(workdir / 'mlserver.log').read_text()[-3000:]}"
                )
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/v2/models/{name}/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
