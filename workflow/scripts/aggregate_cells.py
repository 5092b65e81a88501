"""Collect every cell's metrics into one tidy table; account for victim queries."""

from stealbench import io, report
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm, use_torch=False)
cells = report.collect_cells(sm.input.metrics)
metas = [io.read_parquet(path, kind="query_cache")[1] for path in sm.input.queries]
queries = report.query_accounting(metas, cells)
report.write_table(cells, sm.output.cells, sm.output.cells_csv)
report.write_table(queries, sm.output.queries, sm.output.queries_csv)
log.info(
    "%d cells, %d query caches, %d victim forward passes",
    len(cells),
    len(queries),
    queries["victim_forward_passes"].sum(),
)
