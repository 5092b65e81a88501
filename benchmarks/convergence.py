"""Is the default schedule enough steps? The attacker at full strength needs a surrogate
trained to convergence, whatever its budget.

For the main attack of the default (mnist-lenet, random-letters) at every budget, both
granularities and 3 seeds, the same cached queries train a surrogate on three schedules: the
default (``surrogates.training``), the default with ``min_steps: 60`` (what the default used
before), and the default with twice the epochs and twice the minimum of steps. The default is
converged where doubling its steps gains less than one point of test accuracy. Written to
benchmarks/results.md between ``<!-- convergence:start -->`` and ``<!-- convergence:end -->``.

    .venv/bin/python benchmarks/convergence.py   # ~12 min on 2 cores after the default ran
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from peer import SEEDS, load, parse_args  # noqa: E402
from sections import write_section  # noqa: E402

VICTIM, ATTACK = "mnist-lenet", "random-letters"
GRANULARITIES = ("probs", "label")


def schedules(default):
    """(name, TrainConfig) for the three schedules compared."""
    return [
        ("min_steps 60", dataclasses.replace(default, min_steps=60)),
        ("default", default),
        (
            "2x steps",
            dataclasses.replace(
                default, epochs=2 * default.epochs, min_steps=2 * default.min_steps
            ),
        ),
    ]


def run(workdir: Path) -> tuple[list[dict], object]:
    from stealbench.attack import surrogates

    inputs, caches, training, cfg = load(workdir, VICTIM, ATTACK)
    budgets = cfg["attacks"][ATTACK]["budgets"]
    rows = []
    for granularity in GRANULARITIES:
        for budget in budgets:
            for name, schedule in schedules(training):
                accs = []
                for s in SEEDS:
                    seed = surrogates.surrogate_seed(cfg["seed"], VICTIM, ATTACK, "lenet", s)
                    spec = surrogates.SurrogateSpec("lenet", schedule)
                    _, metrics = surrogates.train_surrogate(
                        caches[s], inputs.pool, inputs.test, granularity, budget, spec, seed
                    )
                    accs.append(metrics["test_acc"])
                rows.append(
                    {
                        "granularity": granularity,
                        "budget": budget,
                        "schedule": name,
                        "steps": schedule.epochs_for(budget) * -(-budget // schedule.batch_size),
                        "accs": accs,
                    }
                )
                print(rows[-1], flush=True)
    return rows, training


def report(rows: list[dict], training) -> str:
    import numpy as np

    from stealbench.report.tables import ci95

    lines = [
        "| granularity | B | min_steps 60: steps, acc | default: steps, acc | "
        "2x steps: steps, acc | 2x gain | converged |",
        "|---|---:|---|---|---|---:|---|",
    ]
    gains = []
    for (granularity, budget), part in _group(rows):
        by = {r["schedule"]: r for r in part}
        cells = [
            f"{by[n]['steps']}, {np.mean(by[n]['accs']):.3f} ± {ci95(by[n]['accs']):.3f}"
            for n in ("min_steps 60", "default", "2x steps")
        ]
        gain = float(np.mean(by["2x steps"]["accs"]) - np.mean(by["default"]["accs"]))
        gains.append(gain)
        lines.append(
            f"| {granularity} | {budget} | {' | '.join(cells)} | {gain:+.3f} | "
            f"{'yes' if gain < 0.01 else '**no**'} |"
        )
    head = (
        "## Convergence: is the default schedule enough steps?\n\n"
        f"`.venv/bin/python benchmarks/convergence.py`, run {time.strftime('%Y-%m-%d %H:%M')} "
        f"on {platform.machine()}. {VICTIM} attacked by {ATTACK} (the default run's cached "
        f"queries), lenet surrogates from scratch, 3 seeds, accuracy on the victim's test split "
        f"(mean ± 95% CI). Default schedule: {training.epochs} epochs, at least "
        f"{training.min_steps} steps of {training.batch_size}, Adam lr {training.lr}. "
        f"Rule: converged where twice the steps gains under 0.01. "
        f"**{'Converged at every budget' if max(gains) < 0.01 else 'Not converged everywhere'}**"
        f" (largest gain {max(gains):+.3f}).\n"
    )
    return head + "\n" + "\n".join(lines)


def _group(rows):
    """Rows grouped by (granularity, budget), in the order they were run."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["granularity"], r["budget"]), []).append(r)
    return groups.items()


def main() -> None:
    args = parse_args(__doc__)
    rows, training = run(args.workdir)
    text = report(rows, training)
    print(text)
    if not args.no_write:
        write_section("convergence", text)


if __name__ == "__main__":
    main()
