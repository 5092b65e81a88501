"""What a defended API holds besides the victim: the owner's key and the defense models.

Built once per job from the defense stage's artefacts, so a sequential attacker facing a
defense and a cache replayed through it see the same answers.
"""

from __future__ import annotations

from ..runtime import derive_seed
from .registry import MODEL_LOADERS, DefenseContext, needed


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
    device: str = "cpu",
    model_paths: dict | None = None,
) -> DefenseContext:
    """The context of the given defenses for one victim's API: its key, every trained model
    a defense among ``names`` needs (loaded from ``model_paths``, by model name, e.g. a job's
    named inputs) and MAD's proxy (a randomly initialised model of the victim's architecture,
    as Orekondy et al. use) where one needs it."""
    from ..models.architectures import create_model

    needs = needed(names)  # as each defense's class declares
    paths = model_paths or {}
    models = {m: MODEL_LOADERS[m](paths[m], device) for m in sorted(needs & set(MODEL_LOADERS))}
    proxy = None
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
        detector=models.pop("detector", None),
        misinformation=models.pop("misinformation", None),
        proxy=proxy,
        models=models,
    )
