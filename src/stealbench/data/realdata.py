"""Real datasets, streamed from disk into the Parquet layout of :mod:`stealbench.data.datasets`.

Two sources (their options are documented in ``workflow/schemas/config.schema.yaml``):

- ``torchvision``: a ``torchvision.datasets`` class by name (MNIST, FashionMNIST, KMNIST,
  CIFAR10, CIFAR100, SVHN, GTSRB, STL10, Caltech256), read by torchvision itself from
  ``options.root`` (and downloaded there first with ``options.download: true``).
- ``imagefolder``: a tree of class folders, ``root/<class>/<image>`` (images in sub-folders of a
  class count too), decoded with PIL, in a ``layout``: ``generic``, ``caltech256``, ``cub200``,
  ``indoor67`` or ``train_test``.

**Parts and splits.** A source may have a *test part* of its own: torchvision's test split;
Caltech256's Knockoff split (clutter class ``257.clutter`` dropped, ``test_per_class`` = 25
images per class drawn with the seed); CUB-200's ``train_test_split.txt``; Indoor67's
``TestImages.txt``; ``root/test`` (or ``root/val``) of ``train_test``; per-class test images of
``generic`` with ``test_per_class`` or ``test_fraction``. When ``splits`` names ``test`` and
the source has a test part, test draws from it and train/val/pool from the rest (e.g. the
default ``{train: -1, val: 0.1, test: -1}`` carves 10% of the train part for val); otherwise
every split draws from all images (``{pool: -1}`` makes a whole dataset a pool).

**Images** are decoded one at a time and made ``image_size`` square with ``channels``:
converted with PIL (RGB to L by ITU-R 601-2 luma, L to RGB by replication, alpha dropped,
palettes expanded, 16-bit greyscale scaled to 8-bit), then resized with bilinear filtering
(antialiased when shrinking) by ``resize``: ``crop`` (the shorter side to ``image_size``, then
a centre crop, as torchvision's Resize + CenterCrop), ``pad`` (the longer side to
``image_size``, centred on black) or ``stretch``. JPEGs are decoded at a reduced DCT scale when
that is still at least ``image_size`` (PIL's ``draft``), which is much faster for photos.

**Files** of an ImageFolder tree: hidden files, ``Thumbs.db`` and ``desktop.ini`` are ignored;
a file with another extension than ``options.extensions``, or one PIL cannot identify, is an
error naming it, or with ``options.skip_bad_files: true`` a warning (the files are left out
and listed in the file metadata). A class folder without images is an error naming it.

**Sources** (the ``source`` column): the source of an image read from a file (ImageFolder
trees, and torchvision datasets that open files, such as Caltech256) is the hash of the file's
bytes; that of an image torchvision holds in memory (MNIST, CIFAR, ...) the hash of its pixels
as torchvision returns them (mode, size and bytes, before resizing). The same picture in two
datasets thus has one source whatever ``image_size`` each stores it at.

**Rows** are written split by split (train, val, test, pool), in a seeded random order within
each split: a split is a contiguous run of row groups and each row group a random sample of
its split, so :meth:`stealbench.data.datasets.ImageStore.epoch_order` is nearly a full shuffle.
Seeds: ``[seed, 0]`` draws per-class test images, ``[seed, 1]`` the splits, ``[seed, 2]`` the
row order; changing split counts never changes the test part.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import datasets
from .builders import SOURCE_BYTES, source_digest

log = logging.getLogger(__name__)

IGNORED_FILES = ("Thumbs.db", "desktop.ini")
CALTECH256_CLUTTER = "257.clutter"
DEFAULT_TEST_PER_CLASS = 25  # Knockoff nets' Caltech256 split
DECODE_CHUNK = 256  # images decoded per chunk handed to the writer


class DataSourceError(ValueError):
    """The data on disk does not match the config; the message names the path and the key."""


@dataclass
class Plan:
    """What a source holds, known before any image is decoded."""

    labels: np.ndarray  # int64 (N,)
    classes: list[str]
    source: str  # provenance for the file metadata
    shape: tuple[int, int, int]  # (image_size, image_size, channels) as stored
    decode: Callable[[int], tuple[np.ndarray, bytes]]  # image i: uint8 (H, W, C), its source
    describe: Callable[[int], str]  # image i in messages (its path)
    test_part: np.ndarray | None = None  # bool (N,): the source's own test part
    test_per_class: int | None = None  # or drawn per class (Knockoff), ...
    test_fraction: float | None = None  # ... as a count or share of each class
    check: Callable[[int], str | None] | None = None  # cheap readability check of image i
    class_dirs: list[str] = field(default_factory=list)  # for messages about empty classes
    skipped: list[str] = field(default_factory=list)  # files left out while scanning


# ------------------------------------------------------------------------- entry point


def materialise_to(name: str, spec: dict, seed: int, path: str | Path) -> dict:
    """Stream dataset ``name`` (a torchvision or imagefolder ``spec``) into ``path``."""
    from ..config.schema import source_options
    from .sizes import REAL_SOURCE_SPLITS

    options = source_options(spec)
    spec = {**spec, "options": options, "splits": spec.get("splits") or dict(REAL_SOURCE_SPLITS)}
    planners = {"torchvision": plan_torchvision, "imagefolder": plan_imagefolder}
    plan = planners[spec["source"]](name, options)
    keep = np.ones(len(plan.labels), dtype=bool)
    skipped = list(plan.skipped)
    problems: dict[int, str | None] = {}
    while True:  # until no chosen image is unreadable (skipping redraws the splits)
        rows, splits = choose_rows(name, plan, spec["splits"], seed, np.flatnonzero(keep))
        if plan.check is None:
            break
        for i in rows:
            if int(i) not in problems:
                problems[int(i)] = plan.check(int(i))
        bad = [int(i) for i in rows if problems[int(i)]]
        if not bad:
            break
        if not options.get("skip_bad_files"):
            raise DataSourceError(
                f"{plan.describe(bad[0])}: {problems[bad[0]]}; delete or replace it, or set "
                f"datasets.{name}.options.skip_bad_files: true to skip unreadable files"
                + (f" ({len(bad)} such files among those chosen)" if len(bad) > 1 else "")
            )
        skipped += [plan.describe(i) for i in bad]
        log.warning(
            "dataset %s: skipping %d unreadable file(s), e.g. %s",
            name,
            len(bad),
            "; ".join(f"{plan.describe(i)} ({problems[i]})" for i in bad[:3]),
        )
        keep[bad] = False
        _require_every_class(plan, keep)
    meta = datasets.dataset_meta(name, plan.shape, plan.classes, plan.source, seed, spec, splits)
    if skipped:
        meta["skipped_files"] = sorted(skipped)
    log.info(
        "dataset %s: %d images %s from %s, splits %s",
        name,
        len(rows),
        plan.shape,
        plan.source,
        meta["split_counts"],
    )
    chunks = _decoded(name, plan, rows)
    return datasets.write_dataset(path, meta, chunks, plan.labels[rows], splits)


def _decoded(name: str, plan: Plan, rows: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images, sources) chunks of the rows, decoded in order."""
    step = max(1, len(rows) // 10)
    for start in range(0, len(rows), DECODE_CHUNK):
        block = rows[start : start + DECODE_CHUNK]
        decoded = [plan.decode(int(i)) for i in block]
        sources = np.frombuffer(b"".join(s for _, s in decoded), dtype=np.uint8)
        yield np.stack([x for x, _ in decoded]), sources.reshape(len(block), SOURCE_BYTES)
        done = start + len(block)
        if done // step != start // step or done == len(rows):
            log.info("dataset %s: decoded %d/%d images", name, done, len(rows))


def choose_rows(
    name: str, plan: Plan, splits: dict, seed: int, candidates: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The images kept, in file order, and their splits (see the module docstring)."""
    if candidates is None:
        candidates = np.arange(len(plan.labels))
    labels = plan.labels[candidates]
    carve_rng, split_rng, order_rng = (np.random.default_rng([seed, k]) for k in (0, 1, 2))
    if plan.test_part is not None:
        test = plan.test_part[candidates]
    elif plan.test_per_class is not None or plan.test_fraction is not None:
        test = per_class_test(name, plan, labels, carve_rng)
    else:
        test = None
    assigned = np.full(len(candidates), "", dtype=object)
    if test is not None and "test" in splits:
        rest = {k: v for k, v in splits.items() if k != "test"}
        parts = [("test", np.flatnonzero(test), {"test": splits["test"]})]
        parts.append(("train", np.flatnonzero(~test), rest))
    else:
        parts = [("whole", np.arange(len(candidates)), splits)]
    for part, members, requested in parts:
        if not requested:
            continue
        try:
            assigned[members] = datasets.assign_splits(len(members), requested, split_rng)
        except ValueError as err:
            raise DataSourceError(
                f"dataset '{name}': {err} (its {part} part); lower datasets.{name}.splits"
            ) from err
    rows = np.concatenate(
        [order_rng.permutation(np.flatnonzero(assigned == s)) for s in datasets.SPLITS]
    ).astype(np.int64)
    return candidates[rows], assigned[rows]


def per_class_test(
    name: str, plan: Plan, labels: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A test mask with ``test_per_class`` (or ``test_fraction``) images of every class."""
    test = np.zeros(len(labels), dtype=bool)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for members in np.split(order, bounds):
        if not len(members):
            continue
        if plan.test_per_class is not None:
            k = plan.test_per_class
            if k >= len(members):
                raise DataSourceError(
                    f"dataset '{name}': class '{plan.classes[labels[members[0]]]}' has "
                    f"{len(members)} images; {k} test images per class leave none to train on; "
                    f"lower datasets.{name}.options.test_per_class"
                )
        else:
            k = min(len(members) - 1, math.floor(plan.test_fraction * len(members) + 0.5))
        test[rng.choice(members, size=k, replace=False)] = True
    return test


def _require_every_class(plan: Plan, keep: np.ndarray) -> None:
    present = np.bincount(plan.labels[keep], minlength=len(plan.classes))
    for c in np.flatnonzero(present == 0):
        where = plan.class_dirs[c] if plan.class_dirs else plan.classes[c]
        raise DataSourceError(f"{where}: class folder has no readable images")


# ------------------------------------------------------------------------- images


_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_array(image, size: int, channels: int, resize: str = "crop") -> np.ndarray:
    """A PIL image as uint8 (size, size, channels) (see the module docstring)."""
    from PIL import Image, ImageOps

    mode = "L" if channels == 1 else "RGB"
    image.draft(mode, (size, size))  # JPEG: decode at the smallest DCT scale >= size
    if image.mode in _WIDE_GREY:  # 16-bit greyscale: scale to 8 bits (PIL would clip)
        wide = np.asarray(image).astype(np.int64)
        # "I" (32-bit) holds 16-bit scans as well as 8-bit values; only the former are scaled
        if image.mode != "I" or wide.max(initial=0) > 255:
            wide = wide // 257
        image = Image.fromarray(np.clip(wide, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8))
    if image.mode != mode:
        try:
            image = image.convert(mode)
        except ValueError:  # a mode PIL converts only through RGBA (e.g. LA -> RGB)
            image = image.convert("RGBA").convert(mode)
    if image.size != (size, size):
        method = Image.Resampling.BILINEAR
        if resize == "crop":
            image = ImageOps.fit(image, (size, size), method)
        elif resize == "pad":
            image = ImageOps.pad(image, (size, size), method, color=0)
        elif resize == "stretch":
            image = image.resize((size, size), method)
        else:
            raise ValueError(f"unknown resize {resize!r}; allowed: crop, pad, stretch")
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def pil_source(image) -> bytes:
    """The source hash of a PIL image: its file's bytes when it was opened from a file, else
    its mode, size and pixels (see the module docstring)."""
    filename = getattr(image, "filename", "")
    if filename:
        return source_digest(Path(filename).read_bytes())
    return source_digest(f"{image.mode} {image.size}\n".encode(), image.tobytes())


def resolve_root(root: str) -> Path:
    """``~`` and ``$VARS`` expanded; relative to the working directory."""
    return Path(os.path.expandvars(os.path.expanduser(str(root))))


def _missing_root(name: str, root: Path, what: str) -> str:
    return (
        f"dataset '{name}': data root '{root}' does not exist; put {what} there, or set "
        f"datasets.{name}.options.root to the folder that holds them"
    )


# ----------------------------------------------------------------------- torchvision


@dataclass(frozen=True)
class TorchvisionInfo:
    parts: tuple[tuple[str, dict], ...]  # (part, constructor keyword arguments)
    size: int  # native side (or the default for datasets of mixed sizes)
    channels: int
    layout: str  # what torchvision expects under root, for messages
    num_classes: int | None = None  # when torchvision has no class names


_TRAIN_TEST = (("train", {"train": True}), ("test", {"train": False}))
_SPLIT_TRAIN_TEST = (("train", {"split": "train"}), ("test", {"split": "test"}))


def _idx(folder: str) -> str:
    return f"{folder}/raw/ with train-images-idx3-ubyte, t10k-images-idx3-ubyte and their labels"


TORCHVISION = {
    "MNIST": TorchvisionInfo(_TRAIN_TEST, 28, 1, _idx("MNIST")),
    "FashionMNIST": TorchvisionInfo(_TRAIN_TEST, 28, 1, _idx("FashionMNIST")),
    "KMNIST": TorchvisionInfo(_TRAIN_TEST, 28, 1, _idx("KMNIST")),
    "CIFAR10": TorchvisionInfo(
        _TRAIN_TEST, 32, 3, "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)"
    ),
    "CIFAR100": TorchvisionInfo(_TRAIN_TEST, 32, 3, "cifar-100-python/ (train, test, meta)"),
    "SVHN": TorchvisionInfo(_SPLIT_TRAIN_TEST, 32, 3, "train_32x32.mat and test_32x32.mat", 10),
    "GTSRB": TorchvisionInfo(
        _SPLIT_TRAIN_TEST,
        32,
        3,
        "gtsrb/GTSRB/Training/, gtsrb/GTSRB/Final_Test/Images/ and gtsrb/GT-final_test.csv",
        43,
    ),
    "STL10": TorchvisionInfo(_SPLIT_TRAIN_TEST, 96, 3, "stl10_binary/"),
    "Caltech256": TorchvisionInfo(
        (("all", {}),), 64, 3, "caltech256/256_ObjectCategories/<class>/*.jpg"
    ),
}


def _targets(ds) -> np.ndarray:
    """The labels of a torchvision dataset without decoding its images where possible."""
    for attr in ("targets", "labels", "y"):
        value = getattr(ds, attr, None)
        if value is not None:
            return np.asarray(value, dtype=np.int64)
    samples = getattr(ds, "_samples", None) or getattr(ds, "samples", None)
    if samples is not None:
        return np.asarray([target for _, target in samples], dtype=np.int64)
    return np.asarray([ds[i][1] for i in range(len(ds))], dtype=np.int64)


def plan_torchvision(name: str, options: dict) -> Plan:
    import torchvision.datasets

    tv = options["name"]
    info = TORCHVISION[tv]
    root, download = resolve_root(options["root"]), bool(options.get("download", False))
    if not root.exists() and not download:
        raise DataSourceError(
            _missing_root(name, root, f"the torchvision {tv} files ({info.layout})")
            + f", or set datasets.{name}.options.download: true to download them (needs network)"
        )
    cls = getattr(torchvision.datasets, tv)
    parts, labels = [], []
    for part, kwargs in info.parts:
        try:
            ds = cls(str(root), download=download, **kwargs)
        except (RuntimeError, OSError, ValueError) as err:
            raise DataSourceError(
                f"dataset '{name}': torchvision.datasets.{tv} found no usable {part} data "
                f"under '{root}' ({err}); it expects {info.layout} there: set "
                f"datasets.{name}.options.root to the folder that holds them, or "
                f"datasets.{name}.options.download: true to download them (needs network)"
            ) from err
        parts.append((part, ds))
        labels.append(_targets(ds))
    part_of = np.concatenate([np.full(len(y), k) for k, y in enumerate(labels)])
    index = np.concatenate([np.arange(len(y)) for y in labels])
    label = np.concatenate(labels)
    ds = parts[0][1]
    classes = list(getattr(ds, "classes", None) or getattr(ds, "categories", None) or [])
    if tv == "Caltech256" and CALTECH256_CLUTTER in classes:  # Knockoff nets drop it
        clutter = classes.index(CALTECH256_CLUTTER)
        keep = label != clutter
        part_of, index, label = part_of[keep], index[keep], label[keep]
        label = label - (label > clutter)
        classes.remove(CALTECH256_CLUTTER)
    if not classes:
        count = info.num_classes or (int(label.max()) + 1 if len(label) else 0)
        classes = [str(c) for c in range(count)]
    size = int(options.get("image_size") or info.size)
    channels = int(options.get("channels") or info.channels)
    resize = options.get("resize", "crop")

    def describe(i: int) -> str:
        return f"torchvision {tv} under '{root}', {parts[part_of[i]][0]} image {index[i]}"

    def decode(i: int) -> tuple[np.ndarray, bytes]:
        try:
            image = parts[part_of[i]][1][int(index[i])][0]
            source = pil_source(image)  # before to_array, which may decode at a reduced scale
            return to_array(image, size, channels, resize), source
        except (OSError, ValueError, SyntaxError) as err:
            raise DataSourceError(f"{describe(i)}: cannot decode ({err})") from err

    test_part = None if tv == "Caltech256" else np.asarray([p == "test" for p, _ in parts])[part_of]
    return Plan(
        labels=label,
        classes=classes,
        source=f"torchvision.datasets.{tv} ({root.absolute()})",
        shape=(size, size, channels),
        decode=decode,
        describe=describe,
        test_part=test_part,
        test_per_class=(options.get("test_per_class") or DEFAULT_TEST_PER_CLASS)
        if tv == "Caltech256"
        else None,
    )


# ----------------------------------------------------------------------- imagefolder

# The top folder of each layout's distribution, used when root holds it rather than the
# class folders themselves.
LAYOUT_DIRS = {"caltech256": "256_ObjectCategories", "cub200": "images", "indoor67": "Images"}
LAYOUT_HINTS = {
    "generic": "class folders (<root>/<class>/<image>)",
    "caltech256": "the Caltech256 class folders (001.ak47/ ...) or 256_ObjectCategories/",
    "cub200": "CUB_200_2011 (images/, images.txt, train_test_split.txt)",
    "indoor67": "Indoor67 (Images/<class>/, TestImages.txt)",
    "train_test": "train/<class>/ and test/<class>/ (or val/<class>/)",
}


def _ignored(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_FILES


class _Scan:
    """Class folders and their image files, with the checks of the module docstring."""

    def __init__(self, name: str, options: dict):
        self.name = name
        self.extensions = {e.lower() for e in options["extensions"]}
        self.skip = bool(options.get("skip_bad_files", False))
        self.skipped: list[str] = []

    def classes(self, base: Path) -> list[Path]:
        if not base.is_dir():
            raise DataSourceError(
                f"{base}: folder not found; datasets.{self.name}.options.root must hold "
                f"class folders"
            )
        entries = sorted(base.iterdir())
        dirs = [d for d in entries if d.is_dir() and not _ignored(d.name)]
        loose = [f for f in entries if f.is_file() and not _ignored(f.name)]
        if loose:
            log.warning(
                "dataset %s: ignored %d file(s) outside class folders in %s, e.g. %s",
                self.name,
                len(loose),
                base,
                loose[0].name,
            )
        if not dirs:
            raise DataSourceError(
                f"{base}: no class folders; an ImageFolder tree is <root>/<class>/<image>: set "
                f"datasets.{self.name}.options.root (and options.layout) to match the data"
            )
        return dirs

    def files(self, folder: Path) -> list[str]:
        found = []
        for top, subdirs, names in os.walk(folder):
            subdirs[:] = sorted(d for d in subdirs if not _ignored(d))
            for file in sorted(names):
                if _ignored(file):
                    continue
                path = os.path.join(top, file)
                if os.path.splitext(file)[1].lower() in self.extensions:
                    found.append(path)
                elif self.skip:
                    self.skipped.append(path)
                else:
                    raise DataSourceError(
                        f"{path}: not an image file (its extension is not one of "
                        f"datasets.{self.name}.options.extensions: "
                        f"{', '.join(sorted(self.extensions))}); remove it, add the extension, "
                        f"or set datasets.{self.name}.options.skip_bad_files: true to skip such "
                        f"files with a warning"
                    )
        if not found:
            raise DataSourceError(
                f"{folder}: class folder has no images (extensions "
                f"{', '.join(sorted(self.extensions))}); add images or remove the folder"
            )
        return found


def _read_list(path: Path, name: str, layout: str) -> list[str]:
    if not path.is_file():
        raise DataSourceError(
            f"{path}: not found; layout '{layout}' reads its test part from it ("
            f"{LAYOUT_HINTS[layout]}): set datasets.{name}.options.root to that folder, or "
            f"use layout generic with test_per_class"
        )
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def plan_imagefolder(name: str, options: dict) -> Plan:
    root, layout = resolve_root(options["root"]), options.get("layout", "generic")
    if not root.is_dir():
        raise DataSourceError(_missing_root(name, root, LAYOUT_HINTS[layout]))
    scan = _Scan(name, options)
    files: list[str] = []
    labels: list[int] = []
    if layout == "train_test":
        test_dir = root / "test" if (root / "test").is_dir() else root / "val"
        train_dirs = scan.classes(root / "train")
        classes = [d.name for d in train_dirs]
        test_dirs = scan.classes(test_dir)
        for d in test_dirs:
            if d.name not in classes:
                raise DataSourceError(
                    f"{d}: class folder has no counterpart in {root / 'train'}; the test part "
                    f"may only hold the train part's classes"
                )
        is_test: list[bool] = []
        for part, dirs in (("train", train_dirs), ("test", test_dirs)):
            for d in dirs:
                found = scan.files(d)
                files += found
                labels += [classes.index(d.name)] * len(found)
                is_test += [part == "test"] * len(found)
        class_dirs = [str(d) for d in train_dirs]
        test_part = np.asarray(is_test, dtype=bool)
    else:
        sub = root / LAYOUT_DIRS.get(layout, "")
        base = sub if layout in LAYOUT_DIRS and sub.is_dir() else root
        dirs = scan.classes(base)
        if layout == "caltech256":
            dirs = [d for d in dirs if d.name != CALTECH256_CLUTTER]
        for c, d in enumerate(dirs):
            found = scan.files(d)
            files += found
            labels += [c] * len(found)
        classes = [d.name for d in dirs]
        class_dirs = [str(d) for d in dirs]
        test_part = None
        if layout == "cub200":
            test_part = _cub200_test(root, base, files, name)
        elif layout == "indoor67":
            listed = set(_read_list(root / "TestImages.txt", name, layout))
            relative = (os.path.relpath(f, base).replace(os.sep, "/") for f in files)
            test_part = np.asarray([r in listed for r in relative], dtype=bool)
    if scan.skipped:
        log.warning(
            "dataset %s: skipped %d file(s) with other extensions, e.g. %s",
            name,
            len(scan.skipped),
            scan.skipped[0],
        )
    size, channels = int(options["image_size"]), int(options["channels"])
    resize = options.get("resize", "crop")

    def decode(i: int) -> tuple[np.ndarray, bytes]:
        from io import BytesIO

        from PIL import Image

        try:
            data = Path(files[i]).read_bytes()
            with Image.open(BytesIO(data)) as image:
                return to_array(image, size, channels, resize), source_digest(data)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise DataSourceError(
                f"{files[i]}: PIL cannot decode this image ({err}); delete or replace it"
            ) from err

    def check(i: int) -> str | None:
        from PIL import Image

        try:
            with Image.open(files[i]):  # reads and identifies the header only
                pass
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            return f"PIL cannot read this file as an image ({err})"
        return None

    per_class = layout in ("generic", "caltech256")
    test_per_class = options.get("test_per_class") if per_class else None
    test_fraction = options.get("test_fraction") if per_class else None
    if layout == "caltech256" and test_per_class is None and test_fraction is None:
        test_per_class = DEFAULT_TEST_PER_CLASS
    plan = Plan(
        labels=np.asarray(labels, dtype=np.int64),
        classes=classes,
        source=f"imagefolder {layout} ({root.absolute()})",
        shape=(size, size, channels),
        decode=decode,
        describe=lambda i: files[i],
        test_part=test_part,
        test_per_class=test_per_class,
        test_fraction=test_fraction,
        check=check,
        class_dirs=class_dirs,
        skipped=scan.skipped,
    )
    return plan


def _cub200_test(root: Path, base: Path, files: list[str], name: str) -> np.ndarray:
    """CUB-200-2011's official test part: images.txt ids joined with train_test_split.txt."""
    paths = dict(line.split(maxsplit=1) for line in _read_list(root / "images.txt", name, "cub200"))
    is_train = dict(
        line.split(maxsplit=1) for line in _read_list(root / "train_test_split.txt", name, "cub200")
    )
    test = {paths[i] for i, flag in is_train.items() if flag.strip() == "0" and i in paths}
    listed = set(paths.values())
    relative = [os.path.relpath(f, base).replace(os.sep, "/") for f in files]
    unlisted = [f for f, r in zip(files, relative, strict=True) if r not in listed]
    if unlisted:
        log.warning(
            "dataset %s: %d image(s) not in images.txt count as train, e.g. %s",
            name,
            len(unlisted),
            unlisted[0],
        )
    return np.asarray([r in test for r in relative], dtype=bool)
