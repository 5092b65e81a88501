"""Per-architecture costs for sizing cluster jobs (:mod:`stealbench.config.resources`).

For every registered architecture at the input size it is fed (its own, and any
``input_size`` of the shipped configs), on one device:

- seconds per image of a training step through stealbench's loop (``models.training.fit``
  on uint8 images, soft targets, SGD), after one warm-up step;
- seconds per image of inference (``models.training.predict_proba``);
- the peak resident memory (MB) the training steps add to the process, at the batch size
  used (each architecture runs in a process of its own, so the peak is its own);
- forward FLOPs per image (``torch.utils.flop_counter``), which scale estimates.

Written to ``src/stealbench/config/costs.json`` under the device kind (cpu, cuda), keyed
``<arch>@<size>``, each entry with ``measured_on`` (the device's name, torch version, date,
threads). Entries of the other device kind are kept.

No GPU measurement ships yet: the cuda entries are estimates, marked ``estimated_from``,
scaled by forward FLOPs from NVIDIA's published single-GPU ResNet-50 throughput
(:data:`CUDA_REFERENCE`). Running this on a GPU replaces them with measurements:

    .venv/bin/python benchmarks/costs.py --device cuda          # on a GPU machine
    nice .venv/bin/python benchmarks/costs.py --device cpu      # one CPU thread, ~5 minutes
    .venv/bin/python benchmarks/costs.py --device cpu --archs lenet --no-write   # a quick look

CPU timings use one thread, as a job gets one CPU (``threads: 1`` in rules/*.smk).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

COSTS_PATH = ROOT / "src" / "stealbench" / "config" / "costs.json"

# The published figure the cuda estimates are scaled from: torchvision-style ResNet-50 v1.5
# at 224x224 on one V100 16GB in FP32 (the slowest precision and the older card of the
# table, so the estimate errs long), NVIDIA DeepLearningExamples.
CUDA_REFERENCE = {
    "source": (
        "NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md "
        "(commit 291f0d02e815b148fa5c2b81bf07aa3552142895): 'Training performance: NVIDIA "
        "DGX-1 16GB (8x V100 16GB)', 1 GPU, FP32: 367 img/s; 'Inference performance: "
        "NVIDIA DGX-1 (1x V100 16GB)', FP32, batch 64: 1200 img/s"
    ),
    "arch": "resnet50",
    "size": 224,
    "device": "NVIDIA V100 16GB, FP32",
    "train_images_per_second": 367.0,
    "infer_images_per_second": 1200.0,
    "scaling": "seconds per image x this architecture's forward FLOPs / ResNet-50's at 224",
}


def config_sizes() -> dict[str, set[int]]:
    """The input sizes the shipped configs feed each architecture: its own, plus every
    ``input_size`` a config sets (surrogates', victims')."""
    import yaml

    from stealbench.models.architectures import ARCHITECTURES

    sizes = {arch: {spec.size} for arch, spec in ARCHITECTURES.items()}
    for path in [ROOT / "config.yaml", *sorted((ROOT / "configs").rglob("*.yaml"))]:
        config = yaml.safe_load(path.read_text()) or {}
        size = (config.get("surrogates") or {}).get("input_size")
        for arch in (config.get("surrogates") or {}).get("archs", []):
            if size and arch in sizes:
                sizes[arch].add(size)
        for victim in (config.get("victims") or {}).values():
            if victim.get("input_size") and victim.get("arch") in sizes:
                sizes[victim["arch"]].add(victim["input_size"])
    return sizes


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    for line in (
        Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    ):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def forward_flops(arch: str, size: int) -> float:
    """Forward FLOPs per image (multiply-adds count 2), on the CPU."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from stealbench.models.architectures import create_model, get_spec

    model = create_model(arch, 10, input_size=size, seed=0).eval()
    x = torch.rand(1, get_spec(arch).channels, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def measure_one(arch: str, size: int, device: str, batch: int, steps: int) -> dict:
    """Time ``steps`` training steps and inference at ``batch`` (one process per arch)."""
    import numpy as np
    import torch

    from stealbench.models.architectures import create_model, get_spec
    from stealbench.models.training import TrainConfig, fit, predict_proba

    if device == "cpu":
        torch.set_num_threads(1)
    spec = get_spec(arch)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch * steps, size, size, spec.channels), dtype=np.uint8)
    targets = np.full((len(images), 10), 0.1, dtype=np.float32)
    model = create_model(arch, 10, device, input_size=size, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=batch, lr=0.001, optimizer="sgd")

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fit(model, images[:batch], targets[:batch], None, None, cfg, 0, desc="warm-up")
    sync()
    start = time.perf_counter()
    fit(model, images, targets, None, None, cfg, 0, desc="timed")
    sync()
    train = (time.perf_counter() - start) / len(images)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before_mb
    predict_proba(model, images[:batch], batch)
    sync()
    start = time.perf_counter()
    predict_proba(model, images, batch)
    sync()
    infer = (time.perf_counter() - start) / len(images)
    params = sum(p.numel() for p in model.parameters())
    return {
        "train_seconds_per_image": train,
        "infer_seconds_per_image": infer,
        "train_batch": batch,
        "train_peak_mb": round(max(peak_mb, 0.0), 1),
        "params": params,
        "forward_flops": forward_flops(arch, size),
    }


def plan(sizes: dict[str, set[int]], archs: list[str] | None) -> list[tuple[str, int]]:
    return [
        (arch, size)
        for arch in sorted(sizes)
        if archs is None or arch in archs
        for size in sorted(sizes[arch])
    ]


def batch_and_steps(size: int, device: str, quick: bool) -> tuple[int, int]:
    """Few images where a step is slow (224x224 on one CPU thread), more where it is fast."""
    if device == "cpu" and size >= 128:
        return 4, 1 if quick else 2
    return 64, 2 if quick else 5


def cuda_estimate(entry: dict, reference: dict) -> dict:
    """A cuda entry scaled from the published ResNet-50 throughput by forward FLOPs."""
    ratio = entry["forward_flops"] / reference["forward_flops"]
    return {
        "train_seconds_per_image": ratio / CUDA_REFERENCE["train_images_per_second"],
        "infer_seconds_per_image": ratio / CUDA_REFERENCE["infer_images_per_second"],
        "train_batch": entry["train_batch"],
        "train_peak_mb": entry["train_peak_mb"],
        "params": entry["params"],
        "forward_flops": entry["forward_flops"],
        "estimated_from": {
            **CUDA_REFERENCE,
            "flops_ratio": ratio,
            "date": datetime.date.today().isoformat(),
            "note": (
                "not a measurement: run benchmarks/costs.py --device cuda on a GPU to replace "
                "it; host memory (train_peak_mb) is the CPU measurement"
            ),
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--archs", nargs="*", help="only these architectures")
    parser.add_argument("--quick", action="store_true", help="fewer steps (a rougher figure)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write")
    parser.add_argument("--one", nargs=2, metavar=("ARCH", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # the child process of one architecture: print its JSON
        arch, size = args.one[0], int(args.one[1])
        print(json.dumps(measure_one(arch, size, args.device, args.batch, args.steps)))
        return 0

    import torch

    stamp = {
        "device": device_name(args.device),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "threads": 1 if args.device == "cpu" else None,
    }
    costs = json.loads(COSTS_PATH.read_text()) if COSTS_PATH.exists() else {}
    measured = costs.setdefault(args.device, {})
    for arch, size in plan(config_sizes(), args.archs):
        batch, steps = batch_and_steps(size, args.device, args.quick)
        run = subprocess.run(
            [sys.executable, __file__, "--device", args.device, "--one", arch, str(size)]
            + ["--batch", str(batch), "--steps", str(steps)],
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            print(f"{arch}@{size}: failed\n{run.stderr[-2000:]}", file=sys.stderr)
            return 1
        entry = {**json.loads(run.stdout.strip().splitlines()[-1]), "measured_on": stamp}
        measured[f"{arch}@{size}"] = entry
        print(
            f"{arch}@{size}: train {entry['train_seconds_per_image'] * 1e3:.2f} ms/img, "
            f"infer {entry['infer_seconds_per_image'] * 1e3:.2f} ms/img, "
            f"+{entry['train_peak_mb']:.0f} MB at batch {batch}",
            flush=True,
        )
    if args.device == "cpu":
        # The cuda entries stay measured where a GPU run wrote them, else are re-estimated.
        reference = measured.get(f"{CUDA_REFERENCE['arch']}@{CUDA_REFERENCE['size']}")
        cuda = costs.setdefault("cuda", {})
        for key, entry in measured.items():
            if reference and "measured_on" not in cuda.get(key, {}):
                cuda[key] = cuda_estimate(entry, reference)
    # The size each architecture is fed when a config sets no input_size (plan time has no
    # torch to ask the registry).
    from stealbench.models.architectures import ARCHITECTURES

    costs["native_sizes"] = {arch: spec.size for arch, spec in ARCHITECTURES.items()}
    costs = {kind: dict(sorted(entries.items())) for kind, entries in sorted(costs.items())}
    text = json.dumps(costs, indent=1) + "\n"
    if args.no_write:
        print(text)
    else:
        COSTS_PATH.write_text(text)
        print(f"wrote {COSTS_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
