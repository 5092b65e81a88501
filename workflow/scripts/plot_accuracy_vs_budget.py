"""Figure: surrogate accuracy vs budget for one victim (bands: 95% CI over seeds)."""

import pandas as pd

from stealbench.report.figures import plot_accuracy_vs_budget
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
setup(sm, use_torch=False)
plot_accuracy_vs_budget(
    pd.read_parquet(sm.input.summary), sm.wildcards.victim, [sm.output.png, sm.output.svg]
)
