"""Top-k as a defense: only the k largest probabilities are answered, renormalised over them
(as a response format the API leaves them unnormalised: stealbench.attack.api). ``k`` is the
strength; k = 1 answers a one-hot label."""

from __future__ import annotations

import numpy as np

from .registry import Defense, DefenseContext, register, renormalise


@register
class TopK(Defense):
    name = "top-k"
    strength = "k"
    stronger = "smaller"  # fewer classes kept
    strength_off = None  # k = the number of classes
    params = {"k": {"type": "integer", "minimum": 1, "description": "classes kept"}}

    def __init__(self, context: DefenseContext, k: int = 1):
        super().__init__(context)
        if int(k) != k or k < 1:
            raise ValueError(f"top-k needs an integer k >= 1, got {k}")
        self.k = int(k)

    def perturb(self, probs: np.ndarray, images: np.ndarray) -> np.ndarray:
        k = min(self.k, probs.shape[1])
        # argsort is stable, so ties keep the lower class index, like argmax.
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        rows = np.arange(len(probs))[:, None]
        out = np.zeros_like(probs)
        out[rows, top] = probs[rows, top]
        return renormalise(out)
