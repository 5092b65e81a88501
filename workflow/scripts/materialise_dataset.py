"""Materialise one dataset into Parquet (see stealbench.datasets)."""

from stealbench import datasets
from stealbench.runtime import setup

log = setup(snakemake, use_torch=False)  # noqa: F821 (snakemake is injected)
name = snakemake.wildcards.dataset  # noqa: F821
table, meta = datasets.materialise(name, snakemake.params.spec, snakemake.params.seed)  # noqa: F821
datasets.save(table, meta, snakemake.output[0])  # noqa: F821
log.info(
    "materialised %s: %d images %s, splits %s, checksum %s",
    name,
    table.num_rows,
    meta["shape"],
    meta["split_counts"],
    meta["checksum"],
)
