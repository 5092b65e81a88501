"""Result tables: one tidy row per cell, summaries over seeds, one table per claim.

Every interval is the half-width of the 95% confidence interval of the mean over seeds
(Student t, :func:`ci95`); a seed redraws everything random in a cell (the attacker's sample
of the pool or its strategy's choices, and the surrogate's initial weights). The figures and
the findings read these tables, so they show the same intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..attack.api import information_order
from .columns import AXES, DEFENDED_KEYS, MATCHED_AXES, METRICS

PER_CLASS = ["class_acc", "victim_class_acc"]
# Recovery a stolen model must reach to count as stealing the victim (the paper's pretrained
# ResNet-34 victims: 0.91-0.97 except Diabetic's 0.75).
RECOVERY_TARGET = 0.9


def collect_cells(paths) -> pd.DataFrame:
    """One tidy row per cell, all axes first, sorted, from the training jobs' cell tables."""
    cells = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    rest = [c for c in cells.columns if c not in AXES + METRICS]
    return cells[AXES + METRICS + rest].sort_values(AXES, kind="stable").reset_index(drop=True)


ONLINE = ["online_acc", "online_agreement"]


def add_online(cells: pd.DataFrame, cache_metas: list[dict]) -> pd.DataFrame:
    """The cells with the scores of their attacker's own online model at the cell's budget
    (DFME's student: the paper's metric), which the undefended query caches record
    (``online``, :func:`stealbench.attack.query.online_metrics`); empty for attacks without
    one."""
    keys = ["victim", "attack", "granularity", "seed", "budget"]
    rows = [
        {
            "victim": m["victim"],
            "attack": m["attack"],
            "granularity": granularity,
            "seed": int(m["seed"]),
            **score,
        }
        for m in cache_metas
        if m.get("defense_id") in (None, "none")
        for granularity, scores in (m.get("online") or {}).items()
        for score in scores
    ]
    online = pd.DataFrame(rows, columns=keys + ONLINE)
    cells = cells.drop(columns=ONLINE, errors="ignore")
    types = {k: cells[k].dtype for k in keys if k in cells}
    merged = cells.merge(online.astype(types), on=keys, how="left", validate="many_to_one")
    return merged.astype({c: float for c in ONLINE})


def ci95(values) -> float:
    """Half-width of the 95% confidence interval of the mean (Student t); NaN for one value."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))


def summarise(
    cells: pd.DataFrame,
    metrics=("test_acc", "agreement", "recovery", "kl_divergence"),
    keys: list[str] | None = None,
) -> pd.DataFrame:
    """Mean and 95% CI over seeds of every metric, one row per cell without its seed."""
    keys = keys or [a for a in AXES if a != "seed"]
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


def largest_budget(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows at each attack's largest budget (against each victim)."""
    top = summary.groupby(["victim", "attack"])["budget"].transform("max")
    return summary[summary["budget"] == top]


def _paper(victim_papers: dict[str, str], victims, key: str) -> list:
    from ..paper import PAPER_RESULTS

    return [(PAPER_RESULTS.get(victim_papers.get(v) or "", {}) or {}).get(key) for v in victims]


def reproduction_table(summary: pd.DataFrame, victim_papers: dict[str, str]) -> pd.DataFrame:
    """Claim 1: every (victim, out-of-distribution attack, surrogate) with full probabilities
    at the attack's largest budget; whether recovery reaches RECOVERY_TARGET; the paper's
    figures (fractions, as ours) beside victims that name their paper configuration."""
    rows = largest_budget(summary[summary["granularity"] == "probs"])
    rows = rows[rows["adversary"] == "out-of-distribution"]
    table = rows[
        [
            "victim",
            "victim_arch",
            "victim_init",
            "dataset",
            "attack",
            "strategy",
            "surrogate_arch",
            "surrogate_init",
            "budget",
            "seeds",
            "victim_acc",
            "test_acc_mean",
            "test_acc_ci95",
            "recovery_mean",
            "recovery_ci95",
        ]
    ].copy()
    table["reaches_target"] = table["recovery_mean"] >= RECOVERY_TARGET
    table["paper_victim_acc"] = _paper(victim_papers, table["victim"], "victim_acc")
    table["paper_surrogate_acc"] = _paper(victim_papers, table["victim"], "probs")
    table["paper_recovery"] = [
        s / v if s and v else None
        for s, v in zip(table["paper_surrogate_acc"], table["paper_victim_acc"], strict=True)
    ]
    return table.reset_index(drop=True)


def budget_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Claim 1 where it lives: per (victim, attack, granularity, surrogate), the smallest
    budget at which mean recovery reaches RECOVERY_TARGET (NaN if none in the grid), beside
    the largest budget tried and the recovery there; the interval at every budget and the
    fewest seeds behind any, for the findings' few-seed check."""
    keys = [
        "victim",
        "victim_init",
        "attack",
        "adversary",
        "granularity",
        "surrogate_arch",
        "surrogate_init",
    ]
    rows = []
    for key, part in summary.groupby(keys, sort=True):
        part = part.sort_values("budget")
        reached = part[part["recovery_mean"] >= RECOVERY_TARGET]
        last = part.iloc[-1]
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "budgets": part["budget"].tolist(),
                "recovery_by_budget": part["recovery_mean"].round(4).tolist(),
                "smallest_budget_to_target": (
                    int(reached["budget"].iloc[0]) if len(reached) else np.nan
                ),
                "largest_budget": int(last["budget"]),
                "recovery_at_largest": float(last["recovery_mean"]),
                "recovery_ci95_at_largest": float(last["recovery_ci95"]),
                "recovery_ci95_by_budget": part["recovery_ci95"].round(4).tolist(),
                "seeds": int(part["seeds"].min()),
            }
        )
    return pd.DataFrame(rows)


def pretraining_table(summary: pd.DataFrame, victims: pd.DataFrame | None = None) -> pd.DataFrame:
    """Does pretraining make stealing easier? Recovery of each (victim init, surrogate init)
    combination of the same task, victim architecture, attack, granularity, surrogate
    architecture and budget: the rows where at least one side varies its starting point.

    Only victims trained by the plain recipe take part: a victim trained with Outlier
    Exposure (``victims``' ``oe_weight``) differs from its twins by more than its start, and
    pooled with them it would move the from-scratch side of the comparison."""
    if victims is not None and "oe_weight" in victims:
        exposed = set(victims.loc[victims["oe_weight"].fillna(0) > 0, "victim"])
        summary = summary[~summary["victim"].isin(exposed)]
    keys = ["dataset", "victim_arch", "attack", "granularity", "surrogate_arch", "budget"]
    varies = summary.groupby(keys)[["victim_init", "surrogate_init"]].transform("nunique")
    rows = summary[(varies["victim_init"] > 1) | (varies["surrogate_init"] > 1)]
    columns = [
        *keys[:3],
        "victim",
        "victim_init",
        "victim_acc",
        *keys[3:],
        "surrogate_init",
        "seeds",
        "test_acc_mean",
        "test_acc_ci95",
        "recovery_mean",
        "recovery_ci95",
    ]
    return rows[columns].sort_values(columns[:9]).reset_index(drop=True)


def granularity_table(summary: pd.DataFrame, victim_papers: dict[str, str]) -> pd.DataFrame:
    """Claim 2a: the same attack at every granularity (largest budget), side by side."""
    rows = largest_budget(summary)
    keys = ["victim", "attack", "surrogate_arch", "surrogate_init", "budget"]
    wide = rows.pivot_table(
        index=keys, columns="granularity", values=["test_acc_mean", "test_acc_ci95"], dropna=False
    )
    # dropna=False keeps a granularity a cell lacks as NaN, but also makes every combination
    # of the index levels: keep only the (victim, attack, surrogate, budget) cells that exist.
    wide = wide[wide.xs("test_acc_mean", axis=1, level=0).notna().any(axis=1)]
    wide.columns = [f"{g}_{'acc' if m == 'test_acc_mean' else 'ci95'}" for m, g in wide.columns]
    order = information_order({c.rsplit("_", 1)[0] for c in wide.columns})
    wide = wide[[f"{g}_{k}" for g in order for k in ("acc", "ci95")]].reset_index()
    wide["paper_probs"] = _paper(victim_papers, wide["victim"], "probs")
    wide["paper_label"] = _paper(victim_papers, wide["victim"], "label")
    return wide


def architecture_table(summary: pd.DataFrame, victim_papers: dict[str, str]) -> pd.DataFrame:
    """Claim 2b: surrogate architectures against each victim (probs, largest budget,
    surrogates from scratch)."""
    rows = largest_budget(summary[summary["granularity"] == "probs"])
    rows = rows[rows["surrogate_init"] == "scratch"].copy()
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


def strategies_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Every attack on victims facing more than one strategy, at every granularity and budget
    (surrogates from scratch): accuracy ± CI, and the difference to random sampling of the
    same pool at the same budget (NaN where random does not sample that pool, e.g. a
    data-free attack, whose pool gives only the image shape)."""
    rows = summary[summary["surrogate_init"] == "scratch"]
    rows = rows[rows.groupby("victim")["strategy"].transform("nunique") > 1]
    keys = ["victim", "granularity", "budget", "surrogate_arch"]
    columns = [
        *keys,
        "pool",
        "strategy",
        "attack",
        "seeds",
        "test_acc_mean",
        "test_acc_ci95",
        "recovery_mean",
        "agreement_mean",
    ]
    table = rows[columns].sort_values([*keys, "pool", "strategy", "attack"]).reset_index(drop=True)
    same = [*keys, "pool"]
    random = table[table["strategy"] == "random"].groupby(same)["test_acc_mean"].max()
    table["vs_random"] = table["test_acc_mean"] - [
        random.get(tuple(k), np.nan) for k in table[same].itertuples(index=False)
    ]
    return table


def victims_table(metrics: list[dict]) -> pd.DataFrame:
    """One row per victim: architecture, start, dataset, accuracy, training."""
    columns = [
        "victim",
        "arch",
        "init",
        "dataset",
        "num_classes",
        "test_acc",
        "val_acc",
        "best_epoch",
        "epochs",
        "train_seconds",
        "dataset_checksum",
        "weights_checksum",
        "oe_weight",
        "oe_data",
    ]
    rows = []
    for m in metrics:  # Outlier Exposure: its weight and datasets (NaN and "" without)
        oe = m.get("outlier_exposure") or {}
        rows.append(
            {**m, "oe_weight": oe.get("weight", np.nan), "oe_data": ",".join(oe.get("data", []))}
        )
    return pd.DataFrame(rows).reindex(columns=columns).sort_values("victim")


def query_accounting(cache_metas: list[dict], cells: pd.DataFrame) -> pd.DataFrame:
    """Per (victim, attack): the queries its attackers sent (a query is one image sent to the
    API: seed sets, augmented copies and gradient-estimation queries all count), the posteriors
    the victim computed for them (the cache answers an image drawn by several seeds once), and
    what a pipeline that queried afresh for every cell would have made."""
    runs = []
    for m in cache_metas:
        queries = m["queries"]
        sent = sum(queries.values()) if isinstance(queries, dict) else queries
        runs.append(
            {
                "victim": m["victim"],
                "attack": m["attack"],
                "strategy": m["strategy"],
                "pool": m["pool"],
                "defense": m.get("defense_id") or "all (from the cache)",
                "attackers": len(queries) if isinstance(queries, dict) else 1,
                "queries_sent": sent,
                "victim_passes": m["victim_passes"],
                "largest_budget": m["budget"],
            }
        )
    runs = pd.DataFrame(runs)
    table = runs.groupby(["victim", "attack", "strategy", "pool"], as_index=False).agg(
        attackers=("attackers", "sum"),
        largest_budget=("largest_budget", "max"),
        queries_sent=("queries_sent", "sum"),
        victim_passes=("victim_passes", "sum"),
    )
    served = cells.groupby(["victim", "attack"]).agg(
        cells=("budget", "size"), passes_without_cache=("budget", "sum")
    )
    table = table.set_index(["victim", "attack"]).join(served, how="left").reset_index()
    table["cache_saving"] = table["passes_without_cache"] / table["victim_passes"]
    return table


def published_table() -> pd.DataFrame:
    """The published recovery points that stand beside claim 1 (stealbench.paper), in our
    units, each with what it was measured on."""
    from dataclasses import asdict

    from ..paper import RECOVERY_ANCHORS

    return pd.DataFrame([asdict(anchor) for anchor in RECOVERY_ANCHORS])


def write_table(frame: pd.DataFrame, parquet_path, csv_path, meta: dict) -> None:
    """A table as Parquet and CSV. The Parquet file carries stealbench metadata (what it was
    built from) and, per field, the column's meaning and unit from stealbench.report.columns:
    a column documented nowhere there stops the write (``meta["table"]`` names the table)."""
    from ..io import atomic_path, write_dataframe
    from .columns import field_metadata

    fields = field_metadata(meta["table"], frame.columns)
    write_dataframe(frame, parquet_path, {"kind": "table", **meta}, fields)
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)


# ------------------------------------------------------------------------- defenses


def defended_table(paths, victim_papers: dict[str, str]) -> pd.DataFrame:
    """One row per defended cell: the attacker's accuracy beside what the defense cost benign
    users (utility, perturbation) and how far it moved the attacker's answers."""
    cells = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    rest = [c for c in cells.columns if c not in DEFENDED_KEYS + PER_CLASS]
    table = cells[DEFENDED_KEYS + rest].sort_values(DEFENDED_KEYS, kind="stable")
    table = table.reset_index(drop=True)
    table["paper_defended"] = _paper(victim_papers, table["victim"], "defended")
    return table


def dawn_table(defended: pd.DataFrame) -> pd.DataFrame:
    """DAWN per defended cell: watermarks served to the attacker, the share its surrogate
    reproduces, whether the owner's claim succeeds, and false claims on independent models."""
    rows = defended[defended["defense"] == "dawn"]
    columns = [
        "victim",
        "attack",
        "adversary",
        "strength_value",
        "budget",
        "surrogate_arch",
        "seed",
        "test_acc",
        "benign_utility",
        "benign_top1_changed",
        "dawn_watermarks",
        "dawn_reproduced",
        "dawn_acc",
        "dawn_p_value",
        "dawn_claim_bound",
        "dawn_caught",
        "dawn_independent",
        "dawn_false_claims",
    ]
    return rows.reindex(columns=columns).rename(columns={"strength_value": "share"})


# The benign costs at which defenses are compared: what benign users lose in top-1 accuracy
# through the defended API (0.01 = one point). The matched-cost table, its finding and the
# trade-off figure read this one tuple.
MATCHED_COSTS = (0.005, 0.01, 0.02)


def cell_benign_costs(defended: pd.DataFrame) -> pd.Series:
    """Each defended cell's benign cost: the undefended API's benign utility in the same
    setting (MATCHED_AXES) and seed less the cell's (NaN where that seed has no undefended
    cell)."""
    keys = [*MATCHED_AXES, "seed"]
    base = defended[defended["defense"] == "none"].groupby(keys)["benign_utility"].first()
    undefended = pd.Series(
        [base.get(tuple(k), np.nan) for k in defended[keys].itertuples(index=False)],
        index=defended.index,
    )
    return undefended - defended["benign_utility"]


def at_cost(costs, accs, strengths, cost: float) -> tuple[bool, int, float, float]:
    """Walk one seed's curve, points in order of strength, and read it at ``cost``.

    ``costs[0], accs[0], strengths[0]`` is the curve's start (the undefended API: cost 0).
    Returns ``(reached, k, acc, strength)``: where the curve first reaches ``cost`` (the
    first point k with ``costs[k] >= cost``, up to float rounding), the attacker's accuracy
    and the strength linearly interpolated between points k-1 and k (the first crossing, so
    a curve that dips back below ``cost`` later is read where it first crossed); where it
    never does, ``reached`` is False and the strongest (last) point is returned as it is, k its
    index: the curve is never extrapolated."""
    costs, accs = np.asarray(costs, float), np.asarray(accs, float)
    strengths = np.asarray(strengths, float)
    # a benign utility is a share of the test images: a cost can equal a matched cost exactly,
    # which the difference of two floats misses by a rounding error
    over = np.flatnonzero(costs >= cost - 1e-9)
    over = over[over > 0]  # the start costs nothing: only a defended point can reach cost
    if not len(over):
        k = len(costs) - 1
        return False, k, float(accs[k]), float(strengths[k])
    k = int(over[0])
    # costs[k-1] < cost <= costs[k]: k is the first point at or past cost
    t = min(1.0, (cost - costs[k - 1]) / (costs[k] - costs[k - 1]))
    acc = accs[k - 1] + t * (accs[k] - accs[k - 1])
    strength = strengths[k - 1] + t * (strengths[k] - strengths[k - 1])
    return True, k, float(acc), float(strength)


def _strength_order(defense: str) -> tuple[bool, float]:
    """Whether ``defense``'s strength grows with its value, and the value at which it changes
    no answer (NaN where it has none), from its class in the registry; a name the registry
    does not hold (a plug-in not installed here) is taken to grow from 0."""
    from ..defense.registry import DEFENSES

    cls = DEFENSES.get(defense)
    if cls is None:
        return True, 0.0
    off = cls.strength_off
    return cls.stronger == "larger", np.nan if off is None else float(off)


def by_strength(points: pd.DataFrame, defense: str) -> pd.DataFrame:
    """One defense's points from its weakest strength to its strongest (a learned strength,
    NaN, last)."""
    return points.sort_values(
        ["strength_value", "defense_id"],
        ascending=[_strength_order(defense)[0], True],
        na_position="last",
        kind="stable",
    )


def matched_cost_table(defended: pd.DataFrame, costs=MATCHED_COSTS) -> pd.DataFrame:
    """Attacker accuracy at matched benign cost: one row per (victim, attack, granularity,
    budget, surrogate architecture, defense, matched cost).

    A defense's curve in one setting and seed runs through its strengths from the weakest to
    the strongest (increasing values, or decreasing for a defense whose ``stronger`` is
    "smaller", e.g. top-k's k; a strength the defense learns, NaN, comes last); each point's
    benign cost is the undefended API's benign utility less the defended one's, both of that
    seed (a random defense may cost each seed differently), its accuracy the attacker's
    ``test_acc``.
    Every curve starts at the undefended point (cost 0, the undefended attacker's accuracy of
    that seed, strength 0: the value at which most defenses change nothing; a defense's
    ``strength_off`` where it differs, e.g. ood-shuffle's cut of 1, NaN where no value is
    off, as for top-k, whose strength is then not interpolated before its first point), so a
    one-point curve (a single strength, or a learned one) is read between that start and its
    point. That start is the natural end of every sweep, but the stretch from it to the
    first strength tested is a straight line drawn by assumption, not measured.
    :func:`at_cost` reads each seed's curve at each matched cost; the row gives the mean over
    seeds and the half-width of the 95% CI (Student t, :func:`ci95`).

    ``reached`` is True when every seed's curve reaches the cost. Otherwise (e.g. a defense
    that keeps the top-1, so costs benign users nothing, or a sweep that stops short) the row
    gives every seed's strongest tested point, its accuracy and its mean cost
    (``benign_cost_mean`` below ``cost``), never an extrapolation; ``seeds_reached`` counts
    the seeds whose curve did reach it."""
    columns = [
        *MATCHED_AXES,
        "defense",
        "strength",
        "cost",
        "reached",
        "seeds",
        "seeds_reached",
        "attacker_acc_mean",
        "attacker_acc_ci95",
        "benign_cost_mean",
        "strength_value_mean",
        "lower_id",
        "upper_id",
        "victim_acc",
        "undefended_acc_mean",
        "undefended_acc_ci95",
        "drop_mean",
        "drop_ci95",
        "recovery_mean",
        "undefended_recovery_mean",
    ]
    rows = []
    defended = defended.assign(cost=cell_benign_costs(defended))
    for key, setting in defended.groupby(MATCHED_AXES, sort=True, dropna=False):
        base = setting[setting["defense"] == "none"].groupby("seed").first()
        if base.empty:
            continue
        for defense, points in setting[setting["defense"] != "none"].groupby("defense"):
            seeds = sorted(set(points["seed"]) & set(base.index))
            if not seeds:
                continue
            off = _strength_order(defense)[1]
            curves = {}
            for seed in seeds:
                b = base.loc[seed]
                part = by_strength(points[points["seed"] == seed], defense)
                curves[seed] = (
                    [0.0, *part["cost"]],
                    [b["test_acc"], *part["test_acc"]],
                    [off, *part["strength_value"].astype(float)],
                    ["none", *part["defense_id"]],
                    float(b["test_acc"]),
                    float(b["victim_acc"]),
                )
            for cost in costs:
                read = {s: at_cost(c[0], c[1], c[2], cost) for s, c in curves.items()}
                reached = all(r[0] for r in read.values())
                accs, at, strengths, lower, upper = [], [], [], set(), set()
                for seed, (_, k, acc, strength) in read.items():
                    curve = curves[seed]
                    if not reached:  # every seed at its strongest point, as tested
                        k = len(curve[0]) - 1
                        acc, strength = curve[1][k], curve[2][k]
                    accs.append(acc)
                    at.append(cost if reached else curve[0][k])
                    strengths.append(strength)
                    lower.add(curve[3][k - 1] if reached else curve[3][k])
                    upper.add(curve[3][k] if reached else None)
                accs = np.asarray(accs, float)
                undefended = np.asarray([curves[s][4] for s in seeds])
                victim_acc = float(np.mean([curves[s][5] for s in seeds]))
                rows.append(
                    {
                        **dict(zip(MATCHED_AXES, key, strict=True)),
                        "defense": defense,
                        "strength": points["strength"].iloc[0],
                        "cost": cost,
                        "reached": reached,
                        "seeds": len(seeds),
                        "seeds_reached": sum(r[0] for r in read.values()),
                        "attacker_acc_mean": float(accs.mean()),
                        "attacker_acc_ci95": ci95(accs),
                        "benign_cost_mean": float(np.mean(at)),
                        "strength_value_mean": float(np.mean(strengths)),
                        "lower_id": "|".join(sorted(lower)),
                        "upper_id": "|".join(sorted(u for u in upper if u)) or None,
                        "victim_acc": victim_acc,
                        "undefended_acc_mean": float(undefended.mean()),
                        "undefended_acc_ci95": ci95(undefended),
                        "drop_mean": float((undefended - accs).mean()),
                        "drop_ci95": ci95(undefended - accs),
                        "recovery_mean": float(accs.mean()) / victim_acc,
                        "undefended_recovery_mean": float(undefended.mean()) / victim_acc,
                    }
                )
    return pd.DataFrame(rows, columns=columns)


def cell_tables(
    cells: pd.DataFrame,
    victims: pd.DataFrame,
    metas: list[dict],
    papers: dict[str, str],
    class_names: dict[str, list[str]] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every table of the cells stage (aggregate_cells), by name: the cells, their summary over
    seeds, per-class accuracies, the query accounting and one table per claim."""
    summary = summarise(cells)
    return {
        "victims": victims,
        "cells": cells.drop(columns=PER_CLASS),
        "summary": summary,
        "per_class": per_class_table(cells, class_names),
        "queries": query_accounting(metas, cells),
        "reproduction": reproduction_table(summary, papers),
        "budget": budget_table(summary),
        "published": published_table(),
        "pretraining": pretraining_table(summary, victims),
        "granularity": granularity_table(summary, papers),
        "architecture": architecture_table(summary, papers),
        "strategies": strategies_table(summary),
    }
