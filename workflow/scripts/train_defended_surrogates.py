"""Surrogates trained on defended APIs' answers: the same cache, transformed by each defense."""

import dataclasses

import pandas as pd

from stealbench import defense_eval, detector, io, surrogates
from stealbench.runtime import derive_seed, setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
w, p = sm.wildcards, sm.params
d = p.defended
inputs = surrogates.load_attack_inputs(sm.input)
ood = detector.load_detector(sm.input.detector, p.device)
images = inputs.cache.query_images(inputs.pool, len(inputs.cache))
spec = surrogates.spec_from_config(w.arch, p.surrogates, p.device)
rows = []
for defense in d["defenses"]:
    params = d["params"].get(defense, {})
    # One defended answer per cached query, fixed across surrogate seeds: the API's doing.
    answers, flagged = defense_eval.defended_answers(
        inputs.cache.probs,
        images,
        defense,
        derive_seed(p.seed, "defense", w.victim, w.attack, defense),
        ood,
        params,
    )
    utility = defense_eval.utility(
        inputs.test.victim_probs,
        inputs.test.images,
        inputs.test.labels,
        defense,
        derive_seed(p.seed, "utility", w.victim, defense),
        ood,
        params,
    )
    log.info(
        "defense %s: %.1f%% of queries flagged; benign utility %.4f",
        defense,
        100 * flagged,
        utility,
    )
    cache = dataclasses.replace(inputs.cache, probs=answers)
    axes = {**surrogates.cell_axes(w, p), "defense": defense}
    for granularity in d["granularities"]:
        seed = derive_seed(int(w.seed), "surrogate", w.victim, w.attack, granularity, w.arch)
        for budget in sorted(d["budgets"]):
            _, metrics = surrogates.train_surrogate(
                cache, inputs.pool, inputs.test, granularity, budget, spec, seed
            )
            rows.append(
                {
                    **axes,
                    "granularity": granularity,
                    "budget": budget,
                    **metrics,
                    "benign_utility": utility,
                    "flagged_share": flagged,
                }
            )
io.write_dataframe(
    pd.DataFrame(rows),
    sm.output.cells,
    {
        "kind": "defended_cells",
        "victim_checksum": inputs.victim_meta["weights_checksum"],
        "pool_checksum": inputs.pool.checksum,
        "defenses": d["defenses"],
        "params": d["params"],
    },
)
