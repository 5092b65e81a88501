"""Every cell in one tidy table; summaries over seeds; one table per claim; query accounting."""

from stealbench import io
from stealbench.report import tables as t
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm, use_torch=False)
metas = [io.read_parquet_meta(path) for path in sm.input.queries]
cells = t.add_online(t.collect_cells(sm.input.surrogate_cells), metas)
class_names = {m["name"]: m["classes"] for m in map(io.read_parquet_meta, sm.input.datasets)}
papers = sm.params.victim_papers
victims = t.victims_table([io.read_json(path) for path in sm.input.victims])
tables = t.cell_tables(cells, victims, metas, papers, class_names)
meta = io.provenance([*sm.input.surrogate_cells, *sm.input.queries], victim_papers=papers)
for name, table in tables.items():
    t.write_table(table, sm.output[name], sm.output[f"{name}_csv"], {"table": name, **meta})
    log.info("table %s: %d rows", name, len(table))
