"""The undefended API: the victim's posteriors as they are."""

from __future__ import annotations

import numpy as np

from .registry import Defense, DefenseContext, register


@register
class NoDefense(Defense):
    name = "none"

    def __init__(self, context: DefenseContext):
        super().__init__(context)

    def perturb(self, probs: np.ndarray, images: np.ndarray) -> np.ndarray:
        return probs
