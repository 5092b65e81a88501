"""Jacobian-based dataset augmentation (Papernot et al., "Practical Black-Box Attacks against
Machine Learning", AsiaCCS 2017): the synthetic-query attack PRADA was designed against.

From a small seed set of in-distribution images, each round trains a substitute on the
victim's labels and adds, for every image x so far, x + lambda * sign(dF(x)[O(x)] / dx):
a step along the substitute's gradient of the class the victim gave x. The set doubles each
round until the budget is spent. Queries are issued seeds first, then round by round in
order, so a run with a smaller budget sends exactly the first queries of a larger one.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ...models.architectures import create_model
from ...models.training import TrainConfig, fit, model_device, to_tensor
from .registry import pool_candidates, query_in_batches, register

log = logging.getLogger(__name__)


def jacobian_step(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    step: float,
    batch_size: int = 256,
) -> np.ndarray:
    """x + step * sign(d logit_label / dx), in pixel units, clipped and quantised to uint8."""
    model.eval()
    device = model_device(model)
    out = np.empty_like(images)
    for i in range(0, len(images), batch_size):
        x = to_tensor(images[i : i + batch_size]).to(device).requires_grad_(True)
        y = torch.as_tensor(labels[i : i + batch_size], device=device)
        model(x).gather(1, y[:, None]).sum().backward()
        moved = (x + step * x.grad.sign()).clamp(0, 1).detach().cpu()
        out[i : i + batch_size] = (moved * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


@register(
    "jbda",
    kind="sequential",
    options={
        "seed_size": {"type": "integer", "minimum": 1},
        "step": {"type": "number", "exclusiveMinimum": 0},
        "tau": {"type": ["integer", "null"], "minimum": 1},
        "substitute": {"$ref": "#/definitions/arch"},
        "epochs": {"type": "integer", "minimum": 1},
        "batch_size": {"type": "integer", "minimum": 1},
        "lr": {"type": "number", "exclusiveMinimum": 0},
    },
)
def run_jbda(
    api,
    pool,
    budget: int,
    rng: np.random.Generator,
    seed_size: int = 100,
    step: float = 0.1,
    tau: int | None = None,
    substitute: str = "lenet",
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    device: str = "cpu",
) -> np.ndarray:
    """Query seeds then augmentation rounds; return each query's seed ancestor, in order.

    The substitute learns the top-1 of each answer (Papernot et al. use labels), so JbDA
    needs no more than labels from the API.
    """
    seed_ids = rng.choice(
        pool_candidates(pool, min(seed_size, budget)), min(seed_size, budget), replace=False
    ).astype(np.int64)
    images = pool.images[seed_ids]
    probs = query_in_batches(api, images)
    sample_ids = seed_ids  # a synthetic image keeps the id of the seed it descends from
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr)
    round_ = 0
    while len(images) < budget:
        labels = probs.argmax(1)
        seed = int(rng.integers(2**31))
        model = create_model(substitute, probs.shape[1], device, seed=seed)
        fit(
            model,
            images,
            np.eye(probs.shape[1], dtype=np.float32)[labels],
            images[:0],
            labels[:0],
            cfg,
            seed=seed,
            desc=f"jbda substitute r{round_}",
        )
        # Periodic step size (Papernot et al. §5): flip the direction every tau rounds.
        sign = -1.0 if tau and (round_ // tau) % 2 else 1.0
        new = jacobian_step(model, images, labels, sign * step)
        keep = np.arange(min(len(new), budget - len(images)))
        new_probs = query_in_batches(api, new[keep])
        images = np.concatenate([images, new[keep]])
        probs = np.concatenate([probs, new_probs])
        sample_ids = np.concatenate([sample_ids, sample_ids[keep]])
        round_ += 1
        log.info("jbda round %d: %d queries so far", round_, len(images))
    return sample_ids
