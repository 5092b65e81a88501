"""The figures on the second grid (tests/second_grid.py), as WIDE sets it: two victims of
different tasks, two seeds 0.2 apart from their mean (the Student-t factor is 12.7, so
intervals reach far outside [0, 1]), a weak victim its surrogates beat (recovery above 1),
budgets 200/1000/2000 and only defenses that keep the top-1 (top-k, rounding, MAD-argmax:
benign utility is the same at every strength). The figures are drawn with Agg and checked on
their Axes: accuracy axes and bands inside [0, 1], recovery inside [0, top], budget ticks at
the grid's budgets, and the trade-off figures against each defense's strength where benign
utility does not vary (and against benign utility where it does, as on the default: NOISE)."""

import numpy as np
import pytest
from second_grid import (
    ATTACKS,
    BUDGETS,
    DEFENSES,
    GRANULARITIES,
    NOISE,
    SURROGATES,
    VICTIMS,
    WIDE,
    second_grid,
)

from stealbench.paper import Anchor
from stealbench.report import figures, tables

MNIST = "mnist-lenet"  # the strong victim: every recovery below the axis' floor


@pytest.fixture(scope="module")
def summary():
    return second_grid(**WIDE)["summary"]


def _defended(defenses=DEFENSES):
    return second_grid(**WIDE, defenses=defenses)["defended"]


def _visible(figure):
    return [ax for ax in figure.axes if ax.get_visible()]


def _bands(ax):
    """The y values of every band (fill_between) and CI bar (vlines, errorbar) drawn."""
    from matplotlib.collections import LineCollection, PolyCollection

    ys = []
    for collection in ax.collections:
        if isinstance(collection, PolyCollection):
            ys += [p.vertices[:, 1] for p in collection.get_paths()]
        elif isinstance(collection, LineCollection):
            ys += [np.asarray(s)[:, 1] for s in collection.get_segments()]
    return np.concatenate(ys) if ys else np.array([])


def _assert_budget_ticks(ax, budgets=BUDGETS):
    np.testing.assert_array_equal(ax.get_xticks(), budgets)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == [figures.budget_label(b) for b in budgets]
    assert not ax.xaxis.get_minorticklocs().size  # no minor ticks, so no minor labels
    low, high = ax.get_xlim()
    assert low < min(budgets) and max(budgets) < high


def test_budget_labels_are_short_and_exact():
    assert [figures.budget_label(b) for b in (200, 1000, 1500, 2000, 10_000, 100_000)] == [
        "200",
        "1k",
        "1.5k",
        "2k",
        "10k",
        "100k",
    ]
    assert figures.budget_label(2_000_000) == "2M" and figures.budget_label(60) == "60"


def test_two_seeds_make_intervals_wider_than_the_feasible_range(summary):
    # the premise of the tests below: the table's own intervals leave [0, 1]
    assert (summary["seeds"] == 2).all()
    low = summary["test_acc_mean"] - summary["test_acc_ci95"]
    high = summary["test_acc_mean"] + summary["test_acc_ci95"]
    assert (low < -1).all() and (high > 2).all()


def test_accuracy_vs_budget_stays_in_zero_one_with_clipped_bands(drawn, summary):
    for victim in VICTIMS:
        figures.plot_accuracy_vs_budget(summary, victim, ["unused.png"])
    assert len(drawn) == len(VICTIMS)
    for figure in drawn:
        for ax in _visible(figure):
            low, high = ax.get_ylim()
            assert 0.0 <= low < high <= 1.0
            bands = _bands(ax)
            assert bands.size and bands.min() == 0.0 and bands.max() == 1.0  # clipped, drawn
            _assert_budget_ticks(ax)


def test_strategies_figure_stays_in_zero_one_with_budget_ticks(drawn, summary):
    figures.plot_strategies(tables.strategies_table(summary), ["unused.png"])
    (figure,) = drawn
    axes = _visible(figure)
    assert len(axes) == len(VICTIMS) * len(GRANULARITIES) * len(SURROGATES)
    for ax in axes:
        low, high = ax.get_ylim()
        assert 0.0 <= low < high <= 1.0
        bands = _bands(ax)
        assert bands.min() == 0.0 and bands.max() == 1.0
        _assert_budget_ticks(ax)


def test_recovery_axis_runs_from_zero_to_just_above_the_highest_point(drawn, summary):
    anchor = Anchor("a paper", "a setting", 60_000, "probs", 0.9, 0.81, 0.9, False)
    figures.plot_recovery_vs_budget(summary, [anchor], ["unused.png"])
    (figure,) = drawn
    axes = _visible(figure)
    assert len(axes) == len(VICTIMS)
    ood = summary[summary["adversary"] == "out-of-distribution"]
    highest = float(ood["recovery_mean"].max())
    assert highest > figures.RECOVERY_TOP  # the weak victim's surrogates beat it
    for ax in axes:
        low, high = ax.get_ylim()
        assert low == 0.0 and highest < high <= highest + 0.05
        bands = _bands(ax)
        assert bands.min() == 0.0 and bands.max() == high  # clipped to the axis
        # the grid's budgets labelled, the published point's budget ticked beside them
        ticks = list(ax.get_xticks())
        assert ticks == [*BUDGETS, 60_000]
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == ["200", "1k", "2k", "60k"]
        assert not ax.xaxis.get_minorticklocs().size


def test_recovery_axis_stops_at_its_floor_when_every_point_is_below_it(drawn, summary):
    weak = summary[summary["victim"] == MNIST]
    figures.plot_recovery_vs_budget(weak, [], ["unused.png"])
    (figure,) = drawn
    (ax,) = _visible(figure)
    assert ax.get_ylim() == (0.0, figures.RECOVERY_TOP)
    assert _bands(ax).max() == figures.RECOVERY_TOP
    _assert_budget_ticks(ax)


def _draw_trade_off(x, defended):
    if x == "cost":  # the matched-cost figure (defense_utility)
        figures.plot_defenses_at_cost(defended, tables.matched_cost_table(defended), ["unused.png"])
    else:
        figures.plot_defenses(defended, x, "benign utility", ["unused.png"])


def _ink(text, renderer):
    """Where a tick label's characters are: a label moved down k lines ("\\n" * k) prints only
    on its last line, the bottom (k + 1)th of its box."""
    from matplotlib.transforms import Bbox

    box = text.get_window_extent(renderer)
    lines = text.get_text().count("\n") + 1
    return Bbox.from_extents(box.x0, box.y0, box.x1, box.y0 + box.height / lines)


def test_close_budgets_on_a_long_axis_keep_every_label_without_overlap(drawn):
    # 200 and 300 on an axis stretched to a published point at 100k: 300 goes a line down
    summary = second_grid(**WIDE, budgets=(50, 200, 300))["summary"]
    anchor = Anchor("a paper", "a setting", 100_000, "probs", 0.9, 0.81, 0.9, False)
    figures.plot_recovery_vs_budget(summary, [anchor], ["unused.png"])
    (figure,) = drawn
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    for ax in _visible(figure):
        texts = [t for t in ax.get_xticklabels() if t.get_text()]
        assert [t.get_text().strip() for t in texts] == ["50", "200", "300", "100k"]
        boxes = [_ink(t, renderer) for t in texts]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def _sweeps(ax):
    """The errorbar containers of a trade-off panel, by defense."""
    return {c.get_label(): c for c in ax.containers}


def _bars(container):
    (bars,) = container.lines[2]
    return np.concatenate([np.asarray(s)[:, 1] for s in bars.get_segments()])


@pytest.mark.parametrize("x", ["benign_utility", "cost"])
def test_trade_off_is_drawn_against_strength_where_benign_utility_does_not_vary(drawn, x):
    defended = _defended()
    assert not tables.matched_cost_table(defended)["reached"].any()  # no cost, no reading
    _draw_trade_off(x, defended)
    (figure,) = drawn
    axes = _visible(figure)
    assert len(axes) == len(VICTIMS) * len(ATTACKS) * len(DEFENSES)  # a subplot per defense
    top = defended[defended["budget"] == max(BUDGETS)]
    seen = set()
    for ax in axes:
        head, defense = ax.get_title().split("\n")[0].rsplit(": ", 1)
        victim, attack = head.split(", ")
        seen.add((victim, attack, defense))
        top_here = top[(top["victim"] == victim) & (top["attack"] == attack)]
        parameter, values = DEFENSES[defense]
        (sweep,) = _sweeps(ax).values()
        line = sweep.lines[0]
        # x: the strengths, weakest to strongest, the axis pointing towards the stronger
        np.testing.assert_array_equal(np.asarray(line.get_xdata(), float), values)
        np.testing.assert_array_equal(ax.get_xticks(), sorted(values))
        assert ax.xaxis_inverted() == (values[0] > values[-1])
        assert parameter in ax.get_xlabel() and "stronger" in ax.get_xlabel()
        mine = top_here[top_here["defense"] == defense]
        expected = mine.groupby("strength_value")["test_acc"].mean().reindex(values)
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float), expected.to_numpy())
        # the undefended API's accuracy as a level
        none = top_here[top_here["defense"] == "none"]["test_acc"].mean()
        levels = [ln for ln in ax.lines if ln.get_linestyle() == ":"]
        assert [list(ln.get_ydata()) for ln in levels] == [[none, none]]
        # the bars (half-width 2.5) clipped to [0, 1], the axis inside it
        bars = _bars(sweep)
        assert bars.min() == 0.0 and bars.max() == 1.0
        low, high = ax.get_ylim()
        assert 0.0 <= low < high <= 1.0
        if x == "cost":  # no matched-cost verticals, and the panel says why
            assert "no matched cost" in ax.get_title()
            assert not [ln for ln in ax.lines if len(set(ln.get_xdata())) == 1]
    assert seen == {(v, a, d) for v in VICTIMS for a in ATTACKS for d in DEFENSES}
    if x == "cost":
        assert "no matched cost" in figure.get_suptitle()


@pytest.mark.parametrize("x", ["benign_utility", "cost"])
def test_trade_off_stays_against_benign_utility_where_it_varies(drawn, x):
    # the default's case: every defense costs benign users accuracy
    defended = _defended(NOISE)
    _draw_trade_off(x, defended)
    (figure,) = drawn
    axes = _visible(figure)
    assert len(axes) == len(VICTIMS) * len(ATTACKS)  # a panel per victim and attack
    top = defended[defended["budget"] == max(BUDGETS)]
    for ax in axes:
        victim, attack = ax.get_title().split("\n")[0].split(", ")
        top_here = top[(top["victim"] == victim) & (top["attack"] == attack)]
        assert set(_sweeps(ax)) == set(NOISE)
        noise = _sweeps(ax)["gaussian-noise"].lines[0]
        mine = top_here[top_here["defense"] == "gaussian-noise"]
        by_value = mine.groupby("strength_value")["benign_utility"].mean()
        if x == "cost":
            undefended = top_here[top_here["defense"] == "none"]
            by_value = undefended["benign_utility"].mean() - by_value
            assert ax.get_xlabel().startswith("benign cost")
        else:
            assert ax.get_xlabel() == "benign utility"
        np.testing.assert_allclose(np.asarray(noise.get_xdata(), float), by_value.to_numpy())
        low, high = ax.get_ylim()
        assert 0.0 <= low < high <= 1.0
        assert all(_bars(s).min() >= 0.0 and _bars(s).max() <= 1.0 for s in ax.containers)
    if x == "cost":
        assert "no matched cost" not in figure.get_suptitle()


@pytest.mark.parametrize("x", ["benign_utility", "cost"])
def test_a_defense_that_keeps_the_top1_beside_others_gets_a_strength_panel(drawn, x):
    # on a panel where noise varies benign utility, the top-1 keepers would stack at x = 0
    defended = _defended({**DEFENSES, **NOISE})
    _draw_trade_off(x, defended)
    (figure,) = drawn
    titles = {}
    for ax in _visible(figure):
        head = ax.get_title().split("\n")[0]
        titles[head] = set(_sweeps(ax))
    expected = {}
    for victim in VICTIMS:
        for attack in ATTACKS:
            expected[f"{victim}, {attack}"] = set(NOISE)
            for defense in DEFENSES:
                expected[f"{victim}, {attack}: {defense}"] = {defense}
    assert titles == expected


def test_the_perturbation_figure_keeps_its_axis_where_perturbation_varies(drawn):
    # argmax-preserving defenses still move the answers: L1 varies, the axis stays L1
    defended = _defended()
    figures.plot_defenses(defended, "benign_l1", "mean L1", ["unused.png"])
    (figure,) = drawn
    axes = _visible(figure)
    assert len(axes) == len(VICTIMS) * len(ATTACKS)
    assert all(ax.get_xlabel() == "mean L1" for ax in axes)
    assert all(set(_sweeps(ax)) == set(DEFENSES) for ax in axes)


def test_a_learned_strength_sits_past_the_strongest_labelled_learned(drawn):
    # rounding tested at 2 and 1 decimals and at a strength it learns (NaN): costing benign
    # users nothing, drawn against decimals with the learned point one step past 1
    defended = _defended({"rounding": ("decimals", (2, 1, None))})
    _draw_trade_off("cost", defended)
    (figure,) = drawn
    for ax in _visible(figure):
        (sweep,) = _sweeps(ax).values()
        np.testing.assert_array_equal(np.asarray(sweep.lines[0].get_xdata(), float), [2, 1, 0])
        assert [t.get_text() for t in ax.get_xticklabels()] == ["learned", "1", "2"]
        assert ax.xaxis_inverted()
