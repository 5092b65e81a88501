"""The whole DAG on configs/smoke.yaml, in a temporary directory."""

import json
import os
import re

import pandas as pd
import pytest
import yaml
from conftest import run_snakemake

from stealbench import config
from stealbench.io import read_parquet_meta

pytestmark = pytest.mark.workflow


def snakemake(workdir, *args, **kwargs):
    return run_snakemake(workdir, "--cores", "2", *args, **kwargs)


@pytest.fixture(scope="module")
def smoke_run(root, smoke_workdir):
    cfg = config.validate(yaml.safe_load((root / "configs" / "smoke.yaml").read_text()))
    return smoke_workdir, cfg


def table(workdir, name):
    return pd.read_parquet(workdir / f"results/tables/{name}.parquet")


CELL_KEYS = [
    "victim",
    "attack",
    "granularity",
    "budget",
    "surrogate_arch",
    "surrogate_init",
    "seed",
]


def test_cells_table_has_one_row_per_cell(smoke_run):
    workdir, cfg = smoke_run
    cells = table(workdir, "cells")
    expected = {
        (c.victim, c.attack, c.granularity, c.budget, c.surrogate_arch, c.surrogate_init, c.seed)
        for c in config.cells(cfg)
    }
    got = set(cells[CELL_KEYS].itertuples(index=False, name=None))
    assert got == expected and len(cells) == len(expected)
    for metric in ["victim_acc", "test_acc", "agreement"]:
        assert cells[metric].between(0, 1).all()
    assert (cells["kl_divergence"] >= 0).all()
    pd.testing.assert_series_equal(
        cells["recovery"], cells["test_acc"] / cells["victim_acc"], check_names=False
    )
    faced = {c.attack for c in config.cells(cfg)}
    assert set(cells["strategy"]) == {cfg["attacks"][a]["strategy"] for a in faced}
    assert {"random", "adaptive", "jbda", "activethief", "dfme"} <= set(cells["strategy"])
    assert set(cells["surrogate_init"]) == {"scratch", "public-lenet"}
    assert len(pd.read_csv(workdir / "results/tables/cells.csv")) == len(cells)


def test_the_attacker_trains_on_every_query_it_received(smoke_run):
    """The default recipe: all B queries, the final model (no held-out slice, no selection)."""
    workdir, cfg = smoke_run
    assert cfg["surrogates"]["selection"] == "none"
    cells = table(workdir, "cells")
    assert (cells["train_images"] + cells["dropped_answers"] == cells["budget"]).all()
    assert (cells.loc[cells["granularity"] != "round1", "dropped_answers"] == 0).all()
    assert (cells["best_epoch"] == cells["epochs"]).all() and cells["transfer_val_acc"].isna().all()


def test_summary_has_mean_and_ci_over_seeds(smoke_run):
    workdir, cfg = smoke_run
    cells, summary = table(workdir, "cells"), table(workdir, "summary")
    assert len(summary) == len(cells) / len(cfg["surrogates"]["seeds"])
    row = summary.iloc[0]
    same = cells[(cells[CELL_KEYS[:-1]] == row[CELL_KEYS[:-1]]).all(axis=1)]
    assert len(same) == row["seeds"] == 2
    assert abs(same["test_acc"].mean() - row["test_acc_mean"]) < 1e-12
    half = same["test_acc"].std(ddof=1) / 2**0.5 * 12.7062047  # t(0.975, df=1)
    assert abs(half - row["test_acc_ci95"]) < 1e-6


def test_seeds_draw_their_own_transfer_sets(smoke_run):
    """A seed redraws the attacker's sample of the pool, not only the surrogate's weights;
    the cache answers an image that several seeds drew once."""
    workdir, cfg = smoke_run
    caches = sorted((workdir / "results/queries/digits-lenet/random-digits").glob("s*.parquet"))
    assert [p.stem for p in caches] == ["s0", "s1"]
    first, second = (pd.read_parquet(p) for p in caches)
    assert list(first["sample_id"]) != list(second["sample_id"])
    shared = set(first["sample_id"]) & set(second["sample_id"])
    assert shared  # a 200-image sample of a 300-image pool overlaps
    meta = read_parquet_meta(caches[1])
    assert meta["victim_passes"] == len(second) - len(shared)
    assert second["probs"].isna().sum() == len(shared)


def test_claim_and_per_class_tables(smoke_run):
    workdir, cfg = smoke_run
    reproduction = table(workdir, "reproduction")
    # every out-of-distribution attack the smoke grid runs (digits pools are the victims' task)
    ood = {
        c.attack
        for c in config.cells(cfg)
        if cfg["datasets"][cfg["attacks"][c.attack]["pool"]]["task"]
        != cfg["datasets"][cfg["victims"][c.victim]["dataset"]]["task"]
    }
    assert set(reproduction["attack"]) == ood
    assert {"random-letters", "random-photos", "adaptive-letters"} <= ood
    assert {"paper_recovery", "reaches_target", "recovery_mean"} <= set(reproduction.columns)
    budget = table(workdir, "budget")
    assert {"smallest_budget_to_target", "recovery_by_budget"} <= set(budget.columns)
    pretraining = table(workdir, "pretraining")
    assert set(pretraining["victim_init"]) == {"scratch", "public-lenet"}
    assert set(pretraining["surrogate_init"]) == {"scratch", "public-lenet"}
    assert {"probs_acc", "label_acc", "probs_ci95"} <= set(table(workdir, "granularity").columns)
    assert set(table(workdir, "architecture")["surrogate_arch"]) == {"lenet", "resnet8"}
    strategies = table(workdir, "strategies")
    assert {"random", "adaptive"} <= set(strategies["strategy"])
    per_class = table(workdir, "per_class")
    assert set(per_class["class"]) == set(range(10))


def test_query_accounting(smoke_run):
    """A query is one image sent to the API: every seed's budget (every run of a sequential
    attacker) counts; the victim computed one posterior per distinct image."""
    workdir, cfg = smoke_run
    queries = table(workdir, "queries")
    assert len(queries) == len(config.victim_attacks(cfg))
    for row in queries.itertuples():
        runs = [r for r in config.query_runs(cfg) if r[:2] == (row.victim, row.attack)]
        budget = config.query_budget(cfg, row.attack, row.victim)
        if config.is_sequential(cfg, row.attack):
            sent = sum(
                len(config.run_granularities(cfg, row.attack, row.victim, d)) * budget
                for *_, d, _ in runs
            )
            assert row.victim_passes == row.queries_sent == sent
        else:
            assert row.queries_sent == len(runs) * budget
            assert budget <= row.victim_passes < row.queries_sent


def test_victims_learn_their_task_and_the_backbone_is_used(smoke_run):
    workdir, cfg = smoke_run
    for victim in cfg["victims"]:
        metrics = json.loads((workdir / f"results/victims/{victim}/metrics.json").read_text())
        assert metrics["test_acc"] > 0.3, (victim, metrics["test_acc"])  # chance is 0.1
        assert (metrics["backbone_checksum"] is not None) == (metrics["init"] != "scratch")
    backbone = json.loads((workdir / "results/pretrain/public-lenet/metrics.json").read_text())
    assert backbone["num_classes"] == 52 + 2  # letters of both cases and two photographs


def test_findings_verdicts_follow_from_the_tables(smoke_run):
    workdir, cfg = smoke_run
    text = (workdir / "results/findings.md").read_text()
    cells = table(workdir, "cells")
    keys = ["victim", "attack", "budget", "surrogate_arch", "surrogate_init", "seed"]
    wide = cells.pivot_table(index=keys, columns="granularity", values="test_acc")
    diff = (wide["probs"] - wide["label"]).dropna()
    verdict = "Yes" if diff.mean() > 0 and (diff > 0).sum() > len(diff) / 2 else "No"
    section = text.split("## Claim 2a")[1].split("##")[0]
    assert f"**{verdict}.**" in section
    assert f"probabilities win {int((diff > 0).sum())} of {len(diff)}" in section
    budget = table(workdir, "budget")
    claim1 = text.split("## Claim 1")[1].split("## ")[0]
    for victim, part in budget[budget["adversary"] == "out-of-distribution"].groupby("victim"):
        probs = part[part["granularity"] == "probs"]
        reached = probs["smallest_budget_to_target"].dropna()
        line = next(
            x for x in claim1.splitlines() if x.startswith(f"- **{victim}**") and "`probs`" in x
        )
        if len(reached):
            assert f"**{int(reached.min())}** queries" in line
        else:
            assert "does **not** reach" in line
    for heading in ("Claim 3", "PRADA", "Defenses as trade-offs", "DAWN", "Strategies"):
        assert heading in text


def test_logs_record_progress(smoke_run):
    workdir, cfg = smoke_run
    log = next((workdir / "results/logs/surrogates").rglob("*.log")).read_text()
    assert re.search(r"cell scratch probs b50", log)
    assert "epoch 1/" in log
    query_log = next((workdir / "results/logs/queries").rglob("s1.log")).read_text()
    assert "answered by the victim now" in query_log


def test_second_run_does_nothing(smoke_run):
    workdir, _ = smoke_run
    run = snakemake(workdir, "-n")
    assert run.returncode == 0
    assert "Nothing to be done" in run.stdout + run.stderr


def test_bad_config_fails_before_any_job(root, tmp_path):
    bad = yaml.safe_load((root / "configs" / "smoke.yaml").read_text())
    bad["surrogates"]["archs"] = ["lenet", "resnet9"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    run = run_snakemake(tmp_path, "--cores", "1", configfile=path, timeout=300)
    assert run.returncode != 0
    assert "config key 'surrogates.archs[1]': 'resnet9' is not allowed" in run.stderr
    assert "allowed values: lenet, cnn5, cnn9, resnet8" in run.stderr
    assert not (tmp_path / "results").exists()


def test_defense_tables(smoke_run):
    workdir, cfg = smoke_run
    detection = table(workdir, "detection")
    assert set(detection["queries_from"]) == {"test", "pool", "attack"}
    assert set(detection["seen"]) == {"in-distribution", "seen kind"}
    assert (detection.loc[detection["source"] == "letters", "seen"] == "seen kind").all()
    monitored = table(workdir, "prada")
    prada = monitored[monitored["monitor"] == "prada"]
    assert set(prada["kind"]) == {"attacker", "benign"}
    assert prada[prada["strategy"] == "jbda"]["flagged"].all()  # what PRADA was designed for
    counted = monitored[monitored["monitor"] == "query-count"]  # the baseline, beside it
    assert len(counted) == len(prada)
    assert (counted["flagged"] == (counted["queries"] > 150)).all()
    curve = table(workdir, "prada_curve")
    assert set(curve["monitor"]) == {"prada", "query-count"}
    assert curve.loc[curve["monitor"] == "query-count", "limit"].notna().all()
    defended = table(workdir, "defended")
    instances = {d.id for d in config.defense_instances(cfg)}
    assert set(defended["defense_id"]) == instances
    pairs = config.defended_pairs(cfg)
    expected = sum(len(config.attack_defenses(cfg, a)) for _, a in pairs)
    assert len(defended) == expected * len(cfg["defenses"]["defended"]["seeds"])
    sequential = defended[defended["strategy"] == "adaptive"]
    assert set(sequential["defense"]) == set(cfg["defenses"]["defended"]["sequential_defenses"])
    assert defended["benign_utility"].between(0, 1).all()
    none = defended[defended["defense"] == "none"]
    assert (none["benign_utility"] == none["victim_acc"]).all() and (none["attack_l1"] == 0).all()
    mad = defended[defended["defense"] == "mad"]
    assert (mad["attack_l1"] <= 0.5 + 1e-5).all() and (mad["attack_l1"] > 0).all()
    dawn = table(workdir, "dawn")
    sampling = [p for p in pairs if not config.is_sequential(cfg, p[1])]
    assert len(dawn) == len(sampling) and (dawn["dawn_watermarks"] > 0).all()
    assert (dawn["dawn_independent"] == len(cfg["defenses"]["dawn"]["independent_seeds"])).all()
    for name in ("defense_utility", "defense_perturbation"):
        assert (workdir / f"results/figures/{name}.png").stat().st_size


def _plan(workdir, cfg_dict, tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg_dict))
    run = run_snakemake(workdir, "--cores", "1", "-n", configfile=path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout + run.stderr


def _jobs(plan: str, rule: str) -> list[str]:
    """The wildcards of every planned job of ``rule``."""
    blocks = re.findall(rf"^(?:local)?rule {rule}:\n(.*?)(?:\n\n|\Z)", plan, re.M | re.S)
    return [re.search(r"wildcards: (.*)", b)[1] for b in blocks if "wildcards:" in b]


def test_adding_a_seed_trains_only_the_new_seeds_cells(root, smoke_run, tmp_path):
    workdir, _ = smoke_run
    changed = yaml.safe_load((root / "configs" / "smoke.yaml").read_text())
    changed["surrogates"]["seeds"] = [0, 1, 2]
    plan = _plan(workdir, changed, tmp_path, "more-seeds")
    trained = _jobs(plan, "train_surrogates")
    assert trained and all("seed=2" in w for w in trained), trained
    assert all("seed=2" in w for w in _jobs(plan, "sample_pool") + _jobs(plan, "run_attack"))
    assert "rule train_victim:" not in plan and "rule train_defended_surrogates:" not in plan


def test_adding_an_attack_or_an_architecture_trains_nothing_already_there(
    root, smoke_run, tmp_path
):
    workdir, _ = smoke_run
    changed = yaml.safe_load((root / "configs" / "smoke.yaml").read_text())
    changed["attacks"]["random-uci-digits"]["archs"] = ["lenet", "resnet8"]
    changed["attacks"]["random-photos-2"] = dict(changed["attacks"]["random-photos"])
    changed["victims"]["digits-lenet"]["attacks"].append("random-photos-2")
    plan = _plan(workdir, changed, tmp_path, "more-axes")
    trained = _jobs(plan, "train_surrogates")
    assert trained
    for wildcards in trained:
        assert "attack=random-photos-2" in wildcards or (
            "attack=random-uci-digits" in wildcards and "arch=resnet8" in wildcards
        ), wildcards
    assert {w for w in _jobs(plan, "sample_pool")} <= {
        w for w in _jobs(plan, "sample_pool") if "random-photos-2" in w
    }


def test_adding_a_defense_queries_no_victim_with_a_sampling_attack(root, smoke_run, tmp_path):
    """Sampling attackers' caches serve every defense; a sequential attacker is rerun only
    against the new defense (it must meet the defended API)."""
    workdir, _ = smoke_run
    changed = yaml.safe_load((root / "configs" / "smoke.yaml").read_text())
    changed["defenses"]["defended"]["defenses"]["mad"] = {"epsilon": [0.5, 0.9]}
    plan = _plan(workdir, changed, tmp_path, "more-defenses")
    assert "train_defended_surrogates" in plan
    for rule in ("sample_pool", "train_victim", "train_surrogates", "train_defense_models"):
        assert not _jobs(plan, rule), rule
    reruns = _jobs(plan, "run_attack")
    assert reruns and all("attack=adaptive-letters, defense=mad@0.9" in w for w in reruns)


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
        "sample_pool",
        "train_surrogates",
        "train_defended_surrogates",
        "evaluate_detectors",
    ):
        assert rule in plan
    cfg = config.validate(yaml.safe_load((root / "configs/paper.yaml").read_text()))
    assert len(config.victim_attacks(cfg)) == 14 and cfg["device"] == "cuda"
    assert cfg["surrogates"]["training"]["optimizer"] == "sgd"
    assert cfg["surrogates"]["training"]["momentum"] == 0.5
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("configfile", [None, "configs/scale.yaml"])
def test_other_configs_plan_from_any_directory(root, tmp_path, configfile):
    """The embedded default (found from any --directory, and alone: no merge with others)
    and the scale grid plan."""
    path = None if configfile is None else root / configfile
    run = run_snakemake(tmp_path, "-n", "--cores", "2", configfile=path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train_surrogates" in run.stdout + run.stderr
