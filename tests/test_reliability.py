"""Interrupted runs resume to the same tables; clean runs are deterministic; provenance."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import assert_same_tables, run_snakemake, snakemake_cmd

from stealbench import io

pytestmark = pytest.mark.workflow


def kill_when(workdir: Path, ready, timeout: float = 600) -> bool:
    """Start the workflow, SIGKILL its whole process group once ``ready()``; True if killed."""
    proc = subprocess.Popen(
        snakemake_cmd(workdir, "--cores", "2"),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)  # as a dying node would: no cleanup at all
            proc.wait()
            return not (workdir / "results/findings.md").exists()  # killed before the end
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    return False


def visible_artefacts(workdir: Path):
    return [
        p
        for p in (workdir / "results").rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix in (".parquet", ".json")
    ]


def test_killed_runs_resume_to_the_tables_of_an_uninterrupted_run(smoke_workdir, tmp_path):
    workdir = tmp_path / "killed"
    kill_points = [
        lambda: (workdir / "results/victims").exists()
        and any((workdir / "results/victims").rglob("model.pt")),
        lambda: len(list((workdir / "results").glob("surrogates/**/*.parquet"))) >= 4,
        lambda: any((workdir / "results").glob("defended/**/cells.parquet")),
    ]
    killed = 0
    for ready in kill_points:
        killed += kill_when(workdir, ready)
        # A killed job never leaves a file that looks complete.
        for path in visible_artefacts(workdir):
            if path.suffix == ".parquet":
                pq.read_metadata(path)
            else:
                io.read_json(path)
        unlock = run_snakemake(workdir, "--unlock")
        assert unlock.returncode == 0, unlock.stderr[-2000:]
    assert killed >= 2, "the run finished before it could be interrupted"
    resumed = run_snakemake(workdir, "--cores", "2")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert_same_tables(smoke_workdir, workdir)


def test_two_clean_runs_give_identical_metrics(smoke_workdir, tmp_path):
    run = run_snakemake(tmp_path, "--cores", "2")
    assert run.returncode == 0, run.stderr[-4000:]
    assert_same_tables(smoke_workdir, tmp_path)
    for path in sorted((smoke_workdir / "results/queries").rglob("*.parquet")):
        twin = tmp_path / path.relative_to(smoke_workdir)
        pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(twin))


def test_artefacts_record_their_provenance(smoke_workdir):
    results = smoke_workdir / "results"
    cache = io.read_parquet_meta(next(results.glob("queries/*/*.parquet")))
    assert {"victim_checksum", "pool_checksum", "strategy", "seed", "options"} <= set(cache)
    victim = io.read_json(next(results.glob("victims/*/metrics.json")))
    assert {"dataset_checksum", "weights_checksum", "training", "seed"} <= set(victim)
    cells = io.read_parquet_meta(next(results.glob("surrogates/*/*/*/*/all.parquet")))
    assert {"victim_checksum", "pool_checksum", "query_cache", "training"} <= set(cells)
    table = io.read_parquet_meta(results / "tables/cells.parquet")
    inputs = table["inputs"]
    assert len(inputs) > 10 and all(len(h) == 64 for h in inputs.values())
    some = next(iter(inputs))
    assert io.sha256_file(smoke_workdir / some) == inputs[some]


def test_a_bad_config_damages_nothing_already_complete(smoke_workdir, root, tmp_path):
    import yaml

    before = {p: io.sha256_file(p) for p in (smoke_workdir / "results").rglob("*") if p.is_file()}
    bad = yaml.safe_load((root / "configs/smoke.yaml").read_text())
    bad["surrogates"]["budgets"] = [50, 100000]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    run = run_snakemake(smoke_workdir, "--cores", "2", configfile=path)
    assert run.returncode != 0 and "largest budget 100000 exceeds" in run.stderr
    after = {p: io.sha256_file(p) for p in (smoke_workdir / "results").rglob("*") if p.is_file()}
    assert after == before
