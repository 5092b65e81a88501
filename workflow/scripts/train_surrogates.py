"""Train the init x granularity x budget cells of one (victim, attack, arch, seed) job from
what that attacker received."""

from stealbench import io
from stealbench.attack import cache, surrogates
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
w, p = sm.wildcards, sm.params
inputs = surrogates.load_attack_inputs(sm.input)
backbones = surrogates.load_backbones(p.backbones)
axes = surrogates.cell_axes(w, p)
inits, granularities, budgets = p.cells
seed = int(w.seed)
# One initial draw per (victim, attack, arch, seed), shared by its cells: paired comparisons.
model_seed = surrogates.surrogate_seed(p.seed, w.victim, w.attack, w.arch, seed)
if p.sequential:  # one run per granularity: what that attacker chose from its answers
    caches = {
        g: cache.load_cache(sm.input.queries, expect=inputs.expect, granularity=g)
        for g in granularities
    }
else:  # one sample of the pool serves every granularity
    shared = cache.load_cache(sm.input.queries, sm.input.earlier, inputs.expect)
    caches = dict.fromkeys(granularities, shared)
rows = []
for init in inits:
    spec = surrogates.spec_from_config(w.arch, init, p.surrogates, p.device, backbones)
    for granularity in granularities:
        for budget in budgets:
            log.info(
                "cell %s %s b%d: %s on the first %d queries of seed %d",
                init,
                granularity,
                budget,
                w.arch,
                budget,
                seed,
            )
            model, metrics = surrogates.train_surrogate(
                caches[granularity], inputs.pool, inputs.test, granularity, budget, spec, model_seed
            )
            if "models" in sm.output.keys():
                io.save_state_dict(
                    model.state_dict(), f"{sm.output.models}/{init}-{granularity}-b{budget}.pt"
                )
            rows.append(
                {
                    **axes,
                    "surrogate_init": init,
                    "granularity": granularity,
                    "budget": budget,
                    **metrics,
                }
            )
io.write_rows(
    rows,
    sm.output.cells,
    {
        "kind": "surrogate_cells",
        **inputs.expect,
        "query_cache": caches[granularities[0]].meta,
        "training": p.surrogates,
    },
)
log.info("wrote %d cells", len(rows))
