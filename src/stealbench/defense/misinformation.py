"""Adaptive Misinformation (Kariyappa & Qureshi, CVPR 2020).

A query the victim is unsure about (maximum softmax probability s below ``tau``, the
strength) is likely out of distribution, hence likely an attacker's; it is answered with the
misinformation model's posterior y^ = softmax(f^(x)) instead of the victim's y:

    y' = (1 - a) y + a y^,   a = sigmoid(nu (tau - s)).

``context.misinformation`` is f^, a network with the victim's input and output shape trained
by :func:`train_misinformation_model` to put little mass on the correct class. ``nu`` sets how
sharp the switch is: the default 10000 is the value in the authors' released code (the one
their reported results were produced with); it makes a a step at s = tau to within 1e-3 of s.
The default ``tau`` = 0.9 is lower than the authors' MNIST example (0.99) because their
victims were trained with outlier exposure, which pushes in-distribution scores to 1, and a
plainly trained victim is not: a sweep over ``tau`` gives the trade-off curve either way. A
victim is trained as theirs with ``victims.<v>.training.outlier_exposure`` (the default's
``mnist-lenet-oe``; :func:`stealbench.models.training.fit`).
Rows with a = 0 exactly (in floating point) skip the misinformation model; the answer is a
convex combination, so on the simplex. Deterministic (fixed-size batches: :mod:`.inference`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .inference import model_softmax
from .registry import Defense, DefenseContext, ModelJob, register, register_model


def misinformation_weight(probs: np.ndarray, tau: float, nu: float) -> np.ndarray:
    """a = sigmoid(nu (tau - max_k y_k)) per row, computed without overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * nu * (tau - probs.max(axis=1))))


@register
class AdaptiveMisinformation(Defense):
    name = "adaptive-misinformation"
    strength = "tau"
    needs = ("misinformation",)
    params = {
        "tau": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "threshold on the top-1 probability",
        },
        "nu": {"type": "number", "exclusiveMinimum": 0, "description": "the switch's slope"},
    }

    def __init__(self, context: DefenseContext, tau: float = 0.9, nu: float = 10000.0):
        super().__init__(context)
        if not _finite(tau) or not 0.0 <= float(tau) <= 1.0:
            raise ValueError(
                f"adaptive-misinformation needs tau in [0, 1] (a threshold on the maximum "
                f"softmax probability), got tau={tau!r}"
            )
        if not _finite(nu) or float(nu) <= 0:
            raise ValueError(f"adaptive-misinformation needs nu > 0 (a slope), got nu={nu!r}")
        self.tau, self.nu = float(tau), float(nu)

    def perturb(self, probs: np.ndarray, images: np.ndarray) -> np.ndarray:
        alpha = misinformation_weight(probs, self.tau, self.nu)
        out = probs.copy()
        mixed = alpha > 0
        if mixed.any():
            misinformation = model_softmax(self.context.misinformation, images[mixed])
            if misinformation.shape[1] != probs.shape[1]:
                raise ValueError(
                    f"the misinformation model has {misinformation.shape[1]} classes, the "
                    f"victim {probs.shape[1]}"
                )
            a = alpha[mixed, None]
            out[mixed] = (1.0 - a) * probs[mixed] + a * misinformation
        return out


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------ training f^


def misinformation_loss(logits, targets):
    """Mean of -log(1 - p^_t): low probability on the target class t.

    The authors apply cross-entropy to log(1 - p^), which is this plus log(K - 1). Computed
    stably as logsumexp over the other classes minus logsumexp over all of them."""
    import torch

    others = logits.masked_fill(
        torch.nn.functional.one_hot(targets, logits.shape[1]).bool(), float("-inf")
    )
    return -(torch.logsumexp(others, dim=1) - torch.logsumexp(logits, dim=1)).mean()


def train_misinformation_model(
    images: np.ndarray,
    labels: np.ndarray,
    arch: str,
    cfg,
    seed: int,
    outlier_images: np.ndarray | None = None,
    victim_predict: Callable[[np.ndarray], np.ndarray] | None = None,
    device: str = "cpu",
    num_classes: int | None = None,
):
    """Train f^ (an ``arch`` model) with :func:`misinformation_loss`, as the authors do.

    The targets are the true ``labels`` of the victim's training ``images`` and, with
    ``outlier_images`` (then ``victim_predict``, images -> posteriors, is required), the
    victim's top-1 on them. Like the authors' loop, every step takes a shuffled batch of the
    training images and the next batch of outliers (a seeded order, cycled), and an epoch is
    one pass over the training images; ``cfg`` is a :class:`~stealbench.models.training.
    TrainConfig`. ``num_classes`` defaults to ``labels.max() + 1``.
    """
    import torch

    from ..models.architectures import create_model
    from ..models.training import make_optimizer, schedule_lr, seed_everything, to_tensor

    labels = np.asarray(labels, dtype=np.int64)
    if len(images) != len(labels) or not len(labels):
        raise ValueError(f"need as many labels as images (> 0), got {len(images)}, {len(labels)}")
    num_classes = int(num_classes or labels.max() + 1)
    outlier_targets = None
    if outlier_images is not None and len(outlier_images):
        if victim_predict is None:
            raise ValueError("outlier_images need victim_predict (their targets are its top-1)")
        outlier_targets = torch.as_tensor(np.asarray(victim_predict(outlier_images)).argmax(1))
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    model = create_model(arch, num_classes, device, seed=seed)
    optimizer = make_optimizer(model, cfg)
    labels_t = torch.as_tensor(labels)
    outlier_order, outlier_pos = None, 0
    if outlier_targets is not None:
        outlier_order = torch.randperm(len(outlier_targets), generator=generator)
    n = len(images)
    for epoch in range(1, cfg.epochs_for(n) + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size].numpy()
            logits, targets = model(to_tensor(images[idx]).to(device)), labels_t[idx]
            if outlier_order is not None:
                take = torch.arange(outlier_pos, outlier_pos + len(idx)) % len(outlier_order)
                outlier_pos = int(take[-1]) + 1
                extra = outlier_order[take].numpy()
                # A forward pass of its own: outliers may have another shape than the images.
                logits = torch.cat([logits, model(to_tensor(outlier_images[extra]).to(device))])
                targets = torch.cat([targets, outlier_targets[extra]])
            loss = misinformation_loss(logits, targets.to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"misinformation model: loss became {loss.item()} at epoch {epoch}; lower "
                    f"the learning rate (lr={cfg.lr})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule_lr(optimizer, cfg, epoch)
    return model.eval()


def _load_misinformation_model(path, device: str = "cpu"):
    from .context import load_model

    return load_model(path, "misinformation", device)


@register_model("misinformation", load=_load_misinformation_model)
def build_misinformation_model(job: ModelJob, path) -> dict[str, float]:
    """The defense stage's misinformation model of one victim (``defenses.misinformation``):
    its architecture, trained on its train split and the outlier datasets' train splits."""
    import time

    from ..models.training import TrainConfig
    from ..models.victims import victim_posteriors
    from ..runtime import derive_seed
    from .context import save_model

    images, labels = job.victim_data.split("train")
    victim_model = job.load_victim()
    num_classes = len(job.victim_data.classes)
    start = time.perf_counter()
    model = train_misinformation_model(
        images,
        labels,
        job.params.victim["arch"],
        TrainConfig.from_dict(job.params.misinformation["training"]),
        derive_seed(job.seed, "misinformation", job.victim),
        outlier_images=np.concatenate(job.outlier) if job.outlier else None,
        victim_predict=lambda batch: victim_posteriors(victim_model, batch),
        device=job.device,
        num_classes=num_classes,
    )
    seconds = time.perf_counter() - start
    save_model(
        model, path, "misinformation", arch=job.params.victim["arch"], num_classes=num_classes
    )
    return {"misinformation": seconds}
