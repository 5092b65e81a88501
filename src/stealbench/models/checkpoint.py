"""Checkpoints inside long training jobs: a job saves its state every N minutes, atomically,
and a rerun (after a kill, a time limit or a SLURM preemption) resumes from it, to the final
weights and table of an uninterrupted run, bit for bit on CPU.

Two levels:

- :class:`Checkpointer`: one :func:`~stealbench.models.training.fit` call's state in one file
  (model, optimiser, generators, the epoch's order and position, the running loss, the best
  epoch so far and the history, how many outliers were drawn), saved at a step or epoch
  boundary once ``every_seconds`` have passed since the last save;
- :class:`JobCheckpoints`: a workflow job's directory, ``results/checkpoints/<rule>/<wildcards>/``
  (never a rule's output: Snakemake deletes a failed job's outputs), with a fit file per cell
  being trained and the finished cells' results (table row, model), so that a job training
  many cells in sequence skips those already done. The job removes the directory once its
  outputs are written.

Files are written as every stealbench artefact (a temporary sibling renamed into place:
:func:`stealbench.io.save_state_dict`) and read with ``torch.load(weights_only=True)``: they
hold tensors, dicts, lists and primitives only. A checkpoint records a fingerprint of what it
continues (the training config, seed, data sizes, targets, initial weights; for a job, its
rule, wildcards, parameters and inputs); a checkpoint of anything else is refused, never
resumed.

Torch is imported by the functions that need it, so that the rules can import this module to
plan without loading torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

from ..io import ArtefactError

log = logging.getLogger(__name__)

#: The checkpoint layout's version; a file of another version is refused.
FORMAT = 1
#: Where a workflow job's checkpoint directory lives (under the working directory).
ROOT = Path("results") / "checkpoints"


class CheckpointMismatch(ArtefactError):
    """A checkpoint of another training (or a version of this code) than the one starting."""


@dataclasses.dataclass(frozen=True)
class CheckpointPlan:
    """A job's checkpoint directory and how often it saves (0 minutes: never).

    A rule passes it as a param. Being no builtin type, Snakemake does not record it among
    the params that trigger a rerun: changing ``checkpoint_minutes`` reruns no finished job.
    """

    directory: str
    minutes: float

    @classmethod
    def for_rule(cls, config: dict, rule: str, wildcards) -> CheckpointPlan:
        parts = [str(value) for value in dict(wildcards.items()).values()]
        return cls(str(ROOT.joinpath(rule, *parts)), float(config["checkpoint_minutes"]))


class Clock:
    """When the last save happened (shared by a job's checkpointers: one save per N minutes)."""

    def __init__(self):
        self.last = time.monotonic()

    def due(self, every_seconds: float | None) -> bool:
        """Whether ``every_seconds`` have passed since the last save (None: never due)."""
        return every_seconds is not None and time.monotonic() - self.last >= every_seconds

    def saved(self) -> None:
        self.last = time.monotonic()


class Checkpointer:
    """One fit's state in ``path``, saved when ``every_seconds`` have passed since the last
    save (``0``: at every step boundary, as the tests use it; ``None``: never)."""

    def __init__(
        self, path, every_seconds: float | None, clock: Clock | None = None, before_save=None
    ):
        self.path = Path(path)
        self.every_seconds = every_seconds
        self.clock = clock or Clock()
        self.before_save = before_save  # e.g. a job writing its finished cells first

    def due(self) -> bool:
        return self.clock.due(self.every_seconds)

    def save(self, state: dict) -> None:
        if self.before_save is not None:
            self.before_save()
        _save({"format": FORMAT, **state}, self.path)
        self.clock.saved()
        log.info("checkpoint %s: epoch %s, step %s", self.path, state.get("epoch"), state["step"])

    def load(self, fingerprint: str) -> dict | None:
        """The saved state, or None without a file; refuse a checkpoint of another training."""
        if not self.path.exists():
            return None
        state = _load(self.path)
        if state.get("format") != FORMAT or state.get("fingerprint") != fingerprint:
            raise CheckpointMismatch(
                f"{self.path}: a checkpoint of another training run (other config, seed, data "
                f"or initial weights, or another stealbench version); delete it to start afresh"
            )
        log.info("resuming from %s: epoch %d, step %d", self.path, state["epoch"], state["step"])
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _save(value, path, kind=None) -> None:
    """Write atomically (stealbench.io); once more if another job finishing removed an empty
    directory of the path meanwhile (:meth:`JobCheckpoints.remove`)."""
    from ..io import save_state_dict, write_json

    for attempt in (1, 2):
        try:
            return write_json(value, path) if kind is json else save_state_dict(value, path)
        except FileNotFoundError:
            if attempt == 2:
                raise


def _load(path) -> dict:
    from ..io import load_state_dict

    try:
        return load_state_dict(path)
    except Exception as err:  # unpickling errors come in many types
        raise CheckpointMismatch(f"{path}: not a readable checkpoint ({err}); delete it") from err


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()


def fingerprint(model, n, targets, val_labels, cfg, seed, desc, outliers, outlier_weight) -> str:
    """What a fit checkpoint continues: the training config, seed, sizes of the training,
    validation and outlier data, the targets and validation labels, and the initial weights
    (which pin the architecture and its start). The images themselves are not hashed (a
    lazy store can be tens of GB); their count and the targets are."""
    import numpy as np

    from ..io import state_dict_checksum

    def array(values):
        if values is None:
            return None
        values = np.ascontiguousarray(np.asarray(values))
        return [str(values.dtype), values.shape, hashlib.sha256(values.tobytes()).hexdigest()]

    return _digest(
        {
            "format": FORMAT,
            "config": dataclasses.asdict(cfg),
            "seed": seed,
            "desc": desc,
            "n": n,
            "targets": array(targets),
            "val_labels": array(val_labels),
            "outliers": None if outliers is None else len(outliers),
            "outlier_weight": outlier_weight,
            "weights": state_dict_checksum(model.state_dict()),
        }
    )


def capture(model, optimizer, step, generator, key: str, start: float, loop: dict) -> dict:
    """fit's state at a step or epoch boundary: ``loop`` (epoch, step, order, total, history,
    best_*, stale, outliers_drawn) with the model, optimiser, fp16 loss scale (``step``: fit's
    :class:`~stealbench.models.training.Step`), generators and global random states."""
    import numpy as np
    import torch

    def cpu(value):
        return None if value is None else value.detach().cpu()

    best = loop.get("best_state")
    state = {
        **loop,
        "fingerprint": key,
        "seconds": time.perf_counter() - start,
        "order": cpu(loop["order"]),
        "total": cpu(loop["total"]),
        "best_state": None if best is None else {k: cpu(v) for k, v in best.items()},
        "model": {k: cpu(v) for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        # Dropout and other layers draw from the global generators.
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": _numpy_global_state(np.random.get_state()),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "scaler": None if step.scaler is None else step.scaler.state_dict(),
    }
    return state


def restore(state: dict, model, optimizer, step, generator) -> None:
    """Put ``state`` (from :func:`capture`) back into the model, optimiser and generators."""
    import numpy as np
    import torch

    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    kind, keys, pos, has_gauss, cached = state["numpy_rng"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if state["scaler"]:  # fp16's loss scale and its growth count (empty before a step)
        step.scaler.load_state_dict(state["scaler"])


def _numpy_global_state(state) -> tuple:
    import torch

    kind, keys, pos, has_gauss, cached = state
    # uint32 keys as int64: a tensor type torch.load(weights_only=True) reads everywhere
    return (kind, torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(cached))


class JobCheckpoints:
    """A workflow job's checkpoints: ``fit/<cell>.pt`` while a cell trains, ``cells/<cell>.pt``
    (its table row and, if kept, its model) once it is done, and ``job.json`` (the job's
    fingerprint). One clock for the job: at most one save per ``minutes``, the finished cells
    written before a fit state. A directory left by another version of the job (other
    parameters or inputs) is deleted on start, with a warning. ``minutes`` 0: nothing saved.
    """

    def __init__(self, plan: CheckpointPlan, identity: dict):
        self.directory = Path(plan.directory)
        self.every_seconds = plan.minutes * 60 if plan.minutes > 0 else None
        self.fingerprint = _digest({"format": FORMAT, **identity})
        self.clock = Clock()
        self.pending: dict[str, dict] = {}  # finished cells not yet on disk
        manifest = self.directory / "job.json"
        if self.directory.exists():
            try:
                found = json.loads(manifest.read_text())["fingerprint"]
            except (OSError, ValueError, KeyError):
                found = None
            if found != self.fingerprint:
                log.warning(
                    "%s: checkpoints of another version of this job; deleted", self.directory
                )
                shutil.rmtree(self.directory)
            else:
                log.info("%s: resuming this job from its checkpoints", self.directory)

    @classmethod
    def for_job(cls, snakemake) -> JobCheckpoints:
        """A job's checkpoints: its plan from the rule's ``checkpoints`` param, its identity
        from its rule, wildcards, other params and inputs (size and modification time)."""
        params = dict(snakemake.params.items())
        plan = params.pop("checkpoints")
        inputs = {}
        for path in map(str, snakemake.input):
            stat = os.stat(path)
            inputs[path] = [stat.st_size, stat.st_mtime_ns]
        identity = {
            "rule": snakemake.rule,
            "wildcards": dict(snakemake.wildcards.items()),
            "params": params,
            "inputs": inputs,
        }
        return cls(plan, identity)

    @property
    def enabled(self) -> bool:
        return self.every_seconds is not None

    def fit(self, cell: str) -> Checkpointer | None:
        """The checkpointer of the fit training ``cell`` (None when checkpoints are off)."""
        if not self.enabled:
            return None
        return Checkpointer(
            self.directory / "fit" / f"{cell}.pt", self.every_seconds, self.clock, self.flush
        )

    def finished(self, cell: str) -> tuple[dict, dict | None] | None:
        """A cell finished by an earlier run of this job: (row, model state or None)."""
        path = self.directory / "cells" / f"{cell}.pt"
        if not self.enabled or not path.exists():
            return None
        saved = _load(path)
        log.info("cell %s: finished by an earlier run, its result reused", cell)
        return json.loads(saved["row"]), saved["model"]

    def record(self, cell: str, row: dict, model_state: dict | None = None) -> None:
        """A cell is done: keep its result, written with the next save (now if one is due)."""
        if not self.enabled:
            return
        # JSON keeps the row's key order and turns numpy scalars into Python ones, which
        # torch.load(weights_only=True) would refuse.
        text = json.dumps(row, default=_plain)
        state = (
            None if model_state is None else {k: v.detach().cpu() for k, v in model_state.items()}
        )
        self.pending[cell] = {"row": text, "model": state}
        if self.clock.due(self.every_seconds):
            self.flush()
            self.clock.saved()

    def flush(self) -> None:
        """Write the finished cells kept so far (and the job's fingerprint before anything)."""
        manifest = self.directory / "job.json"
        if not manifest.exists():
            _save({"fingerprint": self.fingerprint, "format": FORMAT}, manifest, json)
        for cell, result in self.pending.items():
            _save(result, self.directory / "cells" / f"{cell}.pt")
            (self.directory / "fit" / f"{cell}.pt").unlink(missing_ok=True)  # superseded
        self.pending.clear()

    def remove(self) -> None:
        """Delete the job's checkpoints (once its outputs are written), and the directories
        above it that this leaves empty, ``results/checkpoints`` included."""
        shutil.rmtree(self.directory, ignore_errors=True)
        if ROOT.name not in self.directory.parent.parts:
            return
        parent = self.directory.parent
        while True:
            try:
                parent.rmdir()
            except OSError:  # not empty (another job's checkpoints), or gone
                break
            if parent.name == ROOT.name:
                break
            parent = parent.parent


def _plain(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"cannot keep a {type(value).__name__} in a checkpoint's row")
