"""Atli et al.'s defense: queries the OOD pre-classifier flags get a shuffled vector.

A flagged query's answer holds the same values in a random order that moves the top-1
elsewhere (uniform over the permutations that do not leave the argmax in place: one drawn
uniformly, and if it fixes the argmax, that position is swapped with a uniformly chosen other
one); unflagged queries get the true posteriors. The order comes from the query's key, so the
same image always gets the same answer. ``threshold`` (the strength) is the pre-classifier's
cut on P(out); None uses the one it learned (:mod:`stealbench.defense.detector`).
A row whose maximum is tied may keep its argmax (another copy of the maximum can land there).
"""

from __future__ import annotations

import numpy as np

from .keys import query_digests, query_generators
from .registry import Defense, DefenseContext, register, register_model


def _load_detector(path, device: str = "cpu"):
    from .detector import load_detector

    return load_detector(path, device)


# The pre-classifier is trained by a rule of its own (train_detector: its inputs are the
# defender's generic datasets), so it registers only its loader.
register_model("detector", load=_load_detector)(None)


def shuffle_moving_top1(probs: np.ndarray, generators: list[np.random.Generator]) -> np.ndarray:
    """Each row permuted (row i by ``generators[i]``) so that its argmax position changes."""
    n, c = probs.shape
    if c < 2:
        raise ValueError(f"shuffling needs at least 2 classes, got {c}")
    out = np.empty_like(probs)
    for i, (row, rng) in enumerate(zip(probs, generators, strict=True)):
        perm = rng.permutation(c)  # position j shows original entry perm[j]
        top = int(row.argmax())
        if perm[top] == top:
            other = int(rng.integers(0, c - 1))
            other += other >= top  # uniform over the positions other than top
            perm[top], perm[other] = perm[other], perm[top]
        out[i] = row[perm]
    return out


@register
class OodShuffle(Defense):
    name = "ood-shuffle"
    strength = "threshold"
    stronger = "smaller"  # a lower cut on P(out) flags more queries
    strength_off = 1.0  # P(out) > 1 flags nothing
    needs = ("detector",)
    params = {
        "threshold": {
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": 1,
            "description": "on the pre-classifier's P(out); null - the one it learned",
        }
    }

    def __init__(self, context: DefenseContext, threshold: float | None = None):
        super().__init__(context)
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"ood-shuffle needs a threshold on P(out) in [0, 1], got {threshold}")
        self.threshold = context.detector.threshold if threshold is None else threshold

    def flags(self, images: np.ndarray) -> np.ndarray:
        """True where the pre-classifier judges the query out-of-distribution."""
        return self.context.detector.p_out(images) > self.threshold

    def perturb(self, probs: np.ndarray, images: np.ndarray) -> np.ndarray:
        flags = self.flags(images)
        out = probs.copy()
        if flags.any():
            digests = query_digests(images[flags], self.context.key + self.name.encode())
            out[flags] = shuffle_moving_top1(probs[flags], query_generators(digests))
        return out
