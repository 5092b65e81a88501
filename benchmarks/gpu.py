"""The GPU path, measured: one paper-sized cell on `device: cuda`.

Generates an ImageFolder fixture of RGB images (class-dependent patterns, no network),
materialises it with stealbench's own reader (224x224), opens it lazily (as a paper-sized
transfer set is), then

1. throughput: trains a torchvision ResNet-34 (scratch) with stealbench's training loop
   (``models.training.fit``: uint8 rows read from the Parquet file by the background loader,
   pinned, copied without blocking and converted on the device) and with a bare PyTorch loop
   on the same GPU (float tensors already on the device, the same model, layout, optimiser,
   loss and precision), at fp32 and in mixed precision (``training.precision`` bf16 and fp16),
   at batch sizes 32 to 256; reports images per second of each, their ratio (target >= 0.9)
   and peak GPU memory; and stealbench's rate without the channels-last layout;
2. agreement: trains a cell (ResNet-18, 3 seeds) twice and checks that the two runs' mean
   accuracies agree within the seeds' 95% confidence interval (cuDNN picks algorithms per run
   and some backward kernels are nondeterministic, so bit-identical results are not expected).

    .venv/bin/python benchmarks/gpu.py --quick         # on a CUDA GPU, a few minutes
    .venv/bin/python benchmarks/gpu.py                 # longer timings, 3-epoch agreement
    .venv/bin/python benchmarks/gpu.py --device cpu --quick --no-write --classes 2 \\
        --images 8 --size 16 --arch lenet --agree-arch lenet --steps 1 --batches 4 8  # dry run

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


def materialise(root: Path, out: Path, size: int = 224):
    from stealbench.data import datasets, sources

    spec = {
        "source": "imagefolder",
        "options": {"root": str(root), "image_size": size, "test_fraction": 0.2},
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


PRECISIONS = ("fp32", "bf16", "fp16")
# --quick: a few minutes on one GPU, fixture included; the full run times longer.
QUICK = {"classes": 8, "images": 64, "steps": 12, "epochs": 1}
FULL = {"classes": 10, "images": 200, "steps": 30, "epochs": 3}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak(device: str) -> float:
    import torch

    if not device.startswith("cuda"):
        return float("nan")
    return torch.cuda.max_memory_allocated() / 2**30


def _reset(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def ours(images, targets, arch, device, batch, precision, steps, channels_last="auto") -> dict:
    """stealbench's loop (fit) on the lazy store: images per second after a warm-up epoch
    (cuDNN's algorithm choice, the allocator), over about ``steps`` steps (whole epochs)."""
    from stealbench.models.architectures import create_model
    from stealbench.models.training import TrainConfig, fit

    n, classes = len(images), targets.shape[1]
    epochs = max(1, round(steps * batch / n))
    cfg = dict(batch_size=batch, lr=0.01, optimizer="sgd", momentum=0.9, precision=precision)
    cfg["channels_last"] = channels_last
    _reset(device)
    model = create_model(arch, classes, device, seed=0)
    fit(model, images, targets, None, None, TrainConfig(epochs=1, **cfg), 0)
    _sync(device)
    start = time.perf_counter()
    fit(model, images, targets, None, None, TrainConfig(epochs=epochs, **cfg), 0)
    _sync(device)
    return {"img_s": epochs * n / (time.perf_counter() - start), "peak_gib": _peak(device)}


def bare(images, targets, arch, device, batch, precision, steps) -> dict:
    """A bare PyTorch loop: float tensors already on the device, torch.optim.SGD, the same
    model, layout (channels-last where fit's auto picks it), loss and autocast as fit."""
    import contextlib

    import numpy as np
    import torch

    from stealbench.models.architectures import create_model
    from stealbench.models.training import PRECISIONS as DTYPES
    from stealbench.models.training import TrainConfig, soft_cross_entropy, uses_channels_last

    n, kind = len(images), device.split(":")[0]
    total = max(1, round(steps * batch / n)) * n
    _reset(device)
    model = create_model(arch, targets.shape[1], device, seed=0)
    layout = torch.contiguous_format
    if uses_channels_last(model, TrainConfig(), torch.device(device)):
        layout = torch.channels_last
        model = model.to(memory_format=layout)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.from_numpy(np.asarray(images)).to(device).permute(0, 3, 1, 2).float() / 255
    x = x.contiguous(memory_format=layout)
    y = torch.from_numpy(targets).to(device)
    dtype = DTYPES[precision]
    scaler = torch.amp.GradScaler(kind) if precision == "fp16" else None
    model.train()

    def run(count: int) -> None:
        done = 0
        while done < count:
            i = done % n
            xb, yb = x[i : i + batch], y[i : i + batch]
            with torch.autocast(kind, dtype) if dtype else contextlib.nullcontext():
                loss = soft_cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            done += len(xb)

    run(n)  # warm-up
    _sync(device)
    start = time.perf_counter()
    run(total)
    _sync(device)
    return {"img_s": total / (time.perf_counter() - start), "peak_gib": _peak(device)}


def throughput(images, labels, device, arch, batches, steps, layout_batch) -> dict:
    """Every (precision, batch): stealbench's loop and the bare loop; and stealbench's loop
    without channels-last at ``layout_batch``. A setting the device cannot run (no bf16, out
    of memory) is recorded with its reason and skipped."""
    import numpy as np
    import torch

    targets = np.eye(int(labels.max()) + 1, dtype=np.float32)[labels]
    rows = {}
    for precision in PRECISIONS:
        for batch in batches:
            if batch > len(images):
                rows[precision, batch] = {"skipped": f"batch over the {len(images)} images"}
                continue
            if precision == "bf16" and device.startswith("cuda"):
                if not torch.cuda.is_bf16_supported():
                    rows[precision, batch] = {"skipped": "no bfloat16 on this GPU"}
                    continue
            try:
                row = {"ours": ours(images, targets, arch, device, batch, precision, steps)}
                row["bare"] = bare(images, targets, arch, device, batch, precision, steps)
                row["ratio"] = row["ours"]["img_s"] / row["bare"]["img_s"]
            except (RuntimeError, ValueError) as error:  # out of memory, unsupported dtype
                row = {"skipped": f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"}
            rows[precision, batch] = row
            print(precision, batch, row, flush=True)
    layout = {}
    for precision in ("fp32", "bf16"):
        if "skipped" in rows.get((precision, layout_batch), {"skipped": ""}):
            continue
        try:
            layout[precision] = ours(
                images, targets, arch, device, layout_batch, precision, steps, False
            )
        except (RuntimeError, ValueError) as error:
            layout[precision] = {"skipped": f"{type(error).__name__}"}
    return {"rows": rows, "layout": layout}


def agreement(dataset, device: str, epochs: int, arch: str = "resnet18") -> dict:
    """The same cell (``arch`` on the fixture, 3 seeds) twice: do the means agree?"""
    import numpy as np

    from stealbench.models.training import TrainConfig
    from stealbench.models.victims import train_victim
    from stealbench.report.tables import ci95

    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=0.01, optimizer="sgd", momentum=0.9)
    runs = []
    for _ in range(2):
        accs = [train_victim(dataset, arch, cfg, seed, device)[3] for seed in (0, 1, 2)]
        runs.append(accs)
    means = [float(np.mean(r)) for r in runs]
    half = max(ci95(runs[0]), ci95(runs[1]))
    return {"runs": runs, "means": means, "ci95": half, "agree": abs(means[0] - means[1]) <= half}


def _rate(entry: dict) -> str:
    return f"{entry['img_s']:.0f}"


def _gib(entry: dict) -> str:
    return "n/a" if entry["peak_gib"] != entry["peak_gib"] else f"{entry['peak_gib']:.2f}"


def report(args, name: str, speed: dict, agree: dict, seconds: dict) -> str:
    import torch

    lines = [
        "## GPU path",
        "",
        f"`.venv/bin/python benchmarks/gpu.py {' '.join(sys.argv[1:])}`, run "
        f"{time.strftime('%Y-%m-%d %H:%M')} on {name} (torch {torch.__version__}): "
        f"{args.arch} at {args.size}x{args.size} on {speed['n']} images read from the lazy "
        f"Parquet store, SGD; fixture {seconds['fixture']:.0f} s, materialising "
        f"{seconds['materialise']:.0f} s, timings {seconds['throughput']:.0f} s, agreement "
        f"{seconds['agreement']:.0f} s.",
        "",
        "| precision | batch | stealbench loop (img/s) | bare loop (img/s) | ratio (target "
        ">= 0.9) | peak GPU memory, stealbench / bare (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    for (precision, batch), row in speed["rows"].items():
        if "skipped" in row:
            lines.append(f"| {precision} | {batch} | {row['skipped']} | | | |")
            continue
        lines.append(
            f"| {precision} | {batch} | {_rate(row['ours'])} | {_rate(row['bare'])} | "
            f"**{row['ratio']:.2f}** | {_gib(row['ours'])} / {_gib(row['bare'])} |"
        )
    lines.append("")
    for precision, entry in speed["layout"].items():
        with_layout = speed["rows"][precision, args.batch]["ours"]["img_s"]
        rate = entry.get("skipped") or f"{_rate(entry)} img/s"
        lines.append(
            f"- stealbench loop at {precision}, batch {args.batch}, without channels-last "
            f"(`channels_last: false`): {rate} (with it: {with_layout:.0f} img/s)"
        )
    lines.append(
        f"- two runs of a 3-seed {args.agree_arch} cell ({args.epochs} epoch(s), fp32), mean "
        f"accuracy {agree['means'][0]:.3f} and {agree['means'][1]:.3f} (95% CI "
        f"± {agree['ci95']:.3f}): **{'agree' if agree['agree'] else 'differ'}**"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="a few minutes on a GPU")
    parser.add_argument("--classes", type=int, help="fixture classes (quick 8, full 10)")
    parser.add_argument("--images", type=int, help="images per class (quick 64, full 200)")
    parser.add_argument("--size", type=int, default=224, help="materialised image size")
    parser.add_argument("--steps", type=int, help="training steps timed per setting")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--batch", type=int, help="batch of the layout comparison")
    parser.add_argument("--arch", default="resnet34", help="architecture timed")
    parser.add_argument("--agree-arch", default="resnet18", help="architecture of the cell")
    parser.add_argument("--epochs", type=int, help="epochs of the agreement cell")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.batch is None:
        args.batch = 64 if 64 in args.batches else args.batches[0]
    import torch

    from stealbench.data import datasets

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --device cpu")
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clock = time.perf_counter()
        make_fixture(tmp / "tree", args.classes, args.images)
        seconds["fixture"] = time.perf_counter() - clock
        clock = time.perf_counter()
        dataset = materialise(tmp / "tree", tmp / "fixture.parquet", args.size)
        seconds["materialise"] = time.perf_counter() - clock
        clock = time.perf_counter()
        images, labels = datasets.open(tmp / "fixture.parquet").split("train")
        speed = throughput(
            images, labels, args.device, args.arch, args.batches, args.steps, args.batch
        )
        speed["n"] = len(images)
        seconds["throughput"] = time.perf_counter() - clock
        clock = time.perf_counter()
        agree = agreement(dataset, args.device, args.epochs, args.agree_arch)
        seconds["agreement"] = time.perf_counter() - clock
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    text = report(args, name or platform.machine(), speed, agree, seconds)
    print(text)
    if not args.no_write:
        write_section("gpu", text)


if __name__ == "__main__":
    main()
