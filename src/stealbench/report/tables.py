"""Result tables: one tidy row per cell, summaries over seeds, one table per claim."""

from __future__ import annotations


import numpy as np
import pandas as pd

from ..attack.api import information_order

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
METRICS = ["victim_acc", "test_acc", "agreement", "recovery", "kl_divergence"]
PER_CLASS = ["class_acc", "victim_class_acc"]


def collect_cells(paths) -> pd.DataFrame:
    """One tidy row per cell, all axes first, sorted, from the training jobs' cell tables."""
    cells = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    rest = [c for c in cells.columns if c not in AXES + METRICS]
    return cells[AXES + METRICS + rest].sort_values(AXES, kind="stable").reset_index(drop=True)


def ci95(values) -> float:
    """Half-width of the 95% confidence interval of the mean (Student t); NaN for one value."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))


def summarise(
    cells: pd.DataFrame, metrics=("test_acc", "agreement", "recovery", "kl_divergence")
) -> pd.DataFrame:
    """Mean and 95% CI over seeds of every metric, one row per cell without its seed."""
    keys = [a for a in AXES if a != "seed"]
    grouped = cells.groupby(keys, sort=True, dropna=False)
    out = grouped.agg(seeds=("seed", "nunique"), victim_acc=("victim_acc", "first"))
    for metric in metrics:
        out[f"{metric}_mean"] = grouped[metric].mean()
        out[f"{metric}_ci95"] = grouped[metric].agg(ci95)
    return out.reset_index()


def per_class_table(
    cells: pd.DataFrame, class_names: dict[str, list[str]] | None = None
) -> pd.DataFrame:
    """Victim vs surrogate accuracy per class (mean over seeds), for every cell."""
    keys = [a for a in AXES if a != "seed"]
    long = cells[keys + ["seed", *PER_CLASS]].explode(PER_CLASS, ignore_index=True)
    long["class"] = long.groupby(keys + ["seed"]).cumcount()
    long[PER_CLASS] = long[PER_CLASS].astype(float)
    table = (
        long.groupby(keys + ["class"], sort=True)[PER_CLASS]
        .mean()
        .reset_index()
        .rename(columns={"class_acc": "surrogate_class_acc"})
    )
    table["drop"] = table["victim_class_acc"] - table["surrogate_class_acc"]
    if class_names:
        table.insert(
            table.columns.get_loc("class") + 1,
            "class_name",
            [
                (class_names.get(d) or [])[c] if c < len(class_names.get(d) or []) else str(c)
                for d, c in zip(table["dataset"], table["class"], strict=True)
            ],
        )
    return table


# ---------------------------------------------------------------- one table per claim


def _largest_budget(summary: pd.DataFrame) -> pd.DataFrame:
    top = summary.groupby(["victim", "attack"])["budget"].transform("max")
    return summary[summary["budget"] == top]


def _paper(victim_papers: dict[str, str], victims, key: str) -> list:
    from ..paper import PAPER_RESULTS

    return [(PAPER_RESULTS.get(victim_papers.get(v, ""), {}) or {}).get(key) for v in victims]


def reproduction_table(summary: pd.DataFrame, victim_papers: dict[str, str]) -> pd.DataFrame:
    """Claim 1: victim accuracy, surrogate accuracy and recovery, full probabilities."""
    rows = _largest_budget(summary[summary["granularity"] == "probs"])
    table = rows[
        [
            "victim",
            "victim_arch",
            "dataset",
            "attack",
            "adversary",
            "surrogate_arch",
            "budget",
            "seeds",
            "victim_acc",
            "test_acc_mean",
            "test_acc_ci95",
            "recovery_mean",
            "recovery_ci95",
        ]
    ].copy()
    table["paper_victim_acc"] = _paper(victim_papers, table["victim"], "victim_acc")
    table["paper_surrogate_acc"] = _paper(victim_papers, table["victim"], "probs")
    table["paper_recovery"] = [
        s / v if s and v else None
        for s, v in zip(table["paper_surrogate_acc"], table["paper_victim_acc"], strict=True)
    ]
    return table.reset_index(drop=True)


def granularity_table(summary: pd.DataFrame, victim_papers: dict[str, str]) -> pd.DataFrame:
    """Claim 2a: the same attack at every granularity (largest budget), side by side."""
    rows = _largest_budget(summary)
    keys = ["victim", "attack", "surrogate_arch", "budget"]
    wide = rows.pivot_table(
        index=keys, columns="granularity", values=["test_acc_mean", "test_acc_ci95"], dropna=False
    )
    wide.columns = [f"{g}_{'acc' if m == 'test_acc_mean' else 'ci95'}" for m, g in wide.columns]
    order = information_order({c.rsplit("_", 1)[0] for c in wide.columns})
    wide = wide[[f"{g}_{k}" for g in order for k in ("acc", "ci95")]].reset_index()
    wide["paper_probs"] = _paper(victim_papers, wide["victim"], "probs")
    wide["paper_label"] = _paper(victim_papers, wide["victim"], "label")
    return wide


def architecture_table(summary: pd.DataFrame, victim_papers: dict[str, str]) -> pd.DataFrame:
    """Claim 2b: surrogate architectures against each victim (probs, largest budget)."""
    rows = _largest_budget(summary[summary["granularity"] == "probs"]).copy()
    rows["matches_victim"] = rows["surrogate_arch"] == rows["victim_arch"]
    table = rows[
        [
            "victim",
            "victim_arch",
            "attack",
            "surrogate_arch",
            "matches_victim",
            "budget",
            "seeds",
            "victim_acc",
            "test_acc_mean",
            "test_acc_ci95",
            "agreement_mean",
        ]
    ].reset_index(drop=True)
    table["paper_resnet34"] = _paper(victim_papers, table["victim"], "probs")
    table["paper_vgg16"] = _paper(victim_papers, table["victim"], "vgg16")
    return table


def victims_table(metrics: list[dict]) -> pd.DataFrame:
    """One row per victim: architecture, data, accuracy, training."""
    columns = [
        "victim",
        "arch",
        "pretrained",
        "dataset",
        "num_classes",
        "test_acc",
        "val_acc",
        "best_epoch",
        "epochs",
        "train_seconds",
        "dataset_checksum",
        "weights_checksum",
    ]
    return pd.DataFrame(metrics).reindex(columns=columns).sort_values("victim")


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


def write_table(frame: pd.DataFrame, parquet_path, csv_path, meta: dict | None = None) -> None:
    """A table as Parquet (with stealbench metadata: what it was built from) and CSV."""
    from ..io import atomic_path, write_dataframe

    write_dataframe(frame, parquet_path, {"kind": "table", **(meta or {})})
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)


# ------------------------------------------------------------------------- defenses


def defended_table(paths, victim_papers: dict[str, str]) -> pd.DataFrame:
    """One row per defended cell: the attacker's accuracy beside the API's benign utility."""
    cells = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    keys = [
        *AXES[: AXES.index("granularity")],
        "defense",
        "granularity",
        "budget",
        "surrogate_arch",
        "seed",
    ]
    rest = [
        "victim_acc",
        "test_acc",
        "agreement",
        "recovery",
        "kl_divergence",
        "benign_utility",
        "flagged_share",
        "train_seconds",
    ]
    table = cells[keys + rest].sort_values(keys, kind="stable").reset_index(drop=True)
    table["paper_defended"] = _paper(victim_papers, table["victim"], "defended")
    return table

