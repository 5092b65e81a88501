"""Reverse sigmoid (Lee et al., arXiv:1806.00054), as ART's ``ReverseSigmoid``.

``r = beta * (sigmoid(gamma * log(p / (1 - p))) - 1/2)`` with ``p`` clipped to
[1e-9, 1 - 1e-9] inside the logarithm; the answer is ``p - r`` clipped to [0, 1] and
renormalised. Large probabilities are pushed down, small ones up; no row can vanish (an
entry at most 1/2 has ``r <= 0``). ``beta`` (the strength) scales the perturbation, ``gamma``
sets how fast it saturates. Deterministic: it uses no randomness at all.
"""

from __future__ import annotations

import numpy as np

from .registry import Defense, DefenseContext, register, renormalise


@register
class ReverseSigmoid(Defense):
    name = "reverse-sigmoid"
    strength = "beta"
    params = {
        "beta": {"type": "number", "exclusiveMinimum": 0, "description": "magnitude"},
        "gamma": {"type": "number", "exclusiveMinimum": 0, "description": "convergence"},
    }

    def __init__(self, context: DefenseContext, beta: float = 1.0, gamma: float = 0.1):
        super().__init__(context)
        if beta <= 0 or gamma <= 0:
            raise ValueError(
                f"reverse-sigmoid needs beta > 0 (magnitude) and gamma > 0 (convergence), "
                f"got beta={beta}, gamma={gamma}"
            )
        self.beta, self.gamma = beta, gamma

    def perturb(self, probs: np.ndarray, images: np.ndarray) -> np.ndarray:
        clipped = np.clip(probs, 1e-9, 1.0 - 1e-9)
        logit = np.log(clipped / (1.0 - clipped))
        perturbation = self.beta * (1.0 / (1.0 + np.exp(-self.gamma * logit)) - 0.5)
        return renormalise(np.clip(probs - perturbation, 0.0, 1.0))
