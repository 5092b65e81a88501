"""A model registry looked up by name, in the spirit of timm.

Every model takes images as float tensors in [0, 1], shape (N, C, H, W), of any size and
channel count: an :class:`InputAdapter` in front of the network converts them to what the
architecture expects (channels, resolution, normalisation). So a pool of photographs can be
sent to a digit victim, and any surrogate can be trained on any pool.

Add an architecture with ``@register("name", channels=..., size=...)`` on a function
``(num_classes, pretrained) -> nn.Module``, and add the name to the ``arch`` enum of
``workflow/schemas/config.schema.yaml`` (a test checks that the two agree).

Small CNNs for the offline default (``lenet``, ``cnn5``, ``cnn9``, ``resnet8``) train from
scratch; torchvision models (``resnet18/34/50``, ``vgg16``, ``densenet121``,
``mobilenet_v3_small/large``) can start from ImageNet weights through torchvision's weights API
(``pretrained=True``), as the paper's victims and surrogates do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    build: Callable[[int, bool], nn.Module]
    channels: int  # input channels the network expects
    size: int  # input resolution (square) the network expects
    mean: tuple[float, ...]
    std: tuple[float, ...]


ARCHITECTURES: dict[str, ArchSpec] = {}


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def register(name: str, channels: int = 1, size: int = 28, mean=(0.5,), std=(0.5,)):
    def decorate(fn: Callable[[int, bool], nn.Module]) -> Callable[[int, bool], nn.Module]:
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

    def __init__(
        self, arch: str, num_classes: int, pretrained: bool = False, input_size: int | None = None
    ):
        super().__init__()
        spec = get_spec(arch)
        self.arch = arch
        self.adapter = InputAdapter(spec.channels, input_size or spec.size, spec.mean, spec.std)
        self.net = spec.build(num_classes, pretrained)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.adapter(x))


def get_spec(arch: str) -> ArchSpec:
    if arch not in ARCHITECTURES:
        allowed = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {arch!r}; allowed: {allowed}")
    return ARCHITECTURES[arch]


def create_model(
    arch: str,
    num_classes: int,
    device: str = "cpu",
    pretrained: bool = False,
    input_size: int | None = None,
    seed: int | None = None,
    backbone: dict | None = None,
) -> Classifier:
    """A model from the registry; ``input_size`` overrides the resolution it is fed.

    With ``seed``, the initial weights depend on that seed alone, not on what the process
    drew from torch's global generator before. With ``backbone`` (the state dict of a model
    of the same architecture, e.g. a pretrained backbone of :mod:`stealbench.models.pretrain`),
    every weight but the classification head's starts from it.
    """
    if seed is None:
        model = Classifier(arch, num_classes, pretrained, input_size)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Classifier(arch, num_classes, pretrained, input_size)
    if backbone is not None:
        load_backbone(model, backbone)
    return model.to(device)


def head_name(model: nn.Module) -> str:
    """The qualified name of a model's classification head: its last Linear layer."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no Linear layer (no classification head)")
    return names[-1]


def load_backbone(model: nn.Module, backbone: dict) -> None:
    """Copy every weight of ``backbone`` into ``model`` except the classification head's.

    The head keeps its fresh initialisation (it has another number of classes). A backbone
    of another architecture is an error naming the first weight that does not fit.
    """
    head = head_name(model) + "."
    own = model.state_dict()
    body = {k: v for k, v in own.items() if not k.startswith(head)}
    for key, value in body.items():
        if key not in backbone or tuple(backbone[key].shape) != tuple(value.shape):
            found = tuple(backbone[key].shape) if key in backbone else "missing"
            raise ValueError(
                f"the backbone does not fit this {getattr(model, 'arch', 'model')}: weight "
                f"{key!r} is {found} in the backbone, {tuple(value.shape)} in the model"
            )
    model.load_state_dict({**own, **{k: backbone[k] for k in body}})


def _scratch_only(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(
            f"architecture {name!r} has no pretrained weights; set pretrained: false "
            f"or use a torchvision model ({', '.join(TORCHVISION_MODELS)})"
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------ architectures


@register("lenet")
def lenet(num_classes: int, pretrained: bool = False) -> nn.Module:
    """LeNet-5-like: two conv/pool stages and two dense layers."""
    _scratch_only("lenet", pretrained)
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
def resnet8(num_classes: int, pretrained: bool = False) -> nn.Module:
    """ResNet-8, narrow (8/16/32 channels): a residual network that trains fast on a CPU."""
    _scratch_only("resnet8", pretrained)
    return NarrowResNet(num_classes, widths=(8, 16, 32), blocks=1)


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


@register("cnn5", channels=3, size=32)
def cnn5(num_classes: int, pretrained: bool = False) -> nn.Module:
    """A 5-layer CNN (3 conv + 2 dense) in the spirit of Atli et al.'s GTSRB-5L victim.

    Like cnn9 it sees 32x32 RGB, as GTSRB and CIFAR-10 are; other images are adapted."""
    _scratch_only("cnn5", pretrained)
    return nn.Sequential(
        *_conv(3, 16),
        nn.MaxPool2d(2),
        *_conv(16, 32),
        nn.MaxPool2d(2),
        *_conv(32, 64),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


@register("cnn9", channels=3, size=32)
def cnn9(num_classes: int, pretrained: bool = False) -> nn.Module:
    """A 9-layer CNN (7 conv + 2 dense) in the spirit of Atli et al.'s CIFAR10-9L victim."""
    _scratch_only("cnn9", pretrained)
    return nn.Sequential(
        *_conv(3, 16),
        *_conv(16, 16),
        nn.MaxPool2d(2),
        *_conv(16, 32),
        *_conv(32, 32),
        nn.MaxPool2d(2),
        *_conv(32, 64),
        *_conv(64, 64),
        *_conv(64, 64),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


# torchvision models, fed 3-channel 224x224 ImageNet-normalised inputs by the adapter.
TORCHVISION_MODELS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg16",
    "densenet121",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
)


def _replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the last Linear layer for one with ``num_classes`` outputs (fine-tuning)."""
    parent, name, last = None, None, None
    for _, module in model.named_modules():
        for child_name, child in module.named_children():
            if isinstance(child, nn.Linear):
                parent, name, last = module, child_name, child
    if last is None:
        raise ValueError(f"{type(model).__name__} has no Linear layer to replace")
    setattr(parent, name, nn.Linear(last.in_features, num_classes))
    return model


def _torchvision(name: str):
    def build(num_classes: int, pretrained: bool = False) -> nn.Module:
        from torchvision.models import get_model, get_model_weights

        if not pretrained:
            return get_model(name, weights=None, num_classes=num_classes)
        # The weights API downloads into $TORCH_HOME/hub/checkpoints, or reuses what is there.
        model = get_model(name, weights=get_model_weights(name).DEFAULT)
        return _replace_head(model, num_classes)

    build.__doc__ = f"torchvision's {name}, optionally from ImageNet weights."
    return build


for _name in TORCHVISION_MODELS:
    register(_name, channels=3, size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)(_torchvision(_name))


def _load_plugins() -> None:
    """Architectures of plug-in packages (group ``stealbench.architectures``)."""
    from .. import plugins

    plugins.load("architectures", ARCHITECTURES)


_load_plugins()
