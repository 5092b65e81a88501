"""Atli et al.'s out-of-distribution pre-classifier in front of the prediction API.

A binary classifier from the model registry learns to tell the victim's training distribution
(label 0, *in*) from a defender's pool of other natural images (label 1, *out*); it judges
every query on its own. A query is flagged as out-of-distribution when ``P(out) > threshold``.

The threshold is chosen on a validation split held out from both sides' training images
(the same split selects the training epoch). By default it maximises balanced accuracy,
``(TPR_in + TNR_out) / 2``, so neither side's size weighs in, matching the paper's symmetric
reporting; with ``target_tpr`` it is instead the smallest threshold that accepts at least that
share of in-distribution validation queries (the defender's tolerance for false alarms).

The paper reports "in-distribution TPR / out-of-distribution TNR": in-distribution is the
positive class, so ``tpr_in`` is the share of in-distribution queries accepted as in (not
flagged) and ``tnr_out`` the share of out-of-distribution queries flagged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from ..io import ArtefactError, load_state_dict, save_state_dict
from ..models.architectures import create_model
from ..models.training import FitResult, TrainConfig, fit, predict_proba

IN_LABEL, OUT_LABEL = 0, 1
THRESHOLD_RULES = ("balanced", "target-tpr")


@dataclass
class OodDetector:
    """A trained pre-classifier and its decision threshold on ``P(out)``."""

    model: nn.Module
    threshold: float
    arch: str
    rule: str = "balanced"
    info: dict = field(default_factory=dict)  # validation rates, split sizes, training record

    def p_out(self, images: np.ndarray) -> np.ndarray:
        """P(out-of-distribution) per uint8 image (N, H, W, C), float32."""
        if len(images) == 0:
            return np.zeros(0, dtype=np.float32)
        return predict_proba(self.model, images)[:, OUT_LABEL]

    def flags(self, images: np.ndarray) -> np.ndarray:
        """True where the query is judged out-of-distribution (its answer gets defended)."""
        return self.p_out(images) > self.threshold

    def metadata(self) -> dict:
        return {"arch": self.arch, "threshold": self.threshold, "rule": self.rule, **self.info}


def rates_from_flags(in_flags: np.ndarray, out_flags: np.ndarray) -> dict[str, float]:
    """``tpr_in``: share of in-distribution queries not flagged; ``tnr_out``: share of OOD flagged.

    A side with no queries gives NaN.
    """
    in_flags, out_flags = np.asarray(in_flags, bool), np.asarray(out_flags, bool)
    return {
        "tpr_in": float(np.mean(~in_flags)) if len(in_flags) else float("nan"),
        "tnr_out": float(np.mean(out_flags)) if len(out_flags) else float("nan"),
    }


def detection_rates(
    detector: OodDetector, in_images: np.ndarray, out_images: np.ndarray
) -> dict[str, float]:
    """The paper's table entry (in-distribution TPR, OOD TNR) on the given queries."""
    return rates_from_flags(detector.flags(in_images), detector.flags(out_images))


def choose_threshold(
    p_out_in: np.ndarray,
    p_out_out: np.ndarray,
    rule: str = "balanced",
    target_tpr: float | None = None,
) -> float:
    """A threshold on P(out) (flag when ``p > threshold``) from validation scores of each side.

    Candidates are the midpoints between consecutive distinct scores plus one below all and one
    above all. ``balanced`` maximises ``(tpr_in + tnr_out) / 2`` (ties: the candidate nearest
    0.5); ``target-tpr`` takes the smallest candidate with ``tpr_in >= target_tpr``.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; allowed: {', '.join(THRESHOLD_RULES)}")
    p_in = np.sort(np.asarray(p_out_in, dtype=np.float64))
    p_out = np.sort(np.asarray(p_out_out, dtype=np.float64))
    if len(p_in) == 0 or (rule == "balanced" and len(p_out) == 0):
        raise ValueError(
            f"choosing a threshold needs validation scores of both sides; got {len(p_in)} "
            f"in-distribution and {len(p_out)} out-of-distribution"
        )
    scores = np.unique(np.concatenate([p_in, p_out]))
    candidates = np.concatenate(
        [[scores[0] - 1e-6], (scores[:-1] + scores[1:]) / 2, [scores[-1] + 1e-6]]
    )
    tpr_in = np.searchsorted(p_in, candidates, side="right") / len(p_in)
    if rule == "target-tpr":
        if target_tpr is None or not 0.0 < target_tpr <= 1.0:
            raise ValueError(f"rule 'target-tpr' needs target_tpr in (0, 1], got {target_tpr}")
        # tpr_in never decreases along the candidates, and the last one accepts everything.
        return float(candidates[np.argmax(tpr_in >= target_tpr - 1e-12)])
    tnr_out = 1.0 - np.searchsorted(p_out, candidates, side="right") / len(p_out)
    balanced = (tpr_in + tnr_out) / 2
    best = np.flatnonzero(balanced >= balanced.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def _split(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    n_val = min(n - 1, max(1, round(n * val_fraction)))  # both parts non-empty
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def train_ood_detector(
    in_images: np.ndarray,
    out_images: np.ndarray,
    arch: str,
    cfg: TrainConfig,
    seed: int,
    val_fraction: float = 0.2,
    device: str = "cpu",
    target_tpr: float | None = None,
) -> OodDetector:
    """Train the pre-classifier on in (victim's training split) vs out (defender's OOD pool).

    ``val_fraction`` of each side is held out: it selects the epoch and the threshold, and is
    never trained on. The threshold maximises balanced accuracy on it, or, with ``target_tpr``,
    is the smallest that accepts that share of its in-distribution images. ``info`` of the result
    records the split sizes, validation rates and the training record.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    if len(in_images) < 2 or len(out_images) < 2:
        raise ValueError(
            f"the detector needs at least 2 images per side (one to train, one to validate); "
            f"got {len(in_images)} in-distribution and {len(out_images)} out-of-distribution"
        )
    if in_images.shape[1:] != out_images.shape[1:]:
        raise ValueError(
            f"in- and out-of-distribution images must share one shape (H, W, C); got "
            f"{in_images.shape[1:]} and {out_images.shape[1:]}"
        )
    if target_tpr is not None and not 0.0 < target_tpr <= 1.0:
        raise ValueError(f"target_tpr must lie in (0, 1], got {target_tpr}")
    rule = "balanced" if target_tpr is None else "target-tpr"
    rng = np.random.default_rng(seed)
    train_in, val_in = _split(len(in_images), val_fraction, rng)
    train_out, val_out = _split(len(out_images), val_fraction, rng)
    images = np.concatenate([in_images[train_in], out_images[train_out]])
    labels = np.repeat([IN_LABEL, OUT_LABEL], [len(train_in), len(train_out)])
    val_images = np.concatenate([in_images[val_in], out_images[val_out]])
    val_labels = np.repeat([IN_LABEL, OUT_LABEL], [len(val_in), len(val_out)])
    model = create_model(arch, 2, device, seed=seed)
    record: FitResult = fit(
        model,
        images,
        np.eye(2, dtype=np.float32)[labels],
        val_images,
        val_labels,
        cfg,
        seed,
        desc=f"ood-detector {arch}",
    )
    detector = OodDetector(model, 0.5, arch, rule)
    val_p_in, val_p_out = detector.p_out(in_images[val_in]), detector.p_out(out_images[val_out])
    detector.threshold = choose_threshold(val_p_in, val_p_out, rule, target_tpr)
    val_rates = rates_from_flags(val_p_in > detector.threshold, val_p_out > detector.threshold)
    detector.info = {
        "target_tpr": target_tpr,
        "train_in": len(train_in),
        "train_out": len(train_out),
        "val_in": len(val_in),
        "val_out": len(val_out),
        "val_tpr_in": val_rates["tpr_in"],
        "val_tnr_out": val_rates["tnr_out"],
        "best_epoch": record.best_epoch,
        "epochs": record.epochs,
        "best_val_acc": record.best_val_acc,
        "seconds": record.seconds,
    }
    return detector


def save_detector(detector: OodDetector, path) -> None:
    """One checkpoint with the weights and the threshold (loadable with weights_only=True)."""
    state = {k: v.detach().cpu() for k, v in detector.model.state_dict().items()}
    save_state_dict(
        {
            "kind": "ood_detector",
            "arch": detector.arch,
            "threshold": float(detector.threshold),
            "rule": detector.rule,
            "state_dict": state,
        },
        path,
    )


def load_detector(path, device: str = "cpu") -> OodDetector:
    checkpoint = load_state_dict(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != "ood_detector":
        raise ArtefactError(f"{path}: not an OOD detector checkpoint written by save_detector")
    model = create_model(checkpoint["arch"], 2, device)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return OodDetector(model, checkpoint["threshold"], checkpoint["arch"], checkpoint["rule"])
