"""The detection, PRADA, defended-surrogate, matched-cost and DAWN tables."""

import pandas as pd

from stealbench import io
from stealbench.defense import monitor
from stealbench.defense.evaluation import monitor_curve
from stealbench.report import tables as t
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm, use_torch=False)
# Every configured stream monitor's rows (the `monitor` column); the curve sweeps each one's
# threshold over the values its config section lists.
prada = pd.concat([pd.read_parquet(path) for path in sm.input.prada], ignore_index=True)
sweeps = {name: monitor.split_settings(name, spec)[1] for name, spec in sm.params.monitors.items()}
defended = t.defended_table(sm.input.defended, sm.params.victim_papers)
tables = {
    "detection": pd.concat(
        [pd.read_parquet(path) for path in sm.input.detection], ignore_index=True
    ),
    "prada": prada.drop(columns=["score_steps", "score_values"]),
    "prada_curve": monitor_curve(prada, sweeps),
    "defended": defended,
    "matched_cost": t.matched_cost_table(defended),
    "dawn": t.dawn_table(defended),
}
meta = io.provenance([*sm.input.detection, *sm.input.prada, *sm.input.defended], sweeps=sweeps)
for name, table in tables.items():
    t.write_table(table, sm.output[name], sm.output[f"{name}_csv"], {"table": name, **meta})
    log.info("table %s: %d rows", name, len(table))
