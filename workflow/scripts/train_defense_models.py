"""Train the models a defended victim's API and its verification need beyond the detector:
every model the configured defenses declare in ``needs``, each by the builder registered for
it (stealbench.defense.registry.DEFENSE_MODELS)."""

import functools

import numpy as np

from stealbench import io
from stealbench.data import datasets
from stealbench.defense import DEFENSE_MODELS, ModelJob
from stealbench.models.victims import load_victim
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
p = sm.params
job = ModelJob(
    victim=sm.wildcards.victim,
    victim_data=datasets.load(sm.input.victim_dataset),
    load_victim=functools.cache(
        lambda: load_victim(sm.input.model, io.read_json(sm.input.victim_metrics), p.device)
    ),
    outlier=[np.asarray(datasets.load(path).split("train")[0]) for path in sm.input.outlier],
    params=p,
    seed=p.seed,
    device=p.device,
    log=log,
)
seconds = {}
for model in sm.output.keys():
    if model != "models_info":
        seconds.update(DEFENSE_MODELS[model](job, sm.output[model]))
io.write_json({"victim": job.victim, "train_seconds": seconds}, sm.output.models_info)
