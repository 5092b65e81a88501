"""The registry of perturbation defenses: each turns the victim's posteriors into answers.

A defense sits between the victim and the attacker, inside the prediction API
(:class:`stealbench.attack.api.PredictionAPI`): the API computes the victim's posteriors,
the defense perturbs them, and the API then returns them at its granularity. Every defense
is a class registered by name with :func:`register` (one file each in this package, as timm
registers models), constructed with a :class:`DefenseContext` and its own parameters.

Contract (tests check it for every registered defense):

- ``defense(probs, images)`` takes the victim's posteriors (N, C) and the queried images
  (N, H, W, C) and returns float32 answers on the probability simplex;
- it is deterministic *per query*: the answer to an image depends only on that image, its
  posterior, the parameters and the owner's secret key (randomness comes from
  :func:`stealbench.defense.keys.query_digests`), never on the other rows of the batch or on
  the order the queries came in, so a sequential attacker and a cached replay see the same;
- ``strength`` names the parameter a sweep varies (each value is one defended cell).

A defense may also implement a post-attack audit (:meth:`Defense.audit`): given a model
suspected to be derived from answers it served, what does the owner conclude (DAWN's
watermark verification)? The default has none. Stream monitors, which keep per-client state
(PRADA), are another interface: :mod:`stealbench.defense.monitor`.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class DefenseContext:
    """What a defense may use besides the posteriors: the owner's secret key and models.

    ``detector``: the OOD pre-classifier (:class:`stealbench.defense.detector.OodDetector`);
    ``misinformation``: Adaptive Misinformation's misinformation model; ``proxy``: MAD's
    proxy model. Each is None unless a defense that ``needs`` it is configured.
    """

    key: bytes = b"stealbench"
    num_classes: int | None = None
    detector: Any = None
    misinformation: Any = None
    proxy: Any = None


@dataclass(frozen=True)
class AuditContext:
    """What the owner kept of a suspect's queries: ``images`` (N, H, W, C), the queries the API
    answered, in order; ``probs`` (N, C), the victim's posteriors for them (what the defense
    perturbed); ``settings``, the defense's audit settings (its config section, e.g. DAWN's
    ``threshold``)."""

    images: np.ndarray
    probs: np.ndarray
    settings: Mapping[str, Any] = field(default_factory=dict)


class Defense(ABC):
    """A perturbation of the victim's posteriors inside the API (see the module docstring)."""

    name: ClassVar[str]
    strength: ClassVar[str | None] = None  # the parameter a strength sweep varies
    needs: ClassVar[tuple[str, ...]] = ()  # DefenseContext fields it reads

    def __init__(self, context: DefenseContext):
        missing = [need for need in self.needs if getattr(context, need) is None]
        if missing:
            raise ValueError(f"defense {self.name!r} needs {', '.join(missing)} in its context")
        self.context = context

    @abstractmethod
    def perturb(self, probs: np.ndarray, images: np.ndarray) -> np.ndarray:
        """Answers (N, C) for posteriors ``probs`` (float64, rows on the simplex)."""

    def audit(self, suspect, context: AuditContext) -> dict | None:
        """A post-attack audit of ``suspect`` (a model), suspected to be trained on the answers
        this defense served for ``context.images``: the owner's conclusion as a flat dict with
        at least ``caught`` (bool), or None when the defense has no audit (the default)."""
        return None

    def __call__(self, probs: np.ndarray, images: np.ndarray) -> np.ndarray:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or not np.all(np.isfinite(probs)):
            raise ValueError(f"probs must be a finite (queries, classes) array, got {probs.shape}")
        if len(images) != len(probs):
            raise ValueError(f"{len(probs)} posteriors but {len(images)} images")
        if not len(probs):
            return probs.astype(np.float32)
        return np.asarray(self.perturb(probs, images), dtype=np.float32)


DEFENSES: dict[str, type[Defense]] = {}


def register(cls: type[Defense]) -> type[Defense]:
    """Class decorator: make a defense available by its ``name``."""
    if cls.strength is not None and cls.strength not in defense_parameters(cls):
        raise TypeError(f"{cls.__name__}.strength {cls.strength!r} is not a parameter")
    DEFENSES[cls.name] = cls
    return cls


def lookup(name: str) -> type[Defense]:
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; allowed: {', '.join(sorted(DEFENSES))}")
    return DEFENSES[name]


def defense_parameters(defense: str | type[Defense]) -> list[str]:
    """The keyword parameters a defense takes besides its context."""
    cls = lookup(defense) if isinstance(defense, str) else defense
    return list(inspect.signature(cls.__init__).parameters)[2:]


def create(name: str, context: DefenseContext, **params) -> Defense:
    """A configured defense; unknown parameters are an error naming the allowed ones."""
    cls = lookup(name)
    allowed = defense_parameters(cls)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"defense {name!r} has no parameter(s) {unknown}; allowed: "
            f"{', '.join(allowed) if allowed else 'none'}"
        )
    return cls(context, **params)


def renormalise(values: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1; a row with nothing left becomes uniform (it carries nothing)."""
    sums = values.sum(axis=1, keepdims=True)
    uniform = np.full_like(values, 1.0 / values.shape[1])
    return np.where(sums > 0, values / np.where(sums > 0, sums, 1.0), uniform)


def benign_utility(answers: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the defended API's top-1 on benign test queries (their true labels)."""
    answers = np.asarray(answers)
    if len(answers) != len(labels):
        raise ValueError(f"{len(answers)} answers but {len(labels)} labels")
    return float(np.mean(answers.argmax(axis=1) == np.asarray(labels))) if len(labels) else 0.0
