"""Published figures that stand beside ours, in our units (accuracies and recovery as
fractions, never %), with what each was measured on.

- :data:`PAPER_RESULTS`: Atli et al. (EDSMLS 2020), per victim configuration; a victim in a
  config names its counterpart with ``paper: <key>``. From ../shared/paper.md's tables.
- :data:`RECOVERY_ANCHORS`: recovery against budget from the papers and their reference code,
  for the claim-1 table and the recovery-vs-budget figure. Their victims differ from ours
  (larger data, other architectures), so they are compared as recovery, with the difference
  stated in ``note``.
- :data:`PUBLISHED_METHODS`: one published figure per method after the paper (MAD, Adaptive
  Misinformation, DAWN, ActiveThief, PRADA, DFME), each with the ``configs/reproduce/`` run
  that measures ours and how to read ours from that run's tables (a :class:`Reading`: data
  only; :mod:`stealbench.report.published` does the reading).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


# ------------------------------------------------------------------ methods after the paper


@dataclass(frozen=True)
class Reading:
    """Where ours is in a run's result tables (``results/tables/<table>.parquet``).

    The rows of ``table`` that match ``where`` (column -> value; a list: any of them) give one
    value of ``column`` per seed (``minus``: that column subtracted in the same row; booleans
    count as 0/1, so their mean is a share). With ``largest`` (a column, e.g. ``budget``) only
    the rows at its largest matched value are kept. ``aggregate``:

    - ``mean``: the mean over the matched rows, with :func:`stealbench.report.tables.ci95`;
    - ``ratio``: per seed, the value over the ``baseline`` rows' value (``baseline``: more
      filters on the same table that replace ``where``'s, at the same ``largest`` value),
      then the mean and CI of those ratios (``complement``: of 1 - value, an error rate);
    - ``drop``: per seed, the baseline's value minus the value, then the mean and CI;
    - ``summary``: a table already summarised over seeds (``matched_cost``): the one matched
      row's ``column`` as it is, its CI from ``ci_column`` and its seed count from ``seeds``.
    """

    table: str
    column: str
    where: dict = field(default_factory=dict)
    aggregate: str = "mean"  # mean | ratio | drop | summary
    baseline: dict | None = None
    minus: str | None = None
    largest: str | None = None
    complement: bool = False
    ci_column: str | None = None  # summary only


@dataclass(frozen=True)
class PublishedMethod:
    """One published figure of a method after the paper, and where ours comes from.

    ``published`` is in our units (a fraction, or a ratio for ``unit="ratio"``), ``None`` where
    no source we could read gives the number (``source`` then says so); ``bound`` qualifies it
    as the source does ("up to", "below", "at least" or "" for a plain figure). ``provisional``
    marks a reading written before the run that produces it (its table or column may move).
    """

    key: str
    method: str
    metric: str
    published: float | None
    source: str
    their_setting: str
    our_setting: str  # how ours differs from theirs
    config: str  # configs/reproduce/<method>.yaml
    reading: Reading
    unit: str = "fraction"  # fraction | ratio
    bound: str = ""
    provisional: bool = False


PUBLISHED_METHODS: tuple[PublishedMethod, ...] = (
    PublishedMethod(
        key="mad-undefended",
        method="MAD",
        metric="attacker accuracy, undefended (epsilon 0)",
        published=0.9905,
        source="tribhuvanesh/prediction-poisoning README (Step 1: 'With 60k, attacker obtains "
        "99.05% test accuracy on MNIST at eps=0.0')",
        their_setting="MNIST LeNet-like victim (60,000 digits), EMNIST letters, random "
        "Knockoff attacker, 60,000 queries, 50 epochs",
        our_setting="2,500-digit victim, rendered letters of two fonts, 10,000 queries, "
        "5 epochs, 3 seeds",
        config="configs/reproduce/mad.yaml",
        reading=Reading(
            "defended",
            "test_acc",
            {"defense": "none", "attack": "random-letters", "granularity": "probs"},
            largest="budget",
        ),
    ),
    PublishedMethod(
        key="mad",
        method="MAD",
        metric="attacker error, defended / undefended (MAD-argmax, epsilon 0.99)",
        published=85.0,
        unit="ratio",
        bound="up to",
        source="Orekondy et al., ICLR 2020, abstract ('amplifying the attacker's error rate up "
        "to a factor of 85x with minimal impact on the utility for benign users'); the "
        "dataset and epsilon of the 85x are not in the abstract",
        their_setting="the largest factor over their datasets (MNIST, FashionMNIST, CIFAR-10, "
        "CIFAR-100, CUB200, Caltech256) and attacks, at small utility cost",
        our_setting="the MNIST setting only, MAD-argmax (benign top-1 unchanged) at epsilon "
        "0.99, L1 ball, 10,000 letters queries",
        config="configs/reproduce/mad.yaml",
        reading=Reading(
            "defended",
            "test_acc",
            {"defense": "mad-argmax", "strength_value": 0.99, "attack": "random-letters"},
            aggregate="ratio",
            baseline={"defense": "none", "strength_value": None},
            largest="budget",
            complement=True,
        ),
    ),
    PublishedMethod(
        key="mad-plain",
        method="MAD",
        metric="attacker error, defended / undefended (MAD, epsilon 0.99; its benign cost "
        "in the next row)",
        published=85.0,
        unit="ratio",
        bound="up to",
        source="Orekondy et al., ICLR 2020, abstract (as above)",
        their_setting="as above: the largest factor over their datasets and attacks",
        our_setting="the MNIST setting only, MAD (labels may flip) at epsilon 0.99, L1 ball, "
        "10,000 letters queries",
        config="configs/reproduce/mad.yaml",
        reading=Reading(
            "defended",
            "test_acc",
            {"defense": "mad", "strength_value": 0.99, "attack": "random-letters"},
            aggregate="ratio",
            baseline={"defense": "none", "strength_value": None},
            largest="budget",
            complement=True,
        ),
    ),
    PublishedMethod(
        key="mad-plain-benign",
        method="MAD",
        metric="benign accuracy loss (MAD, epsilon 0.99)",
        published=None,
        source="Orekondy et al., ICLR 2020: the abstract says 'minimal impact on the utility "
        "for benign users' without a figure; their trade-off curves are not in a source we "
        "could read",
        their_setting="the victim's test set through the defense",
        our_setting="the victim's test split through the defense",
        config="configs/reproduce/mad.yaml",
        reading=Reading(
            "defended",
            "victim_acc",
            {"defense": "mad", "strength_value": 0.99, "attack": "random-letters"},
            minus="benign_utility",
            largest="budget",
        ),
    ),
    PublishedMethod(
        key="adaptive-misinformation",
        method="Adaptive Misinformation",
        metric="clone accuracy drop, undefended - defended, at 0.5 points of benign cost",
        published=0.40,
        bound="up to",
        source="Kariyappa and Qureshi, CVPR 2020, abstract ('degrades the accuracy of the "
        "attacker's clone model (by up to 40%), while minimally impacting the accuracy (<0.5%) "
        "for benign users'; whether points or relative is not said: read as points)",
        their_setting="Outlier-Exposure victim (MNIST LeNet, KMNIST outliers), KnockoffNets "
        "with 50,000 EMNIST letters and JbDA; tau 0.99 in the authors' README",
        our_setting="OE LeNet victim on 2,500 digits, rendered letters, 10,000 queries; tau "
        "interpolated to where benign users lose 0.5 points (the matched_cost table)",
        config="configs/reproduce/adaptive-misinformation.yaml",
        reading=Reading(
            "matched_cost",
            "drop_mean",
            {
                "victim": "mnist-lenet-oe",
                "defense": "adaptive-misinformation",
                "attack": "random-letters",
                "cost": 0.005,
            },
            aggregate="summary",
            ci_column="drop_ci95",
            largest="budget",
        ),
    ),
    PublishedMethod(
        key="adaptive-misinformation-benign",
        method="Adaptive Misinformation",
        metric="benign accuracy loss (tau 0.99)",
        published=0.005,
        bound="below",
        source="Kariyappa and Qureshi, CVPR 2020, abstract ('<0.5%' for benign users)",
        their_setting="benign users: the victim's test set through the defense",
        our_setting="the OE victim's test split through the defense",
        config="configs/reproduce/adaptive-misinformation.yaml",
        reading=Reading(
            "defended",
            "victim_acc",
            {
                "victim": "mnist-lenet-oe",
                "defense": "adaptive-misinformation",
                "strength_value": 0.99,
                "attack": "random-letters",
            },
            minus="benign_utility",
            largest="budget",
        ),
    ),
    PublishedMethod(
        key="dawn",
        method="DAWN",
        metric="share of extracted surrogates declared stolen",
        published=1.0,
        source="Szyller et al., ACM MM 2021, abstract ('effectively watermarking all "
        "extracted surrogate models, allowing model owners to reliably demonstrate ownership "
        "(with confidence > 1-2^-64)'; r e.g. 0.5% of queries)",
        their_setting="PRADA's and KnockOff's attacks, watermarks on r = 0.5% of queries, "
        "false-claim probability below 2^-64",
        our_setting="random letters on the MNIST LeNet; r, budget and so the watermark count "
        "(and the reachable false-claim bound) set by the run",
        config="configs/reproduce/dawn.yaml",
        reading=Reading("dawn", "dawn_caught", {}, largest="budget"),
    ),
    PublishedMethod(
        key="dawn-benign",
        method="DAWN",
        metric="benign accuracy loss",
        published=0.005,
        bound="up to",
        source="Szyller et al., ACM MM 2021, abstract ('negligible loss of prediction "
        "accuracy (0.03-0.5%)')",
        their_setting="r = 0.5% of answers changed",
        our_setting="the run's r on the victim's test split",
        config="configs/reproduce/dawn.yaml",
        reading=Reading(
            "defended", "victim_acc", {"defense": "dawn"}, minus="benign_utility", largest="budget"
        ),
    ),
    PublishedMethod(
        key="activethief",
        method="ActiveThief",
        metric="surrogate accuracy, ActiveThief / uniform noise (top-1 labels)",
        published=4.70,
        unit="ratio",
        source="Pal et al., AAAI 2020 (arXiv 1905.09165), abstract ('improves performance on "
        "an average over a uniform noise baseline by 4.70x for image tasks ... using only 30% "
        "(30,000 samples) of the public dataset')",
        their_setting="average over their image tasks (MNIST, CIFAR-10, GTSRB), top-1 labels, "
        "30,000 ImageNet-subset queries, best selection strategy",
        our_setting="MNIST LeNet victim, rendered letters pool, k-center, our budget",
        config="configs/reproduce/activethief.yaml",
        reading=Reading(
            "cells",
            "test_acc",
            {"attack": "activethief-kcenter", "granularity": "label"},
            aggregate="ratio",
            baseline={"attack": "random-noise"},
            largest="budget",
        ),
    ),
    PublishedMethod(
        key="prada",
        method="PRADA",
        metric="share of synthetic-query (JbDA) attackers flagged",
        published=1.0,
        source="Juuti et al., EuroS&P 2019, abstract ('PRADA can detect all prior model "
        "extraction attacks with no false positives'); queries until detection per attack "
        "are in the paper's tables, not in a source we could read",
        their_setting="Papernot's and Tramer's synthetic-query attacks and theirs, MNIST and "
        "GTSRB victims, delta tuned per victim",
        our_setting="JbDA on the MNIST LeNet, delta chosen by the run",
        config="configs/reproduce/prada.yaml",
        reading=Reading("prada", "flagged", {"kind": "attacker", "strategy": "jbda"}),
    ),
    PublishedMethod(
        key="prada-benign",
        method="PRADA",
        metric="share of benign clients flagged (false positives)",
        published=0.0,
        source="Juuti et al., EuroS&P 2019, abstract ('no false positives')",
        their_setting="benign streams of the victims' test data, delta tuned",
        our_setting="benign streams of held-out digits, the run's delta",
        config="configs/reproduce/prada.yaml",
        reading=Reading("prada", "flagged", {"kind": "benign"}),
    ),
    PublishedMethod(
        key="dfme",
        method="DFME",
        metric="online student accuracy at the largest budget",
        published=None,
        source="Truong et al., CVPR 2021: the student accuracies are not in a source we could "
        "read; cake-lab/datafree-model-extraction's run_cifar_dfme.sh and run_svhn_dfme.sh "
        "give the budgets (--query_budget 20 and 2, millions)",
        their_setting="ResNet-34-8x victims on CIFAR-10 (20M queries) and SVHN (2M), "
        "ResNet-18-8x student, L1 loss on logits",
        our_setting="MNIST LeNet victim and student, at most ~1e5 queries on a CPU",
        config="configs/reproduce/dfme.yaml",
        reading=Reading("cells", "online_acc", {"strategy": "dfme"}, largest="budget"),
    ),
)
