"""The detection, PRADA and defended-surrogate tables."""

import pandas as pd

from stealbench import io, report
from stealbench.defense_eval import prada_curve
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm, use_torch=False)
prada = pd.concat([pd.read_parquet(path) for path in sm.input.prada], ignore_index=True)
tables = {
    "detection": pd.concat(
        [pd.read_parquet(path) for path in sm.input.detection], ignore_index=True
    ),
    "prada": prada.drop(columns=["w_steps", "w_values"]),
    "prada_curve": prada_curve(prada, sm.params.deltas),
    "defended": report.defended_table(sm.input.defended, sm.params.victim_papers),
}
meta = io.provenance(
    [*sm.input.detection, *sm.input.prada, *sm.input.defended], deltas=sm.params.deltas
)
for name, table in tables.items():
    report.write_table(table, sm.output[name], sm.output[f"{name}_csv"], {"table": name, **meta})
    log.info("table %s: %d rows", name, len(table))
