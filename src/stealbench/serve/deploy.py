"""A victim the workflow built, behind a defense instance of the config, as a served model.

:func:`served_victim` loads ``results/victims/<name>/model.pt`` (checked against its
``metrics.json``), builds defense instance ``defense_id`` of the config's defense grid (the
ids of :func:`stealbench.config.defense_instances`, e.g. ``dawn``, ``reverse-sigmoid@0.5``)
with the models the workflow trained for it (``results/defenses/<name>/<model>.pt``) and the
owner's key derived from the config's seed, exactly as ``run_attack`` builds the API a
sequential attacker faces: the service answers as the benchmark's API does.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np

from .app import ServedModel


class DeployError(ValueError):
    """A victim or defense the service cannot be built from; the message names the option."""


def unknown(option: str, name: str, allowed) -> DeployError:
    """An error for an unknown ``name`` of ``option``: the allowed values, a did-you-mean."""
    allowed = sorted(set(allowed))
    close = difflib.get_close_matches(name, allowed, n=1)
    if not close:  # a defense's name without its strength, or misspelt: its instances
        bases = {a.split("@")[0]: a for a in allowed}
        near = difflib.get_close_matches(name.split("@")[0], list(bases), n=1)
        close = [a for a in allowed if near and a.split("@")[0] == near[0]]
    hint = f" (did you mean '{' or '.join(close)}'?)" if close else ""
    return DeployError(
        f"{option}: unknown value '{name}'{hint}; allowed: {', '.join(allowed) or 'none'}"
    )


def image_shape(meta: dict, results: Path) -> tuple[int, int, int]:
    """(H, W, C) of the images a victim takes: its metrics' ``image_shape`` if it has one,
    else the shape of its dataset as the workflow materialised it."""
    if meta.get("image_shape"):
        return tuple(int(d) for d in meta["image_shape"])
    from ..io import read_parquet_meta

    path = results / "data" / f"{meta['dataset']}.parquet"
    if not path.exists():
        raise DeployError(
            f"--results: {path} is missing; the served image shape is that of the victim's "
            f"dataset {meta['dataset']!r} (run the workflow's materialise job)"
        )
    return tuple(int(d) for d in read_parquet_meta(path)["shape"])


def served_victim(
    config: dict,
    victim: str,
    results: str | Path = "results",
    defense_id: str | None = None,
    granularity: str = "probs",
    device: str = "cpu",
) -> ServedModel:
    """Victim ``victim`` of a validated ``config`` from ``results``, behind its defense instance
    ``defense_id`` (None or "none": undefended), answering at ``granularity``."""
    from .. import io
    from ..attack.api import parse_granularity
    from ..config import defense_instances, defense_models
    from ..models.victims import load_victim, victim_posteriors

    if victim not in config["victims"]:
        raise unknown("--victim", victim, config["victims"])
    try:
        parse_granularity(granularity)
    except ValueError as err:
        raise DeployError(f"--granularity: {err}") from None
    results = Path(results)
    folder = results / "victims" / victim
    for name in ("model.pt", "metrics.json"):
        if not (folder / name).exists():
            raise DeployError(
                f"--results: {folder / name} is missing; run the workflow's train_victim job "
                f"for {victim!r} (or point --results at the workflow's results folder)"
            )
    meta = io.read_json(folder / "metrics.json")
    model = load_victim(folder / "model.pt", meta, device)
    defense, info = None, {"victim": victim}
    if defense_id not in (None, "none"):
        instances = {d.id: d for d in defense_instances(config)}
        if defense_id not in instances:
            raise unknown("--defense", defense_id, ["none", *instances])
        instance = instances[defense_id]
        from ..defense import create
        from ..defense.context import build_context

        paths = {
            m: results / "defenses" / victim / f"{m}.pt"
            for m in defense_models([instance.name], api_only=True)
        }
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise DeployError(
                f"--defense {defense_id}: {', '.join(missing)} missing; run the workflow's "
                f"defense stage for {victim!r}"
            )
        context = build_context([instance.name], config["seed"], victim, meta, device, paths)
        defense = create(instance.name, context, **instance.params)
        info["defense"] = defense_id

    def posteriors(images: np.ndarray) -> np.ndarray:
        return victim_posteriors(model, images)

    return ServedModel(
        name=victim,
        posteriors=posteriors,
        image_shape=image_shape(meta, results),
        num_classes=int(meta["num_classes"]),
        granularity=granularity,
        defense=defense,
        info=info,
    )


def monitor_settings(
    config: dict, monitor: str, victim: str | None = None, results: str | Path = "results"
) -> dict:
    """A stream monitor's constructor parameters from the config's ``defenses.<monitor>``
    section (its sweep and replay length left out); the monitor's defaults without one.

    PRADA's ``delta: calibrate`` is read back from the workflow's choice for ``victim``
    (``results/defenses/<victim>/prada.parquet``, written by evaluate_detectors)."""
    from ..defense.monitor import split_settings

    section = (config.get("defenses") or {}).get(monitor) or {}
    params, _, _ = split_settings(monitor, section)
    if monitor == "prada" and params.get("delta") == "calibrate":
        path = Path(results) / "defenses" / str(victim) / "prada.parquet"
        chosen = None
        if path.exists():
            from ..io import read_parquet_meta

            chosen = (read_parquet_meta(path).get("prada_delta") or {}).get("delta")
        if chosen is None:
            raise ValueError(
                f"config key 'defenses.prada.delta': 'calibrate' needs the delta the workflow "
                f"chose for victim {victim!r} ({path}, from its evaluate_detectors job); run "
                f"that job, or set a number in [0, 1]"
            )
        params = {**params, "delta": float(chosen)}
    return params
