"""A training schedule (:class:`TrainConfig`), torch-free: the training loops run it
(:mod:`.training`) and the cluster planner prices it (:mod:`stealbench.config.resources`)
before any job, without importing torch."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainConfig:
    """A fixed training schedule: optimiser, learning rate and its step decay, epochs."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9  # SGD only (Knockoff nets' reference code uses 0.5)
    weight_decay: float = 0.0
    # Multiply the learning rate by lr_gamma every lr_step epochs (0: a constant rate).
    lr_step: int = 0
    lr_gamma: float = 0.1
    # Small transfer sets get at least this many gradient steps, so that a budget of 100
    # queries is not judged on an under-trained model.
    min_steps: int = 0
    # Early stopping (needs validation data): stop once ``patience`` epochs in a row bring no
    # strict improvement of ``val_metric``, and keep the first epoch with the best value
    # (ActiveThief's reference code). None: run every epoch, keep the best (ties: the later).
    patience: int | None = None
    # How an epoch is judged on the validation data, against ``val_labels`` (top-1):
    # "accuracy", or "macro-f1" (scikit-learn's f1_score, average="macro").
    val_metric: str = "accuracy"
    # Arithmetic of the training steps: "fp32", or mixed precision under torch.autocast with
    # "bf16" or "fp16" (fp16 with a GradScaler). Validation and inference stay fp32. Both run
    # on a CPU too (torch 2.14 autocasts fp16 there and has a CPU GradScaler), slower than fp32.
    precision: str = "fp32"
    # The channels-last memory layout for convolutional models' weights and activations:
    # "auto" (on a CUDA device only, where its kernels are faster; a CPU keeps today's
    # arithmetic), True or False.
    channels_last: str | bool = "auto"

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})

    def epochs_for(self, n: int) -> int:
        steps_per_epoch = math.ceil(n / self.batch_size)
        return max(self.epochs, math.ceil(self.min_steps / steps_per_epoch))
