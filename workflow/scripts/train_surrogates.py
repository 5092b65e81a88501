"""Train the granularity x budget cells of one (victim, attack, arch, seed) job from the cache."""

import pandas as pd

from stealbench import io, surrogates
from stealbench.runtime import derive_seed, setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
w, p = sm.wildcards, sm.params
inputs = surrogates.load_attack_inputs(sm.input)
spec = surrogates.spec_from_config(w.arch, p.surrogates, p.device)
axes = surrogates.cell_axes(w, p)
granularities, budgets = p.cells
rows = []
for granularity in granularities:
    seed = derive_seed(int(w.seed), "surrogate", w.victim, w.attack, granularity, w.arch)
    for budget in budgets:
        log.info(
            "cell %s b%d: %s on the first %d of %d cached queries",
            granularity,
            budget,
            w.arch,
            budget,
            len(inputs.cache),
        )
        model, metrics = surrogates.train_surrogate(
            inputs.cache, inputs.pool, inputs.test, granularity, budget, spec, seed
        )
        if "models" in sm.output.keys():
            io.save_state_dict(model.state_dict(), f"{sm.output.models}/{granularity}-b{budget}.pt")
        rows.append({**axes, "granularity": granularity, "budget": budget, **metrics})
io.write_dataframe(
    pd.DataFrame(rows),
    sm.output.cells,
    {
        "kind": "surrogate_cells",
        "victim_checksum": inputs.victim_meta["weights_checksum"],
        "pool_checksum": inputs.pool.checksum,
        "query_cache": inputs.cache.meta,
        "training": p.surrogates["training"],
    },
)
log.info("wrote %d cells", len(rows))
