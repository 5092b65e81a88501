"""Small CPU training runs whose final weights pin down fit's arithmetic (see
tests/test_training_loop.py). Only stealbench's public training API is used, so the same
scenarios ran on the loop before background loading to record the reference hashes:

    PYTHONPATH=src python tests/training_scenarios.py 1   # one thread, as conftest: hashes
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from stealbench.data import datasets, sources
from stealbench.io import state_dict_checksum
from stealbench.models.architectures import create_model
from stealbench.models.training import TrainConfig, fit


def toy(n: int, seed: int = 0, shape=(28, 28, 1)) -> tuple[np.ndarray, np.ndarray]:
    """Two classes: bright left half vs bright right half (plus noise)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.integers(0, 60, size=(n, *shape)).astype(np.uint8)
    half = shape[1] // 2
    for i, y in enumerate(labels):
        images[i, :, (0 if y == 0 else half) : (half if y == 0 else shape[1])] += 150
    return images, labels


def lazy_noise(folder: Path, n: int = 150) -> datasets.Dataset:
    """A dataset file of ``n`` noise images in row groups of 16, opened lazily."""
    path = folder / "noise.parquet"
    if not path.exists():
        rows = datasets.ROW_GROUP_ROWS
        datasets.ROW_GROUP_ROWS = 16
        try:
            spec = {"source": "noise", "options": {"size": n}, "splits": {"train": -1}}
            sources.materialise_to("noise", spec, 0, path)
        finally:
            datasets.ROW_GROUP_ROWS = rows
    return datasets.open(path)


def run(name: str, folder: Path, **fit_options) -> tuple[torch.nn.Module, object]:
    """Train scenario ``name``; returns the model and fit's result."""
    x, y = toy(240)
    soft = np.eye(2, dtype=np.float32)[y]
    if name == "lenet-adam-val":  # 200 rows in batches of 32: a short last batch
        model = create_model("lenet", 2, seed=0)
        cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3)
        result = fit(model, x[:200], soft[:200], x[200:], y[200:], cfg, 5, **fit_options)
    elif name == "resnet8-sgd-steps":  # batch norm, SGD, a step schedule, no validation
        model = create_model("resnet8", 2, seed=1)
        cfg = TrainConfig(epochs=2, batch_size=24, lr=0.05, optimizer="sgd", lr_step=1)
        result = fit(model, x[:100], soft[:100], None, None, cfg, 3, **fit_options)
    elif name == "lenet-lazy-store":  # the block-shuffled order of a lazy ImageStore
        data = lazy_noise(folder)
        targets = np.random.default_rng(1).dirichlet(np.ones(3), len(data.images))
        model = create_model("lenet", 3, seed=2)
        cfg = TrainConfig(epochs=2, batch_size=20, lr=1e-3)
        result = fit(
            model, data.images, targets.astype(np.float32), None, None, cfg, 7, **fit_options
        )
    elif name == "lenet-outliers":  # Outlier Exposure, outliers of the batch's shape, cycled
        outliers, _ = toy(50, seed=9)
        model = create_model("lenet", 2, seed=0)
        cfg = TrainConfig(epochs=2, batch_size=32, lr=3e-3)
        result = fit(
            model,
            x[:120],
            soft[:120],
            None,
            None,
            cfg,
            5,
            outliers=outliers,
            outlier_weight=0.5,
            **fit_options,
        )
    elif name == "lenet-lazy-outliers":  # lazy outliers of another shape: their own pass
        data = lazy_noise(folder)
        x3, y3 = toy(90, seed=4, shape=(32, 32, 3))
        model = create_model("lenet", 2, seed=0)
        cfg = TrainConfig(epochs=2, batch_size=32, lr=3e-3)
        result = fit(
            model,
            x3,
            np.eye(2, dtype=np.float32)[y3],
            None,
            None,
            cfg,
            5,
            outliers=data.images,
            **fit_options,
        )
    else:
        raise ValueError(name)
    return model, result


SCENARIOS = (
    "lenet-adam-val",
    "resnet8-sgd-steps",
    "lenet-lazy-store",
    "lenet-outliers",
    "lenet-lazy-outliers",
)


if __name__ == "__main__":
    import tempfile

    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in SCENARIOS:
            model, result = run(scenario, Path(tmp))
            digest = state_dict_checksum(model.state_dict())
            print(f'"{scenario}": "{digest}",  # best epoch {result.best_epoch}')
