"""Train the init x granularity x budget cells of one (victim, attack, arch, seed) job from
what that attacker received."""

from stealbench import io
from stealbench.attack import cache, surrogates
from stealbench.models.checkpoint import JobCheckpoints
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
# Saved every checkpoint_minutes outside the outputs: the cell in training, and the cells done
# (row, model), which a rerun of a killed job takes as they are instead of training them again.
checkpoints = JobCheckpoints.for_job(sm)
save_models = "models" in sm.output.keys()
rows = []
for init in inits:
    spec = surrogates.spec_from_config(w.arch, init, p.surrogates, p.device, backbones)
    for granularity in granularities:
        for budget in budgets:
            cell = f"{init}-{granularity}-b{budget}"
            if (done := checkpoints.finished(cell)) is not None:
                row, state = done
                if save_models:
                    io.save_state_dict(state, f"{sm.output.models}/{cell}.pt")
                rows.append(row)
                continue
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
                caches[granularity],
                inputs.pool,
                inputs.test,
                granularity,
                budget,
                spec,
                model_seed,
                checkpoint=checkpoints.fit(cell),
            )
            if save_models:
                io.save_state_dict(model.state_dict(), f"{sm.output.models}/{cell}.pt")
            row = {
                **axes,
                "surrogate_init": init,
                "granularity": granularity,
                "budget": budget,
                **metrics,
            }
            rows.append(row)
            checkpoints.record(cell, row, model.state_dict() if save_models else None)
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
checkpoints.remove()  # the outputs are written: nothing left to resume
log.info("wrote %d cells", len(rows))
