"""Train the budget sweep of one (victim, attack, granularity, arch, seed) from the cache."""

import numpy as np

from stealbench import attacks, datasets, io
from stealbench.runtime import derive_seed, setup
from stealbench.surrogates import VictimTestSet, train_surrogate
from stealbench.training import TrainConfig

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
w, p = sm.wildcards, sm.params
pool = datasets.load(sm.input.pool)
victim_data = datasets.load(sm.input.victim_dataset)
victim_test, test_meta = io.read_parquet(sm.input.victim_test, kind="victim_test_outputs")
victim_meta = io.read_json(sm.input.victim_metrics)
cache = attacks.load_cache(
    sm.input.queries,
    expect={"pool_checksum": pool.checksum, "victim_sha256": victim_meta["model_sha256"]},
)
test_ids = victim_test.column("id").to_numpy()
probs = victim_test.column("probs").combine_chunks()
test = VictimTestSet(
    images=victim_data.images[test_ids],
    labels=victim_test.column("label").to_numpy().astype(np.int64),
    victim_probs=probs.flatten().to_numpy().reshape(len(probs), -1),
)
if test_meta["dataset_checksum"] != victim_data.checksum:
    raise io.ArtefactError(
        f"{sm.input.victim_test} was made from another version of "
        f"{victim_data.name}; rerun the victim"
    )
cfg = TrainConfig.from_dict(p.surrogates["training"])
seed = derive_seed(int(w.seed), "surrogate", w.victim, w.attack, w.granularity, w.arch)
axes = {
    "victim": w.victim,
    "victim_arch": p.victim["arch"],
    "dataset": p.victim["dataset"],
    "attack": w.attack,
    "strategy": p.attack["strategy"],
    "pool": p.attack["pool"],
    "adversary": "realistic" if p.realistic else "out-of-distribution",
    "granularity": w.granularity,
    "surrogate_arch": w.arch,
    "seed": int(w.seed),
}
for budget, path in zip(p.budgets, sm.output.metrics, strict=True):
    log.info(
        "training %s on the first %d of %d cached queries at granularity %s",
        w.arch,
        budget,
        len(cache),
        w.granularity,
    )
    _, metrics = train_surrogate(
        cache,
        pool,
        test,
        w.granularity,
        budget,
        w.arch,
        cfg,
        seed,
        p.surrogates["val_fraction"],
        p.device,
    )
    io.write_json(
        {
            **axes,
            "budget": budget,
            **metrics,
            "victim_sha256": cache.meta["victim_sha256"],
            "pool_checksum": pool.checksum,
        },
        path,
    )
