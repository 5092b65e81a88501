"""One seed of a sequential attack against the API it faces (a granularity per run, behind
one defense or none); every run of the seed lands in one cache file."""

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
defense = None
if p.defense is not None:
    from stealbench import defense as defenses
    from stealbench.defense.context import build_context

    context = build_context(
        [p.defense["name"]],
        p.seed,
        w.victim,
        victim_meta,
        device=p.device,
        model_paths={name: sm.input[name] for name in sm.input.keys()},
    )
    defense = defenses.create(p.defense["name"], context, **p.defense["params"])
seed = int(w.seed)
runs, seconds, online = {}, {}, {}
test = None  # the victim's test split, loaded when a run has an online model to score
for granularity in p.granularities:
    start = time.perf_counter()
    runs[granularity] = query.run_sequential(
        p.attack["strategy"],
        model,
        pool,
        p.budget,
        seed,
        query.attacker_seed(p.seed, w.attack, seed),
        granularity,
        defense,
        p.device,
        snapshot_at=p.snapshots,
        **p.attack["options"],
    )
    seconds[granularity] = time.perf_counter() - start
    if runs[granularity].online:  # the attacker's online model (DFME's student), scored
        if test is None:
            from stealbench.attack.surrogates import load_victim_test

            test = load_victim_test(datasets.load(sm.input.victim_dataset), sm.input.victim_test)
        online[granularity] = query.online_metrics(runs[granularity].online, test)
        log.info("%s at %s: online model %s", w.attack, granularity, online[granularity])
    log.info(
        "%s at %s: %d queries in %.1f s", w.attack, granularity, p.budget, seconds[granularity]
    )
cache.save_runs(
    runs,
    sm.output[0],
    {
        **query.cache_meta(w.victim, w.attack, p.attack, pool, victim_meta, p.budget),
        "defense_id": w.defense,
        "defense": p.defense,
        "seconds": seconds,
        **({"online": online} if online else {}),
    },
)
