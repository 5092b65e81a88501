"""The report: tables from a synthetic grid whose effects are known, findings whose verdicts
and numbers must be what the tables imply (recomputed here), and figures checked for what
they draw."""

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.markers import MarkerStyle

from stealbench.report import figures, findings, tables
from stealbench.report.tables import AXES, RECOVERY_TARGET

# victim -> (arch, init, accuracy, base accuracy of its surrogates)
VICTIMS = {"v1": ("lenet", "scratch", 0.90, 0.50), "v2": ("lenet", "pt", 0.95, 0.30)}
# attack -> (strategy, pool, adversary)
ATTACKS = {
    "a-real": ("random", "p-real", "realistic"),
    "a-ood": ("random", "p-ood", "out-of-distribution"),
    "a-adapt": ("adaptive", "p-ood", "out-of-distribution"),
}
FACES = {"v1": ["a-real", "a-ood", "a-adapt"], "v2": ["a-ood"]}
INITS = {"a-ood": ["scratch", "pt"]}  # the others: surrogates from scratch only
BUDGETS = (10, 100, 1000)
PAPERS = {"v1": "cifar10-rn34"}


def _cells(
    probs_bonus=0.1,
    budget_slope=0.1,
    realistic_bonus=0.15,
    arch_bonus=0.05,
    adaptive_bonus=-0.05,
    pretrained_bonus=0.1,
    seeds=(0, 1),
):
    """One row per cell, every axis of the report; accuracy is a sum of known effects. With
    fewer than 3 ``seeds`` a verdict whose comparison is inside its intervals is "not enough
    seeds": a test of the rule itself takes 3."""
    rows = []
    for victim, attacks in FACES.items():
        victim_arch, victim_init, victim_acc, base = VICTIMS[victim]
        for attack in attacks:
            strategy, pool, adversary = ATTACKS[attack]
            for granularity in ("probs", "label"):
                for i, budget in enumerate(BUDGETS):
                    for arch in ("lenet", "resnet8"):
                        for init in INITS.get(attack, ["scratch"]):
                            for seed in seeds:
                                acc = (
                                    base
                                    + budget_slope * i
                                    + probs_bonus * (granularity == "probs")
                                    + realistic_bonus * (adversary == "realistic")
                                    + arch_bonus * (arch == victim_arch)
                                    + adaptive_bonus * (strategy == "adaptive")
                                    + pretrained_bonus * (init != "scratch")
                                    + 0.01 * seed
                                )
                                acc = float(np.clip(acc, 0.01, 0.99))
                                rows.append(
                                    {
                                        "victim": victim,
                                        "victim_arch": victim_arch,
                                        "victim_init": victim_init,
                                        "dataset": "d",
                                        "attack": attack,
                                        "strategy": strategy,
                                        "pool": pool,
                                        "adversary": adversary,
                                        "granularity": granularity,
                                        "budget": budget,
                                        "surrogate_arch": arch,
                                        "surrogate_init": init,
                                        "seed": seed,
                                        "victim_acc": victim_acc,
                                        "test_acc": acc,
                                        "agreement": acc,
                                        "recovery": acc / victim_acc,
                                        "kl_divergence": 0.1 + 0.01 * seed,
                                    }
                                )
    return pd.DataFrame(rows)


def _summary(**effects):
    return tables.summarise(_cells(**effects))


def _mean(frame, column="test_acc", **where):
    mask = np.ones(len(frame), bool)
    for key, value in where.items():
        mask &= frame[key] == value
    assert mask.any(), where
    return float(frame.loc[mask, column].mean())


# --------------------------------------------------------------------------- tables


def test_ci95_is_student_t_half_width():
    values = [0.5, 0.6, 0.7]
    # t(0.975, 2) = 4.302653; sd = 0.1; n = 3
    assert np.isclose(tables.ci95(values), 4.302653 * 0.1 / np.sqrt(3), rtol=1e-6)
    assert np.isnan(tables.ci95([0.4]))


def test_summarise_groups_over_seeds_only():
    cells = _cells()
    summary = tables.summarise(cells)
    assert len(summary) == len(cells) / 2 and (summary["seeds"] == 2).all()
    assert set(AXES) - {"seed"} <= set(summary.columns)
    for row in summary.sample(5, random_state=0).itertuples():
        where = {a: getattr(row, a) for a in AXES if a != "seed"}
        same = cells[(cells[list(where)] == pd.Series(where)).all(axis=1)]
        assert len(same) == 2
        assert np.isclose(row.test_acc_mean, same["test_acc"].mean())
        assert np.isclose(row.test_acc_ci95, tables.ci95(same["test_acc"]))
        assert np.isclose(row.kl_divergence_mean, 0.105)


def test_per_class_table_explodes_and_names_classes():
    cells = _cells().head(4).assign(class_acc=[[1.0, 0.5]] * 4, victim_class_acc=[[1.0, 1.0]] * 4)
    table = tables.per_class_table(cells, {"d": ["zero", "one"]})
    assert list(table["class_name"].unique()) == ["zero", "one"]
    assert np.allclose(table.loc[table["class"] == 1, "drop"], 0.5)
    assert np.allclose(table.loc[table["class"] == 0, "drop"], 0.0)
    assert len(table) == 2 * 2  # 4 cells = 2 (cell, seed) pairs, two classes each


def test_query_accounting_with_the_cache_metadata():
    cells = _cells()
    common = {"victim": "v1", "pool": "p-ood"}
    metas = [
        # random sampling: one file per seed, the second asking only for new images
        {
            **common,
            "attack": "a-ood",
            "strategy": "random",
            "seed": 0,
            "queries": 1000,
            "victim_passes": 1000,
            "budget": 1000,
        },
        {
            **common,
            "attack": "a-ood",
            "strategy": "random",
            "seed": 1,
            "queries": 1000,
            "victim_passes": 400,
            "budget": 1000,
        },
        # a sequential attacker: one run per granularity in one file
        {
            **common,
            "attack": "a-adapt",
            "strategy": "adaptive",
            "seed": 0,
            "defense_id": "none",
            "queries": {"probs": 1000, "label": 1000},
            "victim_passes": 2000,
            "budget": 1000,
        },
    ]
    table = tables.query_accounting(metas, cells).set_index("attack")
    assert table.loc["a-ood", "attackers"] == 2 and table.loc["a-adapt", "attackers"] == 2
    assert table.loc["a-ood", "queries_sent"] == 2000
    assert table.loc["a-ood", "victim_passes"] == 1400
    assert table.loc["a-adapt", "queries_sent"] == 2000
    for attack in ("a-ood", "a-adapt"):
        mine = cells[(cells["victim"] == "v1") & (cells["attack"] == attack)]
        assert table.loc[attack, "cells"] == len(mine)
        assert table.loc[attack, "passes_without_cache"] == mine["budget"].sum()
        assert np.isclose(
            table.loc[attack, "cache_saving"],
            mine["budget"].sum() / table.loc[attack, "victim_passes"],
        )


def test_reproduction_table_is_ood_probs_at_the_largest_budget_beside_the_paper():
    summary = _summary()
    table = tables.reproduction_table(summary, PAPERS)
    assert set(table["attack"]) == {"a-ood", "a-adapt"}
    assert (table["budget"] == 1000).all()
    expected = summary[
        (summary["granularity"] == "probs")
        & (summary["adversary"] == "out-of-distribution")
        & (summary["budget"] == 1000)
    ]
    assert len(table) == len(expected)
    assert (table["reaches_target"] == (table["recovery_mean"] >= RECOVERY_TARGET)).all()
    assert table["reaches_target"].any() and not table["reaches_target"].all()
    v1, v2 = table[table["victim"] == "v1"], table[table["victim"] == "v2"]
    assert (v1["paper_victim_acc"] == 0.946).all()
    assert np.allclose(v1["paper_recovery"], 0.882 / 0.946)
    assert v2["paper_victim_acc"].isna().all() and v2["paper_recovery"].isna().all()


def test_budget_table_finds_the_smallest_budget_reaching_the_target():
    summary = _summary()
    table = tables.budget_table(summary)
    keys = ["victim", "attack", "granularity", "surrogate_arch", "surrogate_init"]
    assert len(table) == len(summary.groupby(keys))
    for row in table.itertuples():
        series = summary[(summary[keys] == pd.Series(row._asdict())[keys]).all(axis=1)]
        reached = sorted(series.loc[series["recovery_mean"] >= RECOVERY_TARGET, "budget"])
        if reached:
            assert row.smallest_budget_to_target == reached[0]
        else:
            assert np.isnan(row.smallest_budget_to_target)
        assert row.budgets == list(BUDGETS) and row.largest_budget == 1000
    assert table["smallest_budget_to_target"].notna().any()
    assert table["smallest_budget_to_target"].isna().any()


def test_pretraining_table_keeps_the_rows_where_a_start_varies():
    summary = _summary()
    table = tables.pretraining_table(summary)
    # only a-ood is faced by victims of both starts (and has surrogates of both starts)
    assert set(table["attack"]) == {"a-ood"}
    assert len(table) == len(summary[summary["attack"] == "a-ood"])
    combos = set(zip(table["victim_init"], table["surrogate_init"], strict=True))
    assert combos == {("scratch", "scratch"), ("scratch", "pt"), ("pt", "scratch"), ("pt", "pt")}


def test_pretraining_table_leaves_out_a_victim_trained_with_outlier_exposure():
    """An OE twin from scratch is not the plain from-scratch victim: pooled with it, it would
    move the scratch / scratch side of the comparison."""
    summary = _summary()
    twin = summary[summary["victim_init"] == "scratch"].assign(victim="v-oe", recovery_mean=0.1)
    both = pd.concat([summary, twin], ignore_index=True)
    victims = pd.DataFrame({"victim": ["v-oe", *summary["victim"].unique()]})
    victims["oe_weight"] = [1.0] + [np.nan] * (len(victims) - 1)
    table = tables.pretraining_table(both, victims)
    assert "v-oe" not in set(table["victim"])
    pd.testing.assert_frame_equal(table, tables.pretraining_table(summary))
    assert "v-oe" in set(tables.pretraining_table(both)["victim"])  # without the victims table


def test_granularity_table_puts_granularities_side_by_side():
    summary = _summary()
    wide = tables.granularity_table(summary, PAPERS)
    assert list(wide.columns[5:9]) == ["probs_acc", "probs_ci95", "label_acc", "label_ci95"]
    assert (wide["budget"] == 1000).all()
    # one row per (victim, attack, surrogate) of the grid: none for pairs that do not exist
    cells = summary[summary["budget"] == 1000]
    assert len(wide) == len(cells) / 2 == 12
    assert wide[["probs_acc", "label_acc"]].notna().all().all()
    (row,) = wide[
        (wide["victim"] == "v1")
        & (wide["attack"] == "a-real")
        & (wide["surrogate_arch"] == "lenet")
    ].itertuples()
    row = row._asdict()
    cell = dict(victim="v1", attack="a-real", surrogate_arch="lenet", budget=1000)
    assert np.isclose(
        row["probs_acc"], _mean(summary, "test_acc_mean", granularity="probs", **cell)
    )
    assert np.isclose(
        row["label_acc"], _mean(summary, "test_acc_mean", granularity="label", **cell)
    )
    assert (wide.loc[wide["victim"] == "v1", "paper_label"] == 0.844).all()


def test_architecture_table_marks_the_victims_own_architecture():
    table = tables.architecture_table(_summary(), PAPERS)
    assert (table["matches_victim"] == (table["surrogate_arch"] == table["victim_arch"])).all()
    assert (table["budget"] == 1000).all() and len(table) == 2 * 4  # 4 (victim, attack) pairs
    assert (table.loc[table["victim"] == "v1", "paper_vgg16"] == 0.829).all()


def test_strategies_table_compares_each_strategy_with_random_on_its_pool():
    summary = _summary(adaptive_bonus=-0.05)
    table = tables.strategies_table(summary)
    # every attack of the victims that face more than one strategy, pools side by side
    assert set(table["victim"]) == {"v1"} and set(table["pool"]) == {"p-ood", "p-real"}
    assert set(table["strategy"]) == {"random", "adaptive"}
    assert set(table.loc[table["strategy"] == "adaptive", "pool"]) == {"p-ood"}
    assert np.allclose(table.loc[table["strategy"] == "random", "vs_random"], 0.0)
    # the synthetic effect of the adaptive strategy, wherever accuracy was not clipped
    assert np.allclose(table.loc[table["strategy"] == "adaptive", "vs_random"], -0.05)


def test_strategy_finding_compares_at_the_largest_budget_both_sides_have():
    # random sampling of p-ood runs to 10,000 queries; the adaptive strategy stops at 1000
    cells = _cells(adaptive_bonus=-0.05)
    longer = cells[(cells["attack"] == "a-ood") & (cells["budget"] == 1000)].assign(budget=10000)
    summary = tables.summarise(pd.concat([cells, longer], ignore_index=True))
    found = findings.strategy_finding(tables.strategies_table(summary), None, None)
    text = found.text
    adaptive = {k: v["vs_random"] for k, v in found.numbers.items() if "a-adapt" in k}
    # both surrogate architectures met a-adapt: one verdict each
    assert set(adaptive) == {
        f"v1/a-adapt/{g}/{arch}" for g in ("probs", "label") for arch in ("lenet", "resnet8")
    }
    assert np.allclose(list(adaptive.values()), -0.05)
    assert "**a-adapt**" in text and "1000 queries" in text and "10000 queries" not in text


# ------------------------------------------------------------------------- findings


def _pairs(cells):
    keys = ["victim", "attack", "budget", "surrogate_arch", "surrogate_init", "seed"]
    wide = cells.pivot_table(index=keys, columns="granularity", values="test_acc")
    return wide["probs"] - wide["label"]


@pytest.mark.parametrize("bonus", [0.1, -0.1, 0.0])
def test_granularity_finding_follows_the_paired_differences(bonus):
    cells = _cells(probs_bonus=bonus, seeds=(0, 1, 2))
    diff = _pairs(cells)
    found = findings.granularity_finding(cells)
    text, stats = found.text, found.numbers
    wins = int((diff > 0).sum())
    assert stats["pairs"] == len(diff) == len(cells) / 2
    assert stats["wins"] == wins
    assert np.isclose(stats["mean_difference"], diff.mean())
    expected = "yes" if diff.mean() > 0 and wins > len(diff) / 2 else "no"
    assert found.verdict == expected == ("yes" if bonus > 0 else "no")
    assert text.startswith(f"**{expected.capitalize()}.**")
    assert f"probabilities win {wins} of {len(diff)}" in text


def test_granularity_finding_needs_both_granularities():
    cells = _cells()
    found = findings.granularity_finding(cells[cells["granularity"] == "probs"])
    assert found.verdict == "not measured" and found.numbers == {}
    assert found.text.startswith("Not measured")


def test_reproduction_finding_names_the_smallest_budget_per_victim():
    summary = _summary(seeds=(0, 1, 2))
    budget, reproduction = tables.budget_table(summary), tables.reproduction_table(summary, PAPERS)
    found = findings.reproduction_finding(budget, reproduction)
    text = found.text
    ood = summary[summary["adversary"] == "out-of-distribution"]
    expected = {}
    for (victim, granularity), part in ood.groupby(["victim", "granularity"]):
        reached = part.loc[part["recovery_mean"] >= RECOVERY_TARGET, "budget"]
        expected[f"{victim}/{granularity}"] = int(reached.min()) if len(reached) else None
    got = {k: n["budget"] if n["stolen"] else None for k, n in found.numbers.items()}
    assert got == expected
    assert found.verdict == {k: "no" if b is None else "yes" for k, b in expected.items()}
    assert expected["v1/probs"] == 100 and expected["v2/probs"] is None  # the premise
    assert "stolen within the grid: v1; not within the grid: v2" in text
    assert "reaches 0.9 at **100** queries (a-ood, lenet from pt)" in text


def test_budget_adversary_and_architecture_findings_follow_the_data():
    three = (0, 1, 2)
    assert findings.budget_finding(_cells(budget_slope=0.1, seeds=three)).verdict == "yes"
    assert findings.budget_finding(_cells(budget_slope=-0.1, seeds=three)).verdict == "no"
    assert findings.adversary_finding(_summary(realistic_bonus=0.2, seeds=three)).verdict == "yes"
    assert findings.adversary_finding(_summary(realistic_bonus=-0.2, seeds=three)).verdict == "no"
    for bonus, verdict in ((0.05, "yes"), (-0.05, "no")):
        summary = _summary(arch_bonus=bonus, seeds=three)
        architecture = tables.architecture_table(summary, PAPERS)
        found = findings.architecture_finding(architecture)
        assert found.verdict == verdict
        assert (found.numbers["wins"], found.numbers["pairs"]) == (4 if bonus > 0 else 0, 4)


def test_pretraining_finding_reports_each_start_against_scratch_at_every_budget():
    summary = _summary(pretrained_bonus=0.1)
    found = findings.pretraining_finding(tables.pretraining_table(summary))
    stats = {k: n["difference"] for k, n in found.numbers.items()}
    ood = summary[summary["attack"] == "a-ood"]
    for budget in BUDGETS:
        for granularity in ("probs", "label"):
            at = ood[ood["budget"] == budget]
            where = {"granularity": granularity, "victim_init": "scratch"}
            base = _mean(at, "recovery_mean", surrogate_init="scratch", **where)
            for v, s in (("scratch", "pt"), ("pt", "scratch"), ("pt", "pt")):
                where = {"granularity": granularity, "victim_init": v, "surrogate_init": s}
                value = _mean(at, "recovery_mean", **where)
                key = f"d/a-ood/{granularity}/{budget}/{v}/{s}"
                assert np.isclose(stats[key], value - base), key
    assert len(stats) == 6 * len(BUDGETS)


def _defended(dawn=False):
    """Defended cells: per attack, the undefended API and two defenses at two strengths.
    (defense, strength value) -> (attacker accuracy, benign utility)."""
    effects = {
        ("none", None): (0.80, 0.95),
        ("gaussian-noise", 0.1): (0.70, 0.945),  # costs the attacker 0.10 within 1 point
        ("gaussian-noise", 0.5): (0.30, 0.80),  # stronger, but costs benign users 0.15
        ("top-k", 1): (0.75, 0.95),
        ("top-k", 2): (0.78, 0.95),
    }
    if dawn:
        effects = {("none", None): (0.8, 0.95), ("dawn", 0.05): (0.79, 0.95)}
    rows = []
    for attack, (strategy, pool, adversary) in ATTACKS.items():
        for (defense, value), (acc, utility) in effects.items():
            for budget in (100, 1000):
                for seed in (0, 1):
                    a = acc + 0.01 * seed - (0.2 if budget == 100 else 0)
                    if adversary == "realistic" and defense == "gaussian-noise":
                        a -= 0.3  # noise hurts the realistic adversary most
                    rows.append(
                        {
                            "victim": "v1",
                            "victim_arch": "lenet",
                            "victim_init": "scratch",
                            "dataset": "d",
                            "attack": attack,
                            "strategy": strategy,
                            "pool": pool,
                            "adversary": adversary,
                            "defense": defense,
                            "strength": None if value is None else "x",
                            "strength_value": np.nan if value is None else float(value),
                            "defense_id": defense if value is None else f"{defense}@{value:g}",
                            "granularity": "probs",
                            "budget": budget,
                            "surrogate_arch": "lenet",
                            "seed": seed,
                            "test_acc": a,
                            "victim_acc": 0.9,
                            "recovery": a / 0.9,
                            "benign_utility": utility,
                            "benign_l1": 1 - utility,
                            "benign_top1_changed": 1 - utility,
                            "dawn_watermarks": 5,
                            "dawn_reproduced": 4 - seed,
                            "dawn_acc": 0.8 - 0.2 * seed,
                            "dawn_p_value": 0.01,
                            "dawn_caught": attack != "a-adapt" or seed == 0,
                            "dawn_independent": 3,
                            "dawn_false_claims": int(attack == "a-real"),
                        }
                    )
    return pd.DataFrame(rows)


def test_defended_finding_reads_the_matched_cost_table_of_the_synthetic_grid():
    # gaussian-noise@0.1 costs benign users 0.005 (and the attacker 0.10; the realistic one
    # 0.40), @0.5 costs them 0.15; top-k keeps the top-1, costing them nothing
    defended = _defended()
    matched = tables.matched_cost_table(defended)
    found = findings.defended_finding(matched)
    by = found.numbers["by_attack"]
    assert set(by) == {f"v1/{attack}" for attack in ATTACKS}
    for attack in ATTACKS:
        entry = by[f"v1/{attack}"]
        assert entry["budget"] == 1000  # the largest defended budget, not 100
        for cost, at in entry["costs"].items():
            rows = matched[
                (matched["attack"] == attack)
                & (matched["budget"] == 1000)
                & np.isclose(matched["cost"], float(cost))
            ]
            best = rows.loc[rows["attacker_acc_mean"].idxmin()]
            assert at["costliest"] == best["defense"] == "gaussian-noise"
            assert np.isclose(
                at["defenses"]["gaussian-noise"]["attacker_acc"], best["attacker_acc_mean"]
            )
            assert not at["defenses"]["top-k"]["reached"]
    # at 0.005 the realistic attacker is at gaussian-noise@0.1: 0.40 + 0.01 seed -> 0.405 of
    # a victim at 0.9, recovery 0.45 < 0.5: stopped at every matched cost
    at = by["v1/a-real"]["costs"]["0.005"]["defenses"]["gaussian-noise"]
    assert np.isclose(at["attacker_acc"], 0.405) and at["stops"]
    assert found.verdict == "yes"
    assert found.numbers["stops_realistic"] == {
        f"{c:g}": ["gaussian-noise"] for c in tables.MATCHED_COSTS
    }
    assert "Stops the realistic adversary" in found.text


def test_dawn_finding_rates():
    defended = _defended(dawn=True)
    dawn = tables.dawn_table(defended)
    assert set(dawn["share"]) == {0.05}
    detection = pd.DataFrame(
        [
            {"victim": "v1", "queries_from": "attack", "source": "a-real", "flagged_share": 0.0},
            {"victim": "v1", "queries_from": "attack", "source": "a-ood", "flagged_share": 0.6},
            {"victim": "v1", "queries_from": "attack", "source": "a-adapt", "flagged_share": 0.05},
        ]
    )
    stats = findings.dawn_finding(dawn, detection).numbers
    assert np.isclose(stats["caught"], dawn["dawn_caught"].mean())
    # let through (<= 0.1 flagged): a-real (always caught) and a-adapt (caught at one seed of
    # two), every (attack, budget) group holding both seeds
    through = dawn[dawn["attack"].isin(["a-real", "a-adapt"])]
    assert np.isclose(stats["caught_let_through"], through["dawn_caught"].mean())
    assert np.isclose(stats["caught_let_through"], 0.75)
    false = dawn["dawn_false_claims"].sum() / dawn["dawn_independent"].sum()
    assert np.isclose(stats["false_claim_rate"], false) and false > 0
    assert findings.dawn_finding(dawn.iloc[:0], None).text.startswith("Not measured")


def test_dawn_finding_prints_each_groups_watermarks_and_false_claim_bound():
    from stealbench.defense.dawn import false_claim_bound

    dawn = tables.dawn_table(_defended(dawn=True))
    # Two budgets' worth of watermarks: one short of the paper's 2^-64, one past it.
    dawn = pd.concat(
        [dawn.assign(dawn_watermarks=50), dawn.assign(budget=20000, dawn_watermarks=100)]
    )
    bounds = [false_claim_bound(n, num_classes=10) for n in dawn["dawn_watermarks"]]
    dawn["dawn_claim_bound"] = bounds
    found = findings.dawn_finding(dawn, None)
    claims = {(c["attack"], c["budget"]): c for c in found.numbers["claims"]}
    assert len(claims) == dawn.groupby(["attack", "budget"]).ngroups
    for (_, budget), claim in claims.items():
        n = 100 if budget == 20000 else 50
        assert claim["watermarks"] == n and claim["min_watermarks"] == n
        assert claim["claim_bound"] == pytest.approx(false_claim_bound(n, num_classes=10))
        assert claim["reaches_target"] is (budget == 20000)
    reached = sum(budget == 20000 for _, budget in claims)
    assert f"reaches 2^-64 in {reached} of {len(claims)} (share, budget) groups" in found.text
    assert found.thresholds["claim_bound"] == 2.0**-64
    assert f"| {false_claim_bound(100, num_classes=10):.2e} |" in found.text


def _detection(realistic_flagged):
    """The pre-classifier's rows: its victim's test split, pools of a kind it saw, of one it
    never saw and of the victim's own task, and an attacker of each adversary (the realistic
    one flagging ``realistic_flagged``; None: no realistic attacker)."""
    rows = [
        ("test", "d-test", "in-distribution", True, 0.05, 0.95),
        ("test", "d2-test", "in-distribution", True, 0.15, 0.85),
        ("pool", "letters", "seen kind", False, 0.9, np.nan),
        ("pool", "photos", "seen kind", False, 0.8, np.nan),
        ("pool", "shapes", "unseen kind", False, 0.4, np.nan),
        ("pool", "digits", "in-distribution", True, 0.02, np.nan),
        ("attack", "a-ood", "seen kind", False, 0.85, np.nan),
    ]
    if realistic_flagged is not None:
        rows.append(("attack", "a-real", "in-distribution", True, realistic_flagged, np.nan))
    columns = ["queries_from", "source", "seen", "in_distribution", "flagged_share", "tpr_in"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.assign(victim="v1", queries=100, strategy="random")


@pytest.mark.parametrize("realistic_flagged", [0.05, 0.1, 0.5, None])
def test_detector_finding_rates_and_the_realistic_adversarys_verdict(realistic_flagged):
    detection = _detection(realistic_flagged)
    found = findings.detector_finding(detection)
    pools = detection[detection["queries_from"] == "pool"]
    expected = {
        "test_tpr": detection.loc[detection["queries_from"] == "test", "tpr_in"].mean(),
        "seen_tnr": pools.loc[pools["seen"] == "seen kind", "flagged_share"].mean(),
        "unseen_tnr": pools.loc[pools["seen"] == "unseen kind", "flagged_share"].mean(),
    }
    for key, value in expected.items():
        assert np.isclose(found.numbers[key], value), key
        assert f"{value:.3f}" in found.text, key
    if realistic_flagged is None:
        assert found.verdict == "not measured" and found.numbers["realistic_flagged"] is None
        assert "The realistic adversary is not in the grid." in found.text
    else:
        verdict = "yes" if realistic_flagged <= found.thresholds["evades_flagged_at_most"] else "no"
        assert verdict == ("no" if realistic_flagged == 0.5 else "yes")  # the premise
        assert found.verdict == verdict
        assert np.isclose(found.numbers["realistic_flagged"], realistic_flagged)
        assert (
            f"**The realistic adversary evades it: {verdict.capitalize()}.** Rule: the realistic "
            f"adversary evades the pre-classifier when at most 0.1 of its queries are flagged. "
            f"It flags {realistic_flagged:.3f}." in found.text
        )


def test_detector_finding_prints_a_dash_and_writes_null_where_no_kind_is_unseen():
    detection = _detection(0.0)
    detection = detection[detection["seen"] != "unseen kind"]
    found = findings.detector_finding(detection)
    assert np.isnan(found.numbers["unseen_tnr"]) and "and – of kinds it never saw" in found.text
    data = json.loads(json.dumps(found.to_json(), allow_nan=False))
    assert data["numbers"]["unseen_tnr"] is None and data["verdict"] == "yes"


def _prada():
    """Three strategies' attackers, PRADA flagging all, some and none of them; 1 of 4 benign
    streams flagged."""
    rows = [("attacker", "jbda", True, at) for at in (120, 140, 160)]
    rows += [("attacker", "random", flagged, 300.0 if flagged else np.nan) for flagged in (1, 0)]
    rows += [("attacker", "adaptive", False, np.nan)] * 2
    rows += [("benign", None, flagged, np.nan) for flagged in (True, False, False, False)]
    frame = pd.DataFrame(rows, columns=["kind", "strategy", "flagged", "flagged_at"])
    return frame.assign(victim="v1", flagged=frame["flagged"].astype(bool))


def test_prada_finding_verdict_per_strategy_and_false_positive_rate():
    prada = _prada()
    found = findings.prada_finding(prada)
    attackers = prada[prada["kind"] == "attacker"]
    shares = attackers.groupby("strategy")["flagged"].mean()
    expected = {s: "yes" if v == 1 else ("partly" if v > 0 else "no") for s, v in shares.items()}
    assert expected == {"jbda": "yes", "random": "partly", "adaptive": "no"}  # the premise
    assert found.verdict == expected
    benign = prada.loc[prada["kind"] == "benign", "flagged"]
    assert np.isclose(found.numbers["false_positive_rate"], benign.mean())
    assert (found.numbers["benign_flagged"], found.numbers["benign_streams"]) == (1, 4)
    assert f"1 of 4 benign streams (false-positive rate {benign.mean():.3f})" in found.text
    for strategy, part in attackers.groupby("strategy"):
        n = found.numbers["strategies"][strategy]
        assert (n["flagged"], n["streams"]) == (int(part["flagged"].sum()), len(part))
        assert f"- **{strategy}: {expected[strategy].capitalize()}**, {n['flagged']} of " in (
            found.text
        )
    assert found.numbers["strategies"]["jbda"]["median_queries_to_detection"] == 140


def test_prada_finding_reports_each_victims_delta_and_the_share_flagged_there():
    # The flags in the table were set at each victim's delta (calibrated or configured): the
    # finding reads them, and names the delta they were read at.
    prada = _prada().assign(victim="v1", delta=0.9731)
    found = findings.prada_finding(prada)
    assert found.numbers["delta"] == {"v1": 0.9731}
    assert "PRADA at delta (v1 0.9731;" in found.text
    attackers = prada[prada["kind"] == "attacker"]
    for strategy, part in attackers.groupby("strategy"):
        share = found.numbers["strategies"][strategy]["flagged_share"]
        assert np.isclose(share, part["flagged"].mean())
    assert found.numbers["strategies"]["random"]["flagged_share"] == 0.5
    # The false-positive rate, overall and per benign source (streams benign-<source>-<i>).
    benign = prada["kind"] == "benign"
    prada.loc[benign, "stream"] = [
        "benign-test-0",
        "benign-test-1",
        "benign-uci-digits-0",
        "benign-uci-digits-1",
    ]
    prada.loc[benign, "flagged"] = [False, False, True, False]
    found = findings.prada_finding(prada)
    assert found.numbers["false_positive_rate"] == 0.25
    assert found.numbers["false_positive_rate_by_source"] == {"test": 0.0, "uci-digits": 0.5}
    assert "(false-positive rate 0.250; test: 0.000; uci-digits: 0.500)" in found.text


def _cells_one_budget():
    cells = _cells()
    return cells[cells["budget"] == cells["budget"].max()]


# finding -> how to call it on a grid that cannot answer it
NOT_MEASURED = {
    "claim1": lambda: findings.reproduction_finding(
        tables.budget_table(_summary()).query("adversary == 'realistic'"),
        tables.reproduction_table(_summary(), PAPERS),
    ),
    "pretraining": lambda: findings.pretraining_finding(
        tables.pretraining_table(_summary()).iloc[:0]
    ),
    "claim2a": lambda: findings.granularity_finding(_cells().query("granularity == 'label'")),
    "claim2b": lambda: findings.architecture_finding(
        tables.architecture_table(_summary(), PAPERS).query("matches_victim")
    ),
    "budget": lambda: findings.budget_finding(_cells_one_budget()),
    "strategies": lambda: findings.strategy_finding(
        tables.strategies_table(_summary()).iloc[:0], None, None
    ),
    "claim4": lambda: findings.adversary_finding(_summary().query("adversary != 'realistic'")),
    "claim3": lambda: findings.detector_finding(_detection(0.0).iloc[:0]),
    "prada": lambda: findings.prada_finding(_prada().query("kind == 'benign'")),
    "defenses": lambda: findings.defended_finding(tables.matched_cost_table(_defended().iloc[:0])),
    "dawn": lambda: findings.dawn_finding(tables.dawn_table(_defended(dawn=True)).iloc[:0], None),
}


@pytest.mark.parametrize("name", NOT_MEASURED)
def test_every_finding_says_not_measured_where_the_grid_cannot_answer_it(name):
    found = NOT_MEASURED[name]()
    assert found.id == name and found.title == findings.TITLES[name]
    assert found.verdict == "not measured" and found.numbers == {}
    assert found.text.startswith("Not measured: ") and found.rule
    data = json.loads(json.dumps(found.to_json(), allow_nan=False))
    assert set(data) == {"id", "title", "verdict", "rule", "thresholds", "numbers", "by_victim"}
    assert data["by_victim"] == {}


# -------------------------------------------------------------------------- figures


def _visible(figure):
    return [ax for ax in figure.axes if ax.get_visible()]


def _legend(figure):
    """The labels of the figure's legend (one legend for all panels)."""
    return {text.get_text() for legend in figure.legends for text in legend.get_texts()}


def _inside(ax, ys):
    low, high = ax.get_ylim()
    return bool(np.all((np.asarray(ys, float) >= low) & (np.asarray(ys, float) <= high)))


def test_accuracy_vs_budget_draws_a_line_per_attack_in_each_panel(drawn):
    summary = _summary()
    figures.plot_accuracy_vs_budget(summary, "v1", ["unused.png"])
    (figure,) = drawn
    data = summary[summary["victim"] == "v1"]
    panels = data.groupby(["surrogate_arch", "surrogate_init", "granularity"])
    axes = _visible(figure)
    assert len(axes) == len(panels) == 2 * 2 + 2 * 2  # lenet/resnet8 x scratch/pt x 2 grans
    by_title = {ax.get_title(): ax for ax in axes}
    for (arch, init, granularity), part in panels:
        label = figures.surrogate_label(arch, init)
        ax = by_title[f"{label}, {granularity}"]
        lines = {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}
        assert set(lines) == set(part["attack"])
        for attack, series in part.groupby("attack"):
            series = series.sort_values("budget")
            np.testing.assert_array_equal(lines[attack].get_xdata(), series["budget"])
            np.testing.assert_allclose(lines[attack].get_ydata(), series["test_acc_mean"])
            realistic = ATTACKS[attack][2] == "realistic"
            assert lines[attack].get_linestyle() == ("-" if realistic else "--")
        victim_line = [ln for ln in ax.lines if ln.get_label().startswith("_")]
        assert [list(ln.get_ydata()) for ln in victim_line] == [[0.9, 0.9]]
    assert _legend(figure) == set(data["attack"])


def test_strategies_figure_draws_each_attack_of_a_victim(drawn):
    table = tables.strategies_table(_summary())
    figures.plot_strategies(table, ["unused.png"])
    (figure,) = drawn
    axes = _visible(figure)
    assert len(axes) == len(table.groupby(["victim", "granularity", "surrogate_arch"]))
    for ax in axes:
        lines = {ln.get_label(): ln for ln in ax.lines}
        assert sorted(lines) == sorted(table["attack"].unique())
        assert all(len(ln.get_xdata()) == len(BUDGETS) for ln in ax.lines)
        assert lines["a-adapt"].get_linestyle() == "--" and lines["a-ood"].get_linestyle() == "-"
    assert _legend(figure) == set(table["attack"])


def test_strategies_figure_leaves_out_panels_where_no_attacks_meet(drawn):
    summary = _summary()
    lone = summary[(summary["attack"] == "a-real") & (summary["surrogate_arch"] == "lenet")]
    table = tables.strategies_table(pd.concat([summary, lone.assign(surrogate_arch="cnn5")]))
    figures.plot_strategies(table, ["unused.png"])
    (figure,) = drawn
    titles = {ax.get_title() for ax in _visible(figure)}
    assert titles and not any(title.endswith("cnn5") for title in titles)


def test_defenses_figure_draws_a_line_per_defense_through_its_strengths(drawn):
    # the realistic attack, whose points reach lowest, drawn first: the shared y axis must
    # still hold them after the later panels are drawn
    defended = _defended().replace({"attack": {"a-real": "a-0-real"}})
    figures.plot_defenses(defended, "benign_utility", "benign utility", ["unused.png"])
    (figure,) = drawn
    # top-k keeps the top-1 (benign utility 0.95 at every k, as undefended): a panel of its
    # own per attack, against k; the others against benign utility
    axes = [ax for ax in _visible(figure) if ": " not in ax.get_title()]
    assert len(axes) == len(ATTACKS)
    by_k = {}
    for ax in _visible(figure):
        head = ax.get_title().split("\n")[0]
        if head.endswith(": top-k"):
            by_k[head.split(", ")[1].removesuffix(": top-k")] = ax
    assert set(by_k) == {ax.get_title().split(", ")[1] for ax in axes}
    star = MarkerStyle("*")
    star_path = star.get_path().transformed(star.get_transform())
    for ax in axes:
        attack = ax.get_title().split(", ")[1]
        top = defended[(defended["attack"] == attack) & (defended["budget"] == 1000)]
        lines = {c.get_label(): c.lines[0] for c in ax.containers}  # errorbar: data line
        assert set(lines) == {"gaussian-noise"}
        (lines["top-k"],) = [c.lines[0] for c in by_k[attack].containers]
        # top-k against k, from the weakest (k = 2) to the strongest (k = 1)
        np.testing.assert_array_equal(np.asarray(lines["top-k"].get_xdata(), float), [2, 1])
        for defense, line in lines.items():
            strengths = top.loc[top["defense"] == defense, "strength_value"].unique()
            assert len(line.get_xdata()) == len(strengths) == 2
            expected = top[top["defense"] == defense].groupby("strength_value")["test_acc"].mean()
            drawn_order = expected.sort_index(ascending=defense != "top-k")
            np.testing.assert_allclose(np.asarray(line.get_ydata(), float), drawn_order.to_numpy())
        (undefended,) = [c for c in ax.collections if c.get_label() == "undefended"]
        np.testing.assert_allclose(undefended.get_paths()[0].vertices, star_path.vertices)
        none = top[top["defense"] == "none"]
        np.testing.assert_allclose(
            undefended.get_offsets(), [[none["benign_utility"].mean(), none["test_acc"].mean()]]
        )
        # every point is drawn inside the panel, whichever panel reaches lowest
        assert all(_inside(ax, line.get_ydata()) for line in lines.values())
    assert _legend(figure) == {
        "undefended",
        "gaussian-noise",
        "top-k",
        "undefended (dotted level, on a strength axis)",
    }
