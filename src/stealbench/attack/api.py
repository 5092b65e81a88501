"""The victim behind its prediction API (the blackbox of knockoffnets).

The API computes the victim's posterior for each query, lets the configured defense perturb
it (:mod:`stealbench.defense`), and returns it at its *granularity*, the response format:

- ``probs``     the full probability vector;
- ``top{k}``    the k largest probabilities kept, the others zeroed (not renormalised);
- ``round{d}``  every probability rounded to d decimals;
- ``label``     a one-hot vector of the top-1 class.

:func:`serve` is that pipeline as a pure function of (posteriors, images): every defense is
deterministic per query, so the answers an attacker gets live and the answers computed later
from the cached posteriors are the same. An attacker that picks queries from answers (a
sequential strategy) talks to a :class:`PredictionAPI` and sees only ``__call__``'s answers;
the owner's record of true posteriors is kept apart for the cache and the tables.
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
    """The API's response at granularity ``name`` for (defended) posteriors ``probs`` (N, C)."""
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


def response_to_targets(response: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the attacker trains on: (targets, kept) for the API's responses (N, C).

    Truncated or rounded vectors no longer sum to one and are renormalised to a distribution.
    A row with no mass at all (everything rounded to zero) carries no information: it is
    dropped (``kept`` is False there), never made uniform, which would teach a wrong target.
    """
    response = np.asarray(response, dtype=np.float32)
    total = response.sum(axis=1, keepdims=True)
    kept = total[:, 0] > 0
    return response[kept] / total[kept], kept


def serve(probs: np.ndarray, images, granularity: str = "probs", defense=None) -> np.ndarray:
    """The API's answers to queries ``images`` whose posteriors are ``probs``: the defense (a
    :class:`stealbench.defense.registry.Defense`, or None) then the granularity."""
    if defense is not None:
        probs = defense(probs, np.asarray(images))
    return apply_granularity(probs, granularity)


class PredictionAPI:
    """A victim model behind an API that answers at one granularity, through one defense.

    Calling it is what an attacker can do: ``api(images)`` returns the answers and counts
    every image as one query. The owner's side keeps, per query in call order, the image,
    the victim's true posterior and the answer served (:meth:`record`), for the query cache.

    An attacker that trains a model as it queries (DFME's student) may register it with
    :meth:`track`; the API then keeps a copy of it at each budget of ``snapshot_at``
    (:attr:`snapshots`, for evaluation only), by the rule the queries follow: the model at
    budget B is the model a run with budget B ends with, i.e. as it is when the attacker first
    asks for more than B queries in all (a run with budget B stops there), or when the run
    ends (:meth:`close_snapshots`). None where no model was tracked yet.
    """

    def __init__(self, model, granularity: str = "probs", defense=None, snapshot_at=()):
        parse_granularity(granularity)
        self.model, self.granularity, self.defense = model, granularity, defense
        self.queries = 0  # images answered so far: the attacker's spent budget
        self._pending = sorted({int(b) for b in snapshot_at})  # budgets not yet snapshotted
        self.snapshots: dict = {}  # budget -> copy of the tracked model (or None)
        self._online = None
        self._images: list[np.ndarray] = []
        self._probs: list[np.ndarray] = []
        self._answers: list[np.ndarray] = []

    def posteriors(self, images: np.ndarray) -> np.ndarray:
        """The victim's posteriors (the owner's view; not an API call, nothing is counted).
        A victim that is not a torch module (a remote victim, :mod:`stealbench.victim.remote`)
        computes its own: ``model.posteriors(uint8 NHWC images) -> float32 (N, classes)``."""
        import torch.nn as nn

        from ..models.victims import victim_posteriors

        if not isinstance(self.model, nn.Module):
            return self.model.posteriors(np.asarray(images))
        return victim_posteriors(self.model, images)

    def track(self, model) -> None:
        """The attacker's online model (a live reference): snapshotted at each budget."""
        self._online = model

    def _snapshot(self, beyond: int) -> None:
        """Copy the tracked model for every pending budget below ``beyond`` queries."""
        import copy

        while self._pending and self._pending[0] < beyond:
            online = None if self._online is None else copy.deepcopy(self._online).eval()
            self.snapshots[self._pending.pop(0)] = online

    def close_snapshots(self) -> None:
        """The run is over: the budgets it reached take the tracked model as it ends."""
        self._snapshot(self.queries + 1)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        self._snapshot(self.queries + len(images))  # budgets this call goes past
        probs = self.posteriors(images)
        answers = serve(probs, images, self.granularity, self.defense)
        self.queries += len(images)
        self._images.append(np.array(images, dtype=np.uint8, copy=True))
        self._probs.append(probs)
        self._answers.append(answers)
        log.debug("answered %d queries (%d in total)", len(images), self.queries)
        return answers.copy()

    def record(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images, posteriors, answers) of every query so far, in call order."""
        if not self._images:
            raise ValueError("the API has not been queried")
        return (
            np.concatenate(self._images),
            np.concatenate(self._probs),
            np.concatenate(self._answers),
        )
