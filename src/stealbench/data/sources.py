"""Where a dataset's images come from: the builders of the embedded default (:mod:`.builders`,
in memory) or real datasets streamed from disk (:mod:`.realdata`: torchvision by name,
ImageFolder trees). :func:`materialise_to` is the one entry point that writes any of them to
Parquet; the Parquet layout is :mod:`.datasets`' (both kinds write through it)."""

from __future__ import annotations

from pathlib import Path

from .sizes import REAL_SOURCES


def materialise_to(name: str, spec: dict, seed: int, path: str | Path) -> dict:
    """Materialise dataset ``name`` into the Parquet file ``path``; return its meta.

    Builders make their images in memory (they are small); torchvision and ImageFolder
    stream image by image, so memory does not grow with the dataset.
    """
    if spec["source"] in REAL_SOURCES:
        from . import realdata  # torchvision and PIL only when a real source is asked for

        return realdata.materialise_to(name, spec, seed, path)
    from . import datasets

    return datasets.materialise_builder_to(name, spec, seed, path)
