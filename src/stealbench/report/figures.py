"""Figures, drawn from the result tables (matplotlib/seaborn, written atomically).

Every interval drawn is the table's 95% confidence interval over seeds (Student t), never a
bootstrap recomputed by the plotting library, so a figure and its table agree.
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


def _line_with_band(ax, data: pd.DataFrame, x: str, y: str, ci: str, **style) -> None:
    """One series: the means joined by a line, the CI as a band around them."""
    data = data.sort_values(x)
    line = ax.plot(data[x], data[y], marker="o", markersize=3, **style)[0]
    lo, hi = data[y] - data[ci].fillna(0), data[y] + data[ci].fillna(0)
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
    per attack, bands the 95% CI over seeds; dashed: the victim's accuracy."""
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
        ax.set_xscale("log")
        ax.set_title(f"{surrogate}, {granularity}", fontsize=8)
        ax.set_xlabel("queries (budget)")
        ax.set_ylabel("surrogate test accuracy")
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
    95% CI), the published anchors as points, the 0.9 target as a dotted line."""
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
                color=colours[name],
                linestyle="-" if "probs" in name else "--",
                label=f"{attack}: {name}" if several else name,
            )
        for anchor in anchors:
            if anchor.budget is None:
                continue
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
        ax.set_xscale("log")
        ax.set_xlabel("queries (budget)")
        ax.set_ylabel("recovery (surrogate / victim acc.)")
        low = min(0.0, float(part["recovery_mean"].min()) - 0.05)
        ax.set_ylim(low, 1.05)
    _legend(figure, axes, "surrogate and granularity; grey: published points (recovery)")
    figure.suptitle(f"recovery vs budget (dotted: {RECOVERY_TARGET})")
    save_figure(figure, paths)


def plot_strategies(strategies: pd.DataFrame, paths) -> None:
    """Accuracy against budget per attack on the same victim (band: 95% CI), a panel per
    (victim, granularity, surrogate architecture): strategies on a shared pool side by side,
    and the pools beside them."""
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
        ax.set_xscale("log")
        ax.set_title(f"{victim}, {granularity}, {arch}", fontsize=8)
        ax.set_xlabel("queries (budget)")
        ax.set_ylabel("surrogate test accuracy")
    if not panels:
        axes[0].text(0.5, 0.5, "no victim faces two strategies", ha="center", va="center")
    _legend(figure, axes, "attack (solid: random sampling of a pool, dashed: other strategies)")
    figure.suptitle("strategies at equal budget")
    save_figure(figure, paths)


def plot_defenses(defended: pd.DataFrame, x: str, xlabel: str, paths) -> None:
    """Attacker accuracy (y) against ``x`` per victim and attack at the largest defended
    budget: one line per defense through its strengths (means over seeds, bars: 95% CI of
    the attacker's accuracy); a star marks the undefended API."""
    from .tables import ci95

    top = defended[defended["budget"] == defended.groupby("attack")["budget"].transform("max")]
    top = top[top["granularity"] == top["granularity"].iloc[0]]
    keys = ["victim", "attack", "defense", "defense_id", "strength_value"]
    means = (
        top.groupby(keys, dropna=False)
        .agg(acc=("test_acc", "mean"), acc_ci=("test_acc", ci95), x=(x, "mean"))
        .reset_index()
    )
    panels = list(means.groupby(["victim", "attack"]).groups)
    figure, axes = _grid(len(panels), ncols=3, width=3.6, height=3.0)
    # the panels share their y axis: limits from every panel's points and bars
    low, high = (
        (means["acc"] - means["acc_ci"].fillna(0)),
        (means["acc"] + means["acc_ci"].fillna(0)),
    )
    pad_y = max(0.02, 0.05 * float(high.max() - low.min()))
    defenses = sorted(d for d in means["defense"].unique() if d != "none")
    colours = dict(zip(defenses, _palette(len(defenses)), strict=True))
    for ax, (victim, attack) in zip(axes, panels, strict=False):
        part = means[(means["victim"] == victim) & (means["attack"] == attack)]
        for defense, series in part.groupby("defense"):
            if defense == "none":
                _undefended(ax, series["x"], series["acc"])
                continue
            series = series.sort_values("strength_value", na_position="first")
            _sweep(ax, series["x"], series, colours[defense], defense)
        xs = part["x"]
        pad_x = max(0.01, 0.08 * float(xs.max() - xs.min()))
        ax.set_xlim(float(xs.min()) - pad_x, float(xs.max()) + pad_x)
        ax.set_ylim(max(0.0, float(low.min()) - pad_y), min(1.0, float(high.max()) + pad_y))
        ax.set_title(f"{victim}, {attack}", fontsize=8)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("attacker's surrogate accuracy", fontsize=8)
    _legend(figure, axes, "defense, through its strengths")
    figure.suptitle("defenses as trade-off curves")
    save_figure(figure, paths)


# The trade-off figure's window: benign costs up to 5 points of the victim's test accuracy.
COST_WINDOW = 0.05


def plot_defenses_at_cost(defended: pd.DataFrame, matched: pd.DataFrame, paths) -> None:
    """The trade-off zoomed where benign users lose at most COST_WINDOW of top-1 accuracy:
    attacker accuracy (y) against benign cost (x, undefended less defended benign utility,
    per seed then the mean) per victim and attack at the largest defended budget, one line
    per defense from the undefended API (star, cost 0) through its strengths (bars: 95% CI
    of the attacker's accuracy). Dotted verticals mark the matched costs (MATCHED_COSTS);
    hollow diamonds the matched-cost table's readings where the sweep reaches them. A
    strength beyond the window is drawn at its edge as a triangle with its cost beside it,
    its line running out of the panel towards it: never dropped."""
    from .tables import MATCHED_COSTS, by_strength, cell_benign_costs, ci95

    top = defended[defended["budget"] == defended.groupby("attack")["budget"].transform("max")]
    granularity = "probs" if "probs" in set(top["granularity"]) else top["granularity"].iloc[0]
    top = top[top["granularity"] == granularity]
    top = top.assign(cost=cell_benign_costs(top))
    keys = ["victim", "attack", "surrogate_arch", "defense", "defense_id", "strength_value"]
    means = (
        top.groupby(keys, dropna=False)
        .agg(acc=("test_acc", "mean"), acc_ci=("test_acc", ci95), cost=("cost", "mean"))
        .reset_index()
    )
    several = means.groupby(["victim", "attack"])["surrogate_arch"].nunique().max() > 1
    panels = list(means.groupby(["victim", "attack", "surrogate_arch"]).groups)
    figure, axes = _grid(len(panels), ncols=3, width=3.8, height=3.0)
    low = means["acc"] - means["acc_ci"].fillna(0)
    high = means["acc"] + means["acc_ci"].fillna(0)
    pad_y = max(0.02, 0.05 * float(high.max() - low.min()))
    defenses = sorted(d for d in means["defense"].unique() if d != "none")
    colours = dict(zip(defenses, _palette(len(defenses)), strict=True))
    for ax, (victim, attack, arch) in zip(axes, panels, strict=False):
        part = means[
            (means["victim"] == victim)
            & (means["attack"] == attack)
            & (means["surrogate_arch"] == arch)
        ]
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
        ax.set_ylim(max(0.0, float(low.min()) - pad_y), min(1.0, float(high.max()) + pad_y))
        ax.set_title(f"{victim}, {attack}" + (f", {arch}" if several else ""), fontsize=8)
        ax.set_xlabel("benign cost (undefended − defended benign accuracy)", fontsize=8)
        ax.set_ylabel("attacker's surrogate accuracy", fontsize=8)
    _legend(figure, axes, "defense, from the undefended API through its strengths")
    figure.suptitle(
        f"defenses where benign users lose at most {COST_WINDOW:g} (dotted: matched costs "
        + ", ".join(f"{c:g}" for c in MATCHED_COSTS)
        + ")"
    )
    save_figure(figure, paths)


def _sweep(ax, x, series: pd.DataFrame, colour, defense: str) -> None:
    """One defense's points through its strengths: the attacker's mean accuracy against ``x``
    with its 95% CI as bars."""
    ax.errorbar(
        x,
        series["acc"],
        yerr=series["acc_ci"].fillna(0),
        marker="o",
        markersize=3,
        capsize=2,
        color=colour,
        label=defense,
    )


def _undefended(ax, x, accuracy) -> None:
    """The undefended API's point on a trade-off panel: a black star."""
    ax.scatter(x, accuracy, marker="*", s=120, color="black", zorder=4, label="undefended")
