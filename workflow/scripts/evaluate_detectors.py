"""Score one victim's detectors on every stream: the OOD pre-classifier on its test split, on
every pool and on every attacker's queries; every configured stream monitor (PRADA, ...) on
every attacker and benign stream."""

import numpy as np
import pandas as pd

from stealbench import io
from stealbench.attack import cache
from stealbench.attack.surrogates import load_victim_test
from stealbench.data import datasets
from stealbench.defense import detector, monitor
from stealbench.defense.evaluation import (
    benign_streams,
    calibration_streams,
    detection_row,
    monitor_row,
    resolve_prada_delta,
    source_kind,
)
from stealbench.models.victims import load_victim, victim_posteriors
from stealbench.runtime import derive_seed, setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
p, victim = sm.params, sm.wildcards.victim
ood = detector.load_detector(sm.input.detector, p.device)
victim_data = datasets.load(sm.input.victim_dataset)
victim_meta = io.read_json(sm.input.victim_metrics)
test = load_victim_test(victim_data, sm.input.victim_test)
task = p.tasks[victim_data.name]
seen_tasks = [p.tasks[d] for d in p.detector_out]


def kind(source_task):
    return source_kind(source_task, task, seen_tasks)


base = {"victim": victim, "detector_out": ",".join(p.detector_out)}
detection = [
    detection_row(
        ood, test.images, kind(task), **base, queries_from="test", source=victim_data.name
    )
]
for name, path in zip(p.pool_names, sm.input.pools, strict=True):
    images = datasets.load(path).split("pool")[0]
    detection.append(
        detection_row(ood, images, kind(p.tasks[name]), **base, queries_from="pool", source=name)
    )

# Every attacker's stream: its queries in order and the victim's top-1 for each.
pools = {d.name: d for d in map(datasets.load, sm.input.attack_pools)}
expect = {"victim_checksum": victim_meta["weights_checksum"]}
streams, files = {}, {}
for (attack, seed, sequential), path in zip(p.streams, sm.input.queries, strict=True):
    pool = pools[p.pools[attack]]
    if sequential:
        meta = io.read_parquet_meta(path)
        run = "probs" if "probs" in meta["granularities"] else meta["granularities"][0]
        queries = cache.load_cache(path, expect=expect, granularity=run)
    else:
        queries = cache.load_cache(path, files.get(attack, []), expect)
        files.setdefault(attack, []).append(path)
    rows = np.arange(len(queries))
    streams[(attack, seed)] = (queries.query_images(pool, rows), queries.probs)
for attack in dict.fromkeys(a for a, _ in streams):
    images = np.concatenate([np.asarray(s[0]) for (a, _), s in streams.items() if a == attack])
    detection.append(
        detection_row(
            ood,
            images,
            kind(p.tasks[p.pools[attack]]),
            **base,
            queries_from="attack",
            source=attack,
            strategy=p.strategies[attack],
        )
    )
detection = pd.DataFrame(detection)
io.write_dataframe(detection, sm.output.detection, {"kind": "detection", "victim": victim})
log.info("detection:\n%s", detection.to_string())

# Every configured monitor replays every stream, up to its own max_queries, from scratch.
settings = {name: monitor.split_settings(name, spec) for name, spec in p.monitors.items()}
model = None


def victim_model():
    global model
    if model is None:
        model = load_victim(sm.input.model, victim_meta, p.device)
    return model


def calibration_data():
    """PRADA's held-out calibration streams (see evaluation.calibration_streams)."""
    calibration = p.monitors["prada"]["calibration"]  # the schema fills every default
    images = np.asarray(victim_data.split(calibration["split"])[0])
    if not len(images):
        raise ValueError(
            f"config key 'defenses.prada.calibration.split': the victim's dataset "
            f"'{victim_data.name}' has no '{calibration['split']}' images to calibrate delta on"
        )
    answers = victim_posteriors(victim_model(), images)
    rng = np.random.default_rng(derive_seed(p.seed, "prada-calibration", victim))
    streams = calibration_streams(images, calibration["streams"], calibration["length"], rng)
    return [(images[idx], answers[idx]) for idx in streams]


calibration_info = {}
if "prada" in settings:
    params, sweep, limit = settings["prada"]
    params, calibration_info = resolve_prada_delta(
        params, p.monitors["prada"]["calibration"]["margin"], calibration_data
    )
    settings["prada"] = (params, sweep, limit)
    log.info("PRADA delta: %s", calibration_info)


def replay_all(images, answers, **axes):
    rows = []
    for name, (params, _, limit) in settings.items():
        row = monitor_row(
            name, params, np.asarray(images[:limit]), answers[:limit], victim=victim, **axes
        )
        # The delta PRADA flagged at (a number, or the one calibrated for this victim).
        row["delta"] = calibration_info["delta"] if name == "prada" else np.nan
        rows.append(row)
    return rows


monitored = []
for (attack, seed), (images, answers) in streams.items():
    monitored += replay_all(
        images,
        answers,
        kind="attacker",
        stream=f"{attack}-s{seed}",
        attack=attack,
        strategy=p.strategies[attack],
        seed=seed,
    )
    for row in monitored[-len(settings) :]:
        log.info("%s on %s seed %d: flagged at %s", row["monitor"], attack, seed, row["flagged_at"])
rng = np.random.default_rng(derive_seed(p.seed, "benign", victim))
benign = [("test", test.images, test.victim_probs)]
if sm.input.benign_sources:
    for path in sm.input.benign_sources:
        source = datasets.load(path)
        images = source.split("pool")[0]
        # Benign traffic, not an attack: these answers are not part of any query budget.
        benign.append((source.name, images, victim_posteriors(victim_model(), images)))
# Drawn as long as the longest replay: each monitor's prefix is what it would have drawn alone
# (a permutation's prefix does not depend on where it is cut).
longest = max(limit for _, _, limit in settings.values())
for source, images, answers in benign:
    length = min(p.benign["length"], longest)
    for i, idx in enumerate(benign_streams(images, p.benign["streams"], length, rng)):
        monitored += replay_all(
            images[idx],
            answers[idx],
            kind="benign",
            stream=f"benign-{source}-{i}",
            attack=None,
            strategy=None,
            seed=None,
        )
monitored = pd.DataFrame(monitored)
io.write_dataframe(
    monitored,
    sm.output.prada,
    {
        "kind": "prada",
        "victim": victim,
        "monitors": {name: params for name, (params, _, _) in settings.items()},
        "prada_delta": calibration_info,
    },
)
log.info(
    "monitored streams:\n%s",
    monitored.drop(columns=["score_steps", "score_values"]).to_string(),
)
