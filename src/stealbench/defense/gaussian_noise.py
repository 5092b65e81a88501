"""Additive Gaussian noise, as ART's ``GaussianNoise``: ``p + N(0, scale)``, negatives set to
0, renormalised (a row whose every entry went negative is answered uniform). The noise of a
query is drawn from its key, so the same image always gets the same answer; ``scale`` (the
strength) is the standard deviation."""

from __future__ import annotations

import numpy as np

from .keys import query_digests, query_generators
from .registry import Defense, DefenseContext, register, renormalise


@register
class GaussianNoise(Defense):
    name = "gaussian-noise"
    strength = "scale"
    params = {
        "scale": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "the noise's standard deviation",
        }
    }

    def __init__(self, context: DefenseContext, scale: float = 0.2):
        super().__init__(context)
        if scale <= 0:
            raise ValueError(f"gaussian-noise needs scale > 0 (a standard deviation), got {scale}")
        self.scale = scale

    def perturb(self, probs: np.ndarray, images: np.ndarray) -> np.ndarray:
        generators = query_generators(query_digests(images, self.context.key + b"gaussian"))
        noise = np.stack([rng.normal(0.0, self.scale, probs.shape[1]) for rng in generators])
        return renormalise(np.clip(probs + noise, 0.0, None))
