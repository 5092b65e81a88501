"""Figure: surrogate accuracy vs budget for one victim."""

import pandas as pd

from stealbench import report
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
setup(sm, use_torch=False)
report.plot_accuracy_vs_budget(
    pd.read_parquet(sm.input.cells), sm.wildcards.victim, [sm.output.png, sm.output.svg]
)
