"""The victim behind its prediction API (the blackbox of knockoffnets).

The victim is queried once per attack and its full probability vectors are cached; every
response granularity an API might return is then a pure function of a cached vector:

- ``probs``     the full probability vector;
- ``top{k}``    the k largest probabilities kept, the others zeroed (not renormalised);
- ``round{d}``  every probability rounded to d decimals;
- ``label``     a one-hot vector of the top-1 class.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

GRANULARITY_PATTERN = r"^(probs|label|top[1-9][0-9]*|round[0-9])$"
_GRANULARITY = re.compile(GRANULARITY_PATTERN)


@dataclass(frozen=True)
class Granularity:
    name: str
    kind: str  # probs, top, round, label
    param: int | None = None


def parse_granularity(name: str) -> Granularity:
    if not _GRANULARITY.match(name):
        raise ValueError(
            f"unknown granularity {name!r}; allowed: probs, label, top<k> (k >= 1), "
            f"round<d> (d = 0..9)"
        )
    for kind in ("top", "round"):
        if name.startswith(kind):
            return Granularity(name, kind, int(name[len(kind) :]))
    return Granularity(name, name)


def information_order(names) -> list[str]:
    """Granularities from most to least informative: probs, top-k (k down), round-d, label."""

    def rank(name: str) -> tuple[int, int]:
        g = parse_granularity(name)
        return {"probs": 0, "top": 1, "round": 2, "label": 3}[g.kind], -(g.param or 0)

    return sorted(dict.fromkeys(names), key=rank)


def apply_granularity(probs: np.ndarray, name: str) -> np.ndarray:
    """The API's response at granularity ``name`` for full posteriors ``probs`` (N, C)."""
    g = parse_granularity(name)
    probs = np.asarray(probs, dtype=np.float32)
    if g.kind == "probs":
        return probs.copy()
    if g.kind == "label":
        out = np.zeros_like(probs)
        out[np.arange(len(probs)), probs.argmax(axis=1)] = 1.0
        return out
    if g.kind == "round":
        return np.round(probs, g.param).astype(np.float32)
    k = min(g.param, probs.shape[1])
    # argsort is stable, so ties keep the lower class index, like argmax.
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    out = np.zeros_like(probs)
    rows = np.arange(len(probs))[:, None]
    out[rows, top] = probs[rows, top]
    return out


def response_to_targets(response: np.ndarray) -> np.ndarray:
    """What the attacker trains on: the response renormalised to a distribution.

    Truncated or rounded vectors no longer sum to one; rows that carry no information at all
    (everything rounded to zero) become uniform.
    """
    response = np.asarray(response, dtype=np.float32)
    total = response.sum(axis=1, keepdims=True)
    uniform = np.full_like(response, 1.0 / response.shape[1])
    return np.where(total > 0, response / np.where(total > 0, total, 1.0), uniform)


class Blackbox:
    """A victim model behind an API that returns full posteriors and counts every query."""

    def __init__(self, model, batch_size: int = 1000):
        self.model = model
        self.batch_size = batch_size
        self.queries = 0  # victim forward passes made through the API

    def __call__(self, images: np.ndarray) -> np.ndarray:
        from .training import predict_proba

        probs = predict_proba(self.model, images, self.batch_size)
        self.queries += len(images)
        log.info("answered %d queries (%d in total)", len(images), self.queries)
        return probs
