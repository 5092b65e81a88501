"""Figures: the attacker's accuracy against benign cost (zoomed on the first points of benign
accuracy, the matched costs marked) and against the mean L1 perturbation of benign answers,
one line per defense through its strengths."""

import pandas as pd

from stealbench.report.figures import plot_defenses, plot_defenses_at_cost
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
setup(sm, use_torch=False)
defended = pd.read_parquet(sm.input.defended)
out = sm.output
plot_defenses_at_cost(
    defended,
    pd.read_parquet(sm.input.matched),
    [out.defense_utility_png, out.defense_utility_svg],
)
plot_defenses(
    defended,
    "benign_l1",
    "mean L1 perturbation of benign answers",
    [out.defense_perturbation_png, out.defense_perturbation_svg],
)
