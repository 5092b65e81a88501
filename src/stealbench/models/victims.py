"""Training a victim: the defender's side; and loading any victim the workflow made
(:func:`load_victim`: trained, or imported from a checkpoint, TorchScript or torchvision file,
or a remote endpoint's client; see :mod:`stealbench.victim`)."""

from __future__ import annotations

import logging

import numpy as np

from ..data.datasets import Dataset
from ..metrics import accuracy
from .architectures import create_model
from .training import FitResult, TrainConfig, fit, predict_proba

log = logging.getLogger(__name__)


# The batch of a victim's forward pass: every posterior a victim gives, in-process, into a
# cache, for its test split or over HTTP, is computed in a batch of exactly this many rows.
POSTERIOR_BATCH = 64


def victim_posteriors(model, images: np.ndarray) -> np.ndarray:
    """The victim's posterior of each uint8 image, a function of that image alone.

    Departure from a plain forward pass: batches of exactly :data:`POSTERIOR_BATCH` rows
    (:func:`~stealbench.models.training.predict_proba` with ``pad``), so that the answer to an
    image is the same to the last bit whether a sampling attacker's job asked for it among
    1000, a sequential strategy among 16, or a client over HTTP among 64. Without this the
    answers differ by ~1e-8, which DFME's finite differences amplify into other queries.
    """
    return predict_proba(model, images, POSTERIOR_BATCH, pad=True)


def train_on_splits(
    dataset: Dataset,
    arch: str,
    cfg: TrainConfig,
    seed: int,
    device: str = "cpu",
    init: str = "scratch",
    backbone: dict | None = None,
    input_size: int | None = None,
    outliers: np.ndarray | None = None,
    outlier_weight: float = 1.0,
    checkpoint=None,
):
    """Train ``arch`` on the train split of ``dataset`` and select its epoch on val.

    ``init``: scratch, imagenet (torchvision weights) or a pretrained backbone's name, whose
    state dict is ``backbone`` (every weight but the head starts from it: fine-tuning).
    ``outliers``: the defender's generic images for Outlier Exposure, with ``outlier_weight``
    its lambda (:func:`~stealbench.models.training.fit`); None: plain training.
    ``checkpoint``: fit's :class:`~stealbench.models.checkpoint.Checkpointer` (None: none).
    """
    x_train, y_train = dataset.split("train")
    x_val, y_val = dataset.split("val")
    if min(len(x_train), len(x_val)) == 0:
        raise ValueError(
            f"dataset '{dataset.name}' needs non-empty train and val splits to train a model; "
            f"it has {dataset.meta['split_counts']}"
        )
    num_classes = len(dataset.classes)
    model = create_model(
        arch, num_classes, device, init == "imagenet", input_size, seed=seed, backbone=backbone
    )
    targets = np.eye(num_classes, dtype=np.float32)[y_train]
    result: FitResult = fit(
        model,
        x_train,
        targets,
        x_val,
        y_val,
        cfg,
        seed,
        desc=f"{arch}/{dataset.name}",
        outliers=outliers,
        outlier_weight=outlier_weight,
        checkpoint=checkpoint,
    )
    return model, result


def train_victim(
    dataset: Dataset,
    arch: str,
    cfg: TrainConfig,
    seed: int,
    device: str = "cpu",
    init: str = "scratch",
    backbone: dict | None = None,
    input_size: int | None = None,
    outliers: np.ndarray | None = None,
    outlier_weight: float = 1.0,
    checkpoint=None,
):
    """Train ``arch`` on the train split, select on val, report on test (``outliers``:
    Outlier Exposure, ``checkpoint``: see :func:`train_on_splits`)."""
    x_test, y_test = dataset.split("test")
    if len(x_test) == 0:
        raise ValueError(f"dataset '{dataset.name}' needs a non-empty test split for a victim")
    model, result = train_on_splits(
        dataset,
        arch,
        cfg,
        seed,
        device,
        init,
        backbone,
        input_size,
        outliers,
        outlier_weight,
        checkpoint,
    )
    test_probs = victim_posteriors(model, x_test)
    test_acc = accuracy(test_probs.argmax(1), y_test)
    log.info(
        "victim %s (%s) on %s: val_acc %.4f test_acc %.4f",
        arch,
        init,
        dataset.name,
        result.best_val_acc,
        test_acc,
    )
    return model, result, test_probs, test_acc


def write_test_outputs(path, victim: str, dataset: Dataset, test_probs: np.ndarray) -> None:
    """The victim's posteriors on its test split (id, label, probs), which scoring reads
    (:func:`stealbench.attack.surrogates.load_victim_test`), whatever the victim's source."""
    import pyarrow as pa

    from ..io import write_parquet

    ids = dataset.ids("test")
    probs = pa.FixedSizeListArray.from_arrays(pa.array(test_probs.ravel()), test_probs.shape[1])
    write_parquet(
        pa.table({"id": ids, "label": dataset.labels[ids].astype(np.int16), "probs": probs}),
        path,
        {"kind": "victim_test_outputs", "victim": victim, "dataset_checksum": dataset.checksum},
    )


def load_victim(
    model_path,
    metrics: dict,
    device: str = "cpu",
    purpose: str = "attack",
    ledger_path=None,
):
    """A victim from its ``results/victims/<name>/`` files, checked against the weights
    checksum in its ``metrics.json``. The weights come from the file: pretrained ones are
    never fetched again.

    Dispatches on ``metrics["source"]`` (absent: ``train``): a trained or checkpoint victim is
    a registered architecture's state dict, a torchvision victim torchvision's model behind
    its input contract, a TorchScript victim the scripted module behind it; a remote victim
    has no model file and is :class:`stealbench.victim.remote.RemoteVictim` (its answers go
    through the durable ledger ``results/victims/<name>/answers.sqlite``; ``purpose`` says
    what they are counted as: ``attack`` or ``evaluation``; ``ledger_path`` another place
    for the ledger, e.g. under another results folder).
    """
    from ..io import ArtefactError, load_state_dict, state_dict_checksum

    source = metrics.get("source", "train")
    if source == "remote":
        return _remote_victim(metrics, purpose, ledger_path)
    if source == "torchscript":
        from ..victim.contract import InputContract
        from ..victim.local import load_torchscript

        module = load_torchscript(model_path, device)
        state_dict = module.state_dict()
    else:
        state_dict = load_state_dict(model_path)
    if state_dict_checksum(state_dict) != metrics["weights_checksum"]:
        raise ArtefactError(
            f"{model_path} does not match the victim's metrics.json; delete the victim's folder "
            "and rerun"
        )
    if source == "torchscript":
        return InputContract.from_spec(metrics["input"]).wrap(module).to(device)
    if source == "torchvision":
        from torchvision.models import get_model

        from ..victim.contract import InputContract

        model = get_model(metrics["arch"], weights=None, num_classes=metrics["num_classes"])
        model.load_state_dict(state_dict)
        return InputContract.from_spec(metrics["input"]).wrap(model).to(device)
    size = metrics["input"]["size"] if source == "checkpoint" else metrics["input_size"]
    model = create_model(metrics["arch"], metrics["num_classes"], device, input_size=size)
    model.load_state_dict(state_dict)
    return model.eval()


def _remote_victim(metrics: dict, purpose: str, ledger_path=None):
    """A remote victim's client (:mod:`stealbench.victim.remote`): its spec is the one
    ``import_victim`` recorded (no secret: ``auth.env`` names the variable)."""
    from ..victim import sources
    from ..victim.remote import RemoteVictim

    name = metrics["victim"]
    spec = {key: metrics[key] for key in ("remote", "input", "classes")}
    spec["source"] = "remote"
    ledger = ledger_path or sources.ledger_path(name)
    return RemoteVictim.from_spec(name, spec, ledger, purpose=purpose)
