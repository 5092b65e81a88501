"""The whole DAG on configs/smoke.yaml, in a temporary directory."""

import json
import math
import os
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_snakemake
from scipy.stats import binomtest

from stealbench import config
from stealbench.io import read_parquet_meta
from stealbench.report import tables
from stealbench.report.tables import RECOVERY_TARGET

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


# configs/smoke.yaml's grid, worked out by hand from the file: per (victim, attack) its
# granularities, budgets, archs and inits (the attack's own, else surrogates': probs, top2,
# round1, label; 50, 200; lenet, resnet8; scratch), each with seeds 0 and 1.
SURROGATES_DEFAULT_AXES = (
    ["probs", "top2", "round1", "label"],
    [50, 200],
    ["lenet", "resnet8"],
    ["scratch"],
)
PROBS_LENET = (["probs"], [50, 200], ["lenet"], ["scratch"])
PROBS_LABEL_LENET = (["probs", "label"], [50, 200], ["lenet"], ["scratch"])
LETTERS = (["probs", "label"], [50, 200, 300], ["lenet"], ["scratch", "public-lenet"])
SMOKE_AXES = {
    ("digits-lenet", "random-digits"): SURROGATES_DEFAULT_AXES,
    ("digits-lenet", "random-letters"): LETTERS,
    ("digits-lenet", "random-photos"): PROBS_LENET,
    ("digits-lenet", "adaptive-letters"): PROBS_LABEL_LENET,
    ("digits-lenet", "jbda-digits"): PROBS_LENET,
    ("digits-lenet", "activethief-letters"): PROBS_LABEL_LENET,
    ("digits-lenet", "dfme"): PROBS_LENET,
    ("digits-lenet-pt", "random-letters"): LETTERS,
    ("digits-resnet8", "random-digits"): SURROGATES_DEFAULT_AXES,
    ("digits-resnet8", "random-uci-digits"): PROBS_LABEL_LENET,
}
SMOKE_SEEDS = [0, 1]


def test_cells_table_has_one_row_per_cell(smoke_run):
    workdir, _ = smoke_run
    cells = table(workdir, "cells")
    expected = {
        (victim, attack, g, b, arch, init, seed)
        for (victim, attack), (grans, budgets, archs, inits) in SMOKE_AXES.items()
        for g in grans
        for b in budgets
        for arch in archs
        for init in inits
        for seed in SMOKE_SEEDS
    }
    # digits-lenet: random-digits 4 x 2 x 2 x 1 x 2 seeds = 32, random-letters 2 x 3 x 1 x 2 x 2
    # = 24, random-photos, jbda-digits and dfme 1 x 2 x 1 x 1 x 2 = 4 each, adaptive-letters and
    # activethief-letters 2 x 2 x 1 x 1 x 2 = 8 each: 84; digits-lenet-pt: 24; digits-resnet8:
    # 32 + random-uci-digits 8 = 40. In all 84 + 24 + 40 = 148.
    assert len(expected) == 148
    got = set(cells[CELL_KEYS].itertuples(index=False, name=None))
    assert got == expected and len(cells) == len(expected)
    for metric in ["victim_acc", "test_acc", "agreement"]:
        assert cells[metric].between(0, 1).all()
    assert (cells["kl_divergence"] >= 0).all()
    pd.testing.assert_series_equal(
        cells["recovery"], cells["test_acc"] / cells["victim_acc"], check_names=False
    )
    assert set(cells["strategy"]) == {"random", "adaptive", "jbda", "activethief", "dfme"}
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
    workdir, _ = smoke_run
    reproduction = table(workdir, "reproduction")
    # every out-of-distribution attack the smoke grid runs: those on the letters and photos
    # pools (digits and uci-digits, dfme's too, are the victims' task)
    ood = {"random-letters", "random-photos", "adaptive-letters", "activethief-letters"}
    assert set(reproduction["attack"]) == ood
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


# Per (victim, attack) of configs/smoke.yaml, by hand: (the largest budget a seed sends, the
# attackers that send it, whether the attack is sequential). The budget is the largest of
# its cells' budgets and of defenses.defended.budgets (200) for the three defended pairs
# (digits-lenet against random-digits, random-letters and adaptive-letters). A sampling
# attack has one attacker per seed (0, 1; the defended seed 0 among them); a sequential one
# one per seed and granularity of its undefended runs, plus one per defended run: the
# sequential defenses none and mad at seed 0, at the defended granularity probs (the
# undefended run at seed 0 already answers probs behind none).
SMOKE_QUERIES = {
    ("digits-lenet", "random-digits"): (200, 2, False),
    ("digits-lenet", "random-letters"): (300, 2, False),  # its budgets 50, 200, 300
    ("digits-lenet", "random-photos"): (200, 2, False),
    ("digits-lenet", "adaptive-letters"): (200, 2 * 2 + 1, True),  # probs, label x 2 + mad
    ("digits-lenet", "jbda-digits"): (200, 2 * 1, True),  # probs x 2 seeds
    ("digits-lenet", "activethief-letters"): (200, 2 * 2, True),  # probs, label x 2 seeds
    ("digits-lenet", "dfme"): (200, 2 * 1, True),
    ("digits-lenet-pt", "random-letters"): (300, 2, False),
    ("digits-resnet8", "random-digits"): (200, 2, False),
    ("digits-resnet8", "random-uci-digits"): (200, 2, False),
}


def test_query_accounting(smoke_run):
    """A query is one image sent to the API: every seed's budget (every run of a sequential
    attacker) counts; the victim computed one posterior per distinct image."""
    workdir, _ = smoke_run
    queries = table(workdir, "queries")
    assert len(queries) == len(SMOKE_QUERIES) == 10
    for row in queries.itertuples():
        budget, attackers, sequential = SMOKE_QUERIES[(row.victim, row.attack)]
        assert row.largest_budget == budget
        assert row.attackers == attackers
        assert row.queries_sent == attackers * budget
        if sequential:  # each answer is a fresh question to the victim
            assert row.victim_passes == row.queries_sent
        else:  # seeds' samples overlap: the cache asks the victim once per image
            assert budget <= row.victim_passes < row.queries_sent


def test_victims_learn_their_task_and_the_backbone_is_used(smoke_run):
    workdir, cfg = smoke_run
    for victim in cfg["victims"]:
        metrics = json.loads((workdir / f"results/victims/{victim}/metrics.json").read_text())
        # The accuracy every table divides by, recomputed from the victim's own test outputs.
        outputs = pd.read_parquet(workdir / f"results/victims/{victim}/test_outputs.parquet")
        predicted = np.stack(outputs["probs"].to_numpy()).argmax(axis=1)
        correct = int((predicted == outputs["label"].to_numpy()).sum())
        assert metrics["test_acc"] == correct / len(outputs), victim
        assert len(outputs) == 200  # the smoke grid's test split of `digits`
        # Learnt, not lucky: the chance of doing this well by guessing among 10 classes.
        assert binomtest(correct, len(outputs), 0.1, alternative="greater").pvalue < 1e-9, (
            victim,
            metrics["test_acc"],
        )
        assert (metrics["backbone_checksum"] is not None) == (metrics["init"] != "scratch")
    backbone = json.loads((workdir / "results/pretrain/public-lenet/metrics.json").read_text())
    assert backbone["num_classes"] == 52 + 2  # letters of both cases and two photographs


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
    jbda = prada[prada["strategy"] == "jbda"]
    assert len(jbda) and jbda["flagged"].all()  # what PRADA was designed for
    counted = monitored[monitored["monitor"] == "query-count"]  # the baseline, beside it
    assert len(counted) == len(prada)
    assert (counted["flagged"] == (counted["queries"] > 150)).all()
    curve = table(workdir, "prada_curve")
    assert set(curve["monitor"]) == {"prada", "query-count"}
    assert curve.loc[curve["monitor"] == "query-count", "limit"].notna().all()
    defended = table(workdir, "defended")
    # one instance per defense, two for reverse-sigmoid's beta sweep: 11 in all
    instances = {
        "none",
        "ood-shuffle",
        "reverse-sigmoid@0.5",
        "reverse-sigmoid@1",
        "gaussian-noise",
        "top-k@1",
        "rounding@1",
        "mad@0.5",
        "mad-argmax@0.5",
        "adaptive-misinformation@0.9",
        "dawn@0.2",
    }
    assert set(defended["defense_id"]) == instances
    # digits-lenet's random-digits and random-letters meet all 11 through their caches,
    # adaptive-letters is rerun against its 2 sequential defenses (none, mad); each at one
    # budget (200), granularity (probs), arch (lenet) and seed (0): 11 + 11 + 2 = 24
    assert len(defended) == 24
    sequential = defended[defended["strategy"] == "adaptive"]
    assert set(sequential["defense"]) == {"none", "mad"}
    assert defended["benign_utility"].between(0, 1).all()
    none = defended[defended["defense"] == "none"]
    assert (none["benign_utility"] == none["victim_acc"]).all() and (none["attack_l1"] == 0).all()
    mad = defended[defended["defense"] == "mad"]
    assert (mad["attack_l1"] <= 0.5 + 1e-5).all() and (mad["attack_l1"] > 0).all()
    dawn = table(workdir, "dawn")
    # one row per sampling attack defended (digits-lenet's random-digits and random-letters)
    assert len(dawn) == 2 and (dawn["dawn_watermarks"] > 0).all()
    assert (dawn["dawn_independent"] == len(cfg["defenses"]["dawn"]["independent_seeds"])).all()
    for name in ("defense_utility", "defense_perturbation"):
        assert (workdir / f"results/figures/{name}.png").stat().st_size


# ------------------------------------------------------------------------------- findings
# Each test recomputes a finding's verdict and numbers from the tables with its own pandas,
# compares them with results/findings.json, and finds them printed in results/findings.md.


@pytest.fixture(scope="module")
def found(smoke_run):
    """(findings.json, {id: that finding's section of findings.md})."""
    workdir, _ = smoke_run
    data = json.loads((workdir / "results/findings.json").read_text())
    text = (workdir / "results/findings.md").read_text()
    sections = {}
    for id, finding in data.items():
        assert finding["id"] == id and text.count(f"## {finding['title']}\n") == 1, id
        sections[id] = text.split(f"## {finding['title']}\n")[1].split("\n## ")[0].strip()
    return data, sections


def close(a, b):
    """A number in findings.json equals one recomputed here (null where it is NaN)."""
    if b is None or pd.isna(b):
        return a is None
    return a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def pm(mean, half):
    return f"{mean:.3f}" + ("" if pd.isna(half) else f" ± {half:.3f}")


FEW = "not enough seeds"  # the smoke grid's 2 seeds (1 for defended cells) meet it often
DEPENDS = "depends on the victim"


def undecided(seeds, difference, half):
    """Too few seeds (under 3) to tell ``difference`` from none: it lies inside the half-width
    (always, where there is no interval)."""
    return int(seeds) < 3 and not abs(difference) > half


def pooled(by_victim):
    """The victims' common verdict, else DEPENDS."""
    answers = set(by_victim.values())
    return answers.pop() if len(answers) == 1 else DEPENDS


def said(verdict):
    return verdict[0].upper() + verdict[1:]


def test_findings_json_has_every_finding_and_plain_json(found, smoke_run):
    workdir, _ = smoke_run
    data, sections = found
    assert list(data) == sorted(
        [
            "claim1",
            "pretraining",
            "claim2a",
            "claim2b",
            "budget",
            "strategies",
            "claim4",
            "claim3",
            "prada",
            "defenses",
            "dawn",
        ]
    )
    for finding in data.values():
        assert set(finding) == {
            "id",
            "title",
            "verdict",
            "rule",
            "thresholds",
            "numbers",
            "by_victim",
        }
        assert f"Rule: {finding['rule']}" in sections[finding["id"]], finding["id"]
    # NaN would be written as a bare NaN, which is not JSON
    json.loads((workdir / "results/findings.json").read_text(), parse_constant=pytest.fail)


def test_claim1_finding_follows_from_the_budget_table(smoke_run, found):
    workdir, _ = smoke_run
    data, sections = found
    finding, section = data["claim1"], sections["claim1"]
    target = finding["thresholds"]["recovery_target"]
    assert target == RECOVERY_TARGET
    budget = table(workdir, "budget")
    ood = budget[budget["adversary"] == "out-of-distribution"]
    assert len(ood)
    expected = {}
    for (victim, granularity), part in ood.groupby(["victim", "granularity"]):
        key = f"{victim}/{granularity}"
        got = finding["numbers"][key]
        line = next(
            x
            for x in section.splitlines()
            if x.startswith(f"- **{victim}**") and f"`{granularity}`" in x
        )
        smallest = part["smallest_budget_to_target"].min()
        expected[key] = "no" if pd.isna(smallest) else "yes"
        if pd.isna(smallest):  # undecided where any series is inside its interval of target
            gaps = part["recovery_at_largest"] - target
            halves = part["recovery_ci95_at_largest"]
            if any(map(undecided, part["seeds"], gaps, halves)):
                expected[key] = FEW
        else:  # the series that reaches it first, at that budget
            row = part[
                (part["attack"] == got["attack"])
                & (part["surrogate_arch"] == got["surrogate_arch"])
                & (part["surrogate_init"] == got["surrogate_init"])
                & (part["smallest_budget_to_target"] == smallest)
            ].iloc[0]
            at = list(row["budgets"]).index(int(smallest))
            gap = row["recovery_by_budget"][at] - target
            if undecided(row["seeds"], gap, row["recovery_ci95_by_budget"][at]):
                expected[key] = FEW
        if pd.isna(smallest):
            top = part[part["recovery_at_largest"] == part["recovery_at_largest"].max()]
            assert got["stolen"] is False and close(
                got["recovery"], top["recovery_at_largest"].max()
            )
            # the best of any attack and surrogate tied at the top
            best = top[(top["attack"] == got["attack"]) & (top["largest_budget"] == got["budget"])]
            assert len(best) and "does **not** reach" in line
            assert (
                f"best {pm(got['recovery'], best['recovery_ci95_at_largest'].iloc[0])} at "
                f"{got['budget']} queries, {got['attack']}" in line
            )
        else:
            assert got["stolen"] is True and got["budget"] == int(smallest)
            assert f"reaches {target} at **{int(smallest)}** queries" in line
    assert finding["verdict"] == expected
    for key, verdict in expected.items():
        victim, granularity = key.split("/")
        assert finding["by_victim"][victim][granularity] == verdict
    stolen = sorted(
        k.split("/")[0] for k, v in expected.items() if k.endswith("/probs") and v == "yes"
    )
    assert f"stolen within the grid: {', '.join(stolen) or 'none'};" in section


def test_pretraining_finding_follows_from_the_pretraining_table(smoke_run, found):
    workdir, _ = smoke_run
    data, sections = found
    finding, section = data["pretraining"], sections["pretraining"]
    pretraining = table(workdir, "pretraining")
    assert len(pretraining)
    series = ["dataset", "attack", "granularity"]
    assert pretraining.groupby("dataset")["victim_arch"].nunique().max() == 1
    means = pretraining.groupby([*series, "budget", "victim_init", "surrogate_init"]).agg(
        recovery_mean=("recovery_mean", "mean"),
        recovery_ci95=("recovery_ci95", "mean"),
        seeds=("seeds", "min"),
    )
    compared, verdicts = 0, {}
    for (dataset, attack, granularity, budget), at in means.groupby(level=[0, 1, 2, 3]):
        at = at.droplevel([0, 1, 2, 3])
        key = f"{dataset}/{attack}/{granularity}"
        verdicts.setdefault(key, "no")
        if ("scratch", "scratch") not in at.index:
            continue
        base = at.loc[("scratch", "scratch")]
        for (v, a), row in at.drop(index=("scratch", "scratch")).iterrows():
            got = finding["numbers"][f"{key}/{budget}/{v}/{a}"]
            difference = row["recovery_mean"] - base["recovery_mean"]
            half = row["recovery_ci95"] + base["recovery_ci95"]
            beyond = difference > half
            assert close(got["difference"], difference) and got["beyond_ci"] == beyond
            compared += 1
            line = next(
                x
                for x in section.splitlines()
                if x.startswith(f"- {dataset}, {attack}, `{granularity}`")
            )
            shown = f"{budget} ({v} victim, {a} attacker: {difference:+.3f})"
            assert (shown in line) == beyond
            if beyond:
                verdicts[key] = "yes"
            elif verdicts[key] == "no" and undecided(
                min(row["seeds"], base["seeds"]), difference, half
            ):
                verdicts[key] = FEW
    assert compared == len(finding["numbers"]) > 0
    assert finding["verdict"] == verdicts


def test_granularity_finding_follows_from_the_cells(smoke_run, found):
    workdir, _ = smoke_run
    data, sections = found
    finding, section = data["claim2a"], sections["claim2a"]
    cells = table(workdir, "cells")
    keys = ["victim", "attack", "budget", "surrogate_arch", "surrogate_init", "seed"]
    probs = cells[cells["granularity"] == "probs"].set_index(keys)["test_acc"]
    label = cells[cells["granularity"] == "label"].set_index(keys)["test_acc"]
    probs, label = probs.align(label, join="inner")
    diff = probs - label
    wins = int((diff > 0).sum())
    by_victim = {}
    for victim, d in diff.groupby(level="victim"):
        won = int((d > 0).sum())
        by_victim[victim] = "yes" if d.mean() > 0 and won > len(d) / 2 else "no"
        seeds = d.index.get_level_values("seed").nunique()
        if undecided(seeds, d.mean(), tables.ci95(d)):
            by_victim[victim] = FEW
    verdict = pooled(by_victim)
    for victim, answer in by_victim.items():  # each victim's answer, where they differ
        assert (f"- **{victim}: {said(answer)}**" in section) == (verdict == DEPENDS)
    n = finding["numbers"]
    assert finding["verdict"] == verdict and finding["by_victim"] == by_victim
    assert (n["pairs"], n["wins"]) == (len(diff), wins)
    assert close(n["mean_difference"], diff.mean())
    assert close(n["mean_difference_ci95"], tables.ci95(diff))
    assert section.startswith(f"**{said(verdict)}.**")
    assert f"probabilities win {wins} of {len(diff)}" in section
    assert f"(mean difference {pm(diff.mean(), tables.ci95(diff))})" in section
    for budget, d in diff.groupby(level="budget"):
        assert close(n["by_budget"][str(budget)]["difference"], d.mean())


def test_architecture_finding_follows_from_the_architecture_table(smoke_run, found):
    workdir, _ = smoke_run
    data, sections = found
    finding, section = data["claim2b"], sections["claim2b"]
    architecture = table(workdir, "architecture")
    differences, halves, seeds = {}, {}, {}
    for (victim, attack), part in architecture.groupby(["victim", "attack"]):
        same = part.loc[part["matches_victim"], "test_acc_mean"]
        other = part.loc[~part["matches_victim"], "test_acc_mean"]
        if len(same) and len(other):
            differences[f"{victim}/{attack}"] = same.mean() - other.mean()
            halves[f"{victim}/{attack}"] = part["test_acc_ci95"].sum()
            seeds[f"{victim}/{attack}"] = part["seeds"].min()
    assert differences
    wins = sum(d > 0 for d in differences.values())
    by_victim = {}
    for victim in sorted({k.split("/")[0] for k in differences}):
        keys = [k for k in differences if k.split("/")[0] == victim]
        won = sum(differences[k] > 0 for k in keys)
        by_victim[victim] = "yes" if won > len(keys) / 2 else "no"
        if min(seeds[k] for k in keys) < 3:  # a difference inside its interval counts for neither
            clear = sum(differences[k] > halves[k] for k in keys)
            unclear = sum(undecided(2, differences[k], halves[k]) for k in keys)
            by_victim[victim] = (
                "yes"
                if clear > len(keys) / 2
                else ("no" if clear + unclear <= len(keys) / 2 else FEW)
            )
    verdict = pooled(by_victim)
    n = finding["numbers"]
    assert finding["verdict"] == verdict and finding["by_victim"] == by_victim
    assert (n["wins"], n["pairs"]) == (wins, len(differences))
    assert all(close(n["differences"][k], d) for k, d in differences.items())
    mean = sum(differences.values()) / len(differences)
    assert section.startswith(f"**{said(verdict)}.**")
    assert f"It does in {wins} of {len(differences)} (mean difference {mean:+.3f})" in section


def test_budget_finding_follows_from_the_cells(smoke_run, found):
    workdir, _ = smoke_run
    data, sections = found
    finding, section = data["budget"], sections["budget"]
    cells = table(workdir, "cells")
    series = ["victim", "attack", "granularity", "surrogate_arch", "surrogate_init", "seed"]
    growing = counted = 0
    gains = {}
    for key, part in cells.sort_values("budget").groupby(series):
        if part["budget"].nunique() > 1:
            counted += 1
            growing += part["test_acc"].iloc[-1] > part["test_acc"].iloc[0]
            gains[key] = part["test_acc"].iloc[-1] - part["test_acc"].iloc[0]
    gains = pd.Series(gains)
    by_victim = {}
    for victim, gain in gains.groupby(level=0):
        by_victim[victim] = "yes" if (gain > 0).sum() > len(gain) / 2 else "no"
        over_seeds = gain.groupby(level=[0, 1, 2, 3, 4])  # each series over its seeds
        if over_seeds.size().min() < 3:  # a gain inside its interval counts for neither
            d, h = over_seeds.mean(), over_seeds.agg(tables.ci95)
            clear = int((d > h).sum())
            unclear = int(sum(undecided(2, a, b) for a, b in zip(d, h, strict=True)))
            by_victim[victim] = (
                "yes" if clear > len(d) / 2 else ("no" if clear + unclear <= len(d) / 2 else FEW)
            )
    verdict = pooled(by_victim)
    assert finding["verdict"] == verdict and finding["by_victim"] == by_victim
    assert (finding["numbers"]["growing"], finding["numbers"]["series"]) == (growing, counted)
    assert section.startswith(f"**{said(verdict)}.**")
    assert f"It does in {growing} of {counted}." in section
    for budget, mean in cells.groupby("budget")["test_acc"].mean().items():
        assert close(finding["numbers"]["mean_by_budget"][str(budget)], mean)
        assert f"| {budget} | {mean:.3f} |" in section


def test_strategies_finding_follows_from_the_strategies_table(smoke_run, found):
    workdir, _ = smoke_run
    data, sections = found
    finding, section = data["strategies"], sections["strategies"]
    strategies = table(workdir, "strategies")
    expected = {}
    for (victim, pool), part in strategies.groupby(["victim", "pool"]):
        shared = [b for b, at in part.groupby("budget") if at["strategy"].nunique() > 1]
        at = part[part["budget"] == (max(shared) if shared else part["budget"].max())]
        for granularity, rows in at.groupby("granularity"):
            random = rows[rows["strategy"] == "random"]
            others = rows[rows["strategy"] != "random"]
            several = others.groupby("attack")["surrogate_arch"].nunique().max() > 1
            for row in others.itertuples():
                theirs = random[random["surrogate_arch"] == row.surrogate_arch]
                within = abs(row.vs_random) <= row.test_acc_ci95 + (
                    theirs["test_acc_ci95"].iloc[0] if len(theirs) else 0
                )
                seeds = min([row.seeds, *theirs["seeds"]])
                key = f"{victim}/{row.attack}/{granularity}" + (
                    f"/{row.surrogate_arch}" if several else ""
                )
                expected[key] = (
                    "within CIs" if within else ("better" if row.vs_random > 0 else "worse")
                )
                if within and seeds < 3:  # no difference, on too few seeds to say so
                    expected[key] = FEW
                got = finding["numbers"][key]
                assert got["budget"] == row.budget and close(got["vs_random"], row.vs_random)
                assert close(got["test_acc_mean"], row.test_acc_mean)
                line = (
                    f"- {victim}, `{granularity}`, {row.budget} queries: **{row.attack}** "
                    f"{pm(row.test_acc_mean, row.test_acc_ci95)} "
                    f"{'beats' if row.vs_random > 0 else 'loses to'} random sampling of {pool} "
                    f"by {abs(row.vs_random):.3f} ({'within' if within else 'beyond'} the two"
                )
                assert line in section, line
    assert expected and finding["verdict"] == expected


def test_adversary_finding_follows_from_the_summary(smoke_run, found):
    workdir, _ = smoke_run
    data, sections = found
    finding, section = data["claim4"], sections["claim4"]
    summary = table(workdir, "summary")
    scratch = summary[summary["surrogate_init"] == "scratch"]
    won, faced, by_victim = 0, 0, {}
    for victim, part in scratch.groupby("victim"):
        realistic = part[part["adversary"] == "realistic"]
        if realistic.empty:
            continue
        at = part[part["budget"] == realistic["budget"].max()]
        means = at.groupby("adversary")["test_acc_mean"].mean()
        if "out-of-distribution" not in means:
            continue
        faced += 1
        won += means["realistic"] > means["out-of-distribution"]
        difference = means["realistic"] - means["out-of-distribution"]
        half = at.groupby("adversary")["test_acc_ci95"].mean().sum()
        by_victim[victim] = "yes" if difference > 0 else "no"
        if undecided(at["seeds"].min(), difference, half):
            by_victim[victim] = FEW
        got = finding["numbers"]["per_victim"][victim]
        assert close(got["realistic"], means["realistic"])
        assert close(got["out_of_distribution"], means["out-of-distribution"])
        assert (
            f"| {victim} | {means['out-of-distribution']:.3f} | {means['realistic']:.3f} |"
            in section
        )
    assert faced
    verdict = pooled(by_victim)
    assert finding["verdict"] == verdict and finding["by_victim"] == by_victim
    assert (finding["numbers"]["victims_won"], finding["numbers"]["victims"]) == (won, faced)
    assert section.startswith(f"**{said(verdict)}.**")
    assert f"It does for {won} of {faced} victims facing both" in section


def test_detector_finding_follows_from_the_detection_table(smoke_run, found):
    workdir, _ = smoke_run
    data, sections = found
    finding, section = data["claim3"], sections["claim3"]
    detection = table(workdir, "detection")
    tpr = detection.loc[detection["queries_from"] == "test", "tpr_in"].mean()
    pools = detection[detection["queries_from"] == "pool"]
    seen = pools.loc[pools["seen"] == "seen kind", "flagged_share"].mean()
    attacks = detection[detection["queries_from"] == "attack"]
    realistic = attacks.loc[attacks["in_distribution"], "flagged_share"]
    assert len(realistic)
    limit = finding["thresholds"]["evades_flagged_at_most"]
    by_victim = {
        victim: "yes" if share.mean() <= limit else "no"
        for victim, share in realistic.groupby(attacks["victim"])
    }
    verdict = pooled(by_victim)
    n = finding["numbers"]
    assert finding["verdict"] == verdict and finding["by_victim"] == by_victim
    assert close(n["test_tpr"], tpr) and close(n["seen_tnr"], seen)
    assert close(n["realistic_flagged"], realistic.mean())
    assert n["unseen_tnr"] is None  # the smoke grid's pools are all of kinds it saw
    assert f"accepts {tpr:.3f} of the victims' own test images" in section
    assert f"flags, on average, {seen:.3f} of the kinds" in section
    if verdict == DEPENDS:
        assert f"**The realistic adversary evades it: {DEPENDS}.**" in section
        for victim, share in realistic.groupby(attacks["victim"]):
            line = f"- **{victim}: {said(by_victim[victim])}**, it flags {share.mean():.3f}."
            assert line in section
    else:
        assert (
            f"**The realistic adversary evades it: {said(verdict)}.** Rule: the realistic "
            f"adversary evades the pre-classifier when at most {limit} of its queries are "
            f"flagged. It flags {realistic.mean():.3f}." in section
        )


def test_prada_finding_follows_from_the_prada_table(smoke_run, found):
    workdir, _ = smoke_run
    data, sections = found
    finding, section = data["prada"], sections["prada"]
    monitored = table(workdir, "prada")  # every stream monitor's rows: PRADA's are the finding's
    prada = monitored[monitored["monitor"] == "prada"]
    benign = prada.loc[prada["kind"] == "benign", "flagged"]
    n = finding["numbers"]
    assert close(n["false_positive_rate"], benign.mean())
    assert (
        f"{int(benign.sum())} of {len(benign)} benign streams (false-positive rate "
        f"{benign.mean():.3f}" in section
    )
    # per benign source: streams are named benign-<source>-<i>
    streams = prada[prada["kind"] == "benign"]
    sources = streams["stream"].str.replace(r"^benign-(.*)-\d+$", r"\1", regex=True)
    rates = streams.groupby(sources)["flagged"].mean()
    assert set(n["false_positive_rate_by_source"]) == set(rates.index)
    for source, rate in rates.items():
        assert close(n["false_positive_rate_by_source"][source], rate)
        assert f"{source}: {rate:.3f}" in section
    attackers = prada[prada["kind"] == "attacker"]
    expected = {}

    def flags(part):
        flagged, streams = int(part["flagged"].sum()), len(part)
        return "yes" if flagged == streams else ("partly" if flagged else "no")

    for strategy, part in attackers.groupby("strategy"):
        flagged, streams = int(part["flagged"].sum()), len(part)
        by_victim = {v: flags(rows) for v, rows in part.groupby("victim")}
        expected[strategy] = pooled(by_victim)
        for victim, answer in by_victim.items():
            assert finding["by_victim"][victim][strategy] == answer
        assert (n["strategies"][strategy]["flagged"], n["strategies"][strategy]["streams"]) == (
            flagged,
            streams,
        )
        assert (
            f"- **{strategy}: {said(expected[strategy])}**, {flagged} of {streams} "
            "attackers flagged" in section
        )
    assert "jbda" in expected and finding["verdict"] == expected


def test_matched_cost_table_follows_from_the_defended_table(smoke_run):
    workdir, _ = smoke_run
    defended, matched = table(workdir, "defended"), table(workdir, "matched_cost")
    keys = ["victim", "attack", "granularity", "budget", "surrogate_arch", "seed"]
    base = defended[defended["defense"] == "none"].set_index(keys)
    cells = defended[defended["defense"] != "none"].join(
        base[["benign_utility", "test_acc"]], on=keys, rsuffix="_undefended"
    )
    cells["cost"] = cells["benign_utility_undefended"] - cells["benign_utility"]
    by_id = cells.set_index(["victim", "attack", "budget", "defense_id"])
    # every defended setting and defense, at every matched cost
    expected = {
        (v, a, b, d, c)
        for v, a, b, d in cells[["victim", "attack", "budget", "defense"]].itertuples(index=False)
        for c in tables.MATCHED_COSTS
    }
    assert (
        set(
            matched[["victim", "attack", "budget", "defense", "cost"]].itertuples(
                index=False, name=None
            )
        )
        == expected
    )
    assert (matched["seeds"] == 1).all()  # the smoke grid has one seed
    for row in matched.itertuples():
        undefended = base.loc[
            (row.victim, row.attack, row.granularity, row.budget, row.surrogate_arch, 0)
        ]
        assert close(row.undefended_acc_mean, undefended["test_acc"])
        assert close(row.drop_mean, row.undefended_acc_mean - row.attacker_acc_mean)
        lower = (
            by_id.loc[(row.victim, row.attack, row.budget, row.lower_id)]
            if row.lower_id != "none"
            else None
        )
        if not row.reached:  # read at the strongest strength, which costs less than `cost`
            assert row.upper_id is None and row.benign_cost_mean < row.cost
            assert close(row.attacker_acc_mean, lower["test_acc"])
            assert close(row.benign_cost_mean, lower["cost"])
            continue
        # reached: between the two points that bracket the cost, on the line through them
        upper = by_id.loc[(row.victim, row.attack, row.budget, row.upper_id)]
        low = (0.0, undefended["test_acc"]) if lower is None else (lower["cost"], lower["test_acc"])
        assert low[0] < row.cost <= upper["cost"] + 1e-9
        t = (row.cost - low[0]) / (upper["cost"] - low[0])
        assert close(row.attacker_acc_mean, low[1] + min(1.0, t) * (upper["test_acc"] - low[1]))


def test_defenses_finding_follows_from_the_matched_cost_table(smoke_run, found):
    workdir, _ = smoke_run
    data, sections = found
    finding, section = data["defenses"], sections["defenses"]
    costs = finding["thresholds"]["matched_costs"]
    stopped_below = finding["thresholds"]["stopped_recovery"]
    assert costs == list(tables.MATCHED_COSTS)
    matched = table(workdir, "matched_cost")
    largest = matched.groupby("attack")["budget"].max()
    top = matched[
        (matched["budget"] == matched["attack"].map(largest)) & (matched["granularity"] == "probs")
    ]
    stops = {f"{c:g}": set() for c in costs}
    by_victim = {}
    realistic_seen = False
    for (victim, attack), part in top.groupby(["victim", "attack"]):
        got = finding["numbers"]["by_attack"][f"{victim}/{attack}"]
        for cost in costs:
            at = part[np.isclose(part["cost"], cost)]
            best = at.loc[at["attacker_acc_mean"].idxmin()]
            entry = got["costs"][f"{cost:g}"]
            assert entry["costliest"] == best["defense"]
            for row in at.itertuples():
                n = entry["defenses"][row.defense]
                assert close(n["attacker_acc"], row.attacker_acc_mean)
                assert n["reached"] == row.reached
                stopped = row.recovery_mean < stopped_below <= row.undefended_recovery_mean
                assert n["stops"] == stopped
                if row.adversary == "realistic":
                    if stopped:
                        stops[f"{cost:g}"].add(row.defense)
                    # stopped beyond its interval, or too few seeds to tell
                    unclear = undecided(
                        row.seeds,
                        row.recovery_mean - stopped_below,
                        row.attacker_acc_ci95 / row.victim_acc,
                    ) and (row.undefended_recovery_mean >= stopped_below)
                    answer = "yes" if stopped and not unclear else (FEW if unclear else "no")
                    old = by_victim.get(victim, "no")
                    by_victim[victim] = (
                        "yes" if "yes" in (old, answer) else (FEW if FEW in (old, answer) else "no")
                    )
            assert f"at {cost:g} **{best['defense']}** ({best['attacker_acc_mean']:.3f}" in section
        realistic_seen |= part["adversary"].iloc[0] == "realistic"
    assert realistic_seen
    assert finding["verdict"] == pooled(by_victim) and finding["by_victim"] == by_victim
    assert finding["numbers"]["stops_realistic"] == {c: sorted(d) for c, d in stops.items()}
    assert any(x.startswith("- Stops the realistic adversary") for x in section.splitlines())


def test_dawn_finding_follows_from_the_dawn_and_detection_tables(smoke_run, found):
    workdir, _ = smoke_run
    data, sections = found
    finding, section = data["dawn"], sections["dawn"]
    dawn, detection = table(workdir, "dawn"), table(workdir, "detection")
    caught = dawn["dawn_caught"].mean()
    attacks = detection[detection["queries_from"] == "attack"]
    limit = finding["thresholds"]["let_through_flagged_at_most"]
    through = attacks.loc[attacks["flagged_share"] <= limit, ["victim", "source"]]
    through_dawn = dawn.merge(through, left_on=["victim", "attack"], right_on=["victim", "source"])
    # the finding weighs each (attack, budget) group equally; every group holds every seed
    caught_through = (
        through_dawn.groupby(["victim", "attack", "budget"])["dawn_caught"].mean().mean()
    )
    checks = int(dawn["dawn_independent"].sum())
    false_rate = dawn["dawn_false_claims"].sum() / checks
    by_victim = {
        victim: "yes" if share == 1 else ("partly" if share > 0 else "no")
        for victim, share in dawn.groupby("victim")["dawn_caught"].mean().items()
    }
    verdict = pooled(by_victim)
    n = finding["numbers"]
    assert finding["verdict"] == verdict and finding["by_victim"] == by_victim
    assert close(n["caught"], caught) and close(n["false_claim_rate"], false_rate)
    assert n["independent_checks"] == checks
    assert close(n["caught_let_through"], caught_through)
    assert section.startswith(f"**{said(verdict)}.**")
    assert (
        f"DAWN catches {caught:.3f} of the surrogates; of those whose queries the pre-classifier "
        f"let through (at most {limit} flagged), "
        f"{'–' if pd.isna(caught_through) else f'{caught_through:.3f}'}; false-claim rate "
        f"{false_rate:.3f} over {checks} checks." in section
    )


def _plan(workdir, cfg_dict, tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg_dict))
    run = run_snakemake(workdir, "--cores", "1", "-n", configfile=path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout + run.stderr


def _jobs(plan: str, rule: str) -> list[str]:
    """The wildcards of every planned job of ``rule`` (indented inside a group job's block:
    train_surrogates jobs are grouped, rules/surrogates.smk)."""
    blocks = re.findall(rf"^[ \t]*(?:local)?rule {rule}:\n(.*?)(?:\n\n|\Z)", plan, re.M | re.S)
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
