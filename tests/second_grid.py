"""A second grid, unlike the default, for the report's tests: the report tables of a small
grid as a new user might configure it, built by the real table functions
(:mod:`stealbench.report.tables`) from hand-made per-seed rows, so they follow the real
schemas.

The grid: two victims of different tasks and architectures (an MNIST LeNet and a CIFAR-like
ResNet), each attacked by a realistic adversary (random sampling of its own task's pool) and
two out-of-distribution attacks on one pool (random sampling and adaptive), with surrogates of
both architectures from scratch; budgets 200, 1000 and 2000; granularities probs, label and
top3; two seeds (``seeds``); and a defended grid of defenses that keep the top-1 (top-k,
rounding, MAD-argmax), so benign utility is the same at every strength.

Every accuracy is a sum of known effects, each settable per victim (a number, or a dict
``{victim: number}``), plus ``spread`` times +1 or -1 by seed (seed 0 up, 1 down, 2 up...):
with two seeds the 95% half-width is then 12.7 × ``spread``, with three 2.9 × ``spread``.
The victims' accuracies and their surrogates' base accuracies (VICTIMS) can be set the same
way (``victim_acc``, ``base``), and the budgets and the defenses swept are options too.

    from second_grid import second_grid
    grid = second_grid()                       # {table name: DataFrame}
    grid = second_grid(seeds=(0, 1, 2), realistic_flagged=0.001)
    grid = second_grid(**WIDE, defenses={**DEFENSES, **NOISE})

Used by tests/test_second_grid.py (findings, and the report stage end to end) and
tests/test_figures_grid.py (figures).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from stealbench.report import tables as t

# victim -> (architecture, dataset, its test accuracy, its surrogates' base accuracy)
VICTIMS = {
    "mnist-lenet": ("lenet", "mnist", 0.99, 0.70),
    "cifar-resnet": ("resnet18", "cifar10", 0.90, 0.40),
}
# attack -> (strategy, pool, adversary); the realistic pool is the victim's own task
ATTACKS = {
    "random-real": ("random", "own", "realistic"),
    "random-ood": ("random", "ood", "out-of-distribution"),
    "adaptive-ood": ("adaptive", "ood", "out-of-distribution"),
}
BUDGETS = (200, 1000, 2000)
GRANULARITIES = ("probs", "label", "top3")
SURROGATES = ("lenet", "resnet18")
SEEDS = (0, 1)
# argmax-preserving defenses: (defense, strength name, values from weakest to strongest)
DEFENSES = {
    "top-k": ("k", (3, 2, 1)),
    "rounding": ("decimals", (2, 1)),
    "mad-argmax": ("epsilon", (0.5, 1.0)),
}
# a defense that costs benign users accuracy (BENIGN_COST: 0.01, then 0.15 of top-1 accuracy,
# by strength), as every defense does on the default grid
NOISE = {"gaussian-noise": ("scale", (0.1, 0.5))}
BENIGN_COST = {"gaussian-noise": (0.01, 0.15)}
NUM_CLASSES = 10
# The grid the figures are checked on: two seeds 0.2 either side of the mean (a half-width
# of 12.7 x 0.2 = 2.5, so every interval leaves [0, 1]), surrogates from 0.5 (no accuracy
# clipped by the builders), and a CIFAR victim of 0.6 that its surrogates beat (recovery
# above 1).
WIDE = {"spread": 0.2, "base": 0.5, "victim_acc": {"cifar-resnet": 0.6}}


def _of(effect, victim: str) -> float:
    """A per-victim effect: the number itself, or the victim's entry of a dict (0 if none)."""
    return float(effect.get(victim, 0.0) if isinstance(effect, dict) else effect)


def _at(option, victim: str, default: float) -> float:
    """A per-victim setting: ``default`` where unset (None, or a dict without the victim)."""
    if option is None:
        return default
    return float(option.get(victim, default) if isinstance(option, dict) else option)


def _sign(seed: int) -> int:
    return 1 if seed % 2 == 0 else -1


def _attacked(base=None, victim_acc=None):
    """Each (victim, attack) of the grid: the columns that name them, as the cell tables spell
    them, the victim's accuracy and its surrogates' base accuracy (VICTIMS', or ``victim_acc``
    and ``base``, per victim as the effects)."""
    for victim, (victim_arch, dataset, accuracy, start) in VICTIMS.items():
        for attack, (strategy, pool, adversary) in ATTACKS.items():
            keys = {
                "victim": victim,
                "victim_arch": victim_arch,
                "victim_init": "scratch",
                "dataset": dataset,
                "attack": attack,
                "strategy": strategy,
                "pool": f"{dataset}-pool" if pool == "own" else "ood-pool",
                "adversary": adversary,
            }
            yield keys, _at(victim_acc, victim, accuracy), _at(base, victim, start)


def cells(
    seeds=SEEDS,
    spread=0.01,
    budgets=BUDGETS,
    base=None,
    victim_acc=None,
    budget_slope=0.05,
    probs_bonus=0.05,
    realistic_bonus=0.1,
    arch_bonus=0.03,
    adaptive_bonus=0.0,
) -> pd.DataFrame:
    """One row per (victim, attack, granularity, budget, surrogate, seed): the cells table as
    :func:`stealbench.report.tables.collect_cells` orders it (its per-class columns too);
    ``base`` and ``victim_acc`` replace VICTIMS' accuracies (per victim, as the effects)."""
    rows = []
    for keys, victim_acc_, base_ in _attacked(base, victim_acc):
        victim = keys["victim"]
        for granularity in GRANULARITIES:
            for i, budget in enumerate(budgets):
                for arch in SURROGATES:
                    for seed in seeds:
                        acc = (
                            base_
                            + _of(budget_slope, victim) * i
                            + _of(probs_bonus, victim) * (granularity == "probs")
                            + _of(realistic_bonus, victim) * (keys["adversary"] == "realistic")
                            + _of(arch_bonus, victim) * (arch == keys["victim_arch"])
                            + _of(adaptive_bonus, victim) * (keys["strategy"] == "adaptive")
                            + _of(spread, victim) * _sign(seed)
                        )
                        acc = float(np.clip(acc, 0.01, 0.99))
                        rows.append(
                            {
                                **keys,
                                "granularity": granularity,
                                "budget": budget,
                                "surrogate_arch": arch,
                                "surrogate_init": "scratch",
                                "seed": seed,
                                "victim_acc": victim_acc_,
                                "test_acc": acc,
                                "agreement": min(1.0, acc + 0.02),
                                "recovery": acc / victim_acc_,
                                "kl_divergence": 1.0 - acc,
                                "class_acc": [acc] * NUM_CLASSES,
                                "victim_class_acc": [victim_acc_] * NUM_CLASSES,
                            }
                        )
    frame = pd.DataFrame(rows)
    rest = [c for c in frame.columns if c not in t.AXES + t.METRICS]
    return frame[t.AXES + t.METRICS + rest].sort_values(t.AXES, kind="stable")


def defended(
    seeds=SEEDS,
    spread=0.01,
    defense_effect=0.1,
    defenses=DEFENSES,
    base=None,
    victim_acc=None,
    budget=BUDGETS[-1],
) -> pd.DataFrame:
    """The defended table (:func:`stealbench.report.tables.defended_table`, from a cell table
    written as the defense jobs write theirs) at ``budget`` (the largest), full probabilities, each
    victim's own architecture: the undefended API and every strength of ``defenses`` (a
    strength None: one the defense learns). Those of DEFENSES do not change a top-1 answer, so
    benign utility (the victim's accuracy) is the same at every strength; those of
    BENIGN_COST (NOISE) cost benign users its accuracy. The attacker loses ``defense_effect``
    per step of strength (per victim, as :func:`cells`)."""
    points = [("none", None, None, 0, 0.0)]
    for defense, (strength, values) in defenses.items():
        costs = BENIGN_COST.get(defense, (0.0,) * len(values))
        points += [
            (defense, strength, v, step, costs[step - 1]) for step, v in enumerate(values, start=1)
        ]
    rows = []
    for keys, victim_acc_, base_ in _attacked(base, victim_acc):
        victim = keys["victim"]
        for defense, strength, value, step, cost in points:
            if defense == "none":
                defense_id = "none"
            else:
                defense_id = f"{defense}@{'learned' if value is None else f'{value:g}'}"
            for seed in seeds:
                acc = base_ + 0.1 + _of(spread, victim) * _sign(seed)
                acc -= _of(defense_effect, victim) * step
                acc = float(np.clip(acc, 0.01, 0.99))
                rows.append(
                    {
                        **keys,
                        "defense": defense,
                        "strength": strength,
                        "strength_value": np.nan if value is None else float(value),
                        "defense_id": defense_id,
                        "granularity": "probs",
                        "budget": budget,
                        "surrogate_arch": keys["victim_arch"],
                        "seed": seed,
                        "test_acc": acc,
                        "agreement": acc,
                        "victim_acc": victim_acc_,
                        "recovery": acc / victim_acc_,
                        "benign_utility": victim_acc_ - cost,
                        "benign_l1": 0.01 * step,
                        "benign_top1_changed": cost,
                        "attack_top1_changed": 0.0,
                    }
                )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "defended.parquet"
        pd.DataFrame(rows).to_parquet(path)
        return t.defended_table([path], {})


def detection(realistic_flagged=None, seen_flagged=0.9, unseen_flagged=0.6) -> pd.DataFrame:
    """The pre-classifier's rows per victim: its test split, pools of a kind it saw, of one it
    never saw and of its own task, and each attack; ``realistic_flagged``: the share of the
    realistic adversary's queries flagged (default: the MNIST victim's 0.001 and the CIFAR
    victim's 0.994, the pair that a pooled verdict hid)."""
    if realistic_flagged is None:
        realistic_flagged = {"mnist-lenet": 0.001, "cifar-resnet": 0.994}
    rows = []
    for victim, (_, dataset, _, _) in VICTIMS.items():
        rows += [
            (victim, "test", dataset, "in-distribution", True, 0.03, 0.97),
            (victim, "pool", f"{dataset}-pool", "in-distribution", True, 0.03, np.nan),
            (victim, "pool", "ood-pool", "seen kind", False, _of(seen_flagged, victim), np.nan),
            (victim, "pool", "noise", "unseen kind", False, _of(unseen_flagged, victim), np.nan),
        ]
        for attack, (_, _, adversary) in ATTACKS.items():
            share = (
                _of(realistic_flagged, victim)
                if adversary == "realistic"
                else _of(seen_flagged, victim)
            )
            seen = "in-distribution" if adversary == "realistic" else "seen kind"
            rows.append((victim, "attack", attack, seen, adversary == "realistic", share, np.nan))
    columns = ["victim", "queries_from", "source", "seen", "in_distribution"]
    frame = pd.DataFrame(rows, columns=[*columns, "flagged_share", "tpr_in"])
    frame["tnr_out"] = np.where(frame["in_distribution"], np.nan, frame["flagged_share"])
    strategies = {a: s for a, (s, _, _) in ATTACKS.items()}
    frame["strategy"] = [
        strategies.get(s) if q == "attack" else None
        for q, s in zip(frame["queries_from"], frame["source"], strict=True)
    ]
    frame.insert(1, "detector_out", "ood-defender")
    frame.insert(6, "queries", 1000)
    return frame


def prada(seeds=SEEDS, flagged=None) -> pd.DataFrame:
    """PRADA's rows: one attacker stream per (victim, attack, seed) and two benign streams per
    victim (never flagged); ``flagged``: {(victim, strategy): bool} (default: only the
    out-of-distribution adaptive attackers are flagged)."""
    flagged = flagged or {}
    rows = []
    for victim in VICTIMS:
        for attack, (strategy, _, _) in ATTACKS.items():
            for seed in seeds:
                hit = flagged.get((victim, strategy), strategy == "adaptive")
                rows.append(
                    (victim, "attacker", f"{attack}-s{seed}", attack, strategy, float(seed), hit)
                )
        rows += [(victim, "benign", f"benign-test-{i}", None, None, np.nan, False) for i in (0, 1)]
    columns = ["victim", "kind", "stream", "attack", "strategy", "seed", "flagged"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.assign(
        monitor="prada",
        queries=1000,
        flagged_at=np.where(frame["flagged"], 300.0, np.nan),
        min_w=0.95,
        delta=0.96,
    )[[*columns[:6], "monitor", "queries", "flagged", "flagged_at", "min_w", "delta"]]


def second_grid(
    seeds=SEEDS,
    spread=0.01,
    realistic_flagged=None,
    prada_flagged=None,
    defense_effect=0.1,
    seen_flagged=0.9,
    unseen_flagged=0.6,
    budgets=BUDGETS,
    base=None,
    victim_acc=None,
    defenses=DEFENSES,
    **effects,
) -> dict[str, pd.DataFrame]:
    """Every report table of the second grid, by name (as results/tables/ holds them, less
    prada_curve, which needs PRADA's score traces). ``effects``: :func:`cells`' accuracy
    effects (budget_slope, probs_bonus, realistic_bonus, arch_bonus, adaptive_bonus);
    ``budgets``, ``base`` and ``victim_acc`` go to :func:`cells` (and the last two, with
    ``defenses``, to :func:`defended`, at the largest budget); the others go to
    :func:`defended`, :func:`detection` and :func:`prada`."""
    all_cells = cells(seeds, spread, budgets, base, victim_acc, **effects)
    papers: dict[str, str] = {}
    victims = t.victims_table(
        [
            {
                "victim": victim,
                "arch": arch,
                "init": "scratch",
                "dataset": dataset,
                "num_classes": NUM_CLASSES,
                "test_acc": _at(victim_acc, victim, acc),
            }
            for victim, (arch, dataset, acc, _) in VICTIMS.items()
        ]
    )
    metas = [
        {
            "victim": victim,
            "attack": attack,
            "strategy": strategy,
            "pool": pool,
            "queries": {str(s): budgets[-1] for s in seeds},
            "victim_passes": budgets[-1] * len(seeds),
            "budget": budgets[-1],
        }
        for victim in VICTIMS
        for attack, (strategy, pool, _) in ATTACKS.items()
    ]
    guarded = defended(
        seeds, spread, defense_effect, defenses, base, victim_acc, budget=budgets[-1]
    )
    return {
        **t.cell_tables(all_cells.reset_index(drop=True), victims, metas, papers),
        "detection": detection(realistic_flagged, seen_flagged, unseen_flagged),
        "prada": prada(seeds, prada_flagged),
        "defended": guarded,
        "matched_cost": t.matched_cost_table(guarded),
        "dawn": t.dawn_table(guarded),
    }
