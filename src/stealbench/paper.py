"""Published figures that stand beside ours, in our units (accuracies and recovery as
fractions, never %), with what each was measured on.

- :data:`PAPER_RESULTS`: Atli et al. (EDSMLS 2020), per victim configuration; a victim in a
  config names its counterpart with ``paper: <key>``. From ../shared/paper.md's tables.
- :data:`RECOVERY_ANCHORS`: recovery against budget from the papers and their reference code,
  for the claim-1 table and the recovery-vs-budget figure. Their victims differ from ours
  (larger data, other architectures), so they are compared as recovery, with the difference
  stated in ``note``.
"""

from __future__ import annotations

from dataclasses import dataclass

# key: victim accuracy, surrogate accuracy with probabilities (ResNet-34 surrogate), with top-1
# labels, with a VGG-16 surrogate, with the OOD pre-classifier's shuffled responses.
PAPER_RESULTS: dict[str, dict[str, float | None]] = {
    "caltech-rn34": {
        "victim_acc": 0.741,
        "probs": 0.722,
        "label": 0.572,
        "vgg16": None,
        "defended": 0.295,
    },
    "cubs-rn34": {
        "victim_acc": 0.772,
        "probs": 0.709,
        "label": 0.425,
        "vgg16": None,
        "defended": 0.201,
    },
    "diabetic-rn34": {
        "victim_acc": 0.711,
        "probs": 0.535,
        "label": 0.535,
        "vgg16": None,
        "defended": 0.280,
    },
    "gtsrb-rn34": {
        "victim_acc": 0.981,
        "probs": 0.948,
        "label": 0.919,
        "vgg16": 0.901,
        "defended": 0.148,
    },
    "cifar10-rn34": {
        "victim_acc": 0.946,
        "probs": 0.882,
        "label": 0.844,
        "vgg16": 0.829,
        "defended": 0.028,
    },
    "gtsrb-5l": {
        "victim_acc": 0.915,
        "probs": 0.545,
        "label": None,
        "vgg16": 0.558,
        "defended": None,
    },
    "cifar10-9l": {
        "victim_acc": 0.845,
        "probs": 0.675,
        "label": None,
        "vgg16": 0.647,
        "defended": None,
    },
}


@dataclass(frozen=True)
class Anchor:
    """One published point of recovery against budget."""

    source: str
    setting: str
    budget: int | None  # queries; None where the source gives none
    granularity: str
    victim_acc: float | None
    surrogate_acc: float | None
    recovery: float
    pretrained: bool  # whether victim and attacker start from pretrained (ImageNet) weights
    note: str = ""


RECOVERY_ANCHORS: tuple[Anchor, ...] = (
    Anchor(
        "prediction-poisoning code (Orekondy et al., ICLR 2020)",
        "MNIST LeNet victim, EMNIST letters, Knockoff random, 50 epochs",
        60000,
        "probs",
        None,
        0.9905,
        0.9905,
        False,
        "their victim saw all 60,000 MNIST training digits (ours: 2,500); its accuracy is not "
        "given, so 0.9905 is a lower bound on recovery (victim accuracy <= 1)",
    ),
    *(
        Anchor(
            "knockoffnets code (Orekondy et al., CVPR 2019)",
            f"{name} ResNet-34 victim, ImageNet queries, Knockoff random",
            60000,
            "probs",
            victim,
            stolen,
            stolen / victim,
            True,
            "pretrained ResNet-34 victim and attacker (ImageNet weights)",
        )
        for name, victim, stolen in (
            ("Caltech256", 0.784, 0.760),
            ("CUBS200", 0.771, 0.677),
            ("Indoor67", 0.760, 0.682),
            ("Diabetic5", 0.594, 0.436),
        )
    ),
    *(
        Anchor(
            "Atli et al. (EDSMLS 2020)",
            f"{key} victim, ImageNet/OpenImages queries",
            100000,
            "probs",
            spec["victim_acc"],
            spec["probs"],
            spec["probs"] / spec["victim_acc"],
            key.endswith("rn34"),
            "budget about 100,000 queries; "
            + (
                "pretrained ResNet-34 victim and attacker"
                if key.endswith("rn34")
                else "simple CNN victim trained from scratch, pretrained attacker"
            ),
        )
        for key, spec in PAPER_RESULTS.items()
    ),
)
