"""MAD, prediction poisoning (Orekondy, Schiele, Fritz, ICLR 2020), and MAD-argmax.

Each answer y is moved to y~ inside the L1 ball ||y~ - y||_1 <= epsilon (the strength) so that
the gradient an attacker would take when training on y~ points as far as possible from the one
it would take on y. The attacker's gradient is modelled with a *proxy* (``context.proxy``: the
authors use a randomly initialised network of the victim's architecture) and restricted, as in
their code, to the weight W of its classification head (its last ``nn.Linear``). With head
input h and proxy softmax p, the gradient of the soft cross-entropy -sum_k y_k log p_k is

    G^T y = grad_W = (p - y) h^T        (since sum_k y_k = 1),

and the authors' normalised ("angular", ``objmax=True``) objective between the served answer
y~ and the true one y is || G^T y~ / ||G^T y~|| - G^T y / ||G^T y|| ||^2 = 2 - 2 cos(p - y~, p - y):
h cancels, so one proxy forward pass per query gives everything (tests check this closed
form against an explicit autograd Jacobian). A zero difference vector is normalised to zero,
and a query whose head input h is 0 (no gradient at all) is answered unperturbed.

Solver, as the authors' default (``optim='linesearch'``):

1. oracle: a target y* on the simplex maximising the objective. ``mad`` uses their
   ``extreme`` oracle, the best vertex e_k (ties: the first k). ``mad-argmax`` keeps the top-1:
   y* is uniform over a subset S of classes that contains the victim's argmax k^, with 1e-5
   added at k^ (then normalised) so that k^ stays strictly on top; for K <= 10 every one of the
   2^(K-1) subsets is tried, for K > 10 their greedy search grows S from {k^}, each step trying
   every class not yet in S, keeping the best subset seen and adding the best class, until
   ``GREEDY_MAX_CANDIDATES`` candidates have been scored or S holds every class (their code
   fails there, for 11 <= K <= 45). As theirs, it never scores S = {k^} alone; unlike theirs,
   it does not first smooth y by 1e-8;
2. line search back into the ball: y~ = (1 - a) y + a y*, a = min(1, epsilon / ||y* - y||_1),
   a convex combination, so on the simplex, and for mad-argmax with the argmax kept.

With a random-init proxy (p near uniform) MAD-argmax's best target is mostly the
near-uniform vector over many classes, so close to p that a short move toward it leaves
p - y~ nearly parallel to p - y: the served answer turns the gradient little, though the
target scores high. That is the authors' algorithm (their oracle scores targets, not the
shortened answer), kept as is.

Only the L1 ball (``ydist='l1'``, the authors' README setting) is implemented; their L2 and KL
balls are not. epsilon = 0 is a no-op; epsilon >= 2 (the simplex's L1 diameter) serves y*.
Deterministic: no randomness, and the proxy runs in fixed-size batches (:mod:`.inference`).
"""

from __future__ import annotations

import math

import numpy as np

from .inference import fixed_batches
from .registry import Defense, DefenseContext, register

TIE_BREAK = 1e-5  # added to the argmax in MAD-argmax's targets, as the authors do
EXHAUSTIVE_MAX_CLASSES = 10  # above this, MAD-argmax searches greedily
GREEDY_MAX_CANDIDATES = 1024  # the authors' bound on scored subsets in the greedy search
CHUNK = 2048  # queries scored at once (bounds memory: CHUNK x 2^(K-1) floats)
_TINY = 1e-30  # a squared norm below this is a zero vector


# ------------------------------------------------------------------ the proxy


def proxy_posteriors(proxy, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The proxy's softmax p (float64, N x K) and the L2 norm of its head's input h (N,).

    The head is the proxy's last ``nn.Linear``; its output must be the proxy's logits (else
    the closed-form gradient above does not hold, and this is an error).
    """
    import torch

    from ..models.architectures import head_name
    from ..models.training import model_device

    head = proxy.get_submodule(head_name(proxy))
    seen = {}

    def hook(module, inputs, output):
        seen["h"], seen["z"] = inputs[0], output

    proxy.eval()
    device = model_device(proxy)
    probs, norms = [], []
    handle = head.register_forward_hook(hook)
    try:
        with torch.no_grad():
            for batch, n in fixed_batches(images):
                logits = proxy(batch.to(device))
                if not torch.equal(seen["z"], logits):
                    raise ValueError(
                        "MAD's proxy must output its last Linear layer's logits unchanged; "
                        f"{type(proxy).__name__} transforms them"
                    )
                probs.append(torch.softmax(logits[:n].double(), dim=1).cpu().numpy())
                norms.append(seen["h"][:n].flatten(1).double().norm(dim=1).cpu().numpy())
    finally:
        handle.remove()
    return np.concatenate(probs), np.concatenate(norms)


# ------------------------------------------------------------------ the objective


def _objective(pb, pp, bb, yb, yp, yy):
    """2 - 2 cos(p - y*, p - y) from dot products (b = p - y): ``pb`` = p.b, ``pp`` = p.p,
    ``bb`` = b.b (per query, broadcast), ``yb`` = y*.b, ``yp`` = y*.p, ``yy`` = y*.y* (per
    candidate). Zero vectors are normalised to zero (then the objective is the other's norm)."""
    ab = pb - yb
    aa = np.maximum(pp - 2.0 * yp + yy, 0.0)
    a_on, b_on = aa > _TINY, bb > _TINY
    both = a_on & b_on
    cos = np.divide(ab, np.sqrt(aa * bb), out=np.zeros(np.broadcast(ab, aa, bb).shape), where=both)
    return a_on.astype(np.float64) + b_on - 2.0 * cos


def angular_objective(proxy_probs: np.ndarray, probs: np.ndarray, served: np.ndarray) -> np.ndarray:
    """MAD's normalised objective per query: how far serving ``served`` instead of ``probs``
    turns the proxy's last-layer gradient, 2 - 2 cos(p - served, p - probs), in [0, 4]."""
    p, y, s = (np.asarray(a, dtype=np.float64) for a in (proxy_probs, probs, served))
    b = p - y
    return _objective(
        np.sum(p * b, 1), np.sum(p * p, 1), np.sum(b * b, 1),
        np.sum(s * b, 1), np.sum(s * p, 1), np.sum(s * s, 1),
    )  # fmt: skip


def _score(p: np.ndarray, b: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Objective (n, M) of M candidate targets (M, K) shared by n queries."""
    return _objective(
        np.sum(p * b, 1, keepdims=True),
        np.sum(p * p, 1, keepdims=True),
        np.sum(b * b, 1, keepdims=True),
        b @ targets.T,
        p @ targets.T,
        np.sum(targets * targets, 1),
    )


# ------------------------------------------------------------------ oracles


def oracle_extreme(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The simplex vertex e_k with the largest objective (ties: the first k)."""
    vertices = np.eye(y.shape[1])
    out = np.empty_like(y)
    for s in range(0, len(y), CHUNK):
        rows = slice(s, s + CHUNK)
        best = _score(p[rows], p[rows] - y[rows], vertices).argmax(axis=1)
        out[rows] = vertices[best]
    return out


def _subset_targets(masks: np.ndarray, top: int) -> np.ndarray:
    """Uniform over each mask's classes, 1e-5 extra at ``top`` (which every mask holds)."""
    weights = masks.astype(np.float64)
    weights[:, top] += TIE_BREAK
    return weights / weights.sum(axis=1, keepdims=True)


def oracle_argmax_preserving(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """MAD-argmax's target: the best subset target that keeps the argmax of ``y`` on top."""
    k = y.shape[1]
    top = y.argmax(axis=1)
    out = np.empty_like(y)
    if k <= EXHAUSTIVE_MAX_CLASSES:
        others = (np.arange(2 ** (k - 1))[:, None] >> np.arange(k - 1)) & 1  # every subset
        for t in np.unique(top):
            targets = _subset_targets(np.insert(others, t, 1, axis=1), t)
            idx = np.flatnonzero(top == t)
            for s in range(0, len(idx), CHUNK):
                rows = idx[s : s + CHUNK]
                best = _score(p[rows], p[rows] - y[rows], targets).argmax(axis=1)
                out[rows] = targets[best]
        return out
    for s in range(0, len(y), CHUNK):
        rows = slice(s, s + CHUNK)
        out[rows] = _greedy_subsets(p[rows], y[rows], top[rows])
    return out


def _greedy_subsets(p: np.ndarray, y: np.ndarray, top: np.ndarray) -> np.ndarray:
    """The authors' greedy search for K > 10, vectorised over queries.

    Every query's subset S has the same size at each step, so a candidate S + {j} is uniform
    mass 1/s on S + {j} plus 1e-5/s at the top (s = |S| + 1 + 1e-5); its dot products with b
    and p are running sums plus column j, and its squared norm depends on |S| alone.
    """
    n, k = y.shape
    rows = np.arange(n)
    b = p - y
    pb, pp, bb = (np.sum(u * v, 1, keepdims=True) for u, v in ((p, b), (p, p), (b, b)))
    mask = np.zeros((n, k), dtype=bool)
    mask[rows, top] = True
    sum_b, sum_p = b[rows, top].copy(), p[rows, top].copy()  # sums over S
    # As in the authors' search, {top} itself (the vertex e_top) is not a candidate.
    best, best_mask = np.full(n, -np.inf), mask.copy()
    size, scored = 1, 0
    while size < k and scored < GREEDY_MAX_CANDIDATES:
        s = size + 1 + TIE_BREAK
        extra_b, extra_p = TIE_BREAK * b[rows, top], TIE_BREAK * p[rows, top]
        yb = (sum_b[:, None] + b + extra_b[:, None]) / s
        yp = (sum_p[:, None] + p + extra_p[:, None]) / s
        yy = (size + (1 + TIE_BREAK) ** 2) / s**2
        scores = _objective(pb, pp, bb, yb, yp, yy)
        scores[mask] = -np.inf
        pick = scores.argmax(axis=1)
        gain = scores[rows, pick] > best
        best = np.where(gain, scores[rows, pick], best)
        mask[rows, pick] = True
        best_mask[gain] = mask[gain]
        sum_b += b[rows, pick]
        sum_p += p[rows, pick]
        scored += k - size
        size += 1
    out = np.empty_like(y)
    for t in np.unique(top):
        out[top == t] = _subset_targets(best_mask[top == t], t)
    return out


# ------------------------------------------------------------------ back into the ball


def line_search(probs: np.ndarray, targets: np.ndarray, epsilon: float) -> np.ndarray:
    """(1 - a) y + a y* with the largest a in [0, 1] that keeps ||. - y||_1 <= epsilon."""
    dist = np.abs(targets - probs).sum(axis=1, keepdims=True)
    alpha = np.minimum(1.0, np.divide(epsilon, dist, out=np.zeros_like(dist), where=dist > 0))
    return (1.0 - alpha) * probs + alpha * targets


# ------------------------------------------------------------------ the defenses


def _non_negative(value, message: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{message}, got {value!r}")
    return number


@register
class Mad(Defense):
    name = "mad"
    strength = "epsilon"
    needs = ("proxy",)
    params = {
        "epsilon": {"type": "number", "minimum": 0, "maximum": 2, "description": "an L1 radius"}
    }

    def __init__(self, context: DefenseContext, epsilon: float = 0.5):
        super().__init__(context)
        self.epsilon = _non_negative(epsilon, f"{self.name} needs epsilon >= 0 (an L1 radius)")

    def targets(self, proxy_probs: np.ndarray, probs: np.ndarray) -> np.ndarray:
        return oracle_extreme(proxy_probs, probs)

    def perturb(self, probs: np.ndarray, images: np.ndarray) -> np.ndarray:
        if self.epsilon == 0:
            return probs
        proxy_probs, head_input = proxy_posteriors(self.context.proxy, images)
        if proxy_probs.shape[1] != probs.shape[1]:
            raise ValueError(
                f"{self.name}: the proxy has {proxy_probs.shape[1]} classes, the victim "
                f"{probs.shape[1]}"
            )
        answers = line_search(probs, self.targets(proxy_probs, probs), self.epsilon)
        dead = head_input == 0  # no gradient to turn: serve the posterior
        answers[dead] = probs[dead]
        return answers

    def diagnose(self, probs: np.ndarray, images: np.ndarray) -> dict[str, float]:
        """``proxy_mode_share``: the share of the queries on which the proxy predicts its most
        frequent class. The authors' random proxy (and ours) is near constant on
        out-of-distribution queries, so its gradient directions hardly depend on the query."""
        if not len(images):
            return {"proxy_mode_share": float("nan")}
        top = proxy_posteriors(self.context.proxy, images)[0].argmax(axis=1)
        return {"proxy_mode_share": float(np.bincount(top).max() / len(top))}


@register
class MadArgmax(Mad):
    name = "mad-argmax"

    def targets(self, proxy_probs: np.ndarray, probs: np.ndarray) -> np.ndarray:
        return oracle_argmax_preserving(proxy_probs, probs)
