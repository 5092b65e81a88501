"""Knockoff nets' random strategy (Orekondy et al., CVPR 2019): the pool without
replacement, i.i.d.; with ``augment``, the realistic adversary that jitters each of its
in-distribution images before querying (the jittered images are cached)."""

from __future__ import annotations

import numpy as np

from .registry import Draw, pool_candidates, register


def jitter(
    images: np.ndarray,
    rng: np.random.Generator,
    degrees: float = 10.0,
    shift: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
) -> np.ndarray:
    """Random affine jitter (rotation, shift, scale) of uint8 images, one draw per image."""
    from PIL import Image

    out = np.empty_like(images)
    h, w = images.shape[1:3]
    for i, img in enumerate(images):
        angle = rng.uniform(-degrees, degrees)
        factor = rng.uniform(*scale)
        dx, dy = rng.uniform(-shift, shift, size=2) * (w, h)
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        pil = pil.rotate(angle, resample=Image.Resampling.BILINEAR, translate=(dx, dy))
        if factor != 1.0:
            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            scaled = pil.resize(size, Image.Resampling.BILINEAR)
            canvas = Image.new(pil.mode, (w, h))
            canvas.paste(scaled, ((w - size[0]) // 2, (h - size[1]) // 2))
            pil = canvas
        arr = np.asarray(pil)
        out[i] = arr[..., None] if arr.ndim == 2 else arr
    return out


@register(
    "random",
    kind="sampling",
    options={
        "augment": {
            "type": "boolean",
            "description": "jitter every image before querying (the jittered images are cached)",
        }
    },
)
def random_strategy(pool, budget: int, rng: np.random.Generator, augment: bool = False) -> Draw:
    """``budget`` pool images drawn without replacement; optionally jittered."""
    ids = rng.permutation(pool_candidates(pool, budget))[:budget].astype(np.int64)
    if augment:
        return Draw(ids, jitter(np.asarray(pool.images[ids]), rng))
    return Draw(ids)
