"""The victim sources a config may name, and what each allows (torch-free: the config checks
use it while Snakemake plans).

- :data:`SOURCES`: ``train`` (the default) and the external sources;
- :data:`TRAIN_ONLY`: the keys of a victim entry that only make sense for training, errors
  with an external source (``arch`` of a checkpoint lives in ``checkpoint.arch``);
- :data:`TORCHVISION_CLASSIFIERS`: torchvision's classification models, the names
  ``torchvision.models.list_models(module=torchvision.models)`` gives for the pinned
  torchvision (a test checks they agree), so a mistyped name is a config error with a
  "did you mean" before torch is imported;
- :func:`num_classes`: the class count a victim's ``classes`` declares (a count or names);
- :func:`derivable`: whether a granularity can be computed from what a remote API returns
  (probs > top<k> > label; top<j> from top<k> when j <= k; round<d> only from probs).

Departure from the issue: it says a checkpoint declares ``arch`` and ``num_classes``; here the
class count is the victim's ``classes`` (shared by every external source) and the
architecture is ``checkpoint.arch``.
"""

from __future__ import annotations

import re

SOURCES = ("train", "checkpoint", "torchscript", "torchvision", "remote")
EXTERNAL = SOURCES[1:]
LOCAL = ("checkpoint", "torchscript", "torchvision")
TRAIN_ONLY = ("arch", "init", "input_size", "training")


def num_classes(spec: dict) -> int:
    """The class count an external victim's ``classes`` declares: a count or the names."""
    classes = spec["classes"]
    return len(classes) if isinstance(classes, (list, tuple)) else int(classes)


TORCHVISION_CLASSIFIERS = (
    "alexnet",
    "convnext_base",
    "convnext_large",
    "convnext_small",
    "convnext_tiny",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnet_v2_l",
    "efficientnet_v2_m",
    "efficientnet_v2_s",
    "googlenet",
    "inception_v3",
    "maxvit_t",
    "mnasnet0_5",
    "mnasnet0_75",
    "mnasnet1_0",
    "mnasnet1_3",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "regnet_x_16gf",
    "regnet_x_1_6gf",
    "regnet_x_32gf",
    "regnet_x_3_2gf",
    "regnet_x_400mf",
    "regnet_x_800mf",
    "regnet_x_8gf",
    "regnet_y_128gf",
    "regnet_y_16gf",
    "regnet_y_1_6gf",
    "regnet_y_32gf",
    "regnet_y_3_2gf",
    "regnet_y_400mf",
    "regnet_y_800mf",
    "regnet_y_8gf",
    "resnet101",
    "resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "resnext50_32x4d",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    "squeezenet1_0",
    "squeezenet1_1",
    "swin_b",
    "swin_s",
    "swin_t",
    "swin_v2_b",
    "swin_v2_s",
    "swin_v2_t",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "vit_b_16",
    "vit_b_32",
    "vit_h_14",
    "vit_l_16",
    "vit_l_32",
    "wide_resnet101_2",
    "wide_resnet50_2",
)


def ledger_path(victim: str) -> str:
    """A remote victim's durable answer ledger, relative to the workflow's directory. Not a
    Snakemake output: it must survive a failed job (what was paid for is kept)."""
    return f"results/victims/{victim}/answers.sqlite"


def source(spec: dict) -> str:
    """A victim entry's source (``train`` when it names none)."""
    return spec.get("source", "train")


def _rank(granularity: str) -> tuple[str, int]:
    if granularity == "probs":
        return "probs", 0
    if granularity == "label":
        return "label", 1
    match = re.fullmatch(r"(top|round)(\d+)", granularity)
    if match is None:
        raise ValueError(f"unknown granularity {granularity!r}")
    return match.group(1), int(match.group(2))


def derivable(granularity: str, returns: str) -> bool:
    """Whether answers at ``granularity`` can be computed from answers at ``returns``."""
    want, k = _rank(granularity)
    have, j = _rank(returns)
    if have == "probs" or want == "label":
        return True
    if want == "top" and have == "top":
        return k <= j
    return False


def derivable_from(returns: str) -> str:
    """The granularities derivable from ``returns``, in words (for messages)."""
    have, k = _rank(returns)
    if have == "probs":
        return "probs, label, top<k>, round<d>"
    if have == "top":
        return "label" + (f", top1 … top{k}" if k > 1 else ", top1")
    return "label"
