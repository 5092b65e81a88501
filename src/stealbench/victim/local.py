"""External victims that run in this process: a checkpoint of a registered architecture, a
TorchScript module, or a torchvision classifier with local weights.

:func:`load_external` returns a module that takes [0, 1] images of any shape, like the
workflow's own victims: the file's model behind the victim's input contract
(:class:`~.contract.InputContract`), except a checkpoint, whose registered architecture has
its adapter already (:class:`~stealbench.models.architectures.Classifier`), fed at the
contract's size. Every failure is a :class:`VictimSourceError` naming the config key.

Departures from the issue: a checkpoint is the state dict of stealbench's ``Classifier`` (as
``train_victim`` saves it), so its input scale is the architecture's registered one, and the
contract's ``normalize`` is not applied a second time (the probe checks size and channels
only through the model). Every model is taken to output logits (stealbench applies softmax),
as torchvision's and stealbench's classifiers do.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from .contract import InputContract
from .sources import num_classes


class VictimSourceError(ValueError):
    """An external victim's file or model does not fit its config entry; the message names
    the key."""


def model_file(name: str, spec: dict) -> Path:
    """The victim's model file (``~`` and ``$VARS`` expanded), which must exist."""
    source = spec["source"]
    raw = spec[source]["file"]
    path = Path(os.path.expandvars(os.path.expanduser(raw)))
    if not path.is_file():
        raise VictimSourceError(
            f"config key 'victims.{name}.{source}.file': {raw!r} "
            f"({path.resolve()}) does not exist; put the model file there or correct the path"
        )
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checked_file(name: str, spec: dict) -> tuple[Path, str]:
    """The model file and its SHA-256, checked against the pin ``{source}.sha256``."""
    source = spec["source"]
    path = model_file(name, spec)
    digest = sha256(path)
    pinned = spec[source].get("sha256")
    if pinned is not None and pinned.lower() != digest:
        raise VictimSourceError(
            f"config key 'victims.{name}.{source}.sha256': {path} has SHA-256 {digest}, but the "
            f"config pins {pinned.lower()}; the file changed (or the pin is wrong): check the "
            f"file, then update the pin"
        )
    return path, digest


def _load_state_dict(name: str, spec: dict, path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (pickle, zip and torch errors alike)
        raise VictimSourceError(
            f"config key 'victims.{name}.{spec['source']}.file': {path} is not a readable "
            f"state dict ({type(err).__name__}: {err})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint wrapping its weights
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise VictimSourceError(
            f"config key 'victims.{name}.{spec['source']}.file': {path} holds a "
            f"{type(state).__name__}, not a state dict (a mapping of names to tensors)"
        )
    return state


def torchvision_head_classes(model_name: str, state: dict) -> int | None:
    """The class count of a torchvision model's state dict: the first dimension of the head's
    weight (the parameters whose shape depends on ``num_classes``); None when absent."""
    from torchvision.models import get_model

    with torch.device("meta"):
        a = get_model(model_name, weights=None, num_classes=7).state_dict()
        b = get_model(model_name, weights=None, num_classes=11).state_dict()
    heads = [k for k in a if k.endswith("weight") and a[k].shape != b[k].shape]
    for key in heads:
        if key in state:
            return int(state[key].shape[0])
    return None


def _load_checkpoint(name: str, spec: dict, path: Path, device: str) -> nn.Module:
    from ..models.architectures import create_model, get_spec

    arch = spec["checkpoint"]["arch"]
    registered = get_spec(arch)
    if spec["input"]["channels"] != registered.channels:
        raise VictimSourceError(
            f"config key 'victims.{name}.input.channels': {spec['input']['channels']}, but a "
            f"{arch} takes {registered.channels}-channel images"
        )
    state = _load_state_dict(name, spec, path)
    if not any(k.startswith("net.") for k in state):  # the bare network's own state dict
        state = {f"net.{k}": v for k, v in state.items()}
    model = create_model(arch, num_classes(spec), device, input_size=spec["input"]["size"])
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise VictimSourceError(
            f"config key 'victims.{name}.checkpoint': {path} is not a state dict of a "
            f"{spec['checkpoint']['arch']} with {num_classes(spec)} classes "
            f"(victims.{name}.classes): {str(err).splitlines()[0]} …"
        ) from None
    return model.eval()


def load_torchscript(path, device: str = "cpu") -> nn.Module:
    """A module saved with ``torch.jit.save``, without TorchScript's deprecation notice (it
    comes on every load)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location=device)


def _load_torchscript(name: str, spec: dict, path: Path, device: str) -> nn.Module:
    try:
        module = load_torchscript(path, device)
    except Exception as err:  # noqa: BLE001
        raise VictimSourceError(
            f"config key 'victims.{name}.torchscript.file': {path} is not a TorchScript "
            f"module saved with torch.jit.save ({type(err).__name__}: {err})"
        ) from None
    return InputContract.from_spec(spec["input"]).wrap(module).to(device)


def _load_torchvision(name: str, spec: dict, path: Path, device: str) -> nn.Module:
    from torchvision.models import get_model

    model_name = spec["torchvision"]["model"]
    state = _load_state_dict(name, spec, path)
    classes = torchvision_head_classes(model_name, state)
    if classes is None:
        raise VictimSourceError(
            f"config key 'victims.{name}.torchvision.file': {path} has no classification head "
            f"of torchvision's {model_name}; is it that model's state dict?"
        )
    model = get_model(model_name, weights=None, num_classes=classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise VictimSourceError(
            f"config key 'victims.{name}.torchvision.file': {path} is not a state dict of "
            f"torchvision's {model_name}: {str(err).splitlines()[0]} …"
        ) from None
    return InputContract.from_spec(spec["input"]).wrap(model).to(device)


LOADERS = {
    "checkpoint": _load_checkpoint,
    "torchscript": _load_torchscript,
    "torchvision": _load_torchvision,
}


def load_external(name: str, spec: dict, device: str = "cpu") -> tuple[nn.Module, str]:
    """An external local victim as a module that takes [0, 1] images of any shape, and the
    SHA-256 of its file. ``spec`` is the victim's config entry (validated)."""
    path, digest = checked_file(name, spec)
    model = LOADERS[spec["source"]](name, spec, path, device)
    return model.eval(), digest


def state_of(model: nn.Module) -> dict:
    """What ``import_victim`` saves as the victim's model.pt: the state dict of a checkpoint's
    Classifier, of a torchvision model (without the contract's adapter)."""
    if isinstance(model, nn.Sequential):  # contract adapter, then the model
        return model[1].state_dict()
    return model.state_dict()
