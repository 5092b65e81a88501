"""The benchmark suite: every figure of issue 7, printed and written to benchmarks/results.md.

    .venv/bin/python benchmarks/run.py            # all (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --only planning throughput

1. default pipeline: wall time and peak memory of the whole default run from empty results/
2. query economy: victim forward passes made vs. what a pipeline without the cache makes
3. training throughput: surrogate images/s in the pipeline vs. a bare in-memory torch loop
4. job overhead: share of the run's wall time outside model training and querying
5. planning scale: `snakemake -n` on a generated 10,000-cell grid
6. streaming scale: benchmarks/streaming.py (its own section of results.md)

Timings are measured here, on a shared machine: compare ratios taken in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "benchmarks" / "results.md"
START, END = "<!-- suite:start -->", "<!-- suite:end -->"


def snakemake(workdir: Path, *args: str, configfile: Path | None = None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
    ]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    return [*cmd, *args]


def run_sampled(cmd: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak total RSS (MiB) of the process tree sampled every 0.2 s, exit code."""
    with tempfile.TemporaryFile(mode="w+") as log:  # a file, not a pipe: a full pipe blocks
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        parent, peak = psutil.Process(proc.pid), 0.0
        while proc.poll() is None:
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree) / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.2)
        wall = time.perf_counter() - start
        if proc.returncode:
            log.seek(0)
            print(log.read()[-3000:], file=sys.stderr)
    return wall, peak, proc.returncode


def default_pipeline(workdir: Path) -> dict:
    wall, peak, code = run_sampled(snakemake(workdir, "--cores", "2"))
    if code:
        raise SystemExit("the default pipeline failed; see above")
    return {"wall_s": wall, "peak_rss_mib": peak}


def query_economy(workdir: Path) -> dict:
    import pandas as pd

    q = pd.read_parquet(workdir / "results/tables/queries.parquet")
    return {
        "pairs": len(q),
        "forward_passes": int(q["victim_forward_passes"].sum()),
        "largest_budget_sum": int(q["largest_budget"].sum()),
        "passes_without_cache": int(q["passes_without_cache"].sum()),
        "cells": int(q["cells"].sum()),
        "cells_per_query_set": float(q["cells"].mean()),
        "one_query_set_per_pair": bool((q["victim_forward_passes"] == q["largest_budget"]).all()),
    }


def bare_loop_throughput(arch: str, batch_size: int, images: int = 8192) -> float:
    """Images/s of the plainest loop: float tensors in memory, Adam, soft cross-entropy."""
    import torch

    from stealbench.models.architectures import create_model
    from stealbench.models.training import soft_cross_entropy

    torch.set_num_threads(1)
    model = create_model(arch, 10, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(images, 1, 28, 28)
    y = torch.softmax(torch.randn(images, 10), 1)
    for warm in (True, False):
        start = time.perf_counter()
        for i in range(0, images, batch_size):
            loss = soft_cross_entropy(model(x[i : i + batch_size]), y[i : i + batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if not warm:
            return images / (time.perf_counter() - start)
    return float("nan")


def training_throughput(workdir: Path) -> dict:
    import pandas as pd

    cells = pd.read_parquet(workdir / "results/tables/cells.parquet")
    big = cells[cells["budget"] == cells["budget"].max()]
    batch = yaml.safe_load((ROOT / "config.yaml").read_text())["surrogates"]["training"][
        "batch_size"
    ]
    out = {}
    for arch, rows in big.groupby("surrogate_arch"):
        pipeline = rows["images_seen"].sum() / rows["train_seconds"].sum()
        bare = bare_loop_throughput(arch, batch)
        out[arch] = {"pipeline_img_s": pipeline, "bare_img_s": bare, "ratio": pipeline / bare}
    return out


def job_overhead(workdir: Path, wall: float, cores: int = 2) -> dict:
    """Share of core-seconds not spent training models or answering queries."""
    import pandas as pd

    results = workdir / "results"
    model_seconds = pd.read_parquet(results / "tables/cells.parquet")["train_seconds"].sum()
    for path in results.glob("defended/**/*.parquet"):
        model_seconds += pd.read_parquet(path)["train_seconds"].sum()
    for path in results.glob("victims/*/metrics.json"):
        model_seconds += json.loads(path.read_text())["train_seconds"]
    for path in results.glob("defenses/*/detector.json"):
        model_seconds += json.loads(path.read_text()).get("seconds", 0.0)
    query_seconds = 0.0
    for path in results.glob("logs/queries/*/*.log"):
        query_seconds += _log_span(path)
    busy = model_seconds + query_seconds
    return {
        "wall_s": wall,
        "core_seconds": wall * cores,
        "model_seconds": model_seconds,
        "query_seconds": query_seconds,
        "overhead_share": 1 - busy / (wall * cores),
    }


def _log_span(path: Path) -> float:
    """Seconds between the first and last line of a job log (the query job's working time)."""
    from datetime import datetime

    stamps = []
    for line in path.read_text().splitlines():
        try:
            stamps.append(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f"))
        except ValueError:
            continue
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 else 0.0


def planning_scale(tmp: Path, target_cells: int = 10_000) -> dict:
    """`snakemake -n` on a generated grid of at least ``target_cells`` cells."""
    from stealbench import config as stealbench_config

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg.pop("defenses", None)
    attacks = {}
    for i in range(14):  # 6 victims x 14 attacks x 120 cells each = 10,080 cells
        attacks[f"random-glyphs-{i}"] = {"strategy": "random", "pool": "glyphs"}
    cfg["attacks"] = attacks
    cfg["victims"] = {
        f"victim-{v}": {"dataset": "mnist5k", "arch": "lenet", "attacks": list(attacks)}
        for v in range(6)
    }
    cfg["surrogates"].update(
        seeds=[0, 1, 2, 3, 4],
        budgets=[100, 300, 1000],
        granularities=["probs", "top2", "round1", "label"],
        archs=["lenet", "resnet8"],
    )
    cells = len(stealbench_config.cells(stealbench_config.validate(cfg)))
    assert cells >= target_cells, cells
    path = tmp / "planning.yaml"
    path.write_text(yaml.safe_dump(cfg))
    start = time.perf_counter()
    run = subprocess.run(
        snakemake(tmp / "plan", "-n", "--cores", "2", "-q", configfile=path),
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if run.returncode:
        raise SystemExit(run.stderr[-3000:])
    jobs = len(stealbench_config.surrogate_jobs(stealbench_config.validate(cfg)))
    return {"cells": cells, "surrogate_jobs": jobs, "dry_run_s": seconds}


def write_section(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{START}\n{text}\n{END}"
    if START in old:
        new = old[: old.index(START)] + block + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=["pipeline", "planning", "streaming"],
        help="pipeline = figures 1-4 (one default run); default: all",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    only = set(args.only or ["pipeline", "planning", "streaming"])
    lines = [
        f"## Suite\n\n`.venv/bin/python benchmarks/run.py`, run "
        f"{time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()} with "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}.\n"
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "pipeline" in only:
            workdir = ROOT / "benchmarks" / "out" / "default"  # kept for inspection (ignored)
            shutil.rmtree(workdir, ignore_errors=True)
            pipe = default_pipeline(workdir)
            economy = query_economy(workdir)
            throughput = training_throughput(workdir)
            overhead = job_overhead(workdir, pipe["wall_s"])
            lines += [
                "### 1. Default pipeline (target: about 10 minutes)\n",
                f"`snakemake --cores 2` from an empty results/: **{pipe['wall_s'] / 60:.1f} min**"
                f" wall, peak memory of the whole process tree **{pipe['peak_rss_mib']:.0f} MiB**."
                "\n",
                "### 2. Query economy (target: one query set serves every cell)\n",
                f"{economy['forward_passes']} victim forward passes for {economy['pairs']} "
                f"(victim, attack) query sets (sum of their largest budgets: "
                f"{economy['largest_budget_sum']}); they serve {economy['cells']} cells, "
                f"{economy['cells_per_query_set']:.1f} per query set. A pipeline that queried "
                f"once per cell would make {economy['passes_without_cache']} passes: "
                f"**{economy['passes_without_cache'] / economy['forward_passes']:.1f}x** more. "
                f"One query set per pair: **{economy['one_query_set_per_pair']}**.\n",
                "### 3. Training throughput (target: at least 0.9 of a bare loop)\n",
                "| surrogate | pipeline img/s | bare loop img/s | ratio |\n|---|---|---|---|",
                *[
                    f"| {a} | {t['pipeline_img_s']:.0f} | {t['bare_img_s']:.0f} | "
                    f"**{t['ratio']:.2f}** |"
                    for a, t in throughput.items()
                ],
                "\nPipeline: images seen / training seconds of the largest-budget cells (the "
                "epoch loop, per-batch uint8 conversion and per-epoch validation included); "
                "bare: the same model, batch size and 1 thread on float tensors in memory.\n",
                "### 4. Job overhead (target: at most 25%)\n",
                f"Model training {overhead['model_seconds']:.0f} core-s and querying "
                f"{overhead['query_seconds']:.0f} core-s of {overhead['core_seconds']:.0f} "
                f"core-s (wall x 2 cores): **{100 * overhead['overhead_share']:.0f}%** "
                "elsewhere (interpreter start, imports, I/O, scheduling, idle cores).\n",
            ]
        if "planning" in only:
            plan = planning_scale(tmp)
            lines += [
                "### 5. Planning scale (target: under 30 s)\n",
                f"`snakemake -n` on a generated grid of {plan['cells']} cells "
                f"({plan['surrogate_jobs']} surrogate jobs): **{plan['dry_run_s']:.1f} s**."
                "\n",
            ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(text)
    if "streaming" in only:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "streaming.py")]
        if args.no_write:
            cmd.append("--no-write")
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
