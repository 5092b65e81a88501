"""Result tables, figures and the findings text, all computed from the per-cell metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .blackbox import information_order

AXES = [
    "victim",
    "victim_arch",
    "dataset",
    "attack",
    "strategy",
    "pool",
    "adversary",
    "granularity",
    "budget",
    "surrogate_arch",
    "seed",
]
METRICS = ["victim_acc", "test_acc", "agreement", "recovery"]


def collect_cells(metric_paths) -> pd.DataFrame:
    """One tidy row per cell, all axes first, sorted, from the cells' metrics.json files."""
    rows = [json.loads(Path(p).read_text()) for p in metric_paths]
    cells = pd.DataFrame(rows)
    rest = [c for c in cells.columns if c not in AXES + METRICS]
    return cells[AXES + METRICS + rest].sort_values(AXES, kind="stable").reset_index(drop=True)


def query_accounting(cache_metas: list[dict], cells: pd.DataFrame) -> pd.DataFrame:
    """Victim forward passes made per (victim, attack) vs a pipeline without the cache.

    Without the cache every cell would query the victim afresh: as many passes as its budget.
    """
    served = cells.groupby(["victim", "attack"]).agg(
        cells=("budget", "size"), passes_without_cache=("budget", "sum")
    )
    table = pd.DataFrame(
        [
            {
                "victim": m["victim"],
                "attack": m["attack"],
                "strategy": m["strategy"],
                "pool": m["pool"],
                "largest_budget": m["budget"],
                "victim_forward_passes": m["victim_forward_passes"],
            }
            for m in cache_metas
        ]
    ).set_index(["victim", "attack"])
    table = table.join(served, how="left").reset_index()
    table["cache_saving"] = table["passes_without_cache"] / table["victim_forward_passes"]
    return table


def write_table(frame: pd.DataFrame, parquet_path, csv_path) -> None:
    from .io import atomic_path

    with atomic_path(parquet_path) as tmp:
        frame.to_parquet(tmp, index=False)
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)


def plot_accuracy_vs_budget(cells: pd.DataFrame, victim: str, paths) -> None:
    """Test accuracy vs budget: columns granularity, rows surrogate arch, hue attack."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .io import atomic_path

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
    for path in paths:
        with atomic_path(path) as tmp:
            grid.figure.savefig(
                tmp, format=Path(path).suffix.lstrip("."), bbox_inches="tight", dpi=150
            )
    plt.close(grid.figure)


# ------------------------------------------------------------------------- findings


def _markdown(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        cells = [floatfmt.format(v) if isinstance(v, float | np.floating) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def granularity_finding(cells: pd.DataFrame) -> tuple[str, dict]:
    """Do full probabilities beat top-1 labels at equal budget (same victim, attack, arch)?"""
    keys = ["victim", "attack", "budget", "surrogate_arch", "seed"]
    wide = cells.pivot_table(index=keys, columns="granularity", values="test_acc")
    if not {"probs", "label"} <= set(wide.columns):
        return "Not measured: the grid needs both `probs` and `label` granularities.", {}
    diff = (wide["probs"] - wide["label"]).dropna()
    wins, n = int((diff > 0).sum()), len(diff)
    by_budget = (
        wide[["probs", "label"]]
        .groupby(level="budget")
        .mean()
        .assign(difference=lambda f: f["probs"] - f["label"])
        .reset_index()
    )
    verdict = "Yes" if diff.mean() > 0 and wins > n / 2 else "No"
    text = (
        f"**{verdict}.** Over {n} paired cells (same victim, attack, budget, surrogate, seed), "
        f"surrogates trained on full probabilities reach a mean test accuracy "
        f"{wide['probs'].mean():.3f} against {wide['label'].mean():.3f} with top-1 labels "
        f"(mean difference {diff.mean():+.3f}); probabilities win in {wins} of {n} pairs.\n\n"
        + _markdown(by_budget)
    )
    return text, {
        "verdict": verdict,
        "mean_difference": float(diff.mean()),
        "wins": wins,
        "pairs": n,
    }


def budget_finding(cells: pd.DataFrame) -> tuple[str, dict]:
    """Does accuracy grow with the budget?"""
    budgets = sorted(cells["budget"].unique())
    if len(budgets) < 2:
        return "Not measured: the grid has a single budget.", {}
    keys = ["victim", "attack", "granularity", "surrogate_arch", "seed"]
    wide = cells.pivot_table(index=keys, columns="budget", values="test_acc")
    grows = wide[budgets[-1]] > wide[budgets[0]]
    monotone = (wide.diff(axis=1).iloc[:, 1:] >= 0).all(axis=1)
    means = cells.groupby("budget")["test_acc"].mean()
    verdict = "Yes" if grows.mean() > 0.5 and means.is_monotonic_increasing else "No"
    table = means.reset_index().rename(columns={"test_acc": "mean test_acc"})
    text = (
        f"**{verdict}.** Mean surrogate test accuracy goes "
        + " → ".join(f"{means[b]:.3f} (B={b})" for b in budgets)
        + f". In {int(grows.sum())} of {len(grows)} series (victim, attack, granularity, "
        f"surrogate, seed) the largest budget beats the smallest; {int(monotone.sum())} "
        f"series never drop as the budget grows.\n\n" + _markdown(table)
    )
    return text, {
        "verdict": verdict,
        "series_growing": float(grows.mean()),
        "means": {int(b): float(v) for b, v in means.items()},
    }


def adversary_finding(cells: pd.DataFrame) -> tuple[str, dict]:
    """Does the realistic adversary (same-task pool) beat the out-of-distribution pools?"""
    top = cells[cells["budget"] == cells["budget"].max()]
    table = top.groupby(["victim", "adversary"])["test_acc"].mean().unstack("adversary")
    if "realistic" not in table or "out-of-distribution" not in table:
        return "Not measured: the grid needs realistic and out-of-distribution pools.", {}
    table = table.dropna()
    if table.empty:
        return "Not measured: no victim faces both kinds of adversary.", {}
    wins = table["realistic"] > table["out-of-distribution"]
    verdict = "Yes" if wins.all() else ("Partly" if wins.any() else "No")
    per_pool = (
        top.groupby(["victim", "attack", "adversary"])["test_acc"]
        .mean()
        .reset_index()
        .sort_values(["victim", "test_acc"], ascending=[True, False])
    )
    text = (
        f"**{verdict}.** At the largest budget ({int(top['budget'].max())} queries), averaged "
        f"over granularities, surrogate architectures and seeds, the realistic adversary "
        f"beats the out-of-distribution pools for {int(wins.sum())} of {len(wins)} victims "
        f"facing both:\n\n"
        + _markdown(table.reset_index())
        + "\n\nPer attack:\n\n"
        + _markdown(per_pool)
    )
    return text, {"verdict": verdict, "victims_won": int(wins.sum()), "victims": len(wins)}


def findings(cells: pd.DataFrame, queries: pd.DataFrame) -> str:
    victims = cells.groupby("victim")[["victim_arch", "dataset", "victim_acc"]].first()
    sections = [
        "# Findings\n",
        "Generated by `rules/report.smk` from `results/tables/cells.parquet`; every number "
        "below is computed from that table. Rerun the workflow to regenerate it.\n",
        f"Grid: {len(cells)} cells, {cells['victim'].nunique()} victims, "
        f"{cells['attack'].nunique()} attacks, granularities "
        f"{', '.join(information_order(cells['granularity']))}, budgets "
        f"{', '.join(map(str, sorted(cells['budget'].unique())))}, surrogate architectures "
        f"{', '.join(dict.fromkeys(cells['surrogate_arch']))}, "
        f"{cells['seed'].nunique()} seed(s).\n",
        "## Victims\n",
        _markdown(victims.reset_index()) + "\n",
        "## Query economy\n",
        f"The victims answered {int(queries['victim_forward_passes'].sum())} queries in all "
        f"(one cached run per victim and attack, up to the largest budget); without the cache "
        f"the same {len(cells)} cells would have cost "
        f"{int(queries['passes_without_cache'].sum())}.\n",
        "## Do full probabilities beat top-1 labels at equal budget?\n",
        granularity_finding(cells)[0] + "\n",
        "## Does accuracy grow with budget?\n",
        budget_finding(cells)[0] + "\n",
        "## Does the realistic adversary beat the out-of-distribution pools?\n",
        adversary_finding(cells)[0] + "\n",
    ]
    return "\n".join(sections)
