"""Attacker accuracy at matched benign cost: the curve reading (interpolation, first
crossing, never extrapolating), the table over seeds, the defense finding that reads it and
the zoomed trade-off figure. Every expected value is derived by hand in the comments."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stealbench.report import figures, findings
from stealbench.report.columns import TABLES
from stealbench.report.tables import MATCHED_COSTS, at_cost, matched_cost_table

# ----------------------------------------------------------------------- one curve


def test_at_cost_interpolates_between_the_two_points_that_bracket_it():
    costs, accs, strengths = [0.0, 0.004, 0.012], [0.9, 0.8, 0.4], [0.0, 0.1, 0.5]
    # 0.01 lies 0.006 of the 0.008 from 0.004 to 0.012: t = 0.75,
    # acc 0.8 + 0.75 (0.4 - 0.8) = 0.5, strength 0.1 + 0.75 (0.5 - 0.1) = 0.4
    reached, k, acc, strength = at_cost(costs, accs, strengths, 0.01)
    assert (reached, k) == (True, 2)
    assert acc == pytest.approx(0.5) and strength == pytest.approx(0.4)
    # 0.002: between the undefended start and the first strength, t = 0.5
    reached, k, acc, strength = at_cost(costs, accs, strengths, 0.002)
    assert (reached, k) == (True, 1)
    assert acc == pytest.approx(0.85) and strength == pytest.approx(0.05)
    # exactly on a point: that point
    assert at_cost(costs, accs, strengths, 0.004)[2] == pytest.approx(0.8)


def test_at_cost_reads_a_non_monotone_curve_at_its_first_crossing():
    # the curve passes 0.01 going up (0 -> 0.02), comes back (0.005), passes again (0.03)
    costs, accs, strengths = [0.0, 0.02, 0.005, 0.03], [0.9, 0.5, 0.7, 0.3], [0, 1, 2, 3]
    reached, k, acc, strength = at_cost(costs, accs, strengths, 0.01)
    # first crossing between 0 and 0.02, t = 0.5: 0.9 - 0.5 * 0.4 = 0.7 (the second
    # crossing, between 0.005 and 0.03 at t = 0.2, would read 0.62)
    assert (reached, k) == (True, 1)
    assert acc == pytest.approx(0.7) and strength == pytest.approx(0.5)


def test_at_cost_never_extrapolates_a_curve_that_never_costs_that_much():
    # an argmax-preserving defense: no strength costs benign users anything
    costs, accs, strengths = [0.0, 0.0, 0.0], [0.9, 0.6, 0.7], [0.0, 1.0, 2.0]
    assert at_cost(costs, accs, strengths, 0.005) == (False, 2, 0.7, 2.0)  # the strongest
    # a sweep that stops short of the cost
    assert at_cost([0.0, 0.004, 0.012], [0.9, 0.8, 0.4], [0, 0.1, 0.5], 0.02) == (
        False,
        2,
        0.4,
        0.5,
    )


# ----------------------------------------------------------------- the table


def _defended(beyond=False):
    """One setting, three seeds. Undefended: benign utility 0.95, attacker 0.90/0.92/0.94.
    gn (a random defense: its strongest strength costs seed 1 more), tk (keeps the top-1:
    costs nothing), os (one learned strength). ``beyond``: gn also at 0.9, costing 0.2."""
    points = {  # (defense, strength) -> per seed (benign utility, attacker accuracy)
        ("none", None): [(0.95, 0.90), (0.95, 0.92), (0.95, 0.94)],
        ("gn", 0.1): [(0.946, 0.80), (0.946, 0.82), (0.946, 0.84)],  # cost 0.004
        ("gn", 0.5): [(0.938, 0.40), (0.930, 0.42), (0.938, 0.44)],  # cost 0.012/0.02/0.012
        ("tk", 1.0): [(0.95, 0.70), (0.95, 0.70), (0.95, 0.70)],
        ("tk", 2.0): [(0.95, 0.85), (0.95, 0.86), (0.95, 0.87)],
        ("os", np.nan): [(0.934, 0.50), (0.934, 0.52), (0.934, 0.54)],  # cost 0.016
        # top-k grows stronger as k falls: k = 2 (cost 0.002), then k = 1 (cost 0.006)
        ("top-k", 2): [(0.948, 0.80), (0.948, 0.80), (0.948, 0.80)],
        ("top-k", 1): [(0.944, 0.40), (0.944, 0.40), (0.944, 0.40)],
    }
    if beyond:
        points[("gn", 0.9)] = [(0.75, 0.30), (0.75, 0.32), (0.75, 0.34)]
    rows = []
    for (defense, value), seeds in points.items():
        for seed, (utility, acc) in enumerate(seeds):
            rows.append(
                {
                    "victim": "v",
                    "attack": "a",
                    "adversary": "out-of-distribution",
                    "granularity": "probs",
                    "budget": 1000,
                    "surrogate_arch": "lenet",
                    "defense": defense,
                    "strength": None if defense == "none" else "s",
                    "strength_value": np.nan if value is None else value,
                    "defense_id": defense if pd.isna(value) else f"{defense}@{value:g}",
                    "seed": seed,
                    "test_acc": acc,
                    "victim_acc": 0.95,
                    "recovery": acc / 0.95,
                    "benign_utility": utility,
                }
            )
    return pd.DataFrame(rows)


def _row(table, defense, cost):
    (row,) = table[(table["defense"] == defense) & np.isclose(table["cost"], cost)].itertuples()
    return row


def _half_width(values):
    values = np.asarray(values, float)
    return stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))


def test_matched_cost_interpolates_each_seed_on_its_own_curve_then_averages():
    table = matched_cost_table(_defended())
    assert set(table["cost"]) == set(MATCHED_COSTS) and "none" not in set(table["defense"])
    assert set(table.columns) <= set(TABLES["matched_cost"].columns)  # every column documented
    row = _row(table, "gn", 0.01)
    # seed 0: 0.004 -> 0.012, t = 0.75: 0.80 - 0.3 = 0.50, strength 0.4
    # seed 1: 0.004 -> 0.020, t = 0.375: 0.82 - 0.15 = 0.67, strength 0.25
    # seed 2: as seed 0: 0.84 - 0.3 = 0.54, strength 0.4
    per_seed = [0.50, 0.67, 0.54]
    assert row.reached and row.seeds == row.seeds_reached == 3
    assert row.attacker_acc_mean == pytest.approx(0.57)
    assert row.attacker_acc_ci95 == pytest.approx(_half_width(per_seed))
    assert row.attacker_acc_ci95 == pytest.approx(0.2208, abs=1e-4)  # 4.303 * 0.0889 / 1.732
    assert row.strength_value_mean == pytest.approx(0.35)
    assert row.benign_cost_mean == pytest.approx(0.01)
    assert (row.lower_id, row.upper_id) == ("gn@0.1", "gn@0.5")
    assert row.undefended_acc_mean == pytest.approx(0.92)
    # drops paired by seed: 0.40, 0.25, 0.40
    assert row.drop_mean == pytest.approx(0.35)
    assert row.drop_ci95 == pytest.approx(_half_width([0.40, 0.25, 0.40]))
    assert row.recovery_mean == pytest.approx(0.57 / 0.95)


def test_matched_cost_reports_the_strongest_strength_where_a_seed_never_reaches_it():
    table = matched_cost_table(_defended())
    # gn at 0.02: only seed 1 reaches it (seeds 0 and 2 stop at 0.012): every seed's
    # strongest point, 0.40/0.42/0.44 at costs 0.012/0.020/0.012
    row = _row(table, "gn", 0.02)
    assert not row.reached and row.seeds_reached == 1
    assert row.attacker_acc_mean == pytest.approx(0.42)
    assert row.benign_cost_mean == pytest.approx(0.044 / 3)
    assert (row.lower_id, row.upper_id) == ("gn@0.5", None)
    # tk never costs anything: its strongest strength (2: 0.85/0.86/0.87), not its lowest
    # accuracy (strength 1: 0.70), at every cost
    for cost in MATCHED_COSTS:
        row = _row(table, "tk", cost)
        assert not row.reached and row.seeds_reached == 0
        assert row.attacker_acc_mean == pytest.approx(0.86)
        assert row.benign_cost_mean == 0 and row.strength_value_mean == 2.0


def test_a_one_point_curve_starts_at_the_undefended_api():
    table = matched_cost_table(_defended())
    # os: (0, undefended) -> (0.016, 0.50/0.52/0.54); at 0.01, t = 0.625:
    # 0.90 - 0.25 = 0.65, 0.92 - 0.25 = 0.67, 0.94 - 0.25 = 0.69
    row = _row(table, "os", 0.01)
    assert row.reached and row.attacker_acc_mean == pytest.approx(0.67)
    assert (row.lower_id, row.upper_id) == ("none", "os")
    assert np.isnan(row.strength_value_mean)  # a learned strength has no value to interpolate
    # at 0.02 the learned strength costs only 0.016: not reached, read there
    row = _row(table, "os", 0.02)
    assert not row.reached and row.attacker_acc_mean == pytest.approx(0.52)
    assert row.benign_cost_mean == pytest.approx(0.016)


# --------------------------------------------------------------- the finding


def _matched(rows):
    """A hand-made matched-cost table: (attack, adversary, budget, defense, cost, acc,
    reached, benign cost); undefended accuracy 0.9 of a victim at 0.9."""
    return pd.DataFrame(
        [
            {
                "victim": "v",
                "attack": attack,
                "adversary": adversary,
                "granularity": "probs",
                "budget": budget,
                "surrogate_arch": "lenet",
                "defense": defense,
                "strength": "s",
                "cost": cost,
                "reached": reached,
                "seeds": 3,
                "seeds_reached": 3 if reached else 0,
                "attacker_acc_mean": acc,
                "attacker_acc_ci95": 0.01,
                "benign_cost_mean": cost if reached else at,
                "strength_value_mean": 0.5,
                "lower_id": f"{defense}@0.1",
                "upper_id": f"{defense}@0.5" if reached else None,
                "victim_acc": 0.9,
                "undefended_acc_mean": 0.9,
                "undefended_acc_ci95": 0.01,
                "drop_mean": 0.9 - acc,
                "drop_ci95": 0.01,
                "recovery_mean": acc / 0.9,
                "undefended_recovery_mean": 1.0,
            }
            for attack, adversary, budget, defense, cost, acc, reached, at in rows
        ]
    )


def test_the_defense_finding_picks_the_costliest_defense_at_each_matched_cost():
    ood, real = ("a-ood", "out-of-distribution"), ("a-real", "realistic")
    matched = _matched(
        [
            # at 0.005 A leaves the attacker least, at 0.01 and 0.02 B does
            (*ood, 1000, "A", 0.005, 0.60, True, 0),
            (*ood, 1000, "A", 0.01, 0.58, True, 0),
            (*ood, 1000, "A", 0.02, 0.56, True, 0),
            (*ood, 1000, "B", 0.005, 0.70, True, 0),
            (*ood, 1000, "B", 0.01, 0.50, True, 0),
            (*ood, 1000, "B", 0.02, 0.30, True, 0),
            # C never costs benign users anything: read at its strongest, within every cost
            (*ood, 1000, "C", 0.005, 0.65, False, 0.0),
            (*ood, 1000, "C", 0.01, 0.65, False, 0.0),
            (*ood, 1000, "C", 0.02, 0.65, False, 0.0),
            # a smaller budget is not the finding's, however low the attacker falls there
            (*ood, 100, "A", 0.005, 0.10, True, 0),
            (*ood, 100, "A", 0.01, 0.10, True, 0),
            (*ood, 100, "A", 0.02, 0.10, True, 0),
            # the realistic adversary: B stops it (recovery 0.4 / 0.9 < 0.5) at 0.02 only
            (*real, 1000, "A", 0.005, 0.80, True, 0),
            (*real, 1000, "A", 0.01, 0.70, True, 0),
            (*real, 1000, "A", 0.02, 0.60, True, 0),
            (*real, 1000, "B", 0.005, 0.85, True, 0),
            (*real, 1000, "B", 0.01, 0.75, True, 0),
            (*real, 1000, "B", 0.02, 0.40, True, 0),
        ]
    )
    found = findings.defended_finding(matched)
    by = found.numbers["by_attack"]
    assert set(by) == {"v/a-ood", "v/a-real"}
    costliest = {c: by["v/a-ood"]["costs"][c]["costliest"] for c in ("0.005", "0.01", "0.02")}
    assert costliest == {"0.005": "A", "0.01": "B", "0.02": "B"}
    assert by["v/a-ood"]["budget"] == 1000
    a = by["v/a-ood"]["costs"]["0.005"]["defenses"]["A"]
    assert a["attacker_acc"] == 0.60 and a["attacker_acc_ci95"] == 0.01 and a["reached"]
    assert not by["v/a-ood"]["costs"]["0.01"]["defenses"]["C"]["reached"]
    real_costliest = {c: by["v/a-real"]["costs"][c]["costliest"] for c in ("0.005", "0.01")}
    assert real_costliest == {"0.005": "A", "0.01": "A"}
    assert found.numbers["stops_realistic"] == {"0.005": [], "0.01": [], "0.02": ["B"]}
    assert found.verdict == "yes"
    assert found.thresholds["matched_costs"] == list(MATCHED_COSTS)
    assert f"{MATCHED_COSTS[0]:g}" in found.rule and "never extrapolated" in found.rule
    assert "at 0.005 **A** (0.600 ± 0.010)" in found.text
    assert "at 0.02 **B** (0.300 ± 0.010)" in found.text
    # C's row in the table marks every cost as not reached, with its cost
    (line,) = [x for x in found.text.splitlines() if x.startswith("| v/a-ood | C |")]
    assert line.count("(†0.000)") == 3
    # without B the realistic adversary is stopped by nothing
    assert findings.defended_finding(matched[matched["defense"] != "B"]).verdict == "no"


# ----------------------------------------------------------------- the figure


def test_the_trade_off_figure_zooms_on_five_points_and_marks_what_lies_beyond(drawn):
    defended = _defended(beyond=True)
    figures.plot_defenses_at_cost(defended, matched_cost_table(defended), ["unused.png"])
    (figure,) = drawn
    visible = [a for a in figure.axes if a.get_visible()]
    # tk keeps the top-1 (no cost at any strength): a panel of its own, against its strength
    assert sorted(a.get_title().split("\n")[0] for a in visible) == ["v, a", "v, a: tk"]
    (ax,) = [a for a in visible if a.get_title() == "v, a"]
    left, right = ax.get_xlim()
    assert right == figures.COST_WINDOW == 0.05 and -0.01 < left < 0
    # the matched costs, as vertical lines
    verticals = sorted(
        line.get_xdata()[0]
        for line in ax.lines
        if len(set(line.get_xdata())) == 1 and line.get_linestyle() == ":"
    )
    np.testing.assert_allclose(verticals, MATCHED_COSTS)
    # gn@0.9 costs 0.2: drawn at the window's edge at its mean accuracy (0.32), labelled
    edge = [
        c.get_offsets()[0]
        for c in ax.collections
        if len(c.get_offsets()) and np.isclose(c.get_offsets()[0][0], 0.05)
    ]
    assert len(edge) == 1 and edge[0][1] == pytest.approx(0.32)
    assert "0.20" in {t.get_text() for t in ax.texts}
    # gn's line runs through all three strengths at their mean cost (the far one included)
    (gn,) = [c.lines[0] for c in ax.containers if c.get_label() == "gn"]
    np.testing.assert_allclose(
        np.asarray(gn.get_xdata(), float), [0.004, (0.012 + 0.02 + 0.012) / 3, 0.2]
    )
    # the readings at matched costs sit on the vertical lines (gn reaches 0.01 at 0.57)
    readings = {
        tuple(np.round(c.get_offsets()[0], 4))
        for c in ax.collections
        if len(c.get_offsets()) and c.get_label() == "_read"
    }
    assert (0.01, 0.57) in readings


def test_a_sweep_that_grows_stronger_as_its_value_falls_is_walked_from_its_weakest():
    table = matched_cost_table(_defended())
    # top-k: start (0) -> k=2 (0.002, 0.80) -> k=1 (0.006, 0.40); at 0.005, t = 0.75:
    # 0.80 - 0.3 = 0.50 at k = 2 - 0.75 = 1.25 (in increasing k it would read
    # start -> k=1 instead: 0.92 - 0.52 * 5/6 = 0.487)
    row = _row(table, "top-k", 0.005)
    assert row.reached and row.attacker_acc_mean == pytest.approx(0.50)
    assert row.strength_value_mean == pytest.approx(1.25)
    assert (row.lower_id, row.upper_id) == ("top-k@2", "top-k@1")
    # before its first strength: no value of k is "off", so no strength to interpolate;
    # at 0.001 the accuracy is halfway from the undefended 0.92 (mean) to 0.80
    (row,) = matched_cost_table(_defended(), costs=[0.001]).query("defense == 'top-k'").itertuples()
    assert row.attacker_acc_mean == pytest.approx(0.86) and np.isnan(row.strength_value_mean)
    # past its strongest (k = 1, 0.006): not reached at 0.01, read at k = 1
    row = _row(table, "top-k", 0.01)
    assert not row.reached and row.attacker_acc_mean == pytest.approx(0.40)
    assert row.strength_value_mean == 1
