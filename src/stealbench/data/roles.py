"""Roles of the data: which datasets each party of the benchmark sees, and a check that
parties never share an image or a source.

A benchmark is only fair when its parties draw from separate data: the **victim** (the
train/val/test splits it is trained and scored on), the **defender** (the out-of-distribution
data its detector, or misinformation defense, learns from), the **attacker** (the pool split
it queries from) and the **public** pretraining corpus (the stand-in for ImageNet). A
detector scored on crops of the photographs it was trained on, or a surrogate pretrained on
the very letters the victim learnt, would measure overlap, not the method.

:func:`role_datasets` reads the (dataset, split) pairs of every role from a config;
:func:`check_roles` compares materialised datasets by content: the hash of every image and
its source hash (``Dataset.sources``: a font file and character, a photograph, or the image
itself; see :mod:`stealbench.data.builders`). Two roles may use one dataset when their
splits hold different images of different sources (mnist5k: the victim's train/val/test and
the attacker's pool are disjoint sets of MNIST digits, each digit its own source).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .builders import describe_sources, image_sources

if TYPE_CHECKING:
    from .datasets import Dataset

ROLES = ("victim", "defender", "attacker", "public")
VICTIM_SPLITS = ("train", "val", "test")
PUBLIC_SPLITS = ("train", "val")
HASH_CHUNK = 4096  # images hashed at a time (a lazy store reads them by row group)


def _names(value) -> list[str]:
    """A dataset name or a list of them, as a list (None: none)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def role_datasets(config: dict) -> dict[str, list[tuple[str, str]]]:
    """The (dataset, split) pairs each role sees, from a validated-config-shaped dict.

    - victim: every victim's ``dataset``, splits train, val and test;
    - defender: the datasets of ``defenses.detector.out``, if present
      ``defenses.misinformation.outlier`` (a name or a list of names) and every victim's
      Outlier Exposure data (``victims.<v>.training.outlier_exposure.data``), split train;
    - attacker: every attack's ``pool``, split pool;
    - public: every ``pretrain`` entry's ``dataset`` (a name or a list), splits train and val.

    Every role is a key (an empty list when the config gives it nothing); pairs are listed
    once, in config order.
    """
    roles: dict[str, dict[tuple[str, str], None]] = {role: {} for role in ROLES}
    for victim in (config.get("victims") or {}).values():
        for split in VICTIM_SPLITS:
            roles["victim"][(victim["dataset"], split)] = None
    defenses = config.get("defenses") or {}
    defender = _names((defenses.get("detector") or {}).get("out"))
    defender += _names((defenses.get("misinformation") or {}).get("outlier"))
    for victim in (config.get("victims") or {}).values():
        oe = (victim.get("training") or {}).get("outlier_exposure") or {}
        defender += _names(oe.get("data"))
    for name in defender:
        roles["defender"][(name, "train")] = None
    for attack in (config.get("attacks") or {}).values():
        roles["attacker"][(attack["pool"], "pool")] = None
    for entry in (config.get("pretrain") or {}).values():
        for name in _names(entry.get("dataset")):
            for split in PUBLIC_SPLITS:
                roles["public"][(name, split)] = None
    return {role: list(pairs) for role, pairs in roles.items()}


def _hashes(dataset: Dataset, split: str) -> tuple[set[bytes], set[bytes]]:
    """The image hashes and source hashes of one split of a dataset, as sets of bytes."""
    ids = dataset.ids(split)
    images: set[bytes] = set()
    for start in range(0, len(ids), HASH_CHUNK):
        block = image_sources(dataset.images[ids[start : start + HASH_CHUNK]])
        images.update(bytes(row) for row in block)
    if dataset.sources is None:  # an in-memory Dataset without sources: each image its own
        sources = images
    else:
        sources = {bytes(row) for row in np.asarray(dataset.sources)[ids]}
    return images, sources


def check_roles(
    materialised: dict[str, Dataset], roles: dict[str, list[tuple[str, str]]]
) -> list[str]:
    """Violations of role separation: images or sources that two roles share.

    ``materialised`` maps dataset names to :class:`~stealbench.data.datasets.Dataset`;
    ``roles`` is what :func:`role_datasets` returns. One message per kind (image, source)
    and pair of (role, dataset, split) entries of different roles that share hashes, with
    the count and a few examples (a source described as its font file and character or its
    photograph where known). An empty list: the roles are disjoint.
    """
    missing = sorted({name for pairs in roles.values() for name, _ in pairs} - set(materialised))
    if missing:
        raise ValueError(f"check_roles: datasets not materialised: {', '.join(missing)}")
    entries = []
    for role, pairs in roles.items():
        for name, split in pairs:
            images, sources = _hashes(materialised[name], split)
            entries.append((role, name, split, {"image": images, "source": sources}))
    found = []
    for i, (role_a, name_a, split_a, hashes_a) in enumerate(entries):
        for role_b, name_b, split_b, hashes_b in entries[i + 1 :]:
            if role_a == role_b:
                continue
            for kind in ("image", "source"):
                shared = hashes_a[kind] & hashes_b[kind]
                if shared:
                    found.append((kind, role_a, name_a, split_a, role_b, name_b, split_b, shared))
    if not found:
        return []
    known = describe_sources() if any(f[0] == "source" for f in found) else {}
    messages = []
    for kind, role_a, name_a, split_a, role_b, name_b, split_b, shared in found:
        examples = []
        for digest in sorted(shared)[:3]:
            label = digest.hex()
            if kind == "source" and digest in known:
                label += f" ({known[digest]})"
            examples.append(label)
        messages.append(
            f"{role_a} ({name_a}/{split_a}) and {role_b} ({name_b}/{split_b}) share "
            f"{len(shared)} {kind} hash{'es' if len(shared) > 1 else ''}, e.g. "
            + "; ".join(examples)
        )
    return messages
