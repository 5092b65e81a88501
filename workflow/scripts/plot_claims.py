"""Figures: accuracy vs budget per victim; recovery vs budget with the published anchors;
strategies at equal budget (one job: each figure is a second of matplotlib)."""

import pandas as pd

from stealbench.paper import RECOVERY_ANCHORS
from stealbench.report.figures import (
    plot_accuracy_vs_budget,
    plot_recovery_vs_budget,
    plot_strategies,
)
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
setup(sm, use_torch=False)
out = sm.output
summary = pd.read_parquet(sm.input.summary)
for victim in sorted(summary["victim"].unique()):
    plot_accuracy_vs_budget(
        summary, victim, [out[f"accuracy_{victim}_png"], out[f"accuracy_{victim}_svg"]]
    )
plot_recovery_vs_budget(
    summary,
    RECOVERY_ANCHORS,
    [out.recovery_vs_budget_png, out.recovery_vs_budget_svg],
)
plot_strategies(pd.read_parquet(sm.input.strategies), [out.strategies_png, out.strategies_svg])
