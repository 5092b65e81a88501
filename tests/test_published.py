"""Published vs stealbench: the figures (stealbench.paper.PUBLISHED_METHODS) and the reading
of ours from a run's tables (stealbench.report.published), on hand-made tables."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from stealbench.paper import PUBLISHED_METHODS, PublishedMethod, Reading
from stealbench.report.published import (
    NotRun,
    comparison_rows,
    load_tables,
    markdown,
    read_ours,
)

ROOT = Path(__file__).resolve().parents[1]
SIX = {"MAD", "Adaptive Misinformation", "DAWN", "ActiveThief", "PRADA", "DFME"}


def defended(rows) -> pd.DataFrame:
    """A defended table: (defense, strength_value, attack, budget, seed, test_acc)."""
    return pd.DataFrame(
        rows, columns=["defense", "strength_value", "attack", "budget", "seed", "test_acc"]
    )


def half_width(values) -> float:
    values = np.asarray(values, dtype=float)
    return stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))


def test_mean_over_seeds_with_its_ci():
    table = defended([("none", None, "a", 100, s, v) for s, v in enumerate([0.9, 0.8, 0.7])])
    ours = read_ours(Reading("defended", "test_acc", {"defense": "none"}), {"defended": table})
    assert ours.value == pytest.approx(0.8)
    assert ours.ci95 == pytest.approx(half_width([0.9, 0.8, 0.7]))
    assert ours.n == 3


def test_filters_pick_only_the_named_cell():
    table = defended(
        [
            ("mad", 0.99, "a", 100, 0, 0.2),
            ("mad", 0.99, "a", 100, 1, 0.4),
            ("mad", 0.9, "a", 100, 0, 0.9),  # other strength
            ("mad", 0.99, "b", 100, 0, 0.9),  # other attack
            ("none", None, "a", 100, 0, 0.9),  # other defense
        ]
    )
    reading = Reading(
        "defended", "test_acc", {"defense": "mad", "strength_value": 0.99, "attack": "a"}
    )
    assert read_ours(reading, {"defended": table}).value == pytest.approx(0.3)
    # None matches a missing strength; a list matches any of its items
    none = Reading("defended", "test_acc", {"strength_value": None})
    assert read_ours(none, {"defended": table}).value == pytest.approx(0.9)
    both = Reading("defended", "test_acc", {"attack": ["a", "b"], "strength_value": 0.99})
    assert read_ours(both, {"defended": table}).n == 2
    # a float matches within rounding (a strength computed, not typed, in the table)
    computed = defended([("mad", 0.1 + 0.2, "a", 100, 0, 0.5)])
    third = Reading("defended", "test_acc", {"strength_value": 0.3})
    assert read_ours(third, {"defended": computed}).value == pytest.approx(0.5)


def test_largest_keeps_only_the_largest_budget():
    table = defended(
        [("none", None, "a", 100, 0, 0.1), ("none", None, "a", 1000, 0, 0.9)]
        + [("none", None, "a", 1000, 1, 0.7)]
    )
    reading = Reading("defended", "test_acc", {"defense": "none"}, largest="budget")
    assert read_ours(reading, {"defended": table}).value == pytest.approx(0.8)


def test_ratio_pairs_seeds_with_the_baseline_at_the_same_budget():
    table = defended(
        [
            ("at", None, "x", 1000, 0, 0.8),
            ("at", None, "x", 1000, 1, 0.6),
            ("at", None, "x", 1000, 2, 0.9),  # no baseline for seed 2
            ("noise", None, "x", 1000, 0, 0.2),
            ("noise", None, "x", 1000, 1, 0.3),
            ("noise", None, "x", 100, 0, 0.01),  # other budget
        ]
    )
    reading = Reading(
        "defended",
        "test_acc",
        {"defense": "at"},
        aggregate="ratio",
        baseline={"defense": "noise"},
        largest="budget",
    )
    ours = read_ours(reading, {"defended": table})
    assert ours.n == 2
    assert ours.value == pytest.approx((4.0 + 2.0) / 2)
    assert ours.ci95 == pytest.approx(half_width([4.0, 2.0]))


def test_error_ratio_and_drop():
    table = defended(
        [
            ("mad", 0.5, "x", 10, 0, 0.6),
            ("mad", 0.5, "x", 10, 1, 0.8),
            ("none", None, "x", 10, 0, 0.9),
            ("none", None, "x", 10, 1, 0.9),
        ]
    )
    where, base = {"defense": "mad"}, {"defense": "none", "strength_value": None}
    error = Reading("defended", "test_acc", where, "ratio", base, complement=True)
    assert read_ours(error, {"defended": table}).value == pytest.approx((4.0 + 2.0) / 2)
    drop = Reading("defended", "test_acc", where, "drop", base)
    assert read_ours(drop, {"defended": table}).value == pytest.approx((0.3 + 0.1) / 2)


def test_minus_and_booleans_as_a_share():
    table = pd.DataFrame(
        {
            "seed": [0, 1, 2, 3],
            "victim_acc": [0.9] * 4,
            "benign_utility": [0.85, 0.85, 0.8, 0.8],
            "caught": [True, True, False, True],
        }
    )
    cost = read_ours(Reading("t", "victim_acc", minus="benign_utility"), {"t": table})
    assert cost.value == pytest.approx(0.075)
    assert read_ours(Reading("t", "caught"), {"t": table}).value == pytest.approx(0.75)


def test_rows_without_a_seed_are_their_own_units():
    table = pd.DataFrame(
        {"seed": [np.nan] * 5, "kind": ["benign"] * 5, "flagged": [False] * 4 + [True]}
    )
    ours = read_ours(Reading("prada", "flagged", {"kind": "benign"}), {"prada": table})
    assert (ours.value, ours.n) == (pytest.approx(0.2), 5)


def test_a_summary_reading_takes_the_one_row_as_it_is():
    """The matched_cost table is already a mean over seeds with its CI: read as given."""
    table = pd.DataFrame(
        {
            "defense": ["am", "am", "mad"],
            "cost": [0.005, 0.01, 0.005],
            "budget": [1000, 1000, 1000],
            "seeds": [3, 3, 3],
            "drop_mean": [0.4, 0.5, 0.2],
            "drop_ci95": [0.1, 0.2, 0.05],
        }
    )
    where = {"defense": "am", "cost": 0.005}
    reading = Reading("matched_cost", "drop_mean", where, "summary", ci_column="drop_ci95")
    ours = read_ours(reading, {"matched_cost": table})
    assert (ours.value, ours.ci95, ours.n) == (0.4, 0.1, 3)
    with pytest.raises(ValueError, match="exactly one"):
        read_ours(
            Reading("matched_cost", "drop_mean", {"defense": "am"}, "summary"),
            {"matched_cost": table},
        )


@pytest.mark.parametrize(
    "reading, why",
    [
        (Reading("missing", "test_acc"), "no 'missing' table"),
        (Reading("defended", "online_acc"), "column 'online_acc'"),
        (Reading("defended", "test_acc", {"victim": "v"}), "column 'victim'"),
        (Reading("defended", "test_acc", {"defense": "dawn"}), "no row"),
        (
            Reading("defended", "test_acc", {"defense": "none"}, "ratio", {"defense": "x"}),
            "no baseline row",
        ),
    ],
)
def test_what_the_tables_lack_is_not_run(reading, why):
    table = defended([("none", None, "a", 100, 0, 0.9)])
    with pytest.raises(NotRun, match=why):
        read_ours(reading, {"defended": table})


def method(**changes) -> PublishedMethod:
    fields = dict(
        key="k",
        method="M",
        metric="metric",
        published=0.5,
        source="s",
        their_setting="theirs",
        our_setting="ours differs",
        config="configs/reproduce/m.yaml",
        reading=Reading("defended", "test_acc", {"defense": "none"}),
    )
    return PublishedMethod(**{**fields, **changes})


def test_rows_and_markdown_report_not_run_beside_the_figures():
    table = defended([("none", None, "a", 100, s, v) for s, v in enumerate([0.7, 0.8, 0.9])])
    methods = [
        method(key="ran"),
        method(key="missing", config="configs/reproduce/other.yaml"),
        method(key="lacking", reading=Reading("cells", "online_acc")),
        method(key="ratio", unit="ratio", published=4.7, bound="up to"),
    ]
    runs = {"configs/reproduce/m.yaml": {"defended": table}}
    rows = {row.key: row for row in comparison_rows(methods, runs.get)}
    assert rows["ran"].status == "ok"
    assert rows["ran"].difference == pytest.approx(0.8 - 0.5)
    assert rows["missing"].status.startswith("not run") and rows["missing"].ours is None
    assert "no 'cells' table" in rows["lacking"].status
    text = markdown(list(rows.values()))
    assert "0.800 ± " in text and "+0.300" in text
    assert "up to 4.70x" in text
    assert text.count("not run") == 2
    assert "- M: s" in text  # the sources, once each


def test_load_tables_of_a_run_that_has_none(tmp_path):
    assert load_tables(tmp_path / "nothing") == {}
    pd.DataFrame({"seed": [0], "test_acc": [0.5]}).to_parquet(tmp_path / "cells.parquet")
    assert list(load_tables(tmp_path)) == ["cells"]


# ------------------------------------------------------------------ the figures themselves


def test_the_six_methods_are_there():
    assert SIX <= {m.method for m in PUBLISHED_METHODS}
    keys = [m.key for m in PUBLISHED_METHODS]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("entry", PUBLISHED_METHODS, ids=lambda m: m.key)
def test_each_figure_is_in_our_units_with_its_source(entry):
    assert entry.source and entry.their_setting and entry.our_setting
    assert entry.config.startswith("configs/reproduce/") and entry.config.endswith(".yaml")
    assert entry.unit in {"fraction", "ratio"}
    assert entry.reading.aggregate in {"mean", "ratio", "drop", "summary"}
    if entry.reading.aggregate in {"ratio", "drop"}:
        assert entry.reading.baseline
    if entry.reading.aggregate == "summary":
        assert entry.reading.ci_column
    if entry.published is not None and entry.unit == "fraction":
        assert 0 <= entry.published <= 1  # fractions, never %


def _existing():
    return [m for m in PUBLISHED_METHODS if (ROOT / m.config).exists()]


@pytest.mark.parametrize("entry", _existing(), ids=lambda m: m.key)
def test_a_landed_config_runs_what_its_reading_filters_on(entry):
    """Once configs/reproduce/<method>.yaml exists, the victim, attack, defense and strength
    the reading selects are ones that config runs."""
    config = yaml.safe_load((ROOT / entry.config).read_text())
    defended = (config.get("defenses") or {}).get("defended") or {}
    defenses = defended.get("defenses") or {}
    for where in (entry.reading.where, entry.reading.baseline or {}):
        if "victim" in where:
            assert where["victim"] in config["victims"]
        if "attack" in where:
            assert where["attack"] in config["attacks"]
        if "defense" in where:
            assert where["defense"] in defenses
            strength = where.get("strength_value")
            if strength is not None:
                values = [v for p in defenses[where["defense"]].values() for v in np.atleast_1d(p)]
                assert any(np.isclose(strength, v) for v in values if v is not None)


def test_reproduce_report_only_says_not_run_without_results(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "benchmarks/reproduce.py")
    reproduce = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reproduce)
    assert reproduce.main(["--report-only", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("not run") == len(PUBLISHED_METHODS)


@pytest.mark.parametrize(
    "path", sorted((ROOT / "configs/reproduce").glob("*.yaml")), ids=lambda p: p.name
)
def test_reproduce_configs_validate(path):
    from stealbench.notebook import load_config

    load_config(path)
