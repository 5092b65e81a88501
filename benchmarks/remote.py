"""The remote-victim client's speed: images per second through HTTP against the same victim
in-process, on loopback.

One victim (an untrained lenet, 10 classes, 28x28x1: its speed does not depend on its
weights) is timed two ways at batch sizes 1, 32 and 256:

- in-process: ``predict_proba`` on uint8 images, one torch thread;
- over HTTP: ``RemoteVictim.posteriors`` (prepare, hash, ledger lookup, request, check,
  commit to the ledger with ``synchronous=FULL``) against ``stealbench serve`` in another
  process (one torch thread) on 127.0.0.1, every image distinct so every image is sent; at
  concurrency 1 (one request at a time: the latency path) and 4 (the config's default), with
  the binary tensor extension (what the client uses when the server lists it) and, at batch
  256, also at concurrency 2 and in JSON; best of two runs, each on new images.

The client's overhead per request is the HTTP time per request at concurrency 1 minus the
in-process time of one batch: what a query costs beyond the model. Target: at batch 256, at
least half the in-process rate. Printed and written to benchmarks/results.md between
``<!-- remote:start -->`` and ``<!-- remote:end -->``.

    .venv/bin/python benchmarks/remote.py              # ~1 min on 2 cores
    .venv/bin/python benchmarks/remote.py --no-write
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sections import write_section  # noqa: E402

MODEL, CLASSES = "bench-lenet", 10
BATCHES = {1: 400, 32: 4096, 256: 8192}  # batch size -> images timed


def victim():
    import torch

    from stealbench.models.architectures import create_model

    torch.set_num_threads(1)
    return create_model("lenet", CLASSES, seed=0).eval()


def images(n: int, seed: int):
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)


def serve() -> None:
    """The server process: prints its URL, serves until its stdin closes."""
    from stealbench.models.training import predict_proba
    from stealbench.serve.app import ServedModel, create_app
    from stealbench.serve.runner import background

    model = victim()
    served = ServedModel(MODEL, lambda x: predict_proba(model, x, 1024), (28, 28, 1), CLASSES)
    with background(create_app([served])) as url:
        print(url, flush=True)
        sys.stdin.read()


def in_process(batch: int, n: int) -> float:
    """Seconds for ``n`` images at ``batch`` in-process (best of 3)."""
    from stealbench.models.training import predict_proba

    model, x = victim(), images(n, seed=batch)
    predict_proba(model, x[:batch], batch)  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        predict_proba(model, x, batch)
        best = min(best, time.perf_counter() - start)
    return best


def over_http(url: str, batch: int, n: int, concurrency: int, binary: bool, seed: int) -> dict:
    """Seconds and requests for ``n`` new images at ``batch`` through a fresh client."""
    from stealbench.victim.remote import RemoteVictim

    spec = {
        "classes": CLASSES,
        "input": {"size": 28, "channels": 1, "normalize": "none"},
        "remote": {"url": url, "model": MODEL, "batch_size": batch, "concurrency": concurrency},
    }
    with tempfile.TemporaryDirectory() as tmp:
        client = RemoteVictim.from_spec("bench", spec, Path(tmp) / "ledger.sqlite", binary=binary)
        client.posteriors(images(batch, seed=10_000 + seed))  # warm-up (connections)
        x = images(n, seed=seed)
        start = time.perf_counter()
        client.posteriors(x)
        seconds = time.perf_counter() - start
        requests = client.stats.requests - 1
        client.close()
    return {"seconds": seconds, "requests": requests}


def measure() -> list[dict]:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    try:
        url = server.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"the server did not start (said {url!r})")
        rows = []
        seed = 0
        for batch, n in BATCHES.items():
            local = in_process(batch, n)
            runs = [(1, True), (4, True)]
            if batch == 256:
                runs = [(1, True), (2, True), (4, True), (4, False), (1, False)]
            for concurrency, binary in runs:
                tries = []
                for _ in range(2):  # best of two, each on new images through a new ledger
                    seed += 1
                    tries.append(over_http(url, batch, n, concurrency, binary, seed))
                http = min(tries, key=lambda t: t["seconds"])
                rows.append(
                    {
                        "batch": batch,
                        "images": n,
                        "concurrency": concurrency,
                        "transport": "binary" if binary else "JSON",
                        "local_rate": n / local,
                        "http_rate": n / http["seconds"],
                        "ratio": local / http["seconds"],
                        "ms_per_request": 1000 * http["seconds"] / http["requests"],
                        "local_ms_per_batch": 1000 * local / (n / batch),
                    }
                )
                row = rows[-1]
                print(
                    f"batch {batch:>3} x{concurrency} {row['transport']:>6}: in-process "
                    f"{row['local_rate']:8.0f} img/s, HTTP {row['http_rate']:8.0f} img/s "
                    f"(ratio {row['ratio']:.2f}), {row['ms_per_request']:.2f} ms/request",
                    flush=True,
                )
        return rows
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def section(rows: list[dict]) -> str:
    lines = [
        "## Remote victims: the Open Inference Protocol client on loopback",
        "",
        f"`.venv/bin/python benchmarks/remote.py`, run {time.strftime('%Y-%m-%d %H:%M')} on "
        f"{platform.machine()}, Python {platform.python_version()}: an untrained lenet "
        "(28x28x1, 10 classes) in-process (one torch thread) and through "
        "`RemoteVictim.posteriors` (ledger included: hashing, SQLite commits with "
        "`synchronous=FULL`) against `stealbench serve` in another process (one torch thread) "
        "on 127.0.0.1; every image distinct, so every image is sent; best of two runs. "
        "Overhead per request: "
        "the HTTP time of a request at concurrency 1 minus the in-process time of its batch.",
        "",
        "| batch | concurrency | transport | in-process img/s | HTTP img/s | HTTP / in-process "
        "| ms per request | overhead ms per request |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        overhead = (
            f"{r['ms_per_request'] - r['local_ms_per_batch']:.2f}" if r["concurrency"] == 1 else ""
        )
        lines.append(
            f"| {r['batch']} | {r['concurrency']} | {r['transport']} | {r['local_rate']:.0f} "
            f"| {r['http_rate']:.0f} | {r['ratio']:.2f} | {r['ms_per_request']:.2f} "
            f"| {overhead} |"
        )
    best = max((r for r in rows if r["batch"] == 256), key=lambda r: r["ratio"])
    verdict = "met" if best["ratio"] >= 0.5 else "not met"
    lines += [
        "",
        f"Target (batch 256: at least half the in-process rate): **{verdict}**, best ratio "
        f"**{best['ratio']:.2f}** (concurrency {best['concurrency']}, {best['transport']}). "
        "The machine is shared: compare ratios taken in one run.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve()
    text = section(measure())
    print(text)
    if not args.no_write:
        write_section("remote", text)


if __name__ == "__main__":
    main()
