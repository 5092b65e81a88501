"""Defended API responses: transformations of the victim's cached probability vectors.

Like the response granularities (:mod:`stealbench.blackbox`), a defense is a pure function of
the cached vectors, so one query cache serves every defense. Defenses are looked up by name in
:data:`DEFENSES`; add one with the :func:`register` decorator on a function
``(probs, rng, flags, **params) -> probs`` that receives float64 probabilities (N, C).

- ``none``             the vectors as they are.
- ``ood-shuffle``      Atli et al.: queries flagged by the out-of-distribution pre-classifier
                       (:mod:`stealbench.detector`) get their vector's values in a random order
                       that moves the top-1 elsewhere; the others are untouched.
- ``reverse-sigmoid``  Lee et al. 2019 (arXiv:1806.00054), as ART's ``ReverseSigmoid``:
                       ``p' = p - beta * (sigmoid(gamma * logit(p)) - 1/2)``, clipped to [0, 1]
                       and renormalised.
- ``gaussian-noise``   as ART's ``GaussianNoise``: ``p + N(0, scale)``, negatives set to 0,
                       renormalised.

Every defense returns float32 vectors of the input's shape whose rows are distributions when
the input's are (``none`` returns the input unchanged). Randomness comes only from the ``rng``
passed in, and is drawn for every row whatever the flags say, so a query's defended answer
depends on the seed and its position in the cache, not on which other rows were flagged.
With ``flags`` given, ``reverse-sigmoid`` and ``gaussian-noise`` perturb only flagged rows
(a detector in front of a perturbation); without, every row.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from .metrics import accuracy

Defense = Callable[..., np.ndarray]
DEFENSES: dict[str, Defense] = {}


def register(name: str) -> Callable[[Defense], Defense]:
    def decorate(fn: Defense) -> Defense:
        DEFENSES[name] = fn
        return fn

    return decorate


def _renormalise(values: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1; a row with nothing left becomes uniform (it carries nothing)."""
    sums = values.sum(axis=1, keepdims=True)
    uniform = np.full_like(values, 1.0 / values.shape[1])
    return np.where(sums > 0, values / np.where(sums > 0, sums, 1.0), uniform)


def _apply_where(flags: np.ndarray | None, defended: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return defended if flags is None else np.where(flags[:, None], defended, probs)


@register("none")
def no_defense(probs: np.ndarray, rng: np.random.Generator, flags: np.ndarray | None) -> np.ndarray:
    """The undefended API."""
    return probs


@register("ood-shuffle")
def ood_shuffle(
    probs: np.ndarray, rng: np.random.Generator, flags: np.ndarray | None
) -> np.ndarray:
    """Flagged rows: a uniformly random permutation of their values with the top-1 moved.

    The permutation is uniform over those that do not leave the argmax in place: one drawn
    uniformly, and if it fixes the argmax, that position is swapped with a uniformly chosen
    other one. The multiset of values is kept, so the answer still looks like a posterior.
    A row whose maximum is tied may keep its argmax (another copy of the maximum can land there).
    """
    if flags is None:
        raise ValueError(
            "defense 'ood-shuffle' needs flags: the out-of-distribution pre-classifier's verdict "
            "per query (stealbench.detector.OodDetector.flags)"
        )
    n, c = probs.shape
    if c < 2:
        raise ValueError(f"defense 'ood-shuffle' needs at least 2 classes, got {c}")
    # perms[i, j]: which original entry row i shows at position j.
    perms = np.argsort(rng.random((n, c)), axis=1)
    swap_with = rng.integers(0, c - 1, size=n)
    top = probs.argmax(axis=1)
    rows = np.arange(n)
    # Position j shows the top-1 value when perms[i, j] == top[i]; it must not be top[i].
    fixed = perms[rows, top] == top
    other = swap_with + (swap_with >= top)  # uniform over the positions other than top
    i = rows[fixed]
    perms[i, top[i]], perms[i, other[i]] = perms[i, other[i]], perms[i, top[i]]
    shuffled = np.take_along_axis(probs, perms, axis=1)
    return _apply_where(flags, shuffled, probs)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@register("reverse-sigmoid")
def reverse_sigmoid(
    probs: np.ndarray,
    rng: np.random.Generator,
    flags: np.ndarray | None,
    beta: float = 1.0,
    gamma: float = 0.1,
) -> np.ndarray:
    """Lee et al.'s deceptive perturbation, ART's defaults (beta 1, gamma 0.1).

    ``r = beta * (sigmoid(gamma * log(p / (1 - p))) - 1/2)`` with ``p`` clipped to
    [1e-9, 1 - 1e-9] inside the logarithm; the answer is ``p - r`` clipped to [0, 1] and
    renormalised. Large probabilities are pushed down, small ones up. No row can vanish: an
    entry at most 1/2 has ``r <= 0`` and so stays positive or grows.
    """
    if beta <= 0 or gamma <= 0:
        raise ValueError(
            f"reverse-sigmoid needs beta > 0 (magnitude) and gamma > 0 (convergence), "
            f"got beta={beta}, gamma={gamma}"
        )
    clipped = np.clip(probs, 1e-9, 1.0 - 1e-9)
    perturbation = beta * (_sigmoid(gamma * np.log(clipped / (1.0 - clipped))) - 0.5)
    defended = _renormalise(np.clip(probs - perturbation, 0.0, 1.0))
    return _apply_where(flags, defended, probs)


@register("gaussian-noise")
def gaussian_noise(
    probs: np.ndarray, rng: np.random.Generator, flags: np.ndarray | None, scale: float = 0.2
) -> np.ndarray:
    """ART's GaussianNoise (default scale 0.2): additive noise, negatives to 0, renormalised.

    A row whose every entry went negative carries nothing and is answered uniform.
    """
    if scale <= 0:
        raise ValueError(f"gaussian-noise needs scale > 0 (a standard deviation), got {scale}")
    noisy = np.clip(probs + rng.normal(0.0, scale, size=probs.shape), 0.0, None)
    return _apply_where(flags, _renormalise(noisy), probs)


def defense_parameters(defense: str) -> list[str]:
    """The keyword parameters a defense accepts."""
    fn = _lookup(defense)
    return [p for p in list(inspect.signature(fn).parameters)[3:]]


def _lookup(defense: str) -> Defense:
    if defense not in DEFENSES:
        raise ValueError(f"unknown defense {defense!r}; allowed: {', '.join(sorted(DEFENSES))}")
    return DEFENSES[defense]


def defend(
    probs: np.ndarray,
    defense: str,
    rng: np.random.Generator,
    flags: np.ndarray | None = None,
    **params,
) -> np.ndarray:
    """The defended API's answers (float32, shape of ``probs``) to the cached ``probs``.

    ``flags``: one bool per row, True where the pre-classifier judged the query
    out-of-distribution (required by ``ood-shuffle``). ``params``: the defense's own
    parameters (:func:`defense_parameters`).
    """
    fn = _lookup(defense)
    allowed = defense_parameters(defense)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"defense {defense!r} has no parameter(s) {unknown}; allowed: "
            f"{', '.join(allowed) if allowed else 'none'}"
        )
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or not np.all(np.isfinite(probs)):
        raise ValueError(
            f"probs must be a finite (queries, classes) array, got shape {probs.shape}"
        )
    if flags is not None:
        flags = np.asarray(flags)
        if flags.dtype != bool or flags.shape != (len(probs),):
            raise ValueError(
                f"flags must be a bool array with one entry per query ({len(probs)}), "
                f"got {flags.dtype} of shape {flags.shape}"
            )
    return np.asarray(fn(probs, rng, flags, **params), dtype=np.float32)


def benign_utility(defended_probs: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the defended API's top-1 on benign test queries (their true labels)."""
    defended_probs = np.asarray(defended_probs)
    if len(defended_probs) != len(labels):
        raise ValueError(f"{len(defended_probs)} answers but {len(labels)} labels")
    return accuracy(defended_probs.argmax(axis=1), np.asarray(labels))
