"""Materialise one dataset into Parquet (see stealbench.datasets and stealbench.realdata)."""

from stealbench.data import sources
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm, use_torch=False)
name = sm.wildcards.dataset
# Streams into row groups: memory stays at about one row group, whatever the dataset's size.
meta = sources.materialise_to(name, sm.params.spec, sm.params.seed, sm.output[0])
log.info(
    "materialised %s: %d images %s, splits %s, checksum %s",
    name,
    sum(meta["split_counts"].values()),
    meta["shape"],
    meta["split_counts"],
    meta["checksum"],
)
