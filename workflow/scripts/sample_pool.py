"""One seed of a sampling attack: draw its sample of the pool, ask the victim for the images
no earlier seed drew, cache the whole sequence."""

import time

from stealbench import io
from stealbench.attack import cache, query
from stealbench.data import datasets
from stealbench.models.victims import load_victim
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
w, p = sm.wildcards, sm.params
victim_meta = io.read_json(sm.input.victim_metrics)
# A remote victim has no model file (its answers come through its ledger).
model = load_victim(sm.input.get("model"), victim_meta, p.device)
pool = datasets.load(sm.input.pool)
meta = query.cache_meta(w.victim, w.attack, p.attack, pool, victim_meta, p.budget)
expect = {key: meta[key] for key in ("pool_checksum", "victim_checksum")}
# The i-th earlier file may itself leave answers to the files before it.
earlier = [
    cache.load_cache(path, sm.input.earlier[:i], expect) for i, path in enumerate(sm.input.earlier)
]
seed = int(w.seed)
start = time.perf_counter()
log_ = query.sample_pool(
    p.attack["strategy"],
    model,
    pool,
    p.budget,
    seed,
    query.attacker_seed(p.seed, w.attack, seed),
    earlier,
    **p.attack["options"],
)
seconds = time.perf_counter() - start
cache.save_cache(
    log_,
    sm.output[0],
    {
        **meta,
        "earlier_seeds": [c.meta["seed"] for c in earlier],
        "seconds": seconds,
    },
)
log.info("cached %d queries; the victim answered %d of them now", p.budget, log_.victim_passes)
