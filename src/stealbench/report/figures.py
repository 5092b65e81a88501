"""Figures, drawn from the result tables (matplotlib/seaborn, written atomically)."""

from __future__ import annotations

from pathlib import Path

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


def plot_accuracy_vs_budget(cells: pd.DataFrame, victim: str, paths) -> None:
    """Test accuracy vs budget: columns granularity, rows surrogate arch, hue attack."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    data = cells[cells["victim"] == victim]
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(
        data=data,
        x="budget",
        y="test_acc",
        hue="attack",
        style="adversary",
        col="granularity",
        row="surrogate_arch",
        kind="line",
        marker="o",
        errorbar=("ci", 95),
        height=2.4,
        aspect=1.1,
        col_order=information_order(data["granularity"]),
        facet_kws={"margin_titles": True},
    )
    victim_acc = float(data["victim_acc"].iloc[0])
    for ax in grid.axes.flat:
        ax.axhline(victim_acc, color="black", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
    grid.set_axis_labels("queries (budget)", "surrogate test accuracy")
    grid.figure.suptitle(f"{victim} (victim accuracy {victim_acc:.3f}, dashed)", y=1.02)
    save_figure(grid.figure, paths)


def plot_defense_tradeoff(defended: pd.DataFrame, paths) -> None:
    """Attacker accuracy (y) against benign utility (x) per defense, one panel per victim."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    top = defended[
        (defended["budget"] == defended["budget"].max())
        & (defended["granularity"] == defended["granularity"].iloc[0])
    ]
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(
        data=top,
        x="benign_utility",
        y="test_acc",
        hue="defense",
        style="attack",
        col="victim",
        kind="scatter",
        s=70,
        height=3,
        aspect=1.1,
        facet_kws={"sharex": False},
    )
    for ax in grid.axes.flat:
        ax.set_ylim(0, 1)
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.6, linestyle=":")
    grid.set_axis_labels(
        "benign users' accuracy through the defended API", "attacker's surrogate accuracy"
    )
    grid.figure.suptitle(
        f"defenses at budget {int(top['budget'].max())} "
        f"({top['granularity'].iloc[0]}); one point per seed",
        y=1.03,
    )
    save_figure(grid.figure, paths)

