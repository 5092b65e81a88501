"""Tiny pools and victims shared by the attack tests (small enough for a unit test)."""

import numpy as np
import torch
from torch import nn

from stealbench.data import datasets


def toy_pool(n: int = 50, test: int = 10, shape=(4, 4, 1), seed: int = 0) -> datasets.Dataset:
    """An unlabelled pool of ``n - test`` random images (and ``test`` images of another split)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    splits = np.array(["pool"] * (n - test) + ["test"] * test, dtype=object)
    labels = np.full(n, -1)
    _, meta = datasets.to_table("toy", images, labels, splits, [], "toy", 0, {})
    return datasets.Dataset("toy", images, labels, splits, meta)


def labelled_pool(n: int = 400, classes: int = 4, seed: int = 0) -> datasets.Dataset:
    """28x28 greyscale images; class y is a bright band at rows 7y..7y+7 (classes <= 4)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 40, size=(n, 28, 28, 1)).astype(np.uint8)
    for i, y in enumerate(labels):
        images[i, 7 * y : 7 * y + 7] += 180
    splits = np.array(["pool"] * n, dtype=object)
    names = [f"c{k}" for k in range(classes)]
    _, meta = datasets.to_table("toy", images, labels, splits, names, "toy", 0, {})
    return datasets.Dataset("toy", images, labels, splits, meta)


class Counting(nn.Module):
    """A victim that counts the images it is asked about (its forward passes). All-black
    rows are not counted: victim_posteriors pads a batch to its fixed size with them (no toy
    pool holds an all-black image)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += int(x.flatten(1).any(dim=1).sum())
        return self.inner(x)


class Scaled(nn.Module):
    """``inner``'s logits times ``factor``: the same top-1 on every image, other posteriors."""

    def __init__(self, inner: nn.Module, factor: float):
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.factor


def linear_victim(pixels: int = 16, classes: int = 3, seed: int = 0) -> Counting:
    """A seeded linear classifier on flattened images, counting its queries."""
    torch.manual_seed(seed)
    return Counting(nn.Sequential(nn.Flatten(), nn.Linear(pixels, classes))).eval()


def jacobian_like_stream(seeds: np.ndarray, rounds: int, step: int, rng) -> np.ndarray:
    """Jacobian-based augmentation's shape without a substitute: each round adds a +-step
    perturbation of every image so far (random signs from ``rng`` stand in for the signs of
    the Jacobian); the seeds, then each round's children, in order."""
    current, stream = seeds, [seeds]
    for _ in range(rounds):
        signs = rng.choice([-1, 1], size=current.shape)
        children = np.clip(current.astype(int) + step * signs, 0, 255).astype(np.uint8)
        stream.append(children)
        current = np.concatenate([current, children])
    return np.concatenate(stream)
