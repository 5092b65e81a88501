"""Peak memory of materialising and training on ImageFolder trees of growing size.

Generates one tree of small PNGs (the largest size; smaller trees are hard links into it),
then, in a fresh subprocess per size and step, measures wall time and peak RSS
(``ru_maxrss`` of that process) of

  (a) materialising the tree into Parquet (``sources.materialise_to``, source imagefolder), and
  (b) opening it lazily (checksum verified by streaming) and training a lenet for one epoch
      on its train split (``training.fit`` on an ``ImageStore``), validating on its val split.

Prints a table and the growth of the peaks against the growth of the data, and writes them
to benchmarks/results.md between ``<!-- streaming:start -->`` and ``<!-- streaming:end -->``.

    .venv/bin/python benchmarks/streaming.py                      # 10k, 30k, 100k images
    .venv/bin/python benchmarks/streaming.py --sizes 2000 5000 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sections import RESULTS, write_section  # noqa: E402


def rss_mib() -> float:
    """Current resident set size of this process (Linux /proc), MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ------------------------------------------------------------------------ the data


def _encode(args: tuple[str, int, int, int, int]) -> None:
    """Write images [start, stop) of a tree: class-dependent smooth patterns plus noise."""
    import numpy as np
    from PIL import Image

    folder, start, stop, classes, size = args
    rng = np.random.default_rng(start)
    y, x = np.mgrid[0:size, 0:size] / size
    for i in range(start, stop):
        c = i % classes
        phase = rng.uniform(0, 2 * np.pi, 3)
        base = 127 + 90 * np.sin(2 * np.pi * (c + 1) * x[..., None] / 3 + y[..., None] + phase)
        pixels = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        path = Path(folder) / f"class{c:02d}" / f"{i:06d}.png"
        Image.fromarray(pixels).save(path, compress_level=1)


def make_trees(workdir: Path, sizes: list[int], classes: int, size: int, jobs: int) -> dict:
    """The largest tree, written in parallel; smaller ones hard-link its first files."""
    from concurrent.futures import ProcessPoolExecutor

    largest = max(sizes)
    big = workdir / f"tree{largest}"
    for c in range(classes):
        (big / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
    step = -(-largest // (jobs * 8))
    tasks = [(str(big), s, min(largest, s + step), classes, size) for s in range(0, largest, step)]
    start = time.perf_counter()
    with ProcessPoolExecutor(jobs) as pool:
        list(pool.map(_encode, tasks))
    print(f"wrote {largest} PNGs in {time.perf_counter() - start:.1f} s", flush=True)
    trees = {largest: big}
    for n in sorted(set(sizes) - {largest}):
        tree = workdir / f"tree{n}"
        for i in range(n):
            name = f"class{i % classes:02d}/{i:06d}.png"
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            os.link(big / name, tree / name)
        trees[n] = tree
    return trees


def tree_mib(tree: Path) -> float:
    return sum(f.stat().st_size for f in tree.rglob("*.png")) / 2**20


# ------------------------------------------------------------------ child processes


def child_materialise(tree: str, out: str, image_size: int) -> dict:
    from stealbench.data import sources

    base = rss_mib()
    spec = {
        "source": "imagefolder",
        "options": {"root": tree, "image_size": image_size, "channels": 3, "test_fraction": 0.1},
    }
    start = time.perf_counter()
    meta = sources.materialise_to("bench", spec, 0, out)
    return {
        "seconds": time.perf_counter() - start,
        "peak_mib": peak_mib(),
        "base_mib": base,
        "rows": sum(meta["split_counts"].values()),
        "parquet_mib": Path(out).stat().st_size / 2**20,
    }


def child_train(data: str, threads: int) -> dict:
    import numpy as np
    import torch

    from stealbench.data import datasets
    from stealbench.models.architectures import create_model
    from stealbench.models.training import TrainConfig, fit

    torch.set_num_threads(threads)
    base = rss_mib()
    start = time.perf_counter()
    ds = datasets.open(data)  # verifies the checksum, streaming
    opened = time.perf_counter() - start
    x, y = ds.split("train")
    x_val, y_val = ds.split("val")
    model = create_model("lenet", len(ds.classes))
    targets = np.eye(len(ds.classes), dtype=np.float32)[y]
    start = time.perf_counter()
    result = fit(model, x, targets, x_val, y_val, TrainConfig(epochs=1, batch_size=64), seed=0)
    return {
        "open_seconds": opened,
        "seconds": time.perf_counter() - start,
        "peak_mib": peak_mib(),
        "base_mib": base,
        "train_images": len(x),
        "val_acc": result.best_val_acc,
        "row_group_reads": x.reads,
        "row_groups": int(ds.images.row_groups().size),
    }


def run_child(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"child {args[0]} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- report


def table(rows: list[dict]) -> str:
    lines = [
        "| images | PNG tree MiB | Parquet MiB | materialise s | materialise peak MiB "
        "| open+verify s | train 1 epoch s | train peak MiB | val acc |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        m, t = r["materialise"], r["train"]
        lines.append(
            f"| {r['images']:,} | {r['tree_mib']:.0f} | {m['parquet_mib']:.0f} "
            f"| {m['seconds']:.1f} | {m['peak_mib']:.0f} | {t['open_seconds']:.1f} "
            f"| {t['seconds']:.1f} | {t['peak_mib']:.0f} | {t['val_acc']:.2f} |"
        )
    return "\n".join(lines)


def growth(rows: list[dict]) -> str:
    first, last = rows[0], rows[-1]
    data = last["images"] / first["images"]
    out = []
    for step in ("materialise", "train"):
        ratio = last[step]["peak_mib"] / first[step]["peak_mib"]
        extra = (last[step]["peak_mib"] - last[step]["base_mib"]) / max(
            1e-9, first[step]["peak_mib"] - first[step]["base_mib"]
        )
        out.append(
            f"{step}: peak x{ratio:.2f} (above the imports' RSS: x{extra:.2f}) for x{data:.0f} "
            f"the images"
        )
    return "; ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="PNG writers")
    parser.add_argument("--workdir", type=Path, help="where the trees go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the trees and files")
    parser.add_argument("--no-write", action="store_true", help="do not update results.md")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "materialise":
            out = child_materialise(rest[0], rest[1], int(rest[2]))
        else:
            out = child_train(rest[0], int(rest[1]))
        print(json.dumps(out))
        return

    sizes = sorted(set(args.sizes))
    workdir = Path(tempfile.mkdtemp(prefix="stealbench-streaming-", dir=args.workdir))
    started = time.perf_counter()
    try:
        trees = make_trees(workdir, sizes, args.classes, args.image_size, args.jobs)
        rows = []
        for n in sizes:
            out = workdir / f"data{n}.parquet"
            materialise = run_child("materialise", str(trees[n]), str(out), str(args.image_size))
            train = run_child("train", str(out), str(args.threads))
            rows.append(
                {
                    "images": n,
                    "tree_mib": tree_mib(trees[n]),
                    "materialise": materialise,
                    "train": train,
                }
            )
            print(
                f"{n:>8,} images: materialise {materialise['seconds']:.1f} s, peak "
                f"{materialise['peak_mib']:.0f} MiB; train {train['seconds']:.1f} s, peak "
                f"{train['peak_mib']:.0f} MiB ({train['row_group_reads']} row-group reads, "
                f"{train['row_groups']} row groups)",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report = table(rows)
    summary = growth(rows) if len(rows) > 1 else ""
    print("\n" + report + "\n\n" + summary)
    import torch

    from stealbench.data import datasets

    load = os.getloadavg()[1]
    last = rows[-1]
    text = f"""
## Streaming: peak memory vs dataset size

`.venv/bin/python benchmarks/streaming.py --sizes {" ".join(map(str, sizes))}`, run
{time.strftime("%Y-%m-%d")} on {platform.machine()} with {os.cpu_count()} CPUs (5-minute load
average {load:.1f} at the end: other jobs inflate the times, not the peaks), Python
{platform.python_version()}, torch {torch.__version__}; {time.perf_counter() - started:.0f} s
in all.

ImageFolder trees of {args.image_size}x{args.image_size} RGB PNGs in {args.classes} classes
(generic layout, 10% per-class test part, default splits). Each step runs in a fresh process;
peak = its `ru_maxrss`, which includes the interpreter and its imports (RSS right after them:
{last["materialise"]["base_mib"]:.0f} MiB for materialising with numpy/pyarrow/PIL,
{last["train"]["base_mib"]:.0f} MiB for training with torch). *Materialise*:
`sources.materialise_to` (decode, write row groups of up to {datasets.ROW_GROUP_ROWS}
images, checksum on the way). *Train*: `datasets.open` (checksum verified by streaming), then
one epoch of lenet (batch 64, {args.threads} torch threads) with `training.fit` on the lazy
train split, validating on the lazy val split.

{report}

Growth from the smallest to the largest tree: {summary}.
"""
    if not args.no_write:
        write_section("streaming", text)
        print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
