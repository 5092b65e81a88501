"""Figure: the attacker's accuracy against benign users' accuracy, per defense."""

import pandas as pd

from stealbench import report
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
setup(sm, use_torch=False)
report.plot_defense_tradeoff(pd.read_parquet(sm.input.defended), [sm.output.png, sm.output.svg])
