"""Every cell in one tidy table; summaries over seeds; one table per claim; query accounting."""

from stealbench import io
from stealbench.report import tables as t
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm, use_torch=False)
metas = [io.read_parquet_meta(path) for path in sm.input.queries]
cells = t.add_online(t.collect_cells(sm.input.surrogate_cells), metas)
class_names = {m["name"]: m["classes"] for m in map(io.read_parquet_meta, sm.input.datasets)}
summary = t.summarise(cells)
papers = sm.params.victim_papers
victims = t.victims_table([io.read_json(path) for path in sm.input.victims])
tables = {
    "victims": victims,
    "cells": cells.drop(columns=t.PER_CLASS),
    "summary": summary,
    "per_class": t.per_class_table(cells, class_names),
    "queries": t.query_accounting(metas, cells),
    "reproduction": t.reproduction_table(summary, papers),
    "budget": t.budget_table(summary),
    "published": t.published_table(),
    "pretraining": t.pretraining_table(summary, victims),
    "granularity": t.granularity_table(summary, papers),
    "architecture": t.architecture_table(summary, papers),
    "strategies": t.strategies_table(summary),
}
meta = io.provenance([*sm.input.surrogate_cells, *sm.input.queries], victim_papers=papers)
for name, table in tables.items():
    t.write_table(table, sm.output[name], sm.output[f"{name}_csv"], {"table": name, **meta})
    log.info("table %s: %d rows", name, len(table))
