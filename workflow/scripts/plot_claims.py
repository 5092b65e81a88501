"""Figures: recovery vs budget with the published anchors; strategies at equal budget."""

import pandas as pd

from stealbench.paper import RECOVERY_ANCHORS
from stealbench.report.figures import plot_recovery_vs_budget, plot_strategies
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
setup(sm, use_torch=False)
out = sm.output
plot_recovery_vs_budget(
    pd.read_parquet(sm.input.summary),
    RECOVERY_ANCHORS,
    [out.recovery_vs_budget_png, out.recovery_vs_budget_svg],
)
plot_strategies(pd.read_parquet(sm.input.strategies), [out.strategies_png, out.strategies_svg])
