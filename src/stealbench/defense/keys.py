"""Per-query keys: how a defense's randomness becomes a function of the query alone.

A defended API must answer the same image the same way every time (else an attacker could
average repeated queries, and a cached replay would differ from a live attack). Each image's
randomness therefore comes from HMAC-SHA256 of its uint8 bytes under the owner's secret key,
as DAWN selects its watermarked queries (Szyller et al., ACM MM 2021).
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np


def query_digests(images: np.ndarray, key: bytes) -> np.ndarray:
    """HMAC-SHA256 of every image's bytes under ``key``: uint8 (N, 32)."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    out = np.empty((len(images), 32), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = np.frombuffer(hmac.new(key, image.tobytes(), hashlib.sha256).digest(), np.uint8)
    return out


def digest_uniforms(digests: np.ndarray) -> np.ndarray:
    """A number in [0, 1) per query from the first 8 bytes of its digest (53 bits used)."""
    words = digests[:, :8].copy().view(">u8").ravel()
    return (words >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def query_generators(digests: np.ndarray) -> list[np.random.Generator]:
    """One numpy Generator per query, seeded by its whole digest."""
    return [np.random.default_rng(np.frombuffer(d.tobytes(), dtype=np.uint32)) for d in digests]
