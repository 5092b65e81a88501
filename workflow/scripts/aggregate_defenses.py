"""The detection, PRADA, defended-surrogate and DAWN tables."""

import pandas as pd

from stealbench import io
from stealbench.defense.evaluation import prada_curve
from stealbench.report import tables as t
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm, use_torch=False)
prada = pd.concat([pd.read_parquet(path) for path in sm.input.prada], ignore_index=True)
defended = t.defended_table(sm.input.defended, sm.params.victim_papers)
tables = {
    "detection": pd.concat(
        [pd.read_parquet(path) for path in sm.input.detection], ignore_index=True
    ),
    "prada": prada.drop(columns=["w_steps", "w_values"]),
    "prada_curve": prada_curve(prada, sm.params.deltas),
    "defended": defended,
    "dawn": t.dawn_table(defended),
}
meta = io.provenance(
    [*sm.input.detection, *sm.input.prada, *sm.input.defended], deltas=sm.params.deltas
)
for name, table in tables.items():
    t.write_table(table, sm.output[name], sm.output[f"{name}_csv"], {"table": name, **meta})
    log.info("table %s: %d rows", name, len(table))
