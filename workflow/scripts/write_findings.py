"""results/findings.json (each finding's verdict, rule and numbers) and results/findings.md
(their prose), computed from the tables in one job so the two always agree."""

import pandas as pd

from stealbench.io import atomic_path, write_json
from stealbench.report.findings import findings, findings_json, findings_markdown
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
setup(sm, use_torch=False)
tables = {name: pd.read_parquet(path) for name, path in sm.input.items()}
found = findings(tables)
write_json(findings_json(found), sm.output.json)
with atomic_path(sm.output.md) as tmp:
    tmp.write_text(findings_markdown(found, tables))
