"""Every cell in one tidy table; summaries over seeds; one table per claim; query accounting."""

from stealbench import io, report
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm, use_torch=False)
cells = report.collect_cells(sm.input.surrogate_cells)
metas = [io.read_parquet_meta(path) for path in sm.input.queries]
class_names = {m["name"]: m["classes"] for m in map(io.read_parquet_meta, sm.input.datasets)}
summary = report.summarise(cells)
papers = sm.params.victim_papers
tables = {
    "victims": report.victims_table([io.read_json(path) for path in sm.input.victims]),
    "cells": cells.drop(columns=report.PER_CLASS),
    "summary": summary,
    "per_class": report.per_class_table(cells, class_names),
    "queries": report.query_accounting(metas, cells),
    "reproduction": report.reproduction_table(summary, papers),
    "granularity": report.granularity_table(summary, papers),
    "architecture": report.architecture_table(summary, papers),
}
meta = io.provenance([*sm.input.surrogate_cells, *sm.input.queries], victim_papers=papers)
for name, table in tables.items():
    report.write_table(table, sm.output[name], sm.output[f"{name}_csv"], {"table": name, **meta})
    log.info("table %s: %d rows", name, len(table))
