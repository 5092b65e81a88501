"""Rounding as a defense: every probability rounded to ``decimals`` places (the strength),
renormalised. A row that rounds to nothing at all answers its top-1 as a one-hot label, which
is what the rounded vector's order still tells (its largest entry)."""

from __future__ import annotations

import numpy as np

from .registry import Defense, DefenseContext, register, renormalise


@register
class Rounding(Defense):
    name = "rounding"
    strength = "decimals"
    stronger = "smaller"  # fewer decimals kept
    strength_off = None  # enough decimals keep every answer, how many depends on it
    params = {
        "decimals": {
            "type": "integer",
            "minimum": 0,
            "maximum": 9,
            "description": "decimal places kept",
        }
    }

    def __init__(self, context: DefenseContext, decimals: int = 1):
        super().__init__(context)
        if int(decimals) != decimals or decimals < 0:
            raise ValueError(f"rounding needs an integer number of decimals >= 0, got {decimals}")
        self.decimals = int(decimals)

    def perturb(self, probs: np.ndarray, images: np.ndarray) -> np.ndarray:
        rounded = np.round(probs, self.decimals)
        empty = rounded.sum(axis=1) == 0
        rounded[empty] = np.eye(probs.shape[1])[probs[empty].argmax(axis=1)]
        return renormalise(rounded)
