"""The benchmark suite: speed, memory and scale, printed and written to benchmarks/results.md.

    .venv/bin/python benchmarks/run.py                       # pipeline, planning, streaming, peer
    .venv/bin/python benchmarks/run.py --only pipeline peer
    .venv/bin/python benchmarks/run.py --only scale datafree # the bigger grids (~26 + ~23 min)

1. pipeline: the whole default from an empty results/ on 2 cores: wall time, peak memory of
   the process tree, the query economy, training throughput against a bare PyTorch loop, and
   the job overhead: 1 - (seconds inside model training and querying, as the artefacts record
   them) / (cores x wall time), with where the rest goes (per rule: job wall time outside the
   recorded work);
2. planning: `snakemake -n` on a generated 10,000-cell grid;
3. streaming: benchmarks/streaming.py (its own section);
4. peer: benchmarks/peer.py, ART's KnockoffNets beside stealbench (its own section);
   convergence: benchmarks/convergence.py, whether the default schedule is converged (its own);
   remote: benchmarks/remote.py, the remote-victim client on loopback against in-process (its own);
5. scale / datafree: configs/scale.yaml and configs/datafree.yaml end to end: wall time,
   peak memory, and the recovery (accuracy) at each budget with 95% CIs;
6. gpu: benchmarks/gpu.py, on a CUDA machine only (its own section).

Timings are measured on a shared machine: compare ratios taken in one run.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from sections import snakemake, write_section  # noqa: E402

OUT = ROOT / "benchmarks" / "out"  # kept for inspection (git-ignored)


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


def whole_run(workdir: Path, configfile: Path | None = None) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    wall, peak, code = run_sampled(snakemake(workdir, "--cores", "2", configfile=configfile))
    if code:
        raise SystemExit(f"the run in {workdir} failed; see above")
    return {"wall_s": wall, "peak_rss_mib": peak}


def query_economy(workdir: Path) -> dict:
    import pandas as pd

    q = pd.read_parquet(workdir / "results/tables/queries.parquet")
    return {
        "pairs": len(q),
        "queries_sent": int(q["queries_sent"].sum()),
        "victim_passes": int(q["victim_passes"].sum()),
        "passes_without_cache": int(q["passes_without_cache"].sum()),
        "cells": int(q["cells"].sum()),
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
    batch = yaml.safe_load((ROOT / "config.yaml").read_text())["surrogates"]["training"][
        "batch_size"
    ]
    out = {}
    for arch, rows in cells.groupby("surrogate_arch"):
        rows = rows[rows["budget"] == rows["budget"].max()]
        pipeline = rows["images_seen"].sum() / rows["train_seconds"].sum()
        bare = bare_loop_throughput(arch, batch)
        out[arch] = {"pipeline_img_s": pipeline, "bare_img_s": bare, "ratio": pipeline / bare}
    return out


def recorded_work(workdir: Path) -> dict[str, float]:
    """Seconds inside model training and querying, as the artefacts record them, by kind."""
    import pandas as pd

    from stealbench.io import read_parquet_meta

    r = workdir / "results"
    work = {
        "surrogates": float(pd.read_parquet(r / "tables/cells.parquet")["train_seconds"].sum()),
        "victims and backbones": sum(
            json.loads(p.read_text())["train_seconds"]
            for p in [*r.glob("victims/*/metrics.json"), *r.glob("pretrain/*/metrics.json")]
        ),
    }
    if (r / "tables/defended.parquet").exists():
        work["defended surrogates"] = float(
            pd.read_parquet(r / "tables/defended.parquet")["train_seconds"].sum()
        )
    work["defense models"] = sum(
        sum(json.loads(p.read_text())["train_seconds"].values())
        for p in r.glob("defenses/*/models.json")
    ) + sum(json.loads(p.read_text())["train_seconds"] for p in r.glob("defenses/*/detector.json"))
    sampling = sequential = 0.0
    for path in r.glob("queries/**/*.parquet"):
        seconds = read_parquet_meta(path).get("seconds", 0.0)
        if isinstance(seconds, dict):  # a sequential attacker: one run per granularity
            sequential += sum(seconds.values())
        else:
            sampling += seconds
    work["sequential attacks (substitutes, queries)"] = sequential
    work["sampling (victim queries)"] = sampling
    return work


def job_overhead(workdir: Path, wall: float, cores: int = 2) -> dict:
    """1 - recorded work / (cores x wall); and, per rule, job wall time beyond it."""
    work = recorded_work(workdir)
    jobs: dict[str, list[float]] = {}
    for path in (workdir / "results/benchmarks").rglob("*.tsv"):
        rule = path.relative_to(workdir / "results/benchmarks").parts[0]
        jobs.setdefault(rule, []).append(float(path.read_text().splitlines()[1].split("\t")[0]))
    busy = sum(work.values())
    return {
        "wall_s": wall,
        "core_seconds": wall * cores,
        "work": work,
        "busy": busy,
        "overhead_share": 1 - busy / (wall * cores),
        "job_seconds": {rule: (len(s), sum(s)) for rule, s in sorted(jobs.items())},
        "jobs": _count_jobs(workdir),
    }


def _count_jobs(workdir: Path) -> int:
    logs = sorted((workdir / ".snakemake/log").glob("*.snakemake.log"))
    if not logs:
        return 0
    return logs[-1].read_text().count("Finished jobid")


def planning_scale(tmp: Path, target_cells: int = 10_000) -> dict:
    """`snakemake -n` on a generated grid of at least ``target_cells`` cells."""
    from stealbench import config as stealbench_config

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg.pop("defenses", None)
    attacks = {}
    for i in range(14):  # 6 victims x 14 attacks x 120 cells each = 10,080 cells
        attacks[f"random-letters-{i}"] = {"strategy": "random", "pool": "letters"}
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


def pipeline_section() -> str:
    workdir = OUT / "default"
    run = whole_run(workdir)
    economy = query_economy(workdir)
    throughput = training_throughput(workdir)
    overhead = job_overhead(workdir, run["wall_s"])
    rows = "\n".join(f"| {kind} | {seconds:.0f} |" for kind, seconds in overhead["work"].items())
    jobs = "\n".join(
        f"| {rule} | {n} | {total:.0f} |" for rule, (n, total) in overhead["job_seconds"].items()
    )
    return "\n".join(
        [
            "### 1. Default pipeline (target: about 10 minutes)\n",
            f"`snakemake --cores 2` from an empty results/ (`benchmarks/out/default`): "
            f"**{run['wall_s'] / 60:.1f} min** wall for {overhead['jobs']} jobs, peak memory of "
            f"the whole process tree **{run['peak_rss_mib']:.0f} MiB**.\n",
            "### 2. Query economy\n",
            f"The attackers sent {economy['queries_sent']} queries (a query is one image sent to "
            f"the API); the victims computed {economy['victim_passes']} posteriors for them. The "
            f"same {economy['cells']} cells queried afresh would cost "
            f"{economy['passes_without_cache']} victim passes: "
            f"**{economy['passes_without_cache'] / economy['victim_passes']:.1f}x** more.\n",
            "### 3. Training throughput (target: at least 0.9 of a bare loop)\n",
            "| surrogate | pipeline img/s | bare loop img/s | ratio |\n|---|---|---|---|",
            *[
                f"| {a} | {t['pipeline_img_s']:.0f} | {t['bare_img_s']:.0f} | "
                f"**{t['ratio']:.2f}** |"
                for a, t in throughput.items()
            ],
            "\nPipeline: images seen / training seconds of the largest-budget cells (the "
            "epoch loop and per-batch uint8 conversion included); bare: the same model, batch "
            "size and 1 thread on float tensors in memory.\n",
            "### 4. Job overhead (target: at most 25%)\n",
            f"Recorded work {overhead['busy']:.0f} core-s of {overhead['core_seconds']:.0f} "
            f"core-s (wall x 2 cores): **{100 * overhead['overhead_share']:.0f}%** elsewhere "
            f"(interpreter start, imports, loading, scoring, scheduling, idle cores).\n",
            "| recorded work | core-s |\n|---|---:|",
            rows,
            "\nWall time of the jobs that keep a Snakemake benchmark record, per rule (their "
            "training and querying included):\n",
            "| rule | jobs | job seconds |\n|---|---:|---:|",
            jobs,
            "",
        ]
    )


def grid_section(name: str, configfile: Path) -> str:
    """A bigger grid end to end: wall, peak memory, accuracy and recovery by budget."""
    import pandas as pd

    workdir = OUT / name
    run = whole_run(workdir, configfile)
    summary = pd.read_parquet(workdir / "results/tables/summary.parquet")
    keys = ["victim", "attack", "granularity", "surrogate_init"]
    table = summary[
        [
            *keys,
            "budget",
            "seeds",
            "test_acc_mean",
            "test_acc_ci95",
            "recovery_mean",
            "recovery_ci95",
        ]
    ].sort_values([*keys, "budget"])
    lines = [
        "| " + " | ".join(table.columns) + " |",
        "|" + "---|" * len(table.columns),
        *(
            "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |"
            for row in table.itertuples(index=False)
        ),
    ]
    return "\n".join(
        [
            f"## {configfile.relative_to(ROOT)}\n",
            f"`snakemake --cores 2 --configfile {configfile.relative_to(ROOT)}` from an empty "
            f"results/, run {time.strftime('%Y-%m-%d %H:%M')}: **{run['wall_s'] / 60:.1f} min** "
            f"wall, peak memory of the whole process tree **{run['peak_rss_mib']:.0f} MiB**.\n",
            *lines,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choices = [
        "pipeline",
        "planning",
        "streaming",
        "peer",
        "convergence",
        "remote",
        "scale",
        "datafree",
        "gpu",
    ]
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=choices,
        help="default: pipeline planning streaming peer",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    only = set(args.only or ["pipeline", "planning", "streaming", "peer"])
    head = (
        f"## Suite\n\n`.venv/bin/python benchmarks/run.py`, run "
        f"{time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()} with "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}.\n"
    )
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        if "pipeline" in only:
            parts.append(pipeline_section())
        if "planning" in only:
            plan = planning_scale(Path(tmp))
            parts.append(
                "### 5. Planning scale (target: under 30 s)\n\n"
                f"`snakemake -n` on a generated grid of {plan['cells']} cells "
                f"({plan['surrogate_jobs']} surrogate jobs): **{plan['dry_run_s']:.1f} s**.\n"
            )
    if parts:
        text = head + "\n" + "\n".join(parts)
        print(text)
        if not args.no_write:
            write_section("suite", text)
    for name in ("scale", "datafree"):
        if name in only:
            text = grid_section(name, ROOT / "configs" / f"{name}.yaml")
            print(text)
            if not args.no_write:
                write_section(name, text)
    scripts = {
        "streaming": "streaming.py",
        "peer": "peer.py",
        "convergence": "convergence.py",
        "remote": "remote.py",
        "gpu": "gpu.py",
    }
    for name, script in scripts.items():
        if name in only:
            cmd = [sys.executable, str(ROOT / "benchmarks" / script)]
            if args.no_write:
                cmd.append("--no-write")
            subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
