"""The one-batch probe of every external victim, run while Snakemake plans (before any job):
its file exists and matches its pinned SHA-256, it takes a batch of its input contract's
shape, and it answers (batch, classes) finite scores for the classes the config declares.
A remote victim is probed by :func:`stealbench.victim.remote.probe` (its endpoint answers).

The batch is a few images of the victim's test data when the workflow has materialised its
dataset (``results/data/<dataset>.parquet``), else a fixed noise batch of the contract's
size and channels: the data do not exist before the first run, and the contract's shape is
what the probe checks. Every failure is a :class:`~.local.VictimSourceError` naming the key.

Departures from the issue: the class count is checked against the declared ``classes`` (and,
once the data exist, against the dataset's classes; :func:`check_classes` runs again in the
import job, which always has them); class names given as a list must be the dataset's label
order (no reordering of the model's outputs). The probe runs in Snakemake's main process only
(``workflow.is_main_process``): a job that re-parses the Snakefile on a cluster node skips it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import sources
from .local import VictimSourceError, load_external
from .sources import num_classes

BATCH = 4


def check_classes(name: str, spec: dict, dataset_classes: list[str]) -> None:
    """The declared ``classes`` agree with the victim's labelled test data."""
    declared = spec["classes"]
    if num_classes(spec) != len(dataset_classes):
        raise VictimSourceError(
            f"config key 'victims.{name}.classes': {num_classes(spec)} classes, but its test "
            f"data '{spec['dataset']}' has {len(dataset_classes)} "
            f"({', '.join(map(str, dataset_classes[:10]))}"
            f"{', …' if len(dataset_classes) > 10 else ''})"
        )
    if isinstance(declared, list) and list(declared) != list(dataset_classes):
        raise VictimSourceError(
            f"config key 'victims.{name}.classes': the model's classes in output order must be "
            f"the dataset's label order, and '{spec['dataset']}' has "
            f"{', '.join(map(str, dataset_classes))}; given {', '.join(declared)}"
        )


def probe_batch(spec: dict, dataset_path: Path | None) -> tuple[np.ndarray, list[str] | None]:
    """A few uint8 (N, H, W, C) images for the probe and the dataset's classes (None when the
    dataset is not materialised yet: then a fixed noise batch of the contract's shape)."""
    if dataset_path is not None and Path(dataset_path).is_file():
        from ..data import datasets

        data = datasets.load(dataset_path, verify=False, lazy=True)  # reads a few images
        images, _ = data.split("test")
        return np.asarray(images[:BATCH]), list(data.classes)
    size, channels = spec["input"]["size"], spec["input"]["channels"]
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (BATCH, size, size, channels), dtype=np.uint8), None


def probe_model(name: str, spec: dict, model, images: np.ndarray) -> np.ndarray:
    """Run ``model`` on ``images``; the output must be (batch, classes) and finite."""
    import torch

    from ..models.training import model_device, to_tensor

    size, channels = spec["input"]["size"], spec["input"]["channels"]
    try:
        with torch.no_grad():
            out = model(to_tensor(images, model_device(model)))
    except Exception as err:  # noqa: BLE001 (any failure of the model on the contract's shape)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VictimSourceError(
            f"config key 'victims.{name}.input.size': the model fails on a batch of its input "
            f"contract's shape ({len(images)}, {channels}, {size}, {size}): {first}; declare "
            f"the size and channels the model takes"
        ) from None
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not torch.is_tensor(out) or out.dim() != 2 or out.shape[0] != len(images):
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise VictimSourceError(
            f"config key 'victims.{name}.{spec['source']}': the model answers {shape} for "
            f"{len(images)} images; a classifier answers (batch, classes) scores"
        )
    if out.shape[1] != num_classes(spec):
        raise VictimSourceError(
            f"config key 'victims.{name}.classes': the model outputs {out.shape[1]} classes, "
            f"the config declares {num_classes(spec)}"
        )
    if not torch.isfinite(out).all():
        raise VictimSourceError(
            f"config key 'victims.{name}.{spec['source']}': the model's output on the probe "
            f"batch is not finite (NaN or inf)"
        )
    return out.numpy()


def probe_local(name: str, spec: dict, dataset_path: Path | None = None) -> None:
    """Load an external local victim and run one batch through it."""
    model, _ = load_external(name, spec, "cpu")
    images, classes = probe_batch(spec, dataset_path)
    if classes is not None:
        check_classes(name, spec, classes)
    probe_model(name, spec, model, images)


def probe(config: dict, results: str | Path = "results") -> list[str]:
    """Probe every external victim of a validated config; the names probed."""
    probed = []
    for name, spec in config["victims"].items():
        source = sources.source(spec)
        if source == "train":
            continue
        if source == "remote":
            from .remote import probe as remote_probe

            remote_probe(name, spec)
        else:
            probe_local(name, spec, Path(results) / "data" / f"{spec['dataset']}.parquet")
        probed.append(name)
    return probed
