"""A slow, literal MAD reference for the tests: the authors' quantities from autograd.

G[k] = d(-log softmax(proxy(x))_k) / dW for the weight W of the proxy's last Linear layer,
one image at a time, and the normalised objective ||G^T a/|G^T a| - G^T b/|G^T b| ||^2.
Nothing here uses the closed form of :mod:`stealbench.defense.mad`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stealbench.models.training import to_tensor


def last_linear(model: nn.Module) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def jacobian(model: nn.Module, image: np.ndarray) -> np.ndarray:
    """G (K, D): row k is the gradient of -log p_k w.r.t. the last Linear weight, flattened."""
    model.eval()
    weight = last_linear(model).weight
    nll = -torch.log_softmax(model(to_tensor(image[None])).double(), dim=1)[0]
    rows = [torch.autograd.grad(nll[k], weight, retain_graph=True)[0] for k in range(len(nll))]
    return torch.stack(rows).flatten(1).double().numpy()


def objective(g: np.ndarray, served: np.ndarray, truth: np.ndarray) -> float:
    """The authors' normalised objective between serving ``served`` and ``truth``."""
    u, v = g.T @ served, g.T @ truth
    return float(np.sum((u / np.linalg.norm(u) - v / np.linalg.norm(v)) ** 2))


def line_search(y: np.ndarray, target: np.ndarray, eps: float) -> np.ndarray:
    alpha = min(1.0, eps / np.abs(target - y).sum())
    return (1 - alpha) * y + alpha * target


def subset_target(classes, top: int, k: int) -> np.ndarray:
    t = np.zeros(k)
    t[list(classes)] = 1.0
    t[top] += 1e-5
    return t / t.sum()
