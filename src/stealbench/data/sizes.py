"""How many images a dataset's config asks of each part of its source, as far as the config
tells: the builders' declared sizes, the published sizes of torchvision's datasets, fractions
and -1s resolved. Config validation checks splits and budgets with it before any job,
without touching the data (or importing pyarrow or torch); :mod:`.realdata` splits with the
same defaults."""

from __future__ import annotations

import math

from .builders import BUILDER_SIZES


def split_sizes(dataset_spec: dict, builder_sizes: dict[str, int] | None = None) -> dict:
    """Images per split, as far as the config tells: an int, or None where only the data
    can tell (an ImageFolder tree; -1 or a fraction of a part of unknown size).

    Checks that need a size skip the splits whose size is None; the jobs then fail with a
    clear message if the data turns out too small (e.g. a pool smaller than the budget).
    """
    return {
        split: count
        for _, counts, _, _ in split_parts(dataset_spec, builder_sizes or DEFAULT_SIZES)
        for split, count in counts.items()
    }


# Images each builder makes with its default options, as it declares (budgets are checked
# with them before any job).
DEFAULT_SIZES = BUILDER_SIZES

# Real datasets (stealbench.data.realdata): read from disk, streamed into Parquet.
REAL_SOURCES = ("torchvision", "imagefolder")
# Their default splits: the source's train part, 10% of it carved for val, its test part.
REAL_SOURCE_SPLITS = {"train": -1, "val": 0.1, "test": -1}
# (train, test) images of each torchvision dataset as published. Caltech256 has no test
# split: Knockoff nets drop its clutter class (29,780 images left in 256 classes) and keep
# test_per_class (25) images per class for test.
TORCHVISION_SIZES = {
    "MNIST": (60000, 10000),
    "FashionMNIST": (60000, 10000),
    "KMNIST": (60000, 10000),
    "CIFAR10": (50000, 10000),
    "CIFAR100": (50000, 10000),
    "SVHN": (73257, 26032),
    "GTSRB": (26640, 12630),
    "STL10": (5000, 8000),
    "Caltech256": None,
}
CALTECH256_IMAGES, CALTECH256_CLASSES, CALTECH256_TEST_PER_CLASS = 29780, 256, 25
# ImageFolder layouts whose test part comes with the data (the others need test_per_class
# or test_fraction), and those whose test part may be drawn per class.
TEST_PART_LAYOUTS = ("caltech256", "cub200", "indoor67", "train_test")
PER_CLASS_TEST_LAYOUTS = ("generic", "caltech256")


def has_test_part(dataset_spec: dict) -> bool:
    """Whether a source has a test part of its own (a torchvision test split, a layout's
    test list, per-class test images); builders have none."""
    source, options = dataset_spec["source"], dataset_spec.get("options", {})
    if source == "torchvision":
        return True
    if source == "imagefolder":
        return (
            options.get("layout", "generic") in TEST_PART_LAYOUTS
            or "test_per_class" in options
            or "test_fraction" in options
        )
    return False


def part_sizes(spec: dict, sizes: dict[str, int]) -> dict[str, int | None]:
    """Images in each part of a source ("all", and "train"/"test" where it has a test part)."""
    source, options = spec["source"], spec.get("options", {})
    if source == "imagefolder":
        return {"all": None, "train": None, "test": None}
    if source == "torchvision":
        known = TORCHVISION_SIZES.get(options.get("name"))
        if options.get("name") == "Caltech256":
            per_class = options.get("test_per_class", CALTECH256_TEST_PER_CLASS)
            test = min(CALTECH256_IMAGES, per_class * CALTECH256_CLASSES)
            known = (CALTECH256_IMAGES - test, test)
        if known is None:
            return {"all": None, "train": None, "test": None}
        return {"all": sum(known), "train": known[0], "test": known[1]}
    return {"all": options.get("size", sizes.get(source))}


def count(value: float, n: int | None) -> int | None:
    if isinstance(value, float) and not value.is_integer():  # a fraction of the part
        return None if n is None else math.floor(value * n + 0.5)
    return int(value)


def split_parts(spec: dict, sizes: dict[str, int]) -> list[tuple[dict, dict, int | None, str]]:
    """Each part of a source with the splits drawn from it: (requested, counts, part size,
    part name); counts are resolved (fractions, -1) where the part's size is known, else None.
    """
    splits = spec.get("splits") or REAL_SOURCE_SPLITS
    parts = part_sizes(spec, sizes)
    if has_test_part(spec) and "test" in splits:
        groups = [
            ({k: v for k, v in splits.items() if k != "test"}, parts["train"], "train"),
            ({"test": splits["test"]}, parts["test"], "test"),
        ]
    else:
        groups = [(dict(splits), parts["all"], "all")]
    out = []
    for requested, n, part in groups:
        counts = {k: count(v, n) for k, v in requested.items()}
        fixed = [c for c in counts.values() if c != -1]
        rest = None if n is None or None in fixed else n - sum(fixed)
        out.append((requested, {k: (rest if c == -1 else c) for k, c in counts.items()}, n, part))
    return out
