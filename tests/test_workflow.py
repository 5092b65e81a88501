"""The whole DAG on configs/smoke.yaml, in a temporary directory."""

import json
import os

import pandas as pd
import pytest
import yaml
from conftest import run_snakemake

from stealbench import config

pytestmark = pytest.mark.workflow


def snakemake(root, workdir, *args):
    return run_snakemake(workdir, "--cores", "2", *args)


@pytest.fixture(scope="module")
def smoke_run(root, smoke_workdir):
    cfg = config.validate(yaml.safe_load((root / "configs" / "smoke.yaml").read_text()))
    return smoke_workdir, cfg


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
        "kl_divergence",
    ]:
        assert column in cells.columns
    for metric in ["victim_acc", "test_acc", "agreement"]:
        assert cells[metric].between(0, 1).all()
    assert (cells["kl_divergence"] >= 0).all()
    pd.testing.assert_series_equal(
        cells["recovery"], cells["test_acc"] / cells["victim_acc"], check_names=False
    )
    assert set(cells["strategy"]) == {"random", "adaptive", "jbda"}
    csv = pd.read_csv(workdir / "results/tables/cells.csv")
    assert len(csv) == len(cells)


def test_summary_has_mean_and_ci_over_seeds(smoke_run):
    workdir, cfg = smoke_run
    cells = pd.read_parquet(workdir / "results/tables/cells.parquet")
    summary = pd.read_parquet(workdir / "results/tables/summary.parquet")
    assert len(summary) == len(cells) / len(cfg["surrogates"]["seeds"])
    row = summary.iloc[0]
    same = cells[
        (cells["victim"] == row["victim"])
        & (cells["attack"] == row["attack"])
        & (cells["granularity"] == row["granularity"])
        & (cells["budget"] == row["budget"])
        & (cells["surrogate_arch"] == row["surrogate_arch"])
    ]
    assert len(same) == row["seeds"] == 2
    assert abs(same["test_acc"].mean() - row["test_acc_mean"]) < 1e-12
    half = same["test_acc"].std(ddof=1) / 2**0.5 * 12.7062047  # t(0.975, df=1)
    assert abs(half - row["test_acc_ci95"]) < 1e-6


def test_claim_and_per_class_tables(smoke_run):
    workdir, cfg = smoke_run
    tables = {
        name: pd.read_parquet(workdir / f"results/tables/{name}.parquet")
        for name in ("reproduction", "granularity", "architecture", "per_class")
    }
    assert {"paper_victim_acc", "paper_surrogate_acc", "recovery_mean"} <= set(
        tables["reproduction"].columns
    )
    assert {"probs_acc", "label_acc", "probs_ci95"} <= set(tables["granularity"].columns)
    assert set(tables["architecture"]["surrogate_arch"]) == {"lenet", "resnet8"}
    per_class = tables["per_class"]
    assert set(per_class["class"]) == set(range(10))
    assert {"victim_class_acc", "surrogate_class_acc", "class_name"} <= set(per_class.columns)


def test_each_victim_queried_once_per_attack(smoke_run):
    workdir, cfg = smoke_run
    queries = pd.read_parquet(workdir / "results/tables/queries.parquet")
    pairs = config.victim_attacks(cfg)
    largest = max(cfg["surrogates"]["budgets"])
    assert len(queries) == len(pairs)
    assert queries["victim_forward_passes"].sum() == len(pairs) * largest
    budgets = cfg["surrogates"]["budgets"]
    for row in queries.itertuples():
        axes = config.axes(cfg, row.attack)
        per_pair = len(axes["granularities"]) * len(axes["archs"]) * len(axes["seeds"])
        assert row.cells == per_pair * len(budgets)
        assert row.passes_without_cache == per_pair * sum(budgets)


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
    assert "cell probs b50" in log
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
    run = run_snakemake(tmp_path, "--cores", "1", configfile=path, timeout=300)
    assert run.returncode != 0
    assert "surrogates.archs[1]" in run.stderr
    assert "allowed values: lenet, cnn5, cnn9, resnet8" in run.stderr
    assert not (tmp_path / "results").exists()


def test_defense_tables(smoke_run):
    workdir, cfg = smoke_run
    tables = {
        name: pd.read_parquet(workdir / f"results/tables/{name}.parquet")
        for name in ("detection", "prada", "prada_curve", "defended")
    }
    detection = tables["detection"]
    assert {"tpr_in", "tnr_out", "flagged_share", "source"} <= set(detection.columns)
    assert set(detection["queries_from"]) == {"test", "pool", "attack"}
    prada = tables["prada"]
    assert set(prada["kind"]) == {"attacker", "benign"}
    jbda = prada[prada["strategy"] == "jbda"]
    assert jbda["flagged"].all()  # the synthetic-query attack PRADA was designed against
    defended = tables["defended"]
    assert set(defended["defense"]) == {"none", "ood-shuffle", "reverse-sigmoid", "gaussian-noise"}
    assert defended["benign_utility"].between(0, 1).all()
    none = defended[defended["defense"] == "none"].iloc[0]
    assert abs(none["benign_utility"] - none["victim_acc"]) < 1e-9
    assert (workdir / "results/figures/defense_tradeoff.png").stat().st_size
    assert "Claim 3" in (workdir / "results/findings.md").read_text()


def test_adding_a_defense_queries_no_victim_again(root, smoke_run, tmp_path):
    workdir, _ = smoke_run
    changed = yaml.safe_load((root / "configs" / "smoke.yaml").read_text())
    changed["defenses"]["defended"]["defenses"] = ["none", "ood-shuffle"]
    path = tmp_path / "fewer-defenses.yaml"
    path.write_text(yaml.safe_dump(changed))
    run = run_snakemake(workdir, "--cores", "1", "-n", configfile=path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    plan = run.stdout + run.stderr
    assert "train_defended_surrogates" in plan
    for rule in ("query_victim", "train_victim", "train_surrogates"):
        assert f"rule {rule}:" not in plan and f"localrule {rule}:" not in plan


def test_paper_grid_plans_with_placeholder_roots(root, tmp_path):
    """configs/paper.yaml: the full DAG is planned; no data root needs to exist for that."""
    run = run_snakemake(
        tmp_path,
        "-n",
        "--cores",
        "2",
        configfile=root / "configs/paper.yaml",
        timeout=300,
        env={**os.environ, "DATA": str(tmp_path / "no-data-here")},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    plan = run.stdout + run.stderr
    for rule in (
        "materialise_dataset",
        "train_victim",
        "query_victim",
        "train_surrogates",
        "train_defended_surrogates",
        "run_prada",
    ):
        assert rule in plan
    cfg = config.validate(yaml.safe_load((root / "configs/paper.yaml").read_text()))
    assert len(config.victim_attacks(cfg)) == 14 and cfg["device"] == "cuda"
    assert not (tmp_path / "results").exists()


def test_default_config_plans_from_any_directory(tmp_path):
    """The embedded default is found from any --directory, and alone: no merge with others."""
    run = run_snakemake(tmp_path, "-n", "--cores", "2", configfile=None, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train_surrogates" in run.stdout + run.stderr
