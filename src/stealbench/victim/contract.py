"""An external victim's input contract: the images it takes and how they are scaled.

``victims.<name>.input`` declares ``size`` (square side in pixels), ``channels`` (1 or 3)
and ``normalize``: ``none`` when the model takes images in [0, 1] (including a model that
normalises inside itself), or ``{mean: [...], std: [...]}`` per channel when the model
expects ``(x - mean) / std`` of [0, 1] images, as torchvision's published classifiers do
(their transforms normalise outside the module). Stealbench adapts every query to the
contract the way its own architectures adapt theirs (:class:`InputAdapter`: channels, then
an antialiased bilinear resize, then the scale), so a pool of another size can be sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@dataclass(frozen=True)
class InputContract:
    size: int
    channels: int
    mean: tuple[float, ...] | None = None  # None: the model takes [0, 1]
    std: tuple[float, ...] | None = None

    @classmethod
    def from_spec(cls, spec: dict) -> InputContract:
        """The contract of a config's ``input`` mapping (already schema-checked)."""
        normalize = spec.get("normalize", "none")
        if normalize == "none":
            return cls(int(spec["size"]), int(spec["channels"]))
        if normalize == "imagenet":
            normalize = IMAGENET
        return cls(
            int(spec["size"]),
            int(spec["channels"]),
            tuple(float(m) for m in normalize["mean"]),
            tuple(float(s) for s in normalize["std"]),
        )

    def adapter(self):
        """The :class:`~stealbench.models.architectures.InputAdapter` that turns [0, 1]
        images of any shape into what the model takes."""
        from ..models.architectures import InputAdapter

        channels = self.channels
        mean = self.mean if self.mean is not None else (0.0,) * channels
        std = self.std if self.std is not None else (1.0,) * channels
        return InputAdapter(channels, self.size, mean, std)

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) images as the float32 (N, channels, size, size) tensor the model
        takes: what a remote victim is sent."""
        import torch

        from ..models.training import to_tensor

        with torch.no_grad():
            return self.adapter()(to_tensor(np.asarray(images))).numpy().astype(np.float32)

    def wrap(self, model):
        """``model`` behind the contract: a module that takes [0, 1] images of any shape."""
        import torch.nn as nn

        return nn.Sequential(self.adapter(), model).eval()
