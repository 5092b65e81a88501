"""A model registry looked up by name, in the spirit of timm.

Every model takes images as float tensors in [0, 1], shape (N, C, H, W), of any size and
channel count: an :class:`InputAdapter` in front of the network converts them to what the
architecture expects (channels, resolution, normalisation). So a pool of photographs can be
sent to a digit victim, and any surrogate can be trained on any pool.

Add an architecture with ``@register("name", channels=..., size=...)`` on a function
``(num_classes) -> nn.Module``, and add the name to the ``arch`` enum of
``workflow/schemas/config.schema.yaml`` (a test checks that the two agree).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    build: Callable[[int], nn.Module]
    channels: int  # input channels the network expects
    size: int  # input resolution (square) the network expects
    mean: tuple[float, ...]
    std: tuple[float, ...]


ARCHITECTURES: dict[str, ArchSpec] = {}


def register(name: str, channels: int = 1, size: int = 28, mean=(0.5,), std=(0.5,)):
    def decorate(fn: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        ARCHITECTURES[name] = ArchSpec(fn, channels, size, tuple(mean), tuple(std))
        return fn

    return decorate


class InputAdapter(nn.Module):
    """Convert [0, 1] images of any shape to the architecture's channels, size and scale."""

    def __init__(self, channels: int, size: int, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.channels, self.size = channels, size
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            if self.channels == 1:
                x = x.mean(dim=1, keepdim=True)
            elif x.shape[1] == 1:
                x = x.expand(-1, self.channels, -1, -1)
            else:
                raise ValueError(f"cannot adapt {x.shape[1]}-channel images to {self.channels}")
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """An architecture from the registry behind its input adapter."""

    def __init__(self, arch: str, num_classes: int):
        super().__init__()
        spec = get_spec(arch)
        self.arch = arch
        self.adapter = InputAdapter(spec.channels, spec.size, spec.mean, spec.std)
        self.net = spec.build(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.adapter(x))


def get_spec(arch: str) -> ArchSpec:
    if arch not in ARCHITECTURES:
        allowed = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {arch!r}; allowed: {allowed}")
    return ARCHITECTURES[arch]


def create_model(arch: str, num_classes: int, device: str = "cpu") -> Classifier:
    return Classifier(arch, num_classes).to(device)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------ architectures


@register("lenet")
def lenet(num_classes: int) -> nn.Module:
    """LeNet-5-like: two conv/pool stages and two dense layers."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class NarrowResNet(nn.Module):
    """A CIFAR-style ResNet (He et al. 2016, section 4.2) with few channels: 3 stages."""

    def __init__(self, num_classes: int, widths=(8, 16, 32), blocks: int = 1, in_channels: int = 1):
        super().__init__()
        # A stride-2 stem (as in ImageNet ResNets) makes it ~3x cheaper at 28x28 on a CPU.
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 2, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        layers, cin = [], widths[0]
        for i, width in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(cin, width, 2 if (i > 0 and b == 0) else 1))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register("resnet8")
def resnet8(num_classes: int) -> nn.Module:
    """ResNet-8, narrow (8/16/32 channels): a residual network that trains fast on a CPU."""
    return NarrowResNet(num_classes, widths=(8, 16, 32), blocks=1)
