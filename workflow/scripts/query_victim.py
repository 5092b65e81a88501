"""Run one attack against one victim up to the largest budget; cache every response."""

from stealbench import attacks, datasets, io
from stealbench.blackbox import Blackbox
from stealbench.runtime import derive_seed, setup
from stealbench.victims import load_victim

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
victim_meta = io.read_json(sm.input.victim_metrics)
model = load_victim(sm.input.model, victim_meta, sm.params.device)
pool = datasets.load(sm.input.pool)
blackbox = Blackbox(model)
attack = sm.params.attack
seed = derive_seed(sm.params.seed, "attack", sm.wildcards.victim, sm.wildcards.attack)
log.info(
    "attack %s (%s) on %s: %d queries from pool %s",
    sm.wildcards.attack,
    attack["strategy"],
    sm.wildcards.victim,
    sm.params.budget,
    pool.name,
)
options = dict(attack["options"])
if attack["strategy"] in ("adaptive", "jbda"):
    options.setdefault("device", sm.params.device)
queries = attacks.run_attack(attack["strategy"], blackbox, pool, sm.params.budget, seed, **options)
attacks.save_cache(
    queries,
    sm.output[0],
    {
        "victim": sm.wildcards.victim,
        "victim_checksum": victim_meta["weights_checksum"],
        "attack": sm.wildcards.attack,
        "strategy": attack["strategy"],
        "options": attack["options"],
        "pool": pool.name,
        "pool_checksum": pool.checksum,
        "seed": seed,
        "budget": sm.params.budget,
        "victim_forward_passes": blackbox.queries,
    },
)
log.info(
    "cached %d responses; victim forward passes: %d", len(queries.sample_ids), blackbox.queries
)
