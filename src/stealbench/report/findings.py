"""Every claim answered from the tables as data: a :class:`Finding` per claim, its verdict, the
rule that decides it (thresholds as numbers too), the numbers it rests on, and the prose
rendered from them. ``results/findings.json`` holds the data, ``results/findings.md`` the prose.

The numbers come from :mod:`stealbench.report.tables` (means over seeds, ± the half-width of
the 95% confidence interval, Student t), and each verdict states its rule so a reader can
check it against the tables. The paper's and other published figures are given beside ours in
the same units (fractions).

Each finding answers per victim (per victim and attack, or victim and series, where it is
computed so): a victim's pre-classifier, PRADA or surrogate gives its own answer, and a mean
over victims can hide opposite ones (one victim's realistic adversary flagged 0.001, another's
0.994, pooled to a "No" for both). A pooled verdict is printed only where every victim gives
it; elsewhere the verdict is "depends on the victim" and the prose lists each victim's answer
with its numbers (``Finding.by_victim``; :func:`_per_victim`).

Where fewer than MIN_SEEDS seeds stand behind a comparison, its Student-t interval is too
wide to decide it (t = 12.7 for two seeds): where the difference the rule tests lies inside
the intervals the verdict is "not enough seeds", and the prose says why; a difference clear of
them decides as with more seeds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ..attack.api import information_order
from .tables import MATCHED_COSTS, RECOVERY_TARGET, ci95

# A defense "stops" an attacker when its surrogate recovers less than this of the victim's
# accuracy, where the undefended API let it recover at least this much.
STOPPED_RECOVERY = 0.5
# An attacker "evades" (is "let through" by) the pre-classifier when at most this share of
# its queries is flagged.
EVADES_FLAGGED = 0.1
# Claim 3 prints each victim's pre-classifier rates beside their averages where two victims'
# differ by more than this (the evasion threshold's width: a gap that could flip a verdict).
RATES_DIFFER = 0.1

NOT_MEASURED = "not measured"
# A finding answers per victim; where the victims' answers differ, the pooled verdict is this
# and the prose lists each victim's answer with its numbers.
DEPENDS = "depends on the victim"
# Fewer seeds than MIN_SEEDS behind a comparison: its Student-t interval is too wide (t = 12.7
# for 2 seeds, 4.3 for 3) to tell a difference inside it from none, and the verdict says so.
MIN_SEEDS = 3
FEW_SEEDS = "not enough seeds"

# id -> the question each finding answers (its heading in findings.md), in the page's order.
TITLES = {
    "claim1": "Claim 1: at which budget does Knockoff nets steal each victim?",
    "pretraining": "Does pretraining make stealing easier?",
    "claim2a": "Claim 2a: do full probabilities beat top-1 labels at equal budget?",
    "claim2b": "Claim 2b: does the surrogate architecture matter?",
    "budget": "Does accuracy grow with budget?",
    "strategies": "Strategies at equal budget",
    "claim4": "Claim 4: does the realistic adversary beat the out-of-distribution pools?",
    "claim3": "Claim 3: does the pre-classifier detect Knockoff queries?",
    "prada": "Does PRADA flag each strategy?",
    "defenses": "Defenses at matched benign cost: the attacker's accuracy at 0.5, 1 and 2 points",
    "dawn": "DAWN: is the stolen model caught afterwards?",
}


@dataclass(frozen=True)
class Finding:
    """One claim answered from the tables.

    ``verdict``: "yes", "no", "partly" or "not measured" (the strategies finding: "better",
    "worse" or "within CIs"), or a dict of those per victim, strategy or series where the
    finding has several; "depends on the victim" where the victims' answers differ (each is
    in ``by_victim``), "not enough seeds" where fewer than MIN_SEEDS seeds leave the rule's
    comparison inside the intervals. ``rule``: the sentence that decides the verdict;
    ``thresholds``: its numbers. ``numbers``: every statistic the prose prints. ``text``: the
    prose, rendered from those. ``by_victim``: each victim's verdict (a dict of them where the
    finding has several per victim); empty where the finding does not answer per victim."""

    id: str
    title: str
    verdict: str | dict[str, str]
    rule: str
    thresholds: dict
    numbers: dict
    text: str
    by_victim: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """Everything but the prose, as plain JSON values (NaN -> null)."""
        data = asdict(self)
        del data["text"]
        return _plain(data)


def _plain(value):
    # numpy scalars and NaN have no JSON form; keys become strings (budgets are ints).
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finding(id, verdict, rule, numbers, text, thresholds=None, by_victim=None) -> Finding:
    return Finding(id, TITLES[id], verdict, rule, thresholds or {}, numbers, text, by_victim or {})


def _not_measured(id, rule, why, thresholds=None) -> Finding:
    return _finding(id, NOT_MEASURED, rule, {}, f"Not measured: {why}", thresholds)


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


def _f(value: float | None) -> str:
    """A share or accuracy in the prose; "–" where the grid has none to average."""
    return "–" if value is None or np.isnan(value) else f"{value:.3f}"


def _cap(verdict: str) -> str:
    return verdict[0].upper() + verdict[1:]


# ------------------------------------------------------------- per victim, few seeds


def _combined(by_victim: dict[str, str]) -> str:
    """The pooled verdict: the victims' common answer, or DEPENDS where they differ
    (NOT_MEASURED where no victim answers)."""
    answers = set(by_victim.values())
    return answers.pop() if len(answers) == 1 else (DEPENDS if answers else NOT_MEASURED)


def _per_victim(frame: pd.DataFrame, verdict_fn) -> tuple[str, dict, dict, list[str]]:
    """``verdict_fn`` on each victim's rows of ``frame``: it returns (verdict, numbers, what to
    say of them), or None where that victim's rows cannot answer. Returns the combined verdict
    (:func:`_combined`), the verdict and the numbers per victim, and one line per victim:
    "- **victim: Verdict**, what to say."."""
    verdicts, numbers, lines = {}, {}, []
    for victim, part in frame.groupby("victim", sort=True):
        answer = verdict_fn(part)
        if answer is None:
            continue
        verdicts[victim], numbers[victim], said = answer
        lines.append(f"- **{victim}: {_cap(verdicts[victim])}**, {said}.")
    return _combined(verdicts), verdicts, numbers, lines


def _victims_said(verdict: str, by_victim: dict, lines: list[str], numbers: dict) -> str:
    """What a pooled verdict's prose adds per victim: each victim's line where the victims
    differ, and the few-seed notice where some verdict is FEW_SEEDS; nothing where every
    victim agrees with enough seeds (the pooled prose says it all)."""
    few = [numbers[v].get("seeds", MIN_SEEDS) for v, a in by_victim.items() if a == FEW_SEEDS]
    said = ""
    if verdict == DEPENDS:
        said += "\n\nBy victim:\n\n" + "\n".join(lines)
    if few:
        said += _few_seeds_notice(min(few))
    return said


def _t(seeds: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, seeds - 1)) if seeds > 1 else float("inf")


def _undecided(seeds, difference: float, half: float) -> bool:
    """Whether too few seeds leave the rule's comparison undecided: fewer than MIN_SEEDS
    seeds and ``difference`` (what the rule tests, less its threshold) inside the interval's
    half-width ``half`` (always where there is none: one seed)."""
    return int(seeds) < MIN_SEEDS and not abs(difference) > half


def _few_seeds_note(seeds: int) -> str:
    """A line's short word on the seeds behind a FEW_SEEDS verdict."""
    return "1 seed, no interval" if seeds < 2 else f"{seeds} seeds, t = {_t(seeds):.1f}"


def _rule_head(rule: str, few: list[int]) -> str:
    """A finding's first paragraph: its rule, and the few-seed notice where some verdict
    rests on fewer than 3 seeds (``few``: their seed counts)."""
    return f"Rule: {rule}" + (_few_seeds_notice(min(few)) if few else "") + "\n\n"


def _few_seeds_notice(seeds: int) -> str:
    """The paragraph a finding prints where some verdict is FEW_SEEDS (``seeds``: the fewest
    behind one)."""
    head = (
        "1 seed: no interval at all, too few to support a verdict. Where the rule needs one"
        if seeds < 2
        else f"{seeds} seeds: Student-t 95% intervals use t = {_t(seeds):.1f}, too wide to "
        "support a verdict. Where the difference the rule tests lies inside them"
    )
    return f'\n\n*{head}, the verdict is "{FEW_SEEDS}" ({MIN_SEEDS} seeds or more decide).*'


def _majority(differences, halves, seeds) -> str:
    """ "yes" where most ``differences`` are positive, else "no"; with fewer than MIN_SEEDS
    seeds a difference inside its half-width counts for neither side, and the verdict is
    FEW_SEEDS where those could tip the majority."""
    d, h = np.asarray(differences, float), np.asarray(halves, float)
    n = len(d)
    if int(seeds) >= MIN_SEEDS:
        return "yes" if (d > 0).sum() > n / 2 else "no"
    clear_wins, unclear = int((d > h).sum()), int((~(np.abs(d) > h)).sum())
    if clear_wins > n / 2:
        return "yes"
    return "no" if clear_wins + unclear <= n / 2 else FEW_SEEDS


# -------------------------------------------------------------------------------- claim 1


def reproduction_finding(
    budget: pd.DataFrame, reproduction: pd.DataFrame, published: pd.DataFrame | None = None
) -> Finding:
    """Claim 1: at which budget, for which victims, does Knockoff (out-of-distribution
    natural queries) steal the victim? ``published``: the published points beside ours.

    Verdict and numbers per ``victim/granularity``: "yes" (stolen within the grid; numbers:
    the smallest such budget and the attack and surrogate that reach it) or "no" (numbers:
    the best recovery at the largest budget, its attack and surrogate)."""
    rule = (
        f"a victim is stolen at budget B when some out-of-distribution attack's surrogate "
        f"recovers at least {RECOVERY_TARGET} of the victim's test accuracy (mean over seeds) "
        f"at B."
    )
    thresholds = {"recovery_target": RECOVERY_TARGET}
    ood = budget[budget["adversary"] == "out-of-distribution"]
    if ood.empty:
        return _not_measured(
            "claim1", rule, "no out-of-distribution (Knockoff) pool in the grid.", thresholds
        )
    numbers, verdicts, by_victim, lines, few = {}, {}, {}, [], []
    for victim, part in ood.groupby("victim"):
        init = part["victim_init"].iloc[0]
        for granularity in information_order(part["granularity"]):
            rows = part[part["granularity"] == granularity]
            # Tables written before the few-seed check lack its columns: enough seeds assumed.
            seeds = rows["seeds"] if "seeds" in rows else pd.Series(MIN_SEEDS, rows.index)
            reached = rows.dropna(subset=["smallest_budget_to_target"])
            if len(reached):
                best = reached.loc[reached["smallest_budget_to_target"].idxmin()]
                n = {
                    "stolen": True,
                    "budget": int(best["smallest_budget_to_target"]),
                    "recovery": None,
                    "recovery_ci95": None,
                }
                # the comparison: the mean recovery at that budget against the target
                at = list(best["budgets"]).index(n["budget"])
                halves = best.get("recovery_ci95_by_budget")
                gap = best["recovery_by_budget"][at] - RECOVERY_TARGET
                unclear = _undecided(
                    seeds[best.name], gap, np.nan if halves is None else halves[at]
                )
            else:
                best = rows.loc[rows["recovery_at_largest"].idxmax()]
                n = {
                    "stolen": False,
                    "budget": int(best["largest_budget"]),
                    "recovery": float(best["recovery_at_largest"]),
                    "recovery_ci95": float(best["recovery_ci95_at_largest"]),
                }
                # no series may come within its interval of the target
                close = [
                    i
                    for i, r in rows.iterrows()
                    if _undecided(
                        seeds[i],
                        r["recovery_at_largest"] - RECOVERY_TARGET,
                        r["recovery_ci95_at_largest"],
                    )
                ]
                unsure = [int(seeds[i]) for i in close]
                unclear = bool(unsure)
                if unclear:  # the series whose interval reaches highest: the one to name
                    top = rows.loc[close]
                    top = top.loc[
                        (top["recovery_at_largest"] + top["recovery_ci95_at_largest"].fillna(0))
                        .astype(float)
                        .idxmax()
                    ]
                    n["could_reach"] = {
                        "attack": top["attack"],
                        "surrogate_arch": top["surrogate_arch"],
                        "surrogate_init": top["surrogate_init"],
                        "recovery": float(top["recovery_at_largest"]),
                        "recovery_ci95": float(top["recovery_ci95_at_largest"]),
                    }
            n |= {
                "victim_init": init,
                "attack": best["attack"],
                "surrogate_arch": best["surrogate_arch"],
                "surrogate_init": best["surrogate_init"],
            }
            if "seeds" in rows:
                n["seeds"] = int(seeds[best.name])
            key = f"{victim}/{granularity}"
            verdict = FEW_SEEDS if unclear else ("yes" if n["stolen"] else "no")
            numbers[key], verdicts[key] = n, verdict
            by_victim.setdefault(victim, {})[granularity] = verdict
            by = f"{n['attack']}, {n['surrogate_arch']} from {n['surrogate_init']}"
            text = (
                f"reaches {RECOVERY_TARGET} at **{n['budget']}** queries ({by})"
                if n["stolen"]
                else f"does **not** reach {RECOVERY_TARGET} within the grid (best "
                f"{_pm(n['recovery'], n['recovery_ci95'])} at {n['budget']} queries, {by})"
            )
            if unclear:
                few.append(min(unsure) if not n["stolen"] else int(seeds[best.name]))
                text += f"; **{FEW_SEEDS}** ({_few_seeds_note(few[-1])})"
                if "could_reach" in n:  # name the series whose interval holds the target
                    c = n["could_reach"]
                    text += (
                        f": {c['attack']}, {c['surrogate_arch']} from {c['surrogate_init']} "
                        f"({_pm(c['recovery'], c['recovery_ci95'])}) may reach it"
                    )
            lines.append(f"- **{victim}** (victim from {init}), `{granularity}`: {text}.")
    probs = {k.rsplit("/", 1)[0]: v for k, v in verdicts.items() if k.endswith("/probs")}
    yes = sorted(v for v, verdict in probs.items() if verdict == "yes")
    no = sorted(v for v, verdict in probs.items() if verdict == "no")
    unsure = sorted(v for v, verdict in probs.items() if verdict == FEW_SEEDS)
    head = (
        f"Rule: {rule} With full probabilities, stolen within the grid: "
        f"{', '.join(yes) or 'none'}; not within the grid: {', '.join(no) or 'none'}"
        + (f"; {FEW_SEEDS} to tell: {', '.join(unsure)}" if unsure else "")
        + "."
        + (_few_seeds_notice(min(few)) if few else "")
        + "\n\n"
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
    return _finding("claim1", verdicts, rule, numbers, text, thresholds, by_victim)


def pretraining_finding(pretraining: pd.DataFrame) -> Finding:
    """Does pretraining (of the victim, of the attacker, of both) make stealing easier?

    At every budget, each combination of victim start and attacker start is compared with
    the from-scratch pair on the same task, attack and granularity. Verdict per
    ``dataset/attack/granularity``: "yes" where some pretrained combination beats the
    from-scratch pair beyond both intervals at some budget; numbers per
    ``dataset/attack/granularity/budget/victim start/attacker start``."""
    rule = (
        "at every budget, the recovery (mean over seeds ± 95% CI) of each combination of "
        "victim start and attacker start, against the pair that both start from scratch (same "
        "task, attack and granularity); pretraining makes stealing easier where the difference "
        "exceeds the sum of the two half-widths."
    )
    if pretraining.empty:
        return _not_measured(
            "pretraining", rule, "no victim or surrogate starts from a pretrained backbone."
        )
    # Victims of different architectures on one task are told apart (their key gains the
    # architecture); victims of one architecture differ here only by their start.
    several = (pretraining.groupby("dataset")["victim_arch"].nunique() > 1).any()
    series = ["dataset", *(["victim_arch"] if several else []), "attack", "granularity"]
    keys = [*series, "budget", "victim_init", "surrogate_init"]
    if "seeds" not in pretraining:  # a table written before the few-seed check
        pretraining = pretraining.assign(seeds=MIN_SEEDS)
    table = (
        pretraining.groupby(keys)
        .agg(
            recovery=("recovery_mean", "mean"),
            ci95=("recovery_ci95", "mean"),
            seeds=("seeds", "min"),
        )
        .reset_index()
    )
    numbers, verdicts, lines, rows, few = {}, {}, [], [], []
    for names, part in table.groupby(series):
        name = "/".join(map(str, names))
        dataset, attack, granularity = names[0], names[-2], names[-1]
        helps, unclear = [], []
        for budget, at in part.groupby("budget"):
            combos = {
                (r.victim_init, r.surrogate_init): (r.recovery, r.ci95, r.seeds)
                for r in at.itertuples()
            }
            base = combos.get(("scratch", "scratch"))
            row = {
                "dataset": dataset,
                **({"victim_arch": names[1]} if several else {}),
                "attack": attack,
                "granularity": granularity,
                "budget": budget,
            }
            for (v, a), (value, half, seeds) in sorted(
                combos.items(), key=lambda c: c[0] != ("scratch", "scratch")
            ):
                row[f"victim {v} / attacker {a}"] = _pm(value, half)
                if base is None or (v, a) == ("scratch", "scratch"):
                    continue
                difference = value - base[0]
                beyond = bool(difference > np.nan_to_num(half) + np.nan_to_num(base[1]))
                numbers[f"{name}/{budget}/{v}/{a}"] = {
                    "recovery": float(value),
                    "ci95": float(half),
                    "scratch_recovery": float(base[0]),
                    "scratch_ci95": float(base[1]),
                    "difference": float(difference),
                    "beyond_ci": beyond,
                    "seeds": int(min(seeds, base[2])),
                }
                if beyond:
                    helps.append(f"{budget} ({v} victim, {a} attacker: {difference:+.3f})")
                elif _undecided(min(seeds, base[2]), difference, half + base[1]):
                    unclear.append(int(min(seeds, base[2])))
            rows.append(row)
        verdicts[name] = "yes" if helps else (FEW_SEEDS if unclear else "no")
        few += [] if helps else unclear
        lines.append(
            f"- {', '.join(map(str, names[:-1]))}, `{granularity}`: a pretrained start beats "
            f"the from-scratch pair beyond both intervals at "
            + (", ".join(helps) if helps else "no budget")
            + (
                f"; **{FEW_SEEDS}** to tell at the others ({_few_seeds_note(min(unclear))})"
                if unclear and not helps
                else ""
            )
            + "."
        )
    text = _rule_head(rule, few) + "\n".join(lines) + "\n\n" + _markdown(pd.DataFrame(rows))
    return _finding("pretraining", verdicts, rule, numbers, text)


# ------------------------------------------------------------------------------- claim 2


def granularity_finding(cells: pd.DataFrame) -> Finding:
    """Do full probabilities beat top-1 labels at equal budget (same victim, attack, arch,
    start, seed: the same queries)? Per victim, over its pairs; "not enough seeds" where its
    cells have fewer than MIN_SEEDS seeds and the mean difference is inside its interval."""
    rule = (
        "the mean paired difference (probs − label, same queries, seed and surrogate) is "
        "positive and probabilities win most pairs."
    )
    thresholds = {"mean_difference_above": 0.0, "win_share_above": 0.5}
    keys = ["victim", "attack", "budget", "surrogate_arch", "surrogate_init", "seed"]
    wide = cells.pivot_table(index=keys, columns="granularity", values="test_acc")
    if not {"probs", "label"} <= set(wide.columns):
        return _not_measured(
            "claim2a", rule, "the grid needs both `probs` and `label` granularities.", thresholds
        )
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

    def answer(part):  # one victim's pairs
        d, seeds = part["difference"], part["seed"].nunique()
        won, half = int((d > 0).sum()), ci95(d)
        verdict = "yes" if d.mean() > 0 and won > len(d) / 2 else "no"
        if _undecided(seeds, d.mean(), half):
            verdict = FEW_SEEDS
        n = {"pairs": len(d), "wins": won, "mean_difference": float(d.mean())}
        n |= {"mean_difference_ci95": half, "seeds": seeds}
        said = (
            f"mean difference {_pm(d.mean(), half)} over {len(d)} pairs, probabilities win "
            f"{won}" + (f" ({_few_seeds_note(seeds)})" if verdict == FEW_SEEDS else "")
        )
        return verdict, n, said

    pairs = diff.rename("difference").reset_index()
    verdict, by_victim, per_victim, victim_lines = _per_victim(pairs, answer)
    numbers = {
        "pairs": n,
        "wins": wins,
        "probs_mean": float(wide["probs"].mean()),
        "label_mean": float(wide["label"].mean()),
        "mean_difference": float(diff.mean()),
        "mean_difference_ci95": float(ci95(diff)),
        "by_budget": {
            int(r.budget): {
                "probs": float(r.probs),
                "label": float(r.label),
                "difference": float(r.difference),
                "ci95": float(r.ci95),
            }
            for r in by_budget.itertuples()
        },
        "by_victim": per_victim,
    }
    text = (
        f"**{_cap(verdict)}.** Rule: {rule} Over {n} pairs, surrogates trained on full "
        f"probabilities reach {numbers['probs_mean']:.3f} against {numbers['label_mean']:.3f} "
        f"with top-1 labels (mean difference "
        f"{_pm(numbers['mean_difference'], numbers['mean_difference_ci95'])}); probabilities "
        f"win {wins} of {n}."
        + _victims_said(verdict, by_victim, victim_lines, per_victim)
        + "\n\n"
        + _markdown(by_budget)
    )
    return _finding("claim2a", verdict, rule, numbers, text, thresholds, by_victim)


def architecture_finding(architecture: pd.DataFrame) -> Finding:
    """Claim 2b: does a surrogate of the victim's own architecture steal better? Per victim,
    over its attacks (:func:`_majority`, the two sides' half-widths summed)."""
    rule = (
        "the surrogate of the victim's own architecture beats the other in most (victim, "
        "attack) pairs (full probabilities, largest budget, from scratch)."
    )
    thresholds = {"win_share_above": 0.5}
    both = architecture.groupby(["victim", "attack"])["matches_victim"].transform("nunique") == 2
    rows = architecture[both]
    if rows.empty:
        return _not_measured(
            "claim2b",
            rule,
            "no victim faces surrogates of its own and of another arch.",
            thresholds,
        )
    wide = rows.pivot_table(
        index=["victim", "attack"], columns="matches_victim", values="test_acc_mean"
    ).rename(columns={True: "same_arch", False: "other_arch"})
    wide["difference"] = wide["same_arch"] - wide["other_arch"]
    wins = int((wide["difference"] > 0).sum())
    # the comparison's interval: the two sides' half-widths summed; the fewest seeds of both
    side = rows.groupby(["victim", "attack"])
    half = side["test_acc_ci95"].sum(min_count=2)
    seeds = side["seeds"].min() if "seeds" in rows else pd.Series(MIN_SEEDS, half.index)

    def answer(part):  # one victim's (victim, attack) pairs
        d = part["difference"]
        fewest = int(seeds[d.index].min())
        verdict = _majority(d, half[d.index], fewest)
        won = int((d > 0).sum())
        n = {"pairs": len(d), "wins": won, "mean_difference": float(d.mean()), "seeds": fewest}
        said = f"the own architecture wins {won} of {len(d)} (mean difference {d.mean():+.3f})"
        return verdict, n, said + (f" ({_few_seeds_note(fewest)})" if verdict == FEW_SEEDS else "")

    verdict, by_victim, per_victim, victim_lines = _per_victim(wide, answer)
    numbers = {
        "pairs": len(wide),
        "wins": wins,
        "mean_difference": float(wide["difference"].mean()),
        "differences": {f"{v}/{a}": float(d) for (v, a), d in wide["difference"].items()},
        "by_victim": per_victim,
    }
    text = (
        f"**{_cap(verdict)}.** Rule: {rule} It does in {wins} of {len(wide)} (mean "
        f"difference {numbers['mean_difference']:+.3f}). The paper found mismatch (VGG-16 "
        f"against ResNet-34 victims) cost 0.034-0.053, and nothing against its 5-layer CNN."
        + _victims_said(verdict, by_victim, victim_lines, per_victim)
        + "\n\n"
        + _markdown(wide.reset_index())
    )
    return _finding("claim2b", verdict, rule, numbers, text, thresholds, by_victim)


def budget_finding(cells: pd.DataFrame) -> Finding:
    """Does accuracy grow with the budget? Per victim; with fewer than MIN_SEEDS seeds, each
    series' gain over its seeds (mean ± 95% CI) decides instead of the count of single-seed
    series (:func:`_majority`)."""
    rule = (
        "in most series (victim, attack, granularity, surrogate, seed) the largest budget "
        "beats the smallest."
    )
    thresholds = {"growing_share_above": 0.5}
    keys = ["victim", "attack", "granularity", "surrogate_arch", "surrogate_init", "seed"]
    wide = cells.pivot_table(index=keys, columns="budget", values="test_acc")
    budgets = list(wide.columns)
    if len(budgets) < 2:
        return _not_measured("budget", rule, "the grid has a single budget.", thresholds)
    first = wide.apply(lambda r: r.dropna().iloc[0], axis=1)
    last = wide.apply(lambda r: r.dropna().iloc[-1], axis=1)
    counted = wide.notna().sum(axis=1) > 1
    grows = (last > first)[counted]
    gain = (last - first)[counted].rename("gain").reset_index()

    def answer(part):  # one victim's series
        if part.empty:
            return None
        growing = int((part["gain"] > 0).sum())
        verdict = "yes" if growing > len(part) / 2 else "no"
        # With few seeds, each series' gain over its seeds (mean ± 95% CI) decides, not
        # the count of single-seed series.
        over_seeds = part.groupby(keys[1:-1])["gain"]
        seeds = int(over_seeds.size().min())
        if seeds < MIN_SEEDS:
            verdict = _majority(over_seeds.mean(), over_seeds.agg(ci95), seeds)
        n = {"growing": growing, "series": len(part), "seeds": seeds}
        said = f"it does in {growing} of {len(part)}"
        return verdict, n, said + (f" ({_few_seeds_note(seeds)})" if verdict == FEW_SEEDS else "")

    verdict, by_victim, per_victim, victim_lines = _per_victim(gain, answer)
    means = cells.groupby("budget")["test_acc"].mean()
    numbers = {
        "growing": int(grows.sum()),
        "series": len(grows),
        "mean_by_budget": {int(b): float(m) for b, m in means.items()},
        "by_victim": per_victim,
    }
    said = _victims_said(verdict, by_victim, victim_lines, per_victim)
    text = (
        f"**{_cap(verdict)}.** Rule: {rule} It does in "
        f"{numbers['growing']} of {numbers['series']}."
        + (said + "\n\n" if said else " ")
        + "Mean accuracy by budget (over whatever cells each budget has):\n\n"
        + _markdown(means.reset_index().rename(columns={"test_acc": "mean test_acc"}))
    )
    return _finding("budget", verdict, rule, numbers, text, thresholds, by_victim)


# ---------------------------------------------------------------------- strategies, claim 4


def _prada_only(monitored: pd.DataFrame) -> pd.DataFrame:
    """PRADA's rows of the `prada` table (it holds every configured stream monitor's)."""
    if "monitor" not in monitored:
        return monitored
    return monitored[monitored["monitor"] == "prada"]


def strategy_finding(
    strategies: pd.DataFrame, detection: pd.DataFrame | None, prada: pd.DataFrame | None
) -> Finding:
    """Each strategy against random sampling of the same pool at equal budget, beside what
    PRADA and the pre-classifier flag of it. Verdict per ``victim/attack/granularity`` (and
    ``/surrogate_arch`` where the attack met several architectures there): "better" or
    "worse" than random sampling beyond the two 95% CIs, else "within CIs", or "not enough
    seeds" where that "within" rests on fewer than MIN_SEEDS seeds. ``by_victim``: the same
    verdicts per victim, keyed by the rest of the key."""
    rule = (
        "at the largest budget shared on a pool, the strategy's mean accuracy minus random "
        "sampling's (same victim, pool, granularity, surrogate); a difference within the sum "
        "of the two 95% half-widths is no difference."
    )
    if strategies.empty:
        return _not_measured("strategies", rule, "no pool is used by two strategies.")
    # The largest budget at which a pool has cells of more than one strategy (random sampling
    # may run further than the strategies it is compared with); else the pool's largest.
    by_pool = [strategies["victim"], strategies["pool"]]
    strategies_at_budget = strategies.groupby(["victim", "pool", "budget"])["strategy"]
    shared = strategies["budget"].where(strategies_at_budget.transform("nunique") > 1)
    largest = strategies.groupby(by_pool)["budget"].transform("max")
    target = shared.groupby(by_pool).transform("max").fillna(largest)
    top = strategies[strategies["budget"] == target]
    lines, numbers, verdicts, by_victim, few = [], {}, {}, {}, []
    for (victim, pool, granularity), part in top.groupby(["victim", "pool", "granularity"]):
        random = part[part["strategy"] == "random"].set_index("surrogate_arch")
        others = part[part["strategy"] != "random"]
        # an attack met with several surrogate architectures: one verdict each
        several = others.groupby("attack")["surrogate_arch"].nunique().max() > 1
        for row in others.itertuples():
            random_ci95 = float(random["test_acc_ci95"].get(row.surrogate_arch, 0))
            within = bool(abs(row.vs_random) <= row.test_acc_ci95 + random_ci95)
            key = f"{victim}/{row.attack}/{granularity}" + (
                f"/{row.surrogate_arch}" if several else ""
            )
            theirs = random["seeds"] if "seeds" in random else pd.Series(dtype=float)
            seeds = min(getattr(row, "seeds", MIN_SEEDS), theirs.get(row.surrogate_arch, MIN_SEEDS))
            unsure = within and seeds < MIN_SEEDS
            numbers[key] = {
                "pool": pool,
                "budget": int(row.budget),
                "surrogate_arch": row.surrogate_arch,
                "test_acc_mean": float(row.test_acc_mean),
                "test_acc_ci95": float(row.test_acc_ci95),
                "random_ci95": random_ci95,
                "vs_random": float(row.vs_random),
                "within_ci": within,
                "seeds": int(seeds),
            }
            verdicts[key] = "within CIs" if within else ("better" if row.vs_random > 0 else "worse")
            # "within CIs" claims no difference: with few seeds the CIs cannot support that
            if unsure:
                verdicts[key] = FEW_SEEDS
                few.append(int(seeds))
            by_victim.setdefault(victim, {})[key.split("/", 1)[1]] = verdicts[key]
            better = "beats" if row.vs_random > 0 else "loses to"
            lines.append(
                f"- {victim}, `{granularity}`, {row.budget} queries: **{row.attack}** "
                f"{_pm(row.test_acc_mean, row.test_acc_ci95)} {better} random sampling of "
                f"{pool} by {abs(row.vs_random):.3f}"
                + (" (within the two 95% CIs" if within else " (beyond the two 95% CIs")
                + (f"; **{FEW_SEEDS}**: {_few_seeds_note(int(seeds))})." if unsure else ").")
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
        _rule_head(rule, few)
        + "\n".join(lines)
        + "\n\n"
        + _markdown(top.drop(columns=["recovery_mean", "agreement_mean"]))
        + (
            "\n\nWhat the detectors see of each strategy:\n\n" + _markdown(pd.DataFrame(flags))
            if flags
            else ""
        )
    )
    return _finding("strategies", verdicts, rule, numbers, text, by_victim=by_victim)


def adversary_finding(summary: pd.DataFrame) -> Finding:
    """Claim 4: does the realistic adversary (same-task pool) beat the out-of-distribution
    pools at equal budget? Answered per victim facing both ("yes" or "no"); the pooled
    verdict is their common answer, or "depends on the victim"."""
    rule = (
        "at the realistic adversary's largest budget, its mean accuracy (over granularities, "
        "surrogates from scratch and seeds) exceeds the mean of the out-of-distribution pools "
        "at the same budget."
    )
    rows = summary[(summary["surrogate_init"] == "scratch")]
    budget = rows.groupby("victim")["budget"].transform(
        lambda b: b[rows.loc[b.index, "adversary"] == "realistic"].max()
    )
    rows = rows[rows["budget"] == budget]
    table = rows.groupby(["victim", "adversary"])["test_acc_mean"].mean().unstack("adversary")
    if "realistic" not in table or "out-of-distribution" not in table:
        return _not_measured(
            "claim4", rule, "the grid needs realistic and out-of-distribution pools."
        )
    table = table.dropna()
    if table.empty:
        return _not_measured("claim4", rule, "no victim faces both kinds of adversary.")
    wins = table["realistic"] > table["out-of-distribution"]
    victim_budget = rows.groupby("victim")["budget"].max()
    # each side's interval: the mean half-width of its rows; the fewest seeds of either
    sides = rows.groupby(["victim", "adversary"])
    half = sides["test_acc_ci95"].mean().unstack("adversary")
    seeds = (sides["seeds"].min() if "seeds" in rows else sides.size() * 0 + MIN_SEEDS).unstack()

    def answer(part):  # one victim's row of the table
        victim = part.index[0]
        r = part.iloc[0]
        difference = r["realistic"] - r["out-of-distribution"]
        fewest = int(seeds.loc[victim, ["realistic", "out-of-distribution"]].min())
        verdict = "yes" if wins[victim] else "no"
        h = half.loc[victim, "realistic"] + half.loc[victim, "out-of-distribution"]
        if _undecided(fewest, difference, h):
            verdict = FEW_SEEDS
        n = {
            "budget": int(victim_budget[victim]),
            "realistic": float(r["realistic"]),
            "out_of_distribution": float(r["out-of-distribution"]),
            "realistic_wins": bool(wins[victim]),
            "seeds": fewest,
        }
        said = (
            f"realistic {r['realistic']:.3f} against out-of-distribution "
            f"{r['out-of-distribution']:.3f} at {n['budget']} queries"
        )
        return verdict, n, said + (f" ({_few_seeds_note(fewest)})" if verdict == FEW_SEEDS else "")

    verdict, by_victim, per_victim, victim_lines = _per_victim(table, answer)
    numbers = {
        "victims_won": int(wins.sum()),
        "victims": len(wins),
        "per_victim": per_victim,
    }
    per_pool = (
        rows.groupby(["victim", "attack", "adversary", "budget"])["test_acc_mean"]
        .mean()
        .reset_index()
        .sort_values(["victim", "test_acc_mean"], ascending=[True, False])
    )
    text = (
        f"**{_cap(verdict)}.** Rule: {rule} It does for "
        f"{numbers['victims_won']} of {numbers['victims']} victims facing both"
        + (
            ".\n\n" + said.lstrip("\n") + "\n\n"
            if (said := _victims_said(verdict, by_victim, victim_lines, per_victim))
            else ":\n\n"
        )
        + _markdown(table.reset_index())
        + "\n\nPer attack:\n\n"
        + _markdown(per_pool)
    )
    return _finding("claim4", verdict, rule, numbers, text, by_victim=by_victim)


# ------------------------------------------------------------------------------ defenses


def detector_finding(detection: pd.DataFrame) -> Finding:
    """Claim 3: does the pre-classifier flag generic data, seen and unseen kinds, and does the
    realistic adversary evade it? The verdict answers the last question, per victim (each has
    its own pre-classifier); the rates are pooled as means over the victims' rows, and each
    victim's is printed beside them where two victims' differ by more than RATES_DIFFER
    (``numbers["by_victim"]`` holds them always). No seeds: one evaluation per victim."""
    rule = (
        f"the realistic adversary evades the pre-classifier when at most {EVADES_FLAGGED} of "
        f"its queries are flagged."
    )
    thresholds = {"evades_flagged_at_most": EVADES_FLAGGED}
    if detection.empty:
        return _not_measured("claim3", rule, "the pre-classifier is not evaluated.", thresholds)
    pools = detection[detection["queries_from"] == "pool"]
    test = detection[detection["queries_from"] == "test"]
    realistic = detection[(detection["queries_from"] == "attack") & detection["in_distribution"]]

    def rates(pools, test, realistic) -> dict:
        by_kind = pools.groupby("seen")["flagged_share"].mean()
        return {
            "test_tpr": float(test["tpr_in"].mean()),
            "seen_tnr": float(by_kind.get("seen kind", np.nan)),
            "unseen_tnr": float(by_kind.get("unseen kind", np.nan)),
            "in_distribution_flagged": float(by_kind.get("in-distribution", np.nan)),
            "realistic_flagged": (
                float(realistic["flagged_share"].mean()) if len(realistic) else None
            ),
        }

    numbers = rates(pools, test, realistic)
    # Each victim has its own pre-classifier: its rates and its realistic adversary's verdict.
    numbers["by_victim"] = {
        victim: rates(*(part[part.index.isin(f.index)] for f in (pools, test, realistic)))
        for victim, part in detection.groupby("victim", sort=True)
    }

    def answer(part):  # one victim's realistic attackers
        flagged = float(part["flagged_share"].mean())
        return ("yes" if flagged <= EVADES_FLAGGED else "no"), {}, f"it flags {flagged:.3f}"

    verdict, by_victim, _, victim_lines = _per_victim(realistic, answer)
    if verdict == DEPENDS:
        evades = (
            f"**The realistic adversary evades it: {DEPENDS}.** Rule: {rule} Over the victims "
            f"it flags {numbers['realistic_flagged']:.3f}, but each victim's pre-classifier "
            f"answers apart:\n\n" + "\n".join(victim_lines)
        )
    elif len(realistic):
        evades = (
            f"**The realistic adversary evades it: {verdict.capitalize()}.** Rule: {rule} It "
            f"flags {numbers['realistic_flagged']:.3f}."
        )
    else:
        verdict, evades = NOT_MEASURED, "The realistic adversary is not in the grid."
    per_victim = pd.DataFrame.from_dict(numbers["by_victim"], orient="index")
    # the victims' rates, where they differ: each victim's pre-classifier is its own
    shown = ["test_tpr", "seen_tnr", "unseen_tnr"]
    spread = per_victim[shown].max() - per_victim[shown].min()
    differ = len(per_victim) > 1 and bool((spread > RATES_DIFFER).any())
    lines = [
        f"The pre-classifier accepts {_f(numbers['test_tpr'])} of the victims' own test images "
        f"(in-distribution TPR). Of the attackers' pools it flags, on average, "
        f"{_f(numbers['seen_tnr'])} of the kinds of images it saw as out-of-distribution in "
        f"training (other photographs, other fonts: the analogue of ImageNet against "
        f"OpenImages) and {_f(numbers['unseen_tnr'])} of kinds it never saw. The paper reports "
        f"0.93-0.99 for both sides, except Caltech (0.63/0.56)."
        + (
            f" These are averages over victims whose rates differ by more than "
            f"{RATES_DIFFER}; each victim's:\n\n"
            + _markdown(
                per_victim[[*shown, "realistic_flagged"]]
                .astype(float)
                .rename_axis("victim")
                .reset_index()
                .rename(
                    columns={
                        "test_tpr": "accepts own test images",
                        "seen_tnr": "flags seen kinds",
                        "unseen_tnr": "flags unseen kinds",
                        "realistic_flagged": "flags the realistic adversary",
                    }
                )
            )
            if differ
            else ""
        ),
        "",
        evades,
        "",
        _markdown(
            detection[["victim", "queries_from", "source", "seen", "queries", "flagged_share"]]
        ),
    ]
    return _finding("claim3", verdict, rule, numbers, "\n".join(lines), thresholds, by_victim)


def prada_finding(prada: pd.DataFrame) -> Finding:
    """Does PRADA flag each strategy's attackers, and how often benign clients? Verdict per
    strategy: "yes" (every attacker flagged), "partly" (some), "no" (none), answered by each
    victim's PRADA (``by_victim``), or "depends on the victim" where they differ.

    Everything is read at the delta each victim's streams were flagged at (the table's
    ``delta`` column: the configured number, or the one ``delta: calibrate`` chose on held-out
    calibration streams); the false-positive rate counts the separate evaluation benign
    streams."""
    rule = (
        "a strategy is flagged when PRADA flags every attacker's stream of it (partly: some), "
        "at each victim's delta; the false-positive rate is the share of the evaluation benign "
        "streams flagged (never the streams a calibrated delta was tuned on)."
    )
    prada = _prada_only(prada)
    attackers = prada[prada["kind"] == "attacker"]
    benign = prada[prada["kind"] == "benign"]
    if attackers.empty:
        return _not_measured("prada", rule, "PRADA saw no attacker's stream.")
    by_strategy = (
        attackers.groupby("strategy")
        .agg(
            streams=("flagged", "size"),
            flagged=("flagged", "sum"),
            flagged_share=("flagged", "mean"),
            median_queries_to_detection=("flagged_at", "median"),
        )
        .reset_index()
    )
    deltas = prada.groupby("victim")["delta"].first().dropna().to_dict() if "delta" in prada else {}
    # Benign streams are named benign-<source>-<i>: a delta tuned on the victim's own held-out
    # data may not carry over to another source of the task, so each source is shown apart.
    by_source = {}
    if "stream" in benign and len(benign):
        sources = benign["stream"].str.slice(len("benign-")).str.rsplit("-", n=1).str[0]
        by_source = benign.groupby(sources)["flagged"].mean().to_dict()
    numbers = {
        "delta": {str(v): float(d) for v, d in deltas.items()},
        "false_positive_rate": float(benign["flagged"].mean()) if len(benign) else None,
        "false_positive_rate_by_source": {str(k): float(v) for k, v in by_source.items()},
        "benign_flagged": int(benign["flagged"].sum()),
        "benign_streams": len(benign),
        "strategies": {
            r.strategy: {
                "streams": int(r.streams),
                "flagged": int(r.flagged),
                "flagged_share": float(r.flagged_share),
                "median_queries_to_detection": float(r.median_queries_to_detection),
            }
            for r in by_strategy.itertuples()
        },
    }

    def flags(flagged: int, streams: int) -> str:
        return "yes" if flagged == streams else ("partly" if flagged else "no")

    # Each victim's PRADA (its own delta, its own attackers) answers per strategy; a strategy's
    # verdict is the victims' common answer, or DEPENDS with each victim's.
    counts = attackers.groupby(["strategy", "victim"])["flagged"].agg(["size", "sum"])
    by_victim, per_victim = {}, {}
    for (strategy, victim), c in counts.iterrows():
        by_victim.setdefault(victim, {})[strategy] = flags(int(c["sum"]), int(c["size"]))
        per_victim.setdefault(victim, {})[strategy] = {
            "streams": int(c["size"]),
            "flagged": int(c["sum"]),
        }
    numbers["by_victim"] = per_victim
    verdicts, lines = {}, []
    for strategy, n in numbers["strategies"].items():
        answers = {v: a[strategy] for v, a in by_victim.items() if strategy in a}
        verdicts[strategy] = _combined(answers)
        lines.append(
            f"- **{strategy}: {_cap(verdicts[strategy])}**, {n['flagged']} of "
            f"{n['streams']} attackers flagged"
            + (
                " ("
                + "; ".join(
                    f"{v}: {a}, {per_victim[v][strategy]['flagged']} of "
                    f"{per_victim[v][strategy]['streams']}"
                    for v, a in sorted(answers.items())
                )
                + ")"
                if verdicts[strategy] == DEPENDS
                else ""
            )
        )
    shown = ", ".join(f"{v} {d:.4f}" for v, d in numbers["delta"].items()) or "not recorded"
    text = (
        f"Rule: {rule}\n\n"
        f"PRADA at delta ({shown}; each attacker's stream replayed up to the configured "
        f"length) flags, by strategy, and {numbers['benign_flagged']} of "
        f"{numbers['benign_streams']} benign streams (false-positive rate "
        f"{_f(numbers['false_positive_rate'])}"
        + "".join(
            f"; {source}: {_f(rate)}"
            for source, rate in numbers["false_positive_rate_by_source"].items()
        )
        + "):\n\n"
        + "\n".join(lines)
        + "\n\n"
        + _markdown(by_strategy)
    )
    return _finding("prada", verdicts, rule, numbers, text, by_victim=by_victim)


def defended_finding(matched: pd.DataFrame) -> Finding:
    """Defenses at matched benign cost, from the matched-cost table
    (:func:`stealbench.report.tables.matched_cost_table`): for each victim and attack (its
    largest defended budget, full probabilities where the grid has them), each defense's
    attacker accuracy where it costs benign users each of MATCHED_COSTS, the defense that
    costs the attacker most there, and whether any stops the realistic adversary.

    A defense whose sweep never costs that much is read at its strongest tested strength (a
    point that costs benign users less, so within the matched cost; ``reached`` false).
    The verdict answers the last question per victim ("not measured" where no realistic
    adversary meets a defense; "not enough seeds" where no defense stops it clear of the
    interval and one is inside it, on fewer than MIN_SEEDS seeds). Numbers per
    ``victim/attack`` (``victim/attack/arch`` where several surrogate architectures were
    defended) and per cost."""
    costs = list(MATCHED_COSTS)
    rule = (
        f"each defense's curve over its strengths, from the undefended API (cost 0), is read "
        f"at benign costs of {', '.join(f'{c:g}' for c in costs)} (undefended less defended "
        f"benign top-1 accuracy), linearly interpolated between the two strengths that first "
        f"bracket the cost, per seed, then mean ± 95% CI over seeds (largest defended budget, "
        f"full probabilities); a sweep that never costs that much is read at its strongest "
        f"strength, never extrapolated. At each cost the defense leaving the attacker the "
        f"lowest mean accuracy costs it most; a defense stops the attacker when the "
        f"attacker's recovery there falls below {STOPPED_RECOVERY}, from at least that "
        f"undefended."
    )
    thresholds = {"matched_costs": costs, "stopped_recovery": STOPPED_RECOVERY}
    if matched.empty:
        return _not_measured("defenses", rule, "no defended cells.", thresholds)
    top = matched[matched["budget"] == matched.groupby("attack")["budget"].transform("max")]
    top = top[top["granularity"] == "probs"] if "probs" in set(top["granularity"]) else top
    several_archs = top.groupby(["victim", "attack"])["surrogate_arch"].nunique().max() > 1
    top = top.assign(
        stops=(top["recovery_mean"] < STOPPED_RECOVERY)
        & (top["undefended_recovery_mean"] >= STOPPED_RECOVERY)
    )
    numbers = {"by_attack": {}, "stops_realistic": {f"{c:g}": [] for c in costs}}
    lines, rows = [], []
    for (victim, attack, arch), part in top.groupby(["victim", "attack", "surrogate_arch"]):
        key = f"{victim}/{attack}" + (f"/{arch}" if several_archs else "")
        first = part.iloc[0]
        entry = numbers["by_attack"][key] = {
            "adversary": first["adversary"],
            "budget": int(first["budget"]),
            "granularity": first["granularity"],
            "surrogate_arch": arch,
            "undefended_acc": float(first["undefended_acc_mean"]),
            "undefended_acc_ci95": float(first["undefended_acc_ci95"]),
            "costs": {},
        }
        said = []
        for cost in costs:
            at = part[np.isclose(part["cost"], cost)]
            if at.empty:
                continue
            best = at.loc[at["attacker_acc_mean"].idxmin()]
            entry["costs"][f"{cost:g}"] = {
                "costliest": best["defense"],
                "defenses": {
                    r.defense: {
                        "attacker_acc": float(r.attacker_acc_mean),
                        "attacker_acc_ci95": float(r.attacker_acc_ci95),
                        "reached": bool(r.reached),
                        "benign_cost": float(r.benign_cost_mean),
                        "strength_value": float(r.strength_value_mean),
                        "attacker_drop": float(r.drop_mean),
                        "recovery": float(r.recovery_mean),
                        "stops": bool(r.stops),
                    }
                    for r in at.itertuples()
                },
            }
            if first["adversary"] == "realistic":
                numbers["stops_realistic"][f"{cost:g}"] += list(at.loc[at["stops"], "defense"])
            said.append(
                f"at {cost:g} **{best['defense']}** "
                f"({_pm(best['attacker_acc_mean'], best['attacker_acc_ci95'])}"
                + ("" if best["reached"] else ", its strongest strength costs less")
                + ")"
            )
        lines.append(
            f"- {key} ({entry['adversary']}, undefended "
            f"{_pm(entry['undefended_acc'], entry['undefended_acc_ci95'])}): costs the "
            "attacker most " + "; ".join(said) + "."
        )
        for defense, series in part.groupby("defense"):
            row = {"victim/attack": key, "defense": defense}
            for r in series.sort_values("cost").itertuples():
                row[f"at {r.cost:g}"] = _pm(r.attacker_acc_mean, r.attacker_acc_ci95) + (
                    "" if r.reached else f" (†{r.benign_cost_mean:.3f})"
                )
            rows.append(row)
    stops = {c: sorted(set(d)) for c, d in numbers["stops_realistic"].items()}
    numbers["stops_realistic"] = stops
    realistic = (top["adversary"] == "realistic").any()
    verdict = ("yes" if any(stops.values()) else "no") if realistic else NOT_MEASURED

    def said(stops: dict) -> str:
        if any(stops.values()):
            return "; ".join(f"at {c}: {', '.join(d) or 'none'}" for c, d in stops.items())
        return "**no defense**"

    # Per victim: its realistic adversary stopped by some defense at some cost; with fewer
    # than MIN_SEEDS seeds, a recovery inside its interval of STOPPED_RECOVERY decides nothing.
    seeds = top["seeds"] if "seeds" in top else pd.Series(MIN_SEEDS, top.index)
    unclear = [
        _undecided(n, r.recovery_mean - STOPPED_RECOVERY, r.attacker_acc_ci95 / r.victim_acc)
        and r.undefended_recovery_mean >= STOPPED_RECOVERY
        for n, r in zip(seeds, top.itertuples(), strict=True)
    ]
    top = top.assign(unclear=unclear, seeds_=seeds)

    def answer(part):  # one victim's realistic attackers at the matched costs
        stopped = {
            f"{c:g}": sorted(set(part.loc[part["stops"] & np.isclose(part["cost"], c), "defense"]))
            for c in costs
        }
        clear = (part["stops"] & ~part["unclear"]).any()
        verdict = "yes" if clear else (FEW_SEEDS if part["unclear"].any() else "no")
        fewest = int(part["seeds_"].min())
        return (
            verdict,
            {"stops": stopped, "seeds": fewest},
            said(stopped) + (f" ({_few_seeds_note(fewest)})" if verdict == FEW_SEEDS else ""),
        )

    if realistic:
        verdict, by_victim, per_victim, victim_lines = _per_victim(
            top[top["adversary"] == "realistic"], answer
        )
        numbers["stops_realistic_by_victim"] = {v: n["stops"] for v, n in per_victim.items()}
    else:
        by_victim, per_victim, victim_lines = {}, {}, []
    fewest = min((n["seeds"] for n in per_victim.values()), default=MIN_SEEDS)
    lines.append(
        "- Stops the realistic adversary (its recovery falls below "
        f"{STOPPED_RECOVERY}, from at least that undefended): "
        + (
            f"**{DEPENDS}**:\n" + "\n".join("  " + line for line in victim_lines)
            if verdict == DEPENDS
            else f"**{FEW_SEEDS}** ({_few_seeds_note(fewest)})."
            if verdict == FEW_SEEDS
            else (said(stops) if realistic else "no realistic adversary in the grid") + "."
        )
    )
    few = [n["seeds"] for v, n in per_victim.items() if by_victim[v] == FEW_SEEDS]
    text = (
        _rule_head(rule, few)
        + "\n".join(lines)
        + "\n\nThe attacker's accuracy (mean ± 95% CI over seeds) at each matched benign "
        "cost; † marks a sweep that never costs that much, read at its strongest strength "
        "(its cost after the †):\n\n" + _markdown(pd.DataFrame(rows))
    )
    return _finding("defenses", verdict, rule, numbers, text, thresholds, by_victim)


def dawn_finding(dawn: pd.DataFrame, detection: pd.DataFrame | None) -> Finding:
    """Does DAWN catch the stolen surrogates, the ones the detector let through included,
    and how often does it claim an independent model? "yes" where it catches every
    surrogate, "partly" some, "no" none, per victim (``by_victim``); the pooled verdict where
    they agree. A catch is a yes/no per seed: no interval, so no few-seed verdict.

    Per (victim, attack, share, budget) it also prints the number of watermarks and the
    verification's false-claim bound (``dawn_claim_bound``: the binomial tail at the
    threshold's share of that count; the largest over seeds, i.e. the weakest claim), the
    largest p-value of the reproduced count, and whether the bound reaches the paper's 2^-64
    (:data:`stealbench.defense.dawn.TARGET_BOUND`)."""
    from ..defense.dawn import TARGET_BOUND

    rule = (
        "a surrogate is caught when it reproduces at least the configured share of the "
        "watermark labels it was served (DAWN's verification); false claims are counted on "
        "independent models of the victim's task that never queried it; a claim reaches the "
        "paper's bound when its false-claim bound is at most 2^-64."
    )
    thresholds = {"let_through_flagged_at_most": EVADES_FLAGGED, "claim_bound": TARGET_BOUND}
    if dawn.empty:
        return _not_measured(
            "dawn", rule, "DAWN is not among the defended configurations.", thresholds
        )
    dawn = dawn.assign(
        dawn_claim_bound=dawn["dawn_claim_bound"] if "dawn_claim_bound" in dawn else np.nan
    )
    by = (
        dawn.groupby(["victim", "attack", "adversary", "share", "budget"])
        .agg(
            watermarks=("dawn_watermarks", "mean"),
            min_watermarks=("dawn_watermarks", "min"),
            claim_bound=("dawn_claim_bound", "max"),
            max_p_value=("dawn_p_value", "max"),
            caught=("dawn_caught", "mean"),
            watermark_acc=("dawn_acc", "mean"),
            false_claims=("dawn_false_claims", "sum"),
            independent_checks=("dawn_independent", "sum"),
            benign_cost=("benign_top1_changed", "mean"),
        )
        .reset_index()
    )
    by["reaches_2^-64"] = by["claim_bound"] <= TARGET_BOUND
    let_through = []
    if detection is not None:
        attacks = detection[detection["queries_from"] == "attack"]
        let_through = [
            (r.victim, r.source) for r in attacks.itertuples() if r.flagged_share <= EVADES_FLAGGED
        ]
    through = by[[(v, a) in let_through for v, a in zip(by["victim"], by["attack"], strict=True)]]
    checks = int(by["independent_checks"].sum())
    numbers = {
        "caught": float(dawn["dawn_caught"].mean()),
        "caught_let_through": float(through["caught"].mean()) if len(through) else None,
        "false_claims": int(by["false_claims"].sum()),
        "independent_checks": checks,
        "false_claim_rate": float(by["false_claims"].sum() / max(1, checks)),
        "claims": [
            {
                "victim": r.victim,
                "attack": r.attack,
                "share": float(r.share),
                "budget": int(r.budget),
                "watermarks": float(r.watermarks),
                "min_watermarks": int(r.min_watermarks),
                "claim_bound": None if pd.isna(r.claim_bound) else float(r.claim_bound),
                "max_p_value": float(r.max_p_value),
                "reaches_target": bool(r.claim_bound <= TARGET_BOUND),
            }
            for r in by.itertuples()
        ],
    }
    caught = numbers["caught"]

    def catches(share: float) -> str:
        return "yes" if share == 1 else ("partly" if share > 0 else "no")

    def answer(part):  # one victim's DAWN-defended surrogates
        share = float(part["dawn_caught"].mean())
        n = {"caught": share, "surrogates": len(part)}
        return catches(share), n, f"DAWN catches {share:.3f} of {len(part)} surrogates"

    verdict, by_victim, per_victim, victim_lines = _per_victim(dawn, answer)
    numbers["by_victim"] = per_victim
    reached = int(by["reaches_2^-64"].sum())
    text = (
        f"**{_cap(verdict)}.** Rule: {rule} DAWN catches {caught:.3f} of the "
        f"surrogates; of those whose queries the pre-classifier let through (at most "
        f"{EVADES_FLAGGED} flagged), {_f(numbers['caught_let_through'])}; false-claim rate "
        f"{numbers['false_claim_rate']:.3f} over {checks} checks. Benign users pay about the "
        f"watermark share in changed top-1 answers. The verification's false-claim bound "
        f"(claim_bound, the weakest over seeds) reaches 2^-64 in {reached} of {len(by)} "
        f"(share, budget) groups."
        + _victims_said(verdict, by_victim, victim_lines, per_victim)
        + "\n\n"
        # Probabilities near 2^-64 would print as 0.000: scientific notation for them.
        + _markdown(
            by.assign(
                claim_bound=by["claim_bound"].map(lambda v: "–" if pd.isna(v) else f"{v:.2e}"),
                max_p_value=by["max_p_value"].map(lambda v: f"{v:.2e}"),
            )
        )
    )
    return _finding("dawn", verdict, rule, numbers, text, thresholds, by_victim)


def findings(tables: dict[str, pd.DataFrame]) -> list[Finding]:
    """Every finding the tables answer, in the page's order; the defense findings only
    where the grid has defenses."""
    found = [
        reproduction_finding(tables["budget"], tables["reproduction"], tables.get("published")),
        pretraining_finding(tables["pretraining"]),
        granularity_finding(tables["cells"]),
        architecture_finding(tables["architecture"]),
        budget_finding(tables["cells"]),
        strategy_finding(tables["strategies"], tables.get("detection"), tables.get("prada")),
        adversary_finding(tables["summary"]),
    ]
    if "defended" in tables:
        found += [
            detector_finding(tables["detection"]),
            prada_finding(tables["prada"]),
            defended_finding(tables["matched_cost"]),
            dawn_finding(tables["dawn"], tables.get("detection")),
        ]
    return found


def findings_json(found: list[Finding]) -> dict:
    """results/findings.json: each finding's data (no prose) by id."""
    return {f.id: f.to_json() for f in found}


def findings_markdown(found: list[Finding], tables: dict[str, pd.DataFrame]) -> str:
    """results/findings.md: the grid, the victims and the query economy, then each
    finding's prose under its title."""
    cells = tables["cells"]
    victims = tables["victims"][["victim", "arch", "init", "dataset", "test_acc"]]
    queries = tables["queries"]
    sections = [
        "# Findings\n",
        "Generated by `rules/report.smk` from `results/tables/`; every number below is "
        "computed from those tables (means over seeds, ± the half-width of the 95% confidence "
        "interval, Student t, where shown). A seed redraws everything random in a cell: the "
        "attacker's sample or its strategy's choices, and the surrogate's initial weights. "
        "The same verdicts, rules and numbers are in `results/findings.json`. "
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
    ]
    for finding in found:
        sections += [f"## {finding.title}\n", finding.text + "\n"]
    return "\n".join(sections)
