"""What a defended API holds besides the victim: the owner's key and the defense models.

Built once per job from the defense stage's artefacts, so a sequential attacker facing a
defense and a cache replayed through it see the same answers.
"""

from __future__ import annotations

from ..runtime import derive_seed
from .registry import DefenseContext, needed


def owner_key(master_seed: int, victim: str) -> bytes:
    """The owner's secret key of a victim's API (it keys DAWN and every per-query draw)."""
    return f"stealbench/{derive_seed(master_seed, 'owner-key', victim)}".encode()


def save_model(model, path, kind: str, **info) -> None:
    """A defense model as a checkpoint loadable with weights_only=True."""
    from ..io import save_state_dict

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_state_dict({"kind": kind, **info, "state_dict": state}, path)


def load_model(path, kind: str, device: str = "cpu"):
    """A model saved by :func:`save_model` (``arch`` and ``num_classes`` in its info)."""
    from ..io import ArtefactError, load_state_dict
    from ..models.architectures import create_model

    checkpoint = load_state_dict(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != kind:
        raise ArtefactError(f"{path}: not a {kind} checkpoint written by stealbench")
    model = create_model(checkpoint["arch"], checkpoint["num_classes"], device)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def build_context(
    names,
    master_seed: int,
    victim: str,
    victim_meta: dict,
    detector_path=None,
    misinformation_path=None,
    device: str = "cpu",
) -> DefenseContext:
    """The context of the given defenses for one victim's API: its key, and the detector,
    misinformation model and MAD's proxy (a randomly initialised model of the victim's
    architecture, as Orekondy et al. use) where a defense among ``names`` needs them."""
    from ..models.architectures import create_model

    needs = needed(names)  # as each defense's class declares
    detector = misinformation = proxy = None
    if "detector" in needs:
        from .detector import load_detector

        detector = load_detector(detector_path, device)
    if "misinformation" in needs:
        misinformation = load_model(misinformation_path, "misinformation", device)
    if "proxy" in needs:
        proxy = create_model(
            victim_meta["arch"],
            victim_meta["num_classes"],
            device,
            input_size=victim_meta["input_size"],
            seed=derive_seed(master_seed, "mad-proxy", victim),
        ).eval()
    return DefenseContext(
        key=owner_key(master_seed, victim),
        num_classes=victim_meta["num_classes"],
        detector=detector,
        misinformation=misinformation,
        proxy=proxy,
    )
