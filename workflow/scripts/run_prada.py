"""Replay PRADA over every attacker stream and every benign stream of one victim."""

import numpy as np
import pandas as pd

from stealbench import attacks, datasets, io
from stealbench.defense_eval import benign_streams, prada_rows
from stealbench.runtime import derive_seed, setup
from stealbench.surrogates import load_victim_test
from stealbench.training import predict_proba
from stealbench.victims import load_victim

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
p, victim = sm.params, sm.wildcards.victim
params = {k: v for k, v in p.prada.items() if k != "deltas"}
victim_data = datasets.load(sm.input.victim_dataset)
test = load_victim_test(victim_data, sm.input.victim_test)
rows = []
for attack, cache_path, pool_path in zip(
    p.attacks, sm.input.queries, sm.input.attack_pools, strict=True
):
    pool = datasets.load(pool_path)
    cache = attacks.load_cache(cache_path, expect={"pool_checksum": pool.checksum})
    rows.append(
        prada_rows(
            cache.query_images(pool, len(cache)),
            cache.probs.argmax(1),
            params,
            victim=victim,
            kind="attacker",
            stream=attack,
            attack=attack,
            strategy=p.strategies[attack],
        )
    )
    log.info("PRADA on %s: flagged=%s at %s", attack, rows[-1]["flagged"], rows[-1]["flagged_at"])
rng = np.random.default_rng(derive_seed(p.seed, "benign", victim))
benign = [("test", test.images, test.victim_probs.argmax(1))]
if sm.input.benign_sources:
    model = load_victim(sm.input.model, io.read_json(sm.input.victim_metrics), p.device)
    for path in sm.input.benign_sources:
        source = datasets.load(path)
        images = source.split("pool")[0]
        # Benign traffic, not an attack: these answers are not part of any query budget.
        benign.append((source.name, images, predict_proba(model, images).argmax(1)))
for source, images, predicted in benign:
    for i, idx in enumerate(benign_streams(images, p.benign["streams"], p.benign["length"], rng)):
        rows.append(
            prada_rows(
                images[idx],
                predicted[idx],
                params,
                victim=victim,
                kind="benign",
                stream=f"benign-{source}-{i}",
                attack=None,
                strategy=None,
            )
        )
table = pd.DataFrame(rows)
io.write_dataframe(table, sm.output[0], {"kind": "prada", "victim": victim, "params": params})
log.info("PRADA streams:\n%s", table.drop(columns=["w_steps", "w_values"]).to_string())
