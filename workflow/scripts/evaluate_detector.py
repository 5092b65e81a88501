"""Score the pre-classifier on every pool and every attacker stream of one victim."""

import pandas as pd

from stealbench import attacks, datasets, detector, io
from stealbench.defense_eval import detection_row
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
p = sm.params
ood = detector.load_detector(sm.input.detector, p.device)
victim_data = datasets.load(sm.input.victim_dataset)
task = p.tasks[victim_data.name]
base = {"victim": sm.wildcards.victim, "detector_out": p.out}
rows = [
    detection_row(
        ood,
        victim_data.split("test")[0],
        True,
        **base,
        queries_from="test",
        source=victim_data.name,
        kind="victim test split",
    )
]
for name, path in zip(p.pool_names, sm.input.pools, strict=True):
    pool = datasets.load(path)
    same_task = task is not None and p.tasks[name] == task
    rows.append(
        detection_row(
            ood,
            pool.split("pool")[0],
            same_task,
            **base,
            queries_from="pool",
            source=name,
            kind="pool split",
        )
    )
for attack, cache_path, pool_path in zip(
    p.attacks, sm.input.queries, sm.input.attack_pools, strict=True
):
    pool = datasets.load(pool_path)
    cache = attacks.load_cache(cache_path, expect={"pool_checksum": pool.checksum})
    same_task = task is not None and p.tasks[pool.name] == task
    rows.append(
        detection_row(
            ood,
            cache.query_images(pool, len(cache)),
            same_task,
            **base,
            queries_from="attack",
            source=attack,
            kind=cache.meta["strategy"],
        )
    )
table = pd.DataFrame(rows)
io.write_dataframe(table, sm.output[0], {"kind": "detection", "victim": sm.wildcards.victim})
log.info("detection:\n%s", table.to_string())
