"""The figures Atli et al. (EDSMLS 2020) report, to stand beside ours in the claim tables.

Test accuracy in %, from the paper's tables as summarised in shared/paper.md. A victim in a
config names its counterpart with ``paper: <key>``.
"""

from __future__ import annotations

# key: victim accuracy, surrogate accuracy with probabilities (ResNet-34 surrogate),
# with top-1 labels, with a VGG-16 surrogate, with the OOD pre-classifier's shuffled responses.
PAPER_RESULTS: dict[str, dict[str, float | None]] = {
    "caltech-rn34": {
        "victim_acc": 74.1,
        "probs": 72.2,
        "label": 57.2,
        "vgg16": None,
        "defended": 29.5,
    },
    "cubs-rn34": {
        "victim_acc": 77.2,
        "probs": 70.9,
        "label": 42.5,
        "vgg16": None,
        "defended": 20.1,
    },
    "diabetic-rn34": {
        "victim_acc": 71.1,
        "probs": 53.5,
        "label": 53.5,
        "vgg16": None,
        "defended": 28.0,
    },
    "gtsrb-rn34": {
        "victim_acc": 98.1,
        "probs": 94.8,
        "label": 91.9,
        "vgg16": 90.1,
        "defended": 14.8,
    },
    "cifar10-rn34": {
        "victim_acc": 94.6,
        "probs": 88.2,
        "label": 84.4,
        "vgg16": 82.9,
        "defended": 2.8,
    },
    "gtsrb-5l": {"victim_acc": 91.5, "probs": 54.5, "label": None, "vgg16": 55.8, "defended": None},
    "cifar10-9l": {
        "victim_acc": 84.5,
        "probs": 67.5,
        "label": None,
        "vgg16": 64.7,
        "defended": None,
    },
}
