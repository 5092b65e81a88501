"""results/findings.md: every claim answered from the tables, each with the rule it applies.

Prose only: the numbers come from :mod:`stealbench.report.tables` (means over seeds, ± the
half-width of the 95% confidence interval, Student t), and each verdict states its rule so a
reader can check it against the tables. The paper's and other published figures are given
beside ours in the same units (fractions).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..attack.api import information_order
from .tables import RECOVERY_TARGET, ci95

# A defense "keeps utility" when benign users lose at most this much accuracy through it.
UTILITY_TOLERANCE = 0.01
# A defense "stops" an attacker when its surrogate recovers less than this of the victim's
# accuracy, where the undefended API let it recover at least this much.
STOPPED_RECOVERY = 0.5


def _markdown(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        cells = [
            floatfmt.format(v)
            if isinstance(v, float | np.floating) and not np.isnan(v)
            else ("–" if isinstance(v, float | np.floating) else str(v))
            for v in row
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pm(mean: float, half: float) -> str:
    return f"{mean:.3f}" + ("" if half is None or np.isnan(half) else f" ± {half:.3f}")


# -------------------------------------------------------------------------------- claim 1


def reproduction_finding(
    budget: pd.DataFrame, reproduction: pd.DataFrame, published: pd.DataFrame | None = None
) -> tuple[str, dict]:
    """Claim 1: at which budget, for which victims, does Knockoff (out-of-distribution
    natural queries) steal the victim? ``published``: the published points beside ours."""
    ood = budget[budget["adversary"] == "out-of-distribution"]
    if ood.empty:
        return "Not measured: no out-of-distribution (Knockoff) pool in the grid.", {}
    lines, verdicts = [], {}
    for victim, part in ood.groupby("victim"):
        init = part["victim_init"].iloc[0]
        for granularity in information_order(part["granularity"]):
            rows = part[part["granularity"] == granularity]
            reached = rows.dropna(subset=["smallest_budget_to_target"])
            if len(reached):
                best = reached.loc[reached["smallest_budget_to_target"].idxmin()]
                text = (
                    f"reaches {RECOVERY_TARGET} at **{int(best['smallest_budget_to_target'])}** "
                    f"queries ({best['attack']}, {best['surrogate_arch']} from "
                    f"{best['surrogate_init']})"
                )
                verdicts[(victim, granularity)] = int(best["smallest_budget_to_target"])
            else:
                best = rows.loc[rows["recovery_at_largest"].idxmax()]
                text = (
                    f"does **not** reach {RECOVERY_TARGET} within the grid (best "
                    f"{_pm(best['recovery_at_largest'], best['recovery_ci95_at_largest'])} at "
                    f"{int(best['largest_budget'])} queries, {best['attack']}, "
                    f"{best['surrogate_arch']} from {best['surrogate_init']})"
                )
                verdicts[(victim, granularity)] = None
            lines.append(f"- **{victim}** (victim from {init}), `{granularity}`: {text}.")
    yes = sorted({v for (v, g), b in verdicts.items() if g == "probs" and b is not None})
    no = sorted({v for (v, g), b in verdicts.items() if g == "probs" and b is None})
    head = (
        f"Rule: a victim is stolen at budget B when some out-of-distribution attack's surrogate "
        f"recovers at least {RECOVERY_TARGET} of the victim's test accuracy (mean over seeds) "
        f"at B. With full probabilities, stolen within the grid: "
        f"{', '.join(yes) or 'none'}; not within the grid: {', '.join(no) or 'none'}.\n\n"
    )
    if published is None:
        from .tables import published_table

        published = published_table()
    anchors = published[["source", "setting", "budget", "recovery", "pretrained"]]
    table = reproduction[
        [
            "victim",
            "attack",
            "surrogate_arch",
            "surrogate_init",
            "budget",
            "victim_acc",
            "test_acc_mean",
            "test_acc_ci95",
            "recovery_mean",
            "recovery_ci95",
            "reaches_target",
            "paper_recovery",
        ]
    ]
    text = (
        head
        + "\n".join(lines)
        + "\n\nEvery (victim, out-of-distribution attack, surrogate) at its largest budget, "
        "full probabilities:\n\n"
        + _markdown(table)
        + "\n\nPublished recovery for comparison (their victims are larger or pretrained; "
        "see `stealbench.paper` for each note):\n\n" + _markdown(anchors)
    )
    return text, {"smallest_budget": {f"{v}/{g}": b for (v, g), b in verdicts.items()}}


def pretraining_finding(pretraining: pd.DataFrame) -> tuple[str, dict]:
    """Does pretraining (of the victim, of the attacker, of both) make stealing easier?

    At every budget, each combination of victim start and attacker start is compared with
    the from-scratch pair on the same task, attack and granularity."""
    if pretraining.empty:
        return "Not measured: no victim or surrogate starts from a pretrained backbone.", {}
    keys = ["dataset", "attack", "granularity", "budget", "victim_init", "surrogate_init"]
    table = (
        pretraining.groupby(keys)
        .agg(recovery=("recovery_mean", "mean"), ci95=("recovery_ci95", "mean"))
        .reset_index()
    )
    stats, lines, rows = {}, [], []
    for (dataset, attack, granularity), part in table.groupby(keys[:3]):
        helps = []
        for budget, at in part.groupby("budget"):
            combos = {
                (r.victim_init, r.surrogate_init): (r.recovery, r.ci95) for r in at.itertuples()
            }
            base = combos.get(("scratch", "scratch"))
            row = {
                "dataset": dataset,
                "attack": attack,
                "granularity": granularity,
                "budget": budget,
            }
            for (v, a), (value, half) in sorted(
                combos.items(), key=lambda c: c[0] != ("scratch", "scratch")
            ):
                row[f"victim {v} / attacker {a}"] = _pm(value, half)
                if base is None or (v, a) == ("scratch", "scratch"):
                    continue
                difference = value - base[0]
                stats[f"{dataset}/{attack}/{granularity}/{budget}/{v}/{a}"] = difference
                if difference > np.nan_to_num(half) + np.nan_to_num(base[1]):
                    helps.append(f"{budget} ({v} victim, {a} attacker: {difference:+.3f})")
            rows.append(row)
        lines.append(
            f"- {dataset}, {attack}, `{granularity}`: a pretrained start beats the "
            f"from-scratch pair beyond both intervals at "
            + (", ".join(helps) if helps else "no budget")
            + "."
        )
    text = (
        "Rule: at every budget, the recovery (mean over seeds ± 95% CI) of each combination "
        "of victim start and attacker start, against the pair that both start from scratch "
        "(same task, attack and granularity); pretraining makes stealing easier where the "
        "difference exceeds the sum of the two half-widths.\n\n"
        + "\n".join(lines)
        + "\n\n"
        + _markdown(pd.DataFrame(rows))
    )
    return text, stats


# ------------------------------------------------------------------------------- claim 2


def granularity_finding(cells: pd.DataFrame) -> tuple[str, dict]:
    """Do full probabilities beat top-1 labels at equal budget (same victim, attack, arch,
    start, seed: the same queries)?"""
    keys = ["victim", "attack", "budget", "surrogate_arch", "surrogate_init", "seed"]
    wide = cells.pivot_table(index=keys, columns="granularity", values="test_acc")
    if not {"probs", "label"} <= set(wide.columns):
        return "Not measured: the grid needs both `probs` and `label` granularities.", {}
    diff = (wide["probs"] - wide["label"]).dropna()
    wins, n = int((diff > 0).sum()), len(diff)
    by_budget = (
        wide[["probs", "label"]]
        .dropna()
        .groupby(level="budget")
        .agg(["mean"])
        .droplevel(1, axis=1)
        .assign(difference=lambda f: f["probs"] - f["label"])
        .reset_index()
    )
    by_budget["ci95"] = [ci95(diff.xs(b, level="budget")) for b in by_budget["budget"]]
    verdict = "Yes" if diff.mean() > 0 and wins > n / 2 else "No"
    text = (
        f"**{verdict}.** Rule: the mean paired difference (probs − label, same queries, seed and "
        f"surrogate) is positive and probabilities win most pairs. Over {n} pairs, surrogates "
        f"trained on full probabilities reach {wide['probs'].mean():.3f} against "
        f"{wide['label'].mean():.3f} with top-1 labels (mean difference "
        f"{_pm(diff.mean(), ci95(diff))}); probabilities win {wins} of {n}.\n\n"
        + _markdown(by_budget)
    )
    return text, {
        "verdict": verdict,
        "mean_difference": float(diff.mean()),
        "wins": wins,
        "pairs": n,
    }


def architecture_finding(architecture: pd.DataFrame) -> tuple[str, dict]:
    """Claim 2b: does a surrogate of the victim's own architecture steal better?"""
    both = architecture.groupby(["victim", "attack"])["matches_victim"].transform("nunique") == 2
    rows = architecture[both]
    if rows.empty:
        return "Not measured: no victim faces surrogates of its own and of another arch.", {}
    wide = rows.pivot_table(
        index=["victim", "attack"], columns="matches_victim", values="test_acc_mean"
    ).rename(columns={True: "same_arch", False: "other_arch"})
    wide["difference"] = wide["same_arch"] - wide["other_arch"]
    wins = int((wide["difference"] > 0).sum())
    verdict = "Yes" if wins > len(wide) / 2 else "No"
    text = (
        f"**{verdict}.** Rule: the surrogate of the victim's own architecture beats the other in "
        f"most (victim, attack) pairs (full probabilities, largest budget, from scratch). It "
        f"does in {wins} of {len(wide)} (mean difference {wide['difference'].mean():+.3f}). "
        f"The paper found mismatch (VGG-16 against ResNet-34 victims) cost 0.034-0.053, and "
        f"nothing against its 5-layer CNN.\n\n" + _markdown(wide.reset_index())
    )
    return text, {"verdict": verdict, "wins": wins, "pairs": len(wide)}


def budget_finding(cells: pd.DataFrame) -> tuple[str, dict]:
    """Does accuracy grow with the budget?"""
    keys = ["victim", "attack", "granularity", "surrogate_arch", "surrogate_init", "seed"]
    wide = cells.pivot_table(index=keys, columns="budget", values="test_acc")
    budgets = list(wide.columns)
    if len(budgets) < 2:
        return "Not measured: the grid has a single budget.", {}
    first = wide.apply(lambda r: r.dropna().iloc[0], axis=1)
    last = wide.apply(lambda r: r.dropna().iloc[-1], axis=1)
    counted = wide.notna().sum(axis=1) > 1
    grows = (last > first)[counted]
    verdict = "Yes" if grows.mean() > 0.5 else "No"
    means = cells.groupby("budget")["test_acc"].mean()
    text = (
        f"**{verdict}.** Rule: in most series (victim, attack, granularity, surrogate, seed) the "
        f"largest budget beats the smallest; it does in {int(grows.sum())} of {len(grows)}. "
        f"Mean accuracy by budget (over whatever cells each budget has):\n\n"
        + _markdown(means.reset_index().rename(columns={"test_acc": "mean test_acc"}))
    )
    return text, {"verdict": verdict, "series_growing": float(grows.mean())}


# ---------------------------------------------------------------------- strategies, claim 4


def _prada_only(monitored: pd.DataFrame) -> pd.DataFrame:
    """PRADA's rows of the `prada` table (it holds every configured stream monitor's)."""
    if "monitor" not in monitored:
        return monitored
    return monitored[monitored["monitor"] == "prada"]


def strategy_finding(
    strategies: pd.DataFrame, detection: pd.DataFrame | None, prada: pd.DataFrame | None
) -> tuple[str, dict]:
    """Each strategy against random sampling of the same pool at equal budget, beside what
    PRADA and the pre-classifier flag of it."""
    if strategies.empty:
        return "Not measured: no pool is used by two strategies.", {}
    # The largest budget at which a pool has cells of more than one strategy (random sampling
    # may run further than the strategies it is compared with); else the pool's largest.
    by_pool = [strategies["victim"], strategies["pool"]]
    strategies_at_budget = strategies.groupby(["victim", "pool", "budget"])["strategy"]
    shared = strategies["budget"].where(strategies_at_budget.transform("nunique") > 1)
    largest = strategies.groupby(by_pool)["budget"].transform("max")
    target = shared.groupby(by_pool).transform("max").fillna(largest)
    top = strategies[strategies["budget"] == target]
    lines, stats = [], {}
    for (victim, pool, granularity), part in top.groupby(["victim", "pool", "granularity"]):
        random = part[part["strategy"] == "random"].set_index("surrogate_arch")["test_acc_ci95"]
        for row in part[part["strategy"] != "random"].itertuples():
            stats[f"{victim}/{row.attack}/{granularity}"] = float(row.vs_random)
            better = "beats" if row.vs_random > 0 else "loses to"
            overlap = abs(row.vs_random) <= row.test_acc_ci95 + random.get(row.surrogate_arch, 0)
            lines.append(
                f"- {victim}, `{granularity}`, {row.budget} queries: **{row.attack}** "
                f"{_pm(row.test_acc_mean, row.test_acc_ci95)} {better} random sampling of "
                f"{pool} by {abs(row.vs_random):.3f}"
                + (" (within the two 95% CIs)." if overlap else " (beyond the two 95% CIs).")
            )
    flags = []
    if detection is not None and prada is not None:
        attack_rows = detection[detection["queries_from"] == "attack"]
        prada = _prada_only(prada)
        flagged = prada[prada["kind"] == "attacker"].groupby(["victim", "attack"])["flagged"].mean()
        for row in attack_rows.itertuples():
            flags.append(
                {
                    "victim": row.victim,
                    "attack": row.source,
                    "strategy": row.strategy,
                    "pre-classifier flags": row.flagged_share,
                    "PRADA flags (share of attackers)": flagged.get(
                        (row.victim, row.source), np.nan
                    ),
                }
            )
    text = (
        "Rule: at the largest budget shared on a pool, the strategy's mean accuracy minus "
        "random sampling's (same victim, pool, granularity, surrogate).\n\n"
        + "\n".join(lines)
        + "\n\n"
        + _markdown(top.drop(columns=["recovery_mean", "agreement_mean"]))
        + (
            "\n\nWhat the detectors see of each strategy:\n\n" + _markdown(pd.DataFrame(flags))
            if flags
            else ""
        )
    )
    return text, stats


def adversary_finding(summary: pd.DataFrame) -> tuple[str, dict]:
    """Claim 4: does the realistic adversary (same-task pool) beat the out-of-distribution
    pools at equal budget?"""
    rows = summary[(summary["surrogate_init"] == "scratch")]
    budget = rows.groupby("victim")["budget"].transform(
        lambda b: b[rows.loc[b.index, "adversary"] == "realistic"].max()
    )
    rows = rows[rows["budget"] == budget]
    table = rows.groupby(["victim", "adversary"])["test_acc_mean"].mean().unstack("adversary")
    if "realistic" not in table or "out-of-distribution" not in table:
        return "Not measured: the grid needs realistic and out-of-distribution pools.", {}
    table = table.dropna()
    if table.empty:
        return "Not measured: no victim faces both kinds of adversary.", {}
    wins = table["realistic"] > table["out-of-distribution"]
    verdict = "Yes" if wins.all() else ("Partly" if wins.any() else "No")
    per_pool = (
        rows.groupby(["victim", "attack", "adversary", "budget"])["test_acc_mean"]
        .mean()
        .reset_index()
        .sort_values(["victim", "test_acc_mean"], ascending=[True, False])
    )
    text = (
        f"**{verdict}.** Rule: at the realistic adversary's largest budget, its mean accuracy "
        f"(over granularities, surrogates from scratch and seeds) exceeds the mean of the "
        f"out-of-distribution pools at the same budget. It does for {int(wins.sum())} of "
        f"{len(wins)} victims facing both:\n\n"
        + _markdown(table.reset_index())
        + "\n\nPer attack:\n\n"
        + _markdown(per_pool)
    )
    return text, {"verdict": verdict, "victims_won": int(wins.sum()), "victims": len(wins)}


# ------------------------------------------------------------------------------ defenses


def detector_finding(detection: pd.DataFrame) -> tuple[str, dict]:
    """Claim 3: does the pre-classifier flag generic data, seen and unseen kinds, and does the
    realistic adversary evade it?"""
    pools = detection[detection["queries_from"] == "pool"]
    test = detection[detection["queries_from"] == "test"]
    realistic = detection[(detection["queries_from"] == "attack") & detection["in_distribution"]]
    by_kind = pools.groupby("seen")["flagged_share"].mean()
    stats = {
        "test_tpr": float(test["tpr_in"].mean()),
        "seen_tnr": float(by_kind.get("seen kind", np.nan)),
        "unseen_tnr": float(by_kind.get("unseen kind", np.nan)),
        "in_distribution_flagged": float(by_kind.get("in-distribution", np.nan)),
        "realistic_flagged": float(realistic["flagged_share"].mean()) if len(realistic) else np.nan,
    }
    lines = [
        f"The pre-classifier accepts {stats['test_tpr']:.3f} of the victims' own test images "
        f"(in-distribution TPR). Of the attackers' pools it flags, on average, "
        f"{stats['seen_tnr']:.3f} of the kinds of images it saw as out-of-distribution in "
        f"training (other photographs, other fonts: the analogue of ImageNet against "
        f"OpenImages) and {stats['unseen_tnr']:.3f} of kinds it never saw. The paper reports "
        f"0.93-0.99 for both sides, except Caltech (0.63/0.56).",
        "",
        (
            f"**The realistic adversary evades it: "
            f"{'Yes' if stats['realistic_flagged'] <= 0.1 else 'No'}.** Rule: at most 0.1 of "
            f"its queries flagged; it flags {stats['realistic_flagged']:.3f}."
            if len(realistic)
            else "The realistic adversary is not in the grid."
        ),
        "",
        _markdown(
            detection[["victim", "queries_from", "source", "seen", "queries", "flagged_share"]]
        ),
    ]
    return "\n".join(lines), stats


def prada_finding(prada: pd.DataFrame) -> tuple[str, dict]:
    """Does PRADA flag each strategy's attackers, and how often benign clients?"""
    prada = _prada_only(prada)
    attackers = prada[prada["kind"] == "attacker"]
    benign = prada[prada["kind"] == "benign"]
    by_strategy = (
        attackers.groupby("strategy")
        .agg(
            streams=("flagged", "size"),
            flagged=("flagged", "sum"),
            median_queries_to_detection=("flagged_at", "median"),
        )
        .reset_index()
    )
    fpr = float(benign["flagged"].mean()) if len(benign) else float("nan")
    lines = []
    for row in by_strategy.itertuples():
        verdict = "Yes" if row.flagged == row.streams else ("Partly" if row.flagged else "No")
        lines.append(
            f"- **{row.strategy}: {verdict}**, {int(row.flagged)} of {row.streams} attackers "
            "flagged"
        )
    text = (
        f"PRADA at the configured delta (each attacker's stream replayed up to the configured "
        f"length) flags, by strategy, and {int(benign['flagged'].sum())} of {len(benign)} "
        f"benign streams (false-positive rate {fpr:.3f}):\n\n"
        + "\n".join(lines)
        + "\n\n"
        + _markdown(by_strategy)
    )
    return text, {"fpr": fpr, **{r.strategy: int(r.flagged) for r in by_strategy.itertuples()}}


def defended_finding(defended: pd.DataFrame) -> tuple[str, dict]:
    """Which defense costs the attacker most at <= 1 point of benign utility, and does any
    stop the realistic adversary?"""
    top = defended[defended["budget"] == defended.groupby("attack")["budget"].transform("max")]
    top = top[top["granularity"] == "probs"] if "probs" in set(top["granularity"]) else top
    means = (
        top.groupby(
            ["victim", "attack", "adversary", "defense", "defense_id", "strength_value"],
            dropna=False,
        )
        .agg(
            attacker_acc=("test_acc", "mean"),
            attacker_ci95=("test_acc", ci95),
            recovery=("recovery", "mean"),
            utility=("benign_utility", "mean"),
            benign_l1=("benign_l1", "mean"),
        )
        .reset_index()
    )
    rows, stats = [], {}
    for (victim, attack), part in means.groupby(["victim", "attack"]):
        base = part[part["defense"] == "none"]
        if base.empty:
            continue
        base_acc, base_util = float(base["attacker_acc"].iloc[0]), float(base["utility"].iloc[0])
        base_recovery = float(base["recovery"].iloc[0])
        for defense, options in part[part["defense"] != "none"].groupby("defense"):
            kept = options[options["utility"] >= base_util - UTILITY_TOLERANCE]
            if kept.empty:
                rows.append(
                    {
                        "victim": victim,
                        "attack": attack,
                        "adversary": part["adversary"].iloc[0],
                        "defense": defense,
                        "strength": "none keeps utility",
                    }
                )
                continue
            best = kept.loc[kept["attacker_acc"].idxmin()]
            rows.append(
                {
                    "victim": victim,
                    "attack": attack,
                    "adversary": best["adversary"],
                    "defense": defense,
                    "strength": best["defense_id"],
                    "utility_loss": base_util - best["utility"],
                    "attacker_acc": best["attacker_acc"],
                    "attacker_drop": base_acc - best["attacker_acc"],
                    "recovery": best["recovery"],
                    "stops": bool(best["recovery"] < STOPPED_RECOVERY <= base_recovery),
                }
            )
    table = pd.DataFrame(rows)
    lines = []
    if not table.empty and "attacker_drop" in table:
        for (victim, attack), part in table.dropna(subset=["attacker_drop"]).groupby(
            ["victim", "attack"]
        ):
            best = part.loc[part["attacker_drop"].idxmax()]
            stats[f"{victim}/{attack}"] = {
                "defense": best["strength"],
                "drop": float(best["attacker_drop"]),
            }
            lines.append(
                f"- {victim}, {attack} ({best['adversary']}): **{best['strength']}** costs the "
                f"attacker most: its accuracy falls by {best['attacker_drop']:.3f} "
                f"({best['attacker_acc']:.3f} left) for {best['utility_loss']:.3f} of benign "
                "utility."
            )
        realistic = table[
            (table["adversary"] == "realistic")
            & table["stops"].eq(True)  # rows where no strength kept utility have no verdict
        ]
        lines.append(
            "- Stops the realistic adversary (its recovery falls below "
            f"{STOPPED_RECOVERY}, from at least that undefended, at <= {UTILITY_TOLERANCE} "
            "utility loss): "
            + (", ".join(sorted(set(realistic["strength"]))) or "**no defense**")
            + "."
        )
    text = (
        f"Rule: for each defense, the strength that costs the attacker most while benign users "
        f"lose at most {UTILITY_TOLERANCE} accuracy through the API (largest defended budget, "
        f"means over seeds).\n\n" + "\n".join(lines) + "\n\n" + _markdown(table)
    )
    return text, stats


def dawn_finding(dawn: pd.DataFrame, detection: pd.DataFrame | None) -> tuple[str, dict]:
    """Does DAWN catch the stolen surrogates, the ones the detector let through included,
    and how often does it claim an independent model?"""
    if dawn.empty:
        return "Not measured: DAWN is not among the defended configurations.", {}
    by = (
        dawn.groupby(["victim", "attack", "adversary", "share", "budget"])
        .agg(
            watermarks=("dawn_watermarks", "mean"),
            caught=("dawn_caught", "mean"),
            watermark_acc=("dawn_acc", "mean"),
            false_claims=("dawn_false_claims", "sum"),
            independent_checks=("dawn_independent", "sum"),
            benign_cost=("benign_top1_changed", "mean"),
        )
        .reset_index()
    )
    let_through = []
    if detection is not None:
        attacks = detection[detection["queries_from"] == "attack"]
        let_through = [(r.victim, r.source) for r in attacks.itertuples() if r.flagged_share <= 0.1]
    through = by[[(v, a) in let_through for v, a in zip(by["victim"], by["attack"], strict=True)]]
    false_rate = float(by["false_claims"].sum() / max(1, by["independent_checks"].sum()))
    stats = {
        "caught": float(dawn["dawn_caught"].mean()),
        "caught_let_through": float(through["caught"].mean()) if len(through) else np.nan,
        "false_claim_rate": false_rate,
    }
    text = (
        f"Rule: a surrogate is caught when it reproduces at least the configured share of the "
        f"watermark labels it was served (DAWN's verification); false claims are counted on "
        f"independent models of the victim's task that never queried it. DAWN catches "
        f"{stats['caught']:.3f} of the surrogates; of those whose queries the pre-classifier "
        f"let through (at most 0.1 flagged), {stats['caught_let_through']:.3f}; false-claim rate "
        f"{false_rate:.3f} over {int(by['independent_checks'].sum())} checks. Benign users pay "
        f"about the watermark share in changed top-1 answers.\n\n" + _markdown(by)
    )
    return text, stats


def findings(tables: dict[str, pd.DataFrame]) -> str:
    cells, summary = tables["cells"], tables["summary"]
    victims = tables["victims"][["victim", "arch", "init", "dataset", "test_acc"]]
    queries = tables["queries"]
    defended = "defended" in tables
    sections = [
        "# Findings\n",
        "Generated by `rules/report.smk` from `results/tables/`; every number below is "
        "computed from those tables (means over seeds, ± the half-width of the 95% confidence "
        "interval, Student t, where shown). A seed redraws everything random in a cell: the "
        "attacker's sample or its strategy's choices, and the surrogate's initial weights. "
        "Rerun the workflow to regenerate it.\n",
        f"Grid: {len(cells)} cells, {cells['victim'].nunique()} victims, "
        f"{cells['attack'].nunique()} attacks ({', '.join(sorted(cells['strategy'].unique()))}"
        f"), granularities {', '.join(information_order(cells['granularity']))}, budgets "
        f"{', '.join(map(str, sorted(cells['budget'].unique())))}, surrogates "
        f"{', '.join(sorted(set(cells['surrogate_arch'] + ' from ' + cells['surrogate_init'])))}"
        f", seeds {', '.join(map(str, sorted(cells['seed'].unique())))}.\n",
        "## Victims\n",
        _markdown(victims) + "\n",
        "## Query economy\n",
        "A query is one image sent to the API: seed sets, augmented copies and "
        "gradient-estimation queries all count. "
        f"The attackers sent {int(queries['queries_sent'].sum())} queries; the victims "
        f"computed {int(queries['victim_passes'].sum())} posteriors for them (an image several "
        f"attackers drew is answered once); a pipeline that queried afresh for every cell "
        f"would have made {int(queries['passes_without_cache'].sum())}.\n",
        "## Claim 1: at which budget does Knockoff nets steal each victim?\n",
        reproduction_finding(tables["budget"], tables["reproduction"], tables.get("published"))[0]
        + "\n",
        "## Does pretraining make stealing easier?\n",
        pretraining_finding(tables["pretraining"])[0] + "\n",
        "## Claim 2a: do full probabilities beat top-1 labels at equal budget?\n",
        granularity_finding(cells)[0] + "\n",
        "## Claim 2b: does the surrogate architecture matter?\n",
        architecture_finding(tables["architecture"])[0] + "\n",
        "## Does accuracy grow with budget?\n",
        budget_finding(cells)[0] + "\n",
        "## Strategies at equal budget\n",
        strategy_finding(tables["strategies"], tables.get("detection"), tables.get("prada"))[0]
        + "\n",
        "## Claim 4: does the realistic adversary beat the out-of-distribution pools?\n",
        adversary_finding(summary)[0] + "\n",
    ]
    if defended:
        sections += [
            "## Claim 3: does the pre-classifier detect Knockoff queries?\n",
            detector_finding(tables["detection"])[0] + "\n",
            "## Does PRADA flag each strategy?\n",
            prada_finding(tables["prada"])[0] + "\n",
            "## Defenses as trade-offs: the attacker's accuracy at <= 1 point of utility\n",
            defended_finding(tables["defended"])[0] + "\n",
            "## DAWN: is the stolen model caught afterwards?\n",
            dawn_finding(tables["dawn"], tables.get("detection"))[0] + "\n",
        ]
    return "\n".join(sections)
