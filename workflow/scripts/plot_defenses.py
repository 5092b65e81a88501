"""Figures: the attacker's accuracy against benign utility and against the mean L1
perturbation of benign answers, one line per defense through its strengths."""

import pandas as pd

from stealbench.report.figures import plot_defenses
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
setup(sm, use_torch=False)
defended = pd.read_parquet(sm.input.defended)
out = sm.output
plot_defenses(
    defended,
    "benign_utility",
    "benign users' accuracy through the defended API",
    [out.defense_utility_png, out.defense_utility_svg],
)
plot_defenses(
    defended,
    "benign_l1",
    "mean L1 perturbation of benign answers",
    [out.defense_perturbation_png, out.defense_perturbation_svg],
)
