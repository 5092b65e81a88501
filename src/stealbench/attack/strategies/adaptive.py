"""Knockoff nets' adaptive strategy (Orekondy et al., CVPR 2019, §4.1.2).

The attacker's pool is labelled (e.g. ImageNet's classes) and the labels sit in a hierarchy
(root -> coarse groups -> classes). A gradient bandit at every internal node chooses a child;
a query samples a path from the root to a class and an unused image of that class. After the
victim answers, every node on the path is updated with the reward

    certainty  margin between the victim's two largest probabilities,
    diversity  how far the answer exceeds the mean of the recent answers, per class,
    loss       cross-entropy of the attacker's current surrogate against the answer,

each standardised by its running mean and deviation, so the reward stays finite and no
component dominates by scale. (ART's KnockoffNets uses labels only and its raw rewards can be
non-finite; both are avoided here.) The surrogate is trained online on the answers so far.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from ...models.architectures import create_model
from ...models.training import (
    TrainConfig,
    make_optimizer,
    model_device,
    soft_cross_entropy,
    to_tensor,
)
from ..api import response_to_targets
from .registry import pool_candidates, register

log = logging.getLogger(__name__)

REWARDS = ("certainty", "diversity", "loss")


# ------------------------------------------------------------------------- rewards


def certainty_reward(probs: np.ndarray) -> np.ndarray:
    """Margin between the two largest probabilities of each response (N, C) -> (N,)."""
    top2 = np.sort(probs, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]).astype(np.float64)


def diversity_reward(probs: np.ndarray, recent_mean: np.ndarray) -> np.ndarray:
    """sum_k max(0, y_k - mean_k of recent responses): rewards answers unlike the recent ones."""
    return np.maximum(0.0, probs - recent_mean[None, :]).sum(axis=1).astype(np.float64)


def loss_reward(victim_probs: np.ndarray, surrogate_logits: np.ndarray) -> np.ndarray:
    """Cross-entropy of the surrogate's prediction against the victim's answer (finite)."""
    log_q = torch.log_softmax(torch.as_tensor(surrogate_logits, dtype=torch.float64), dim=1)
    return -(torch.as_tensor(victim_probs, dtype=torch.float64) * log_q).sum(1).numpy()


class RunningStandardiser:
    """Welford's running mean/variance; standardises each new value by the stats so far."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def __call__(self, value: float) -> float:
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)
        std = np.sqrt(self.m2 / self.n) if self.n > 1 else 0.0
        return float((value - self.mean) / std) if std > 1e-12 else 0.0


# -------------------------------------------------------------------------- bandit


class GradientBandit:
    """The gradient bandit of Sutton & Barto (2018, §2.8) over ``n`` arms.

    pi = softmax(H); after arm a earns reward R against baseline b:
    H[a] += lr * (R - b) * (1 - pi[a]) and H[x] -= lr * (R - b) * pi[x] for x != a.
    Exhausted arms are masked out of the softmax.
    """

    def __init__(self, n: int, lr: float = 0.1):
        self.preferences = np.zeros(n)
        self.available = np.ones(n, dtype=bool)
        self.lr = lr

    def policy(self) -> np.ndarray:
        h = np.where(self.available, self.preferences, -np.inf)
        if not np.isfinite(h).any():
            raise RuntimeError("every arm is exhausted")
        e = np.exp(h - h[self.available].max())
        return e / e.sum()

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.choice(len(self.preferences), p=self.policy()))

    def update(self, arm: int, reward: float, baseline: float) -> None:
        if not self.available.any():  # the node's last image was just used: nothing to learn
            return
        pi = self.policy()
        advantage = reward - baseline
        self.preferences -= self.lr * advantage * pi
        self.preferences[arm] += self.lr * advantage


@dataclass
class Node:
    """A node of the label hierarchy; leaves carry a class index, internal nodes a bandit."""

    name: str
    children: list[Node] = field(default_factory=list)
    label: int | None = None
    bandit: GradientBandit | None = None


def build_hierarchy(classes: list[str], groups: dict[str, list[str]] | None, lr: float) -> Node:
    """root -> groups -> classes (or root -> classes when no grouping is given)."""
    index = {name: i for i, name in enumerate(classes)}
    if groups:
        unknown = [c for members in groups.values() for c in members if c not in index]
        if unknown:
            raise ValueError(f"hierarchy names unknown classes {unknown}; pool classes: {classes}")
        grouped = {c for members in groups.values() for c in members}
        rest = [c for c in classes if c not in grouped]
        children = [
            Node(g, [Node(c, label=index[c]) for c in members]) for g, members in groups.items()
        ]
        if rest:
            children.append(Node("other", [Node(c, label=index[c]) for c in rest]))
    else:
        children = [Node(c, label=index[c]) for c in classes]
    root = Node("root", children)
    _attach_bandits(root, lr)
    return root


def _attach_bandits(node: Node, lr: float) -> None:
    if node.children:
        node.bandit = GradientBandit(len(node.children), lr)
        for child in node.children:
            _attach_bandits(child, lr)


def sample_path(root: Node, rng: np.random.Generator) -> list[tuple[Node, int]]:
    path, node = [], root
    while node.children:
        arm = node.bandit.sample(rng)
        path.append((node, arm))
        node = node.children[arm]
    return path


def exhaust(path: list[tuple[Node, int]]) -> None:
    """Mask a leaf with no images left, and every ancestor left with no available child."""
    for node, arm in reversed(path):
        node.bandit.available[arm] = False
        if node.bandit.available.any():
            break


# --------------------------------------------------------------------------- attack


@register(
    "adaptive",
    kind="sequential",
    options={
        "batch_size": {"type": "integer", "minimum": 1, "description": "queries per bandit update"},
        "policy_lr": {"type": "number", "exclusiveMinimum": 0},
        "rewards": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "enum": ["certainty", "diversity", "loss"]},
        },
        "hierarchy": {
            "description": "coarse groups of the pool's classes: {group: [class, ...]}",
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "surrogate": {"$ref": "#/definitions/arch"},
        "surrogate_lr": {"type": "number", "exclusiveMinimum": 0},
        "train_steps": {"type": "integer", "minimum": 0},
        "recent": {"type": "integer", "minimum": 1},
    },
)
def run_adaptive(
    api,
    pool,
    budget: int,
    rng: np.random.Generator,
    batch_size: int = 25,
    policy_lr: float = 0.1,
    rewards: tuple[str, ...] = REWARDS,
    hierarchy: dict[str, list[str]] | None = None,
    surrogate: str = "lenet",
    surrogate_lr: float = 1e-3,
    train_steps: int = 2,
    recent: int = 50,
    device: str = "cpu",
) -> np.ndarray:
    """Query ``budget`` pool images chosen by the bandit; return their ids in query order."""
    unknown = set(rewards) - set(REWARDS)
    if unknown:
        raise ValueError(f"unknown rewards {sorted(unknown)}; allowed: {', '.join(REWARDS)}")
    candidates = pool_candidates(pool, budget)
    labels = pool.labels[candidates]
    if (labels < 0).any() or not pool.classes:
        raise ValueError(
            f"the adaptive strategy needs a labelled pool (its label hierarchy); "
            f"'{pool.name}' has unlabelled pool images"
        )
    # Unused images per class, in a random order: a query pops from its class.
    unused = {c: list(rng.permutation(candidates[labels == c])) for c in np.unique(labels)}
    root = build_hierarchy(pool.classes, hierarchy, policy_lr)
    for c in range(len(pool.classes)):
        if c not in unused:  # classes with no pool image are never chosen
            leaf_path = _path_to(root, c)
            exhaust(leaf_path)

    model = None
    optimizer = None
    standardisers = {name: RunningStandardiser() for name in rewards}
    baseline, n_rewards = 0.0, 0
    sample_ids, answers = [], []
    while len(sample_ids) < budget:
        batch_ids, paths = [], []
        for _ in range(min(batch_size, budget - len(sample_ids))):
            path = sample_path(root, rng)
            label = path[-1][0].children[path[-1][1]].label
            batch_ids.append(unused[label].pop())
            paths.append(path)
            if not unused[label]:
                exhaust(path)
        images = pool.images[np.asarray(batch_ids)]
        probs = api(images)  # the answers at the attacker's granularity
        if model is None:
            model = create_model(surrogate, probs.shape[1], device, seed=int(rng.integers(2**31)))
            optimizer = make_optimizer(model, TrainConfig(lr=surrogate_lr))
        with torch.no_grad():
            model.eval()
            logits = model(to_tensor(images).to(model_device(model))).cpu().numpy()
        history = np.asarray(answers[-recent:]) if answers else probs
        raw = {
            "certainty": certainty_reward(probs),
            "diversity": diversity_reward(probs, history.mean(axis=0)),
            "loss": loss_reward(probs, logits),
        }
        for i, path in enumerate(paths):
            reward = sum(standardisers[name](raw[name][i]) for name in rewards)
            for node, arm in path:
                node.bandit.update(arm, reward, baseline)
            n_rewards += 1
            baseline += (reward - baseline) / n_rewards
        sample_ids.extend(batch_ids)
        answers.extend(probs)
        _train_online(
            model,
            optimizer,
            pool,
            np.asarray(sample_ids),
            np.asarray(answers),
            len(batch_ids),
            train_steps,
            rng,
        )
    log.info(
        "adaptive: %d queries; root preferences %s",
        len(sample_ids),
        np.round(root.bandit.preferences, 3).tolist(),
    )
    return np.asarray(sample_ids, dtype=np.int64)


def _path_to(root: Node, label: int) -> list[tuple[Node, int]]:
    def search(node: Node, path):
        for arm, child in enumerate(node.children):
            if child.label == label:
                return [*path, (node, arm)]
            found = search(child, [*path, (node, arm)])
            if found:
                return found
        return None

    return search(root, []) or []


def _train_online(
    model, optimizer, pool, sample_ids, answers, newest: int, steps: int, rng: np.random.Generator
) -> None:
    """A few steps on the newest answers plus as many replayed older ones (answers with no
    mass, e.g. rounded to nothing, teach nothing and are left out)."""
    model.train()
    device = model_device(model)
    for _ in range(steps):
        new = np.arange(len(sample_ids) - newest, len(sample_ids))
        old = rng.integers(0, len(sample_ids), size=newest)
        idx = np.concatenate([new, old])
        targets, kept = response_to_targets(answers[idx])
        if not kept.any():
            continue
        x = to_tensor(pool.images[sample_ids[idx[kept]]]).to(device)
        loss = soft_cross_entropy(model(x), torch.as_tensor(targets).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
