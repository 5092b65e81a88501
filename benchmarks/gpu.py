"""The GPU path, measured: one paper-sized cell on `device: cuda`.

Generates an ImageFolder fixture of 224x224 RGB images (class-dependent patterns, no network),
materialises it with stealbench's own reader, then

1. throughput: trains a torchvision ResNet-34 surrogate (scratch) with stealbench's training
   loop (``models.training.fit`` on uint8 images sent to the device per batch) and with a bare
   PyTorch loop on the same GPU (float tensors already on the device, the same model, batch,
   optimiser and loss); reports images per second of each and their ratio (target >= 0.9),
   and peak GPU memory;
2. agreement: trains the cell (ResNet-18, 3 seeds) twice and checks that the two runs' mean
   accuracies agree within the seeds' 95% confidence interval (cuDNN picks algorithms per run
   and some backward kernels are nondeterministic, so bit-identical results are not expected).

    .venv/bin/python benchmarks/gpu.py                 # on a machine with a CUDA GPU
    .venv/bin/python benchmarks/gpu.py --device cpu --images 64 --steps 3 --no-write   # dry run

Written to benchmarks/results.md between ``<!-- gpu:start -->`` and ``<!-- gpu:end -->``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sections import write_section  # noqa: E402


def make_fixture(root: Path, classes: int, per_class: int, size: int = 256) -> None:
    """An ImageFolder tree: per class a colour and a stripe frequency, plus noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = rng.integers(40, 215, size=3)
        for i in range(per_class):
            stripes = 0.5 + 0.5 * np.sin((xx + yy * (c % 3)) * (c + 1) * 0.05 + rng.uniform(0, 6))
            image = colour[None, None, :] * stripes[..., None] + rng.normal(0, 20, (size, size, 3))
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")


def materialise(root: Path, out: Path):
    from stealbench.data import datasets, sources

    spec = {
        "source": "imagefolder",
        "options": {"root": str(root), "image_size": 224, "test_fraction": 0.2},
        "splits": {"train": -1, "val": 0.1, "test": -1},
    }
    from stealbench import config

    # validated inside a minimal config, so the dataset gets the schema's defaults
    spec = config.validate(
        {
            "datasets": {"fixture": spec, "noise": {"source": "noise", "splits": {"pool": -1}}},
            "victims": {"v": {"dataset": "fixture", "arch": "resnet18", "attacks": ["a"]}},
            "attacks": {"a": {"strategy": "random", "pool": "noise"}},
            "surrogates": {"budgets": [2]},
        }
    )["datasets"]["fixture"]
    sources.materialise_to("fixture", spec, 0, out)
    return datasets.load(out)


def throughput(images, labels, device: str, steps: int, batch: int) -> dict:
    import numpy as np
    import torch

    from stealbench.models.architectures import create_model
    from stealbench.models.training import TrainConfig, fit, soft_cross_entropy

    classes = int(labels.max()) + 1
    n = min(len(images), steps * batch)
    targets = np.eye(classes, dtype=np.float32)[labels[:n]]
    cfg = TrainConfig(epochs=1, batch_size=batch, lr=0.01, optimizer="sgd", momentum=0.9)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    # stealbench's loop (one warm-up epoch first: cuDNN autotuning, allocator)
    model = create_model("resnet34", classes, device, seed=0)
    fit(model, images[:batch], targets[:batch], None, None, cfg, 0)
    sync()
    start = time.perf_counter()
    fit(model, images[:n], targets, None, None, cfg, 0)
    sync()
    ours = n / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    # the bare loop: float tensors already on the device
    model = create_model("resnet34", classes, device, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.from_numpy(np.asarray(images[:n])).to(device).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(targets).to(device)
    model.train()
    for warm in (True, False):
        sync()
        start = time.perf_counter()
        for i in range(0, batch if warm else n, batch):
            loss = soft_cross_entropy(model(x[i : i + batch]), y[i : i + batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync()
    bare = n / (time.perf_counter() - start)
    return {"ours_img_s": ours, "bare_img_s": bare, "ratio": ours / bare, "peak_gib": peak}


def agreement(dataset, device: str, epochs: int) -> dict:
    """The same cell (ResNet-18 on the fixture, 3 seeds) twice: do the means agree?"""
    import numpy as np

    from stealbench.models.training import TrainConfig
    from stealbench.models.victims import train_victim
    from stealbench.report.tables import ci95

    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=0.01, optimizer="sgd", momentum=0.9)
    runs = []
    for _ in range(2):
        accs = [train_victim(dataset, "resnet18", cfg, seed, device)[3] for seed in (0, 1, 2)]
        runs.append(accs)
    means = [float(np.mean(r)) for r in runs]
    half = max(ci95(runs[0]), ci95(runs[1]))
    return {"runs": runs, "means": means, "ci95": half, "agree": abs(means[0] - means[1]) <= half}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--images", type=int, default=200, help="images per class")
    parser.add_argument("--steps", type=int, default=30, help="training steps timed")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the agreement cell")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --device cpu")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_fixture(tmp / "tree", args.classes, args.images)
        dataset = materialise(tmp / "tree", tmp / "fixture.parquet")
        images, labels = dataset.split("train")
        speed = throughput(images, labels, args.device, args.steps, args.batch)
        agree = agreement(dataset, args.device, args.epochs)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    text = (
        f"## GPU path\n\n`.venv/bin/python benchmarks/gpu.py`, run "
        f"{time.strftime('%Y-%m-%d %H:%M')} on {name} (torch {torch.__version__}).\n\n"
        f"| measure | value |\n|---|---|\n"
        f"| stealbench loop, ResNet-34 at 224x224, batch {args.batch} | "
        f"{speed['ours_img_s']:.0f} img/s |\n"
        f"| bare PyTorch loop, same model and batch | {speed['bare_img_s']:.0f} img/s |\n"
        f"| ratio (target >= 0.9) | **{speed['ratio']:.2f}** |\n"
        f"| peak GPU memory | {speed['peak_gib']:.2f} GiB |\n"
        f"| two runs of a 3-seed ResNet-18 cell, mean accuracy | "
        f"{agree['means'][0]:.3f} and {agree['means'][1]:.3f} (95% CI ± {agree['ci95']:.3f}): "
        f"**{'agree' if agree['agree'] else 'differ'}** |\n"
    )
    print(text)
    if not args.no_write:
        write_section("gpu", text)


if __name__ == "__main__":
    main()
