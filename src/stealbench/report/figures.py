"""Figures, drawn from the result tables (matplotlib/seaborn, written atomically).

Every interval drawn is the table's 95% confidence interval over seeds (Student t), never a
bootstrap recomputed by the plotting library, so a figure and its table agree.

Axes that hold whatever grid they are given:

- **Accuracy axes** (surrogate test accuracy, the attacker's accuracy) stay inside [0, 1],
  their feasible range: a band or bar is clipped to it (with two seeds the Student-t factor
  is 12.7 and a band can reach from -1 to 2), and the axis zooms on the clipped bands, never
  beyond 0 or 1.
- **Recovery axes** (surrogate / victim accuracy) run from 0 to :data:`RECOVERY_TOP`, or to
  just above the highest mean or published point where one is higher (a surrogate can beat
  its victim slightly: recovery is at most 1 / victim accuracy); bands are clipped to it.
- **Budget axes** (log) have their ticks and labels at the grid's own budgets (200, 1k, 2k,
  ...: :func:`budget_label`), the same on every panel of a figure, and no minor ticks; the
  recovery figure's published points add ticks at their budgets. A label that would print
  over its neighbour goes a line down (:func:`_stagger`).
- **Trade-off figures**: a defense whose x does not vary (its range over the defense's
  points and the undefended API's below :data:`FLAT_TOLERANCE`: a defense that keeps the
  top-1, so benign utility and cost are the same at every strength) is drawn as the
  attacker's accuracy against its own strength instead, in a panel of its own; a panel where
  no defense's x varies (every defense keeps the top-1) is only such panels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..attack.api import information_order


def save_figure(figure, paths) -> None:
    """Write ``figure`` atomically to every path (format from the suffix), then close it."""
    import matplotlib.pyplot as plt

    from ..io import atomic_path

    for path in paths:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=Path(path).suffix.lstrip("."), bbox_inches="tight", dpi=150)
    plt.close(figure)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt


def surrogate_label(arch: str, init: str) -> str:
    return arch if init == "scratch" else f"{arch} from {init}"


# The feasible range of an accuracy (an agreement, a share): bands and bars are clipped to it,
# and an axis of one never leaves it.
ACCURACY_RANGE = (0.0, 1.0)
# A recovery axis runs from 0 to at least this (the 0.9 target and a surrogate slightly better
# than its victim fit under it), else to just above the highest point drawn.
RECOVERY_TOP = 1.05
# A trade-off panel whose x spans less than this over its points (in benign accuracy, a tenth
# of a point: every defense there keeps the top-1) is drawn against each defense's strength.
FLAT_TOLERANCE = 0.001


def _clip(mean, ci, bounds=ACCURACY_RANGE):
    """The intervals mean ± ci (a NaN ci, one seed: the mean alone) clipped to ``bounds``."""
    mean = np.asarray(mean, dtype=float)
    ci = np.nan_to_num(np.asarray(ci, dtype=float), nan=0.0)
    return np.clip(mean - ci, *bounds), np.clip(mean + ci, *bounds)


def _zoom(lows, highs, bounds=ACCURACY_RANGE) -> tuple[float, float]:
    """Y limits holding every (clipped) interval with a margin of 5% of their span (at least
    0.02), never past ``bounds``: whatever the intervals, the axis stays in the feasible
    range."""
    low, high = float(np.nanmin(lows)), float(np.nanmax(highs))
    pad = max(0.02, 0.05 * (high - low))
    return max(bounds[0], low - pad), min(bounds[1], high + pad)


def _recovery_top(values) -> float:
    """The top of a recovery axis: RECOVERY_TOP, or just above the highest value where one is
    higher (recovery is at most 1 / victim accuracy, above 1 only slightly for an accurate
    victim)."""
    values = np.asarray(values, dtype=float)
    return max(RECOVERY_TOP, float(np.nanmax(values)) + 0.03) if len(values) else RECOVERY_TOP


def budget_label(budget) -> str:
    """A budget as a tick label: 200, 1k, 2.5k, 10k, 100k, 1M."""
    budget = float(budget)
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if budget >= scale:
            return f"{budget / scale:g}{suffix}"
    return f"{budget:g}"


# A tick of ``_budget_axis``'s ``reach`` is labelled only this far (a factor) from every other
# label: published points at 60k and 100k would print their labels over each other.
REACH_LABEL_GAP = 2.0


def _budget_axis(ax, budgets, reach=()) -> None:
    """A log budget axis with its ticks and labels at exactly ``budgets`` (the grid's own: a
    log axis would label only the powers of ten) and no minor ticks. ``reach`` (published
    points' budgets) gets ticks too, labelled from the largest down where no label lies within
    REACH_LABEL_GAP; the limits hold both with a margin."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    budgets = sorted({float(b) for b in budgets})
    labelled = set(budgets)
    for r in sorted({float(r) for r in reach} - labelled, reverse=True):
        if all(max(r / b, b / r) >= REACH_LABEL_GAP for b in labelled):
            labelled.add(r)
    ticks = sorted({*budgets, *(float(r) for r in reach)})
    low, high = min(ticks) / 1.25, max(ticks) * 1.25
    labels = [budget_label(t) if t in labelled else "" for t in ticks]
    ax.set_xscale("log")  # first: setting the scale resets the locators
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FixedFormatter(_stagger(ax, ticks, labels, low, high)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(low, high)


def _stagger(ax, ticks, labels, low: float, high: float) -> list[str]:
    """``labels`` at ``ticks`` on a log axis from ``low`` to ``high``, each that would print
    over a label to its left moved down a line (as many as it takes): close budgets on a long
    axis (200 and 300 beside published points at 100k) all keep their labels, readable. The
    widths are estimates (characters of the tick font, the axes' width before the layout)."""
    import matplotlib as mpl
    from matplotlib.font_manager import FontProperties

    size = FontProperties(size=mpl.rcParams["xtick.labelsize"]).get_size_in_points()
    char = 0.6 * size / 72  # inches per character, about
    width = ax.get_position().width * ax.figure.get_figwidth()  # inches
    span = np.log10(high / low)
    rows: list[float] = []  # each line's rightmost label end, inches from the left
    out = []
    for tick, label in zip(ticks, labels, strict=True):
        if not label:
            out.append(label)
            continue
        x, half = np.log10(tick / low) / span * width, len(label) * char / 2
        row = next((i for i, end in enumerate(rows) if x - half >= end + char), len(rows))
        rows[row : row + 1] = [x + half]
        out.append("\n" * row + label)
    return out


def _line_with_band(
    ax, data: pd.DataFrame, x: str, y: str, ci: str, bounds=ACCURACY_RANGE, **style
) -> None:
    """One series: the means joined by a line, the CI as a band around them, clipped to
    ``bounds`` (the metric's feasible range)."""
    data = data.sort_values(x)
    line = ax.plot(data[x], data[y], marker="o", markersize=3, **style)[0]
    lo, hi = _clip(data[y], data[ci], bounds)
    if len(data) == 1:  # a band of one point has no width: a bar instead
        ax.vlines(data[x], lo, hi, color=line.get_color(), linewidth=1)
    else:
        ax.fill_between(data[x], lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)


def _grid(n: int, ncols: int, width: float = 3.2, height: float = 2.6):
    plt = _pyplot()
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    figure, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(width * ncols, height * nrows),
        squeeze=False,
        sharey=True,
        layout="constrained",  # titles, labels and the legend below never overlap
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return figure, list(axes.flat)  # a list: callers iterate it more than once (legend)


def plot_accuracy_vs_budget(summary: pd.DataFrame, victim: str, paths) -> None:
    """Test accuracy vs budget for one victim: a panel per (surrogate, granularity), a line
    per attack, bands the 95% CI over seeds clipped to [0, 1]; dotted: the victim's
    accuracy. Budget ticks at the victim's budgets."""
    data = summary[summary["victim"] == victim].copy()
    data["surrogate"] = [
        surrogate_label(a, i)
        for a, i in zip(data["surrogate_arch"], data["surrogate_init"], strict=True)
    ]
    panels = [
        (s, g)
        for s in sorted(data["surrogate"].unique())
        for g in information_order(data["granularity"])
        if len(data[(data["surrogate"] == s) & (data["granularity"] == g)])
    ]
    figure, axes = _grid(len(panels), ncols=4)
    attacks = sorted(data["attack"].unique())
    colours = dict(zip(attacks, _palette(len(attacks)), strict=True))
    victim_acc = float(data["victim_acc"].iloc[0])
    for ax, (surrogate, granularity) in zip(axes, panels, strict=False):
        part = data[(data["surrogate"] == surrogate) & (data["granularity"] == granularity)]
        for attack, series in part.groupby("attack"):
            realistic = series["adversary"].iloc[0] == "realistic"
            _line_with_band(
                ax,
                series,
                "budget",
                "test_acc_mean",
                "test_acc_ci95",
                color=colours[attack],
                linestyle="-" if realistic else "--",
                label=attack,
            )
        ax.axhline(victim_acc, color="black", linestyle=":", linewidth=0.8)
        _budget_axis(ax, data["budget"])
        ax.set_title(f"{surrogate}, {granularity}", fontsize=8)
        ax.set_xlabel("queries (budget)")
        ax.set_ylabel("surrogate test accuracy")
    # the panels share their y axis: the clipped bands of all of them and the victim's line
    low, high = _clip(data["test_acc_mean"], data["test_acc_ci95"])
    axes[0].set_ylim(*_zoom([*low, victim_acc], [*high, victim_acc]))
    _legend(figure, axes, "attack (solid: realistic adversary, dashed: out-of-distribution)")
    figure.suptitle(f"{victim} (victim accuracy {victim_acc:.3f}, dotted)")
    save_figure(figure, paths)


def _palette(n: int):
    import seaborn as sns

    return sns.color_palette("tab10" if n <= 10 else "husl", n)


def _legend(figure, axes, title: str) -> None:
    handles, labels = {}, []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if handles:
        figure.legend(
            [handles[label] for label in labels],
            labels,
            title=title,
            loc="outside lower center",
            ncol=min(4, len(labels)),
            fontsize=7,
            title_fontsize=8,
        )


def plot_recovery_vs_budget(summary: pd.DataFrame, anchors, paths) -> None:
    """Recovery against budget (log axis) for every victim's out-of-distribution attacks
    whose grid reaches the largest budget: a line per surrogate start and granularity (band:
    95% CI, clipped to the axis), the published anchors as points, the 0.9 target as a
    dotted line. The recovery axis runs from 0 to RECOVERY_TOP or just above the highest mean
    or anchor (:func:`_recovery_top`); budget ticks at the grid's budgets."""
    from .tables import RECOVERY_TARGET

    ood = summary[summary["adversary"] == "out-of-distribution"].copy()
    ood = ood[
        ood.groupby("victim")["budget"].transform("max")
        == ood.groupby(["victim", "attack"])["budget"].transform("max")
    ]
    victims = sorted(ood["victim"].unique())
    if not victims:  # e.g. only realistic attackers, as against a model of one's own
        figure, axes = _grid(1, ncols=1, height=3.4)
        axes[0].text(0.5, 0.5, "no out-of-distribution attack in this grid", ha="center")
        axes[0].set_axis_off()
        save_figure(figure, paths)
        return
    figure, axes = _grid(len(victims), ncols=min(4, len(victims)), height=3.4)
    ood["series"] = [
        f"{surrogate_label(a, i)}, {g}"
        for a, i, g in zip(
            ood["surrogate_arch"], ood["surrogate_init"], ood["granularity"], strict=True
        )
    ]
    series_names = sorted(ood["series"].unique())
    colours = dict(zip(series_names, _palette(len(series_names)), strict=True))
    shown = [a for a in anchors if a.budget is not None]
    top = _recovery_top([*ood["recovery_mean"], *(a.recovery for a in shown)])
    for ax, victim in zip(axes, victims, strict=False):
        part = ood[ood["victim"] == victim]
        several = part["attack"].nunique() > 1
        for (attack, name), series in part.groupby(["attack", "series"]):
            _line_with_band(
                ax,
                series,
                "budget",
                "recovery_mean",
                "recovery_ci95",
                bounds=(0.0, top),
                color=colours[name],
                linestyle="-" if "probs" in name else "--",
                label=f"{attack}: {name}" if several else name,
            )
        for anchor in shown:
            ax.scatter(
                [anchor.budget],
                [anchor.recovery],
                marker="^" if anchor.pretrained else "s",
                color="grey",
                s=18,
                zorder=3,
                label=(
                    "published, pretrained victim"
                    if anchor.pretrained
                    else "published, victim from scratch"
                ),
            )
        ax.axhline(RECOVERY_TARGET, color="black", linestyle=":", linewidth=0.8)
        init = part["victim_init"].iloc[0]
        ax.set_title(
            f"{victim} ({'from scratch' if init == 'scratch' else 'from ' + init})", fontsize=8
        )
        _budget_axis(ax, ood["budget"], reach=[a.budget for a in shown])
        ax.set_xlabel("queries (budget)")
        ax.set_ylabel("recovery (surrogate / victim acc.)")
        ax.set_ylim(0.0, top)
    _legend(figure, axes, "surrogate and granularity; grey: published points (recovery)")
    figure.suptitle(f"recovery vs budget (dotted: {RECOVERY_TARGET})")
    save_figure(figure, paths)


def plot_strategies(strategies: pd.DataFrame, paths) -> None:
    """Accuracy against budget per attack on the same victim (band: 95% CI clipped to
    [0, 1]), a panel per (victim, granularity, surrogate architecture): strategies on a
    shared pool side by side, and the pools beside them. Budget ticks at the grid's
    budgets."""
    by_panel = strategies.groupby(["victim", "granularity", "surrogate_arch"])["attack"]
    compared = by_panel.nunique()
    # panels where attacks meet; a lone attack (another surrogate of one pool) compares nothing
    panels = list(compared[compared > 1].index) or list(compared.index)
    figure, axes = _grid(max(1, len(panels)), ncols=3)
    attacks = sorted(strategies["attack"].unique())
    colours = dict(zip(attacks, _palette(len(attacks)), strict=True))
    for ax, key in zip(axes, panels, strict=False):
        victim, granularity, arch = key
        part = strategies[
            (strategies["victim"] == victim)
            & (strategies["granularity"] == granularity)
            & (strategies["surrogate_arch"] == arch)
        ]
        shown = sorted(part["attack"].unique())
        for attack, series in part.groupby("attack"):
            # attacks side by side at a shared budget (x 1.08 apart on the log axis)
            dodge = 1.08 ** (shown.index(attack) - (len(shown) - 1) / 2)
            _line_with_band(
                ax,
                series.assign(budget=series["budget"] * dodge),
                "budget",
                "test_acc_mean",
                "test_acc_ci95",
                color=colours[attack],
                linestyle="-" if series["strategy"].iloc[0] == "random" else "--",
                label=attack,
            )
        _budget_axis(ax, strategies["budget"])
        ax.set_title(f"{victim}, {granularity}, {arch}", fontsize=8)
        ax.set_xlabel("queries (budget)")
        ax.set_ylabel("surrogate test accuracy")
    if not panels:
        axes[0].text(0.5, 0.5, "no victim faces two strategies", ha="center", va="center")
    else:  # the shared y axis: the clipped bands of the panels drawn
        drawn = strategies[
            pd.MultiIndex.from_frame(strategies[["victim", "granularity", "surrogate_arch"]]).isin(
                panels
            )
        ]
        axes[0].set_ylim(*_zoom(*_clip(drawn["test_acc_mean"], drawn["test_acc_ci95"])))
    _legend(figure, axes, "attack (solid: random sampling of a pool, dashed: other strategies)")
    figure.suptitle("strategies at equal budget")
    save_figure(figure, paths)


def _flat(values) -> bool:
    """Whether a trade-off panel's x does not vary: its finite values (the undefended API's
    included) span less than FLAT_TOLERANCE."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return not len(values) or float(values.max() - values.min()) < FLAT_TOLERANCE


def _subplots(means: pd.DataFrame, keys: list[str], x: str) -> list[tuple]:
    """The trade-off figure's subplots: ``(key, points, None)`` for a panel (one value of
    ``keys``) drawn against ``x``, ``(key, points, defense)`` for a defense drawn against its
    strength: each defense whose ``x``, with the undefended API's, is flat (:func:`_flat`),
    which on the panel would be a vertical stack over the undefended star. A panel where
    every defense is flat is only such subplots; where some are, the panel keeps the others.

    One subplot per defense rather than a shared normalised axis: each defense's strength is
    its own parameter, with its own units and direction (top-k's k, rounding's decimals,
    MAD's epsilon), and the defenses meet at no common x once benign utility no longer
    separates them."""
    subplots = []
    for key, part in means.groupby(keys, sort=True):
        defenses = sorted(set(part["defense"]) - {"none"})
        flat = [d for d in defenses if _flat(part.loc[part["defense"].isin([d, "none"]), x])]
        if len(flat) < len(defenses) or not defenses:
            subplots.append((key, part[~part["defense"].isin(flat)], None))
        subplots += [(key, part, defense) for defense in flat]
    return subplots


def _strength_panel(ax, part: pd.DataFrame, defense: str, colour) -> None:
    """One defense of a panel whose x does not vary: the attacker's accuracy against the
    defense's own strength (its parameter, in its units, ticks at the strengths tested),
    weakest on the left: the axis runs backwards for a defense whose smaller values are
    stronger (top-k's k, rounding's decimals); a strength the defense learns (NaN) sits one
    step past the strongest, labelled "learned". The undefended API's accuracy is a dotted
    level (it has no strength on most of these axes: top-k has no k that changes nothing)."""
    from matplotlib.ticker import NullLocator

    from .tables import by_strength

    series = by_strength(part[part["defense"] == defense], defense)
    values = series["strength_value"].astype(float).to_numpy()
    finite = values[np.isfinite(values)]
    # by_strength puts the weakest first: decreasing values are a "smaller is stronger" sweep
    backwards = len(finite) > 1 and finite[0] > finite[-1]
    step = float(np.abs(np.diff(finite)).min()) if len(finite) > 1 else 1.0
    step = step or 1.0
    learned = finite[-1] + (-step if backwards else step) if len(finite) else 0.0
    xs = np.where(np.isfinite(values), values, learned)
    _sweep(ax, xs, series, colour, defense)
    base = part.loc[part["defense"] == "none", "acc"]
    if len(base):
        ax.axhline(
            float(base.iloc[0]),
            color="black",
            linestyle=":",
            linewidth=0.8,
            label="undefended (dotted level, on a strength axis)",
        )
    ticks = sorted(set(xs))
    ax.set_xticks(ticks, [f"{t:g}" if t in set(finite) else "learned" for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    low, high = float(xs.min()) - step / 2, float(xs.max()) + step / 2
    ax.set_xlim((high, low) if backwards else (low, high))
    name = series["strength"].dropna()
    name = str(name.iloc[0]) if len(name) else "strength"
    ax.set_xlabel(f"{defense}'s {name} (stronger to the right)", fontsize=8)


def plot_defenses(defended: pd.DataFrame, x: str, xlabel: str, paths) -> None:
    """Attacker accuracy (y) against ``x`` per victim and attack at the largest defended
    budget: one line per defense through its strengths (means over seeds, bars: 95% CI of
    the attacker's accuracy, clipped to [0, 1]); a star marks the undefended API.

    A defense whose ``x`` does not vary (:func:`_flat`: e.g. benign utility for a defense
    that keeps the top-1) would be a vertical stack of points: it is drawn in a subplot of
    its own, the attacker's accuracy against that defense's strength (:func:`_strength_panel`,
    :func:`_subplots`)."""
    from .tables import ci95

    top = defended[defended["budget"] == defended.groupby("attack")["budget"].transform("max")]
    top = top[top["granularity"] == top["granularity"].iloc[0]]
    keys = ["victim", "attack", "defense", "defense_id", "strength", "strength_value"]
    means = (
        top.groupby(keys, dropna=False)
        .agg(acc=("test_acc", "mean"), acc_ci=("test_acc", ci95), x=(x, "mean"))
        .reset_index()
    )
    subplots = _subplots(means, ["victim", "attack"], "x")
    figure, axes = _grid(len(subplots), ncols=3, width=3.6, height=3.0)
    # the panels share their y axis: limits from every panel's points and (clipped) bars
    ylim = _zoom(*_clip(means["acc"], means["acc_ci"]))
    defenses = sorted(d for d in means["defense"].unique() if d != "none")
    colours = dict(zip(defenses, _palette(len(defenses)), strict=True))
    for ax, ((victim, attack), part, flat) in zip(axes, subplots, strict=False):
        ax.set_ylim(*ylim)
        ax.set_ylabel("attacker's surrogate accuracy", fontsize=8)
        if flat is not None:
            _strength_panel(ax, part, flat, colours[flat])
            ax.set_title(
                f"{victim}, {attack}: {flat}\n{xlabel} the same at every strength", fontsize=8
            )
            continue
        for defense, series in part.groupby("defense"):
            if defense == "none":
                _undefended(ax, series["x"], series["acc"])
                continue
            series = series.sort_values("strength_value", na_position="first")
            _sweep(ax, series["x"], series, colours[defense], defense)
        xs = part["x"]
        pad_x = max(0.01, 0.08 * float(xs.max() - xs.min()))
        ax.set_xlim(float(xs.min()) - pad_x, float(xs.max()) + pad_x)
        ax.set_title(f"{victim}, {attack}", fontsize=8)
        ax.set_xlabel(xlabel, fontsize=8)
    _legend(figure, axes, "defense, through its strengths")
    title = "defenses as trade-off curves"
    if any(flat is not None for *_, flat in subplots):
        title += f" (against each defense's strength where the {xlabel} does not vary)"
    figure.suptitle(title)
    save_figure(figure, paths)


# The trade-off figure's window: benign costs up to 5 points of the victim's test accuracy.
COST_WINDOW = 0.05


def plot_defenses_at_cost(defended: pd.DataFrame, matched: pd.DataFrame, paths) -> None:
    """The trade-off zoomed where benign users lose at most COST_WINDOW of top-1 accuracy:
    attacker accuracy (y) against benign cost (x, undefended less defended benign utility,
    per seed then the mean) per victim and attack at the largest defended budget, one line
    per defense from the undefended API (star, cost 0) through its strengths (bars: 95% CI
    of the attacker's accuracy, clipped to [0, 1]). Dotted verticals mark the matched costs
    (MATCHED_COSTS); hollow diamonds the matched-cost table's readings where the sweep
    reaches them. A strength beyond the window is drawn at its edge as a triangle with its
    cost beside it, its line running out of the panel towards it: never dropped.

    A defense none of whose strengths costs benign users anything (:func:`_flat`: it keeps
    the top-1) has no matched cost to read: it is drawn in a subplot of its own that says so,
    the attacker's accuracy against its strength (:func:`_strength_panel`, :func:`_subplots`),
    never as a stack of points at cost 0; where every defense is such, the title says so."""
    from .tables import MATCHED_COSTS, by_strength, cell_benign_costs, ci95

    top = defended[defended["budget"] == defended.groupby("attack")["budget"].transform("max")]
    granularity = "probs" if "probs" in set(top["granularity"]) else top["granularity"].iloc[0]
    top = top[top["granularity"] == granularity]
    top = top.assign(cost=cell_benign_costs(top))
    keys = [
        "victim",
        "attack",
        "surrogate_arch",
        "defense",
        "defense_id",
        "strength",
        "strength_value",
    ]
    means = (
        top.groupby(keys, dropna=False)
        .agg(acc=("test_acc", "mean"), acc_ci=("test_acc", ci95), cost=("cost", "mean"))
        .reset_index()
    )
    several = means.groupby(["victim", "attack"])["surrogate_arch"].nunique().max() > 1
    subplots = _subplots(means, ["victim", "attack", "surrogate_arch"], "cost")
    figure, axes = _grid(len(subplots), ncols=3, width=3.8, height=3.0)
    ylim = _zoom(*_clip(means["acc"], means["acc_ci"]))
    defenses = sorted(d for d in means["defense"].unique() if d != "none")
    colours = dict(zip(defenses, _palette(len(defenses)), strict=True))
    for ax, ((victim, attack, arch), part, flat) in zip(axes, subplots, strict=False):
        ax.set_ylim(*ylim)
        ax.set_ylabel("attacker's surrogate accuracy", fontsize=8)
        name = f"{victim}, {attack}" + (f", {arch}" if several else "")
        if flat is not None:
            _strength_panel(ax, part, flat, colours[flat])
            ax.set_title(
                f"{name}: {flat}\nno benign cost at any strength: no matched cost", fontsize=8
            )
            continue
        base = part[part["defense"] == "none"]
        start = (0.0, float(base["acc"].iloc[0])) if len(base) else None
        shown = part.loc[part["cost"].between(-COST_WINDOW, COST_WINDOW), "cost"]
        left = min(-0.002, float(shown.min()) - 0.002) if len(shown) else -0.002
        for cost in MATCHED_COSTS:
            ax.axvline(cost, color="grey", linestyle=":", linewidth=0.8)
        # the legend's entries for the marks drawn in each defense's colour, in grey
        for marker, label in (
            (">", "beyond the window (its cost)"),
            ("D", "read at a matched cost"),
        ):
            ax.scatter([], [], marker=marker, facecolors="none", edgecolors="dimgrey", label=label)
        for defense, series in part.groupby("defense"):
            if defense == "none":
                _undefended(ax, [0.0], series["acc"])
                continue
            series = by_strength(series, defense)
            colour = colours[defense]
            if start is not None:  # every curve starts at the undefended API
                ax.plot(
                    [start[0], series["cost"].iloc[0]],
                    [start[1], series["acc"].iloc[0]],
                    color=colour,
                    linewidth=1,
                    linestyle="--",
                )
            _sweep(ax, series["cost"], series, colour, defense)
            beyond = series[(series["cost"] > COST_WINDOW) | (series["cost"] < left)]
            for r in beyond.itertuples():
                right = r.cost > COST_WINDOW
                edge = COST_WINDOW if right else left
                ax.scatter(
                    [edge],
                    [r.acc],
                    marker=">" if right else "<",
                    s=30,
                    color=colour,
                    clip_on=False,
                    zorder=5,
                    label="_beyond",
                )
                ax.annotate(
                    f"{r.cost:.2f}",
                    (edge, r.acc),
                    xytext=(4 if right else -4, 0),
                    textcoords="offset points",
                    ha="left" if right else "right",
                    va="center",
                    fontsize=6,
                    color=colour,
                    annotation_clip=False,
                )
        read = matched[
            (matched["victim"] == victim)
            & (matched["attack"] == attack)
            & (matched["surrogate_arch"] == arch)
            & (matched["granularity"] == granularity)
            & (matched["budget"] == top.loc[top["attack"] == attack, "budget"].max())
            & matched["reached"]
        ]
        for r in read.itertuples():
            ax.scatter(
                [r.cost],
                [r.attacker_acc_mean],
                marker="D",
                s=22,
                facecolors="none",
                edgecolors=colours.get(r.defense, "black"),
                zorder=5,
                label="_read",
            )
        ax.set_xlim(left, COST_WINDOW)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("benign cost (undefended − defended benign accuracy)", fontsize=8)
    _legend(figure, axes, "defense, from the undefended API through its strengths")
    if all(flat is not None for *_, flat in subplots):
        figure.suptitle(
            "no defense costs benign users anything here, so no matched cost is reached: "
            "the attacker's accuracy against each defense's strength"
        )
    else:
        figure.suptitle(
            f"defenses where benign users lose at most {COST_WINDOW:g} (dotted: matched "
            "costs " + ", ".join(f"{c:g}" for c in MATCHED_COSTS) + ")"
        )
    save_figure(figure, paths)


def _sweep(ax, x, series: pd.DataFrame, colour, defense: str) -> None:
    """One defense's points through its strengths: the attacker's mean accuracy against ``x``
    with its 95% CI as bars, clipped to [0, 1]."""
    low, high = _clip(series["acc"], series["acc_ci"])
    acc = series["acc"].to_numpy(dtype=float)
    ax.errorbar(
        x,
        acc,
        yerr=np.vstack([acc - low, high - acc]),
        marker="o",
        markersize=3,
        capsize=2,
        color=colour,
        label=defense,
    )


def _undefended(ax, x, accuracy) -> None:
    """The undefended API's point on a trade-off panel: a black star."""
    ax.scatter(x, accuracy, marker="*", s=120, color="black", zorder=4, label="undefended")
