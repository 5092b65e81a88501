"""The registry of attack strategies, and what every strategy may use.

A strategy decides which images an attacker sends. Strategies are registered by name with
:func:`register` (one file each in this package, as timm registers models) and come in two
kinds, which decide who may share a query cache (:mod:`stealbench.attack.cache`):

- *sampling* strategies never look at answers: ``fn(pool, budget, rng, **options) -> Draw``
  returns the images one seed sends. One victim pass serves every seed, granularity and
  defense (random sampling);
- *sequential* strategies choose the next queries from the answers:
  ``fn(api, pool, budget, rng, device="cpu", **options) -> sample_ids`` talks to a
  :class:`stealbench.attack.api.PredictionAPI` (which answers at the attacker's granularity,
  through the defense it faces, and counts every image as a query) and returns, per query in
  the order sent, the pool image it is or descends from (-1 for none). It must spend exactly
  ``budget`` queries, and its first B queries must be what a run with budget B sends: budgets
  are prefixes of one run.

A query is one image sent to the API: seed sets, augmented copies, validation sets and
gradient-estimation queries all count.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Draw:
    """The images one seed of a sampling strategy sends, in its query order."""

    sample_ids: np.ndarray  # int64 (B,): pool ids
    images: np.ndarray | None = None  # uint8 (B, H, W, C) when not the pool images themselves


@dataclass(frozen=True)
class StrategySpec:
    name: str
    fn: Callable
    sequential: bool

    @property
    def options(self) -> list[str]:
        """The keyword options a config may set (``device`` comes from the config's device)."""
        skip = 4 if self.sequential else 3
        return [p for p in list(inspect.signature(self.fn).parameters)[skip:] if p != "device"]


STRATEGIES: dict[str, StrategySpec] = {}


def register(name: str, sequential: bool) -> Callable[[Callable], Callable]:
    def decorate(fn: Callable) -> Callable:
        STRATEGIES[name] = StrategySpec(name, fn, sequential)
        return fn

    return decorate


def lookup(name: str) -> StrategySpec:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; allowed: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]


def pool_candidates(pool, budget: int) -> np.ndarray:
    """The ids of the pool split, checked to hold at least ``budget`` images."""
    candidates = pool.ids("pool")
    if budget > len(candidates):
        raise ValueError(
            f"budget {budget} exceeds the {len(candidates)} images of the pool split of "
            f"'{pool.name}'; lower the budget or enlarge the pool"
        )
    return candidates


def query_in_batches(api, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The API's answers for ``images``, asked batch by batch (in order)."""
    batches = [api(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate(batches)
