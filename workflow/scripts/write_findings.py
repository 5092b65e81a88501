"""results/findings.md, computed from the tables."""

import pandas as pd

from stealbench.io import atomic_path
from stealbench.report.findings import findings
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
setup(sm, use_torch=False)
tables = {name: pd.read_parquet(path) for name, path in sm.input.items()}
text = findings(tables)
with atomic_path(sm.output[0]) as tmp:
    tmp.write_text(text)
