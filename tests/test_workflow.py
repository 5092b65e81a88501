"""The whole DAG on configs/smoke.yaml, in a temporary directory."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from stealbench import config

pytestmark = pytest.mark.workflow


def snakemake(root, workdir, *args):
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(root / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(root / "configs" / "smoke.yaml"),
        "--cores",
        "2",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke_run(root, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    run = snakemake(root, workdir)
    assert run.returncode == 0, run.stderr[-4000:]
    cfg = config.validate(yaml.safe_load((root / "configs" / "smoke.yaml").read_text()))
    return workdir, cfg


def test_cells_table_has_one_row_per_cell(smoke_run):
    workdir, cfg = smoke_run
    cells = pd.read_parquet(workdir / "results/tables/cells.parquet")
    expected = {
        (c.victim, c.attack, c.granularity, c.budget, c.surrogate_arch, c.seed)
        for c in config.cells(cfg)
    }
    got = set(
        cells[["victim", "attack", "granularity", "budget", "surrogate_arch", "seed"]].itertuples(
            index=False, name=None
        )
    )
    assert got == expected and len(cells) == len(expected)
    for column in [
        "victim",
        "victim_arch",
        "dataset",
        "attack",
        "strategy",
        "pool",
        "granularity",
        "budget",
        "surrogate_arch",
        "seed",
        "victim_acc",
        "test_acc",
        "agreement",
        "recovery",
    ]:
        assert column in cells.columns
    for metric in ["victim_acc", "test_acc", "agreement"]:
        assert cells[metric].between(0, 1).all()
    pd.testing.assert_series_equal(
        cells["recovery"], cells["test_acc"] / cells["victim_acc"], check_names=False
    )
    csv = pd.read_csv(workdir / "results/tables/cells.csv")
    assert len(csv) == len(cells)


def test_each_victim_queried_once_per_attack(smoke_run):
    workdir, cfg = smoke_run
    queries = pd.read_parquet(workdir / "results/tables/queries.parquet")
    pairs = config.victim_attacks(cfg)
    largest = max(cfg["surrogates"]["budgets"])
    assert len(queries) == len(pairs)
    assert queries["victim_forward_passes"].sum() == len(pairs) * largest
    s = cfg["surrogates"]
    per_pair = len(s["granularities"]) * len(s["archs"]) * len(s["seeds"])
    assert (queries["cells"] == per_pair * len(s["budgets"])).all()
    assert (queries["passes_without_cache"] == per_pair * sum(s["budgets"])).all()


def test_victims_learn_their_task(smoke_run):
    workdir, cfg = smoke_run
    for victim in cfg["victims"]:
        metrics = json.loads((workdir / f"results/victims/{victim}/metrics.json").read_text())
        assert metrics["test_acc"] > 0.3, (victim, metrics["test_acc"])  # chance is 0.1


def test_figures_and_findings(smoke_run):
    workdir, cfg = smoke_run
    for victim in cfg["victims"]:
        for ext in ("png", "svg"):
            assert (workdir / f"results/figures/accuracy_vs_budget/{victim}.{ext}").stat().st_size
    text = (workdir / "results/findings.md").read_text()
    for heading in (
        "full probabilities beat top-1 labels",
        "accuracy grow with budget",
        "realistic adversary beat",
    ):
        assert heading in text
    assert "**Yes.**" in text or "**No.**" in text


def test_logs_record_progress(smoke_run):
    workdir, cfg = smoke_run
    log = next((workdir / "results/logs/surrogates").rglob("*.log")).read_text()
    assert "epoch 1/" in log and "val_acc" in log
    query_log = next((workdir / "results/logs/queries").rglob("*.log")).read_text()
    assert "victim forward passes" in query_log


def test_second_run_does_nothing(root, smoke_run):
    workdir, _ = smoke_run
    run = snakemake(root, workdir, "-n")
    assert run.returncode == 0
    assert "Nothing to be done" in run.stdout + run.stderr


def test_bad_config_fails_before_any_job(root, tmp_path):
    bad = yaml.safe_load((root / "configs" / "smoke.yaml").read_text())
    bad["surrogates"]["archs"] = ["lenet", "resnet9"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(root / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(path),
        "--cores",
        "1",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "surrogates.archs[1]" in run.stderr and "allowed values: lenet, resnet8" in run.stderr
    assert not (tmp_path / "results").exists()
