"""Role separation: victim data, defender data, attacker pools and the public pretraining
corpus never share an image or a source (a font file and character, a photograph).

Checked by content: the hash of every stored image and the ``source`` column.
"""

import hashlib

import numpy as np
import pytest

from stealbench.data import builders, datasets, roles, sources

FAMILIES = ("DejaVuSans", "DejaVuSansMono", "DejaVuSerif", "STIXGeneral", "ComputerModern")


def _table(name, source, splits, **options):
    spec = {"source": source, "options": options, "splits": splits}
    return datasets.materialise(name, spec, seed=0)[0]


def _image_hashes(table) -> set[bytes]:
    return {hashlib.sha256(x).digest() for x in table.column("image").to_pylist()}


def _sources(table) -> set[bytes]:
    return set(table.column("source").to_pylist())


# ------------------------------------------------------------------- font families


def test_font_families_group_every_style_of_a_typeface():
    families = builders.font_families()
    assert set(FAMILIES) <= set(families)
    names = {family: [f.name for f in files] for family, files in families.items()}
    assert names["DejaVuSans"] == [
        "DejaVuSans-Bold.ttf",
        "DejaVuSans-BoldOblique.ttf",
        "DejaVuSans-Oblique.ttf",
        "DejaVuSans.ttf",
    ]
    assert "DejaVuSansMono.ttf" in names["DejaVuSansMono"]
    assert sorted(names["ComputerModern"]) == [
        "cmb10.ttf",
        "cmmi10.ttf",
        "cmr10.ttf",
        "cmss10.ttf",
        "cmtt10.ttf",
    ]
    every = [name for files in names.values() for name in files]
    assert len(every) == len(set(every))  # no file in two families
    assert not any(n.startswith(("cmsy", "cmex", "STIXSiz", "STIXNonUni")) for n in every)
    if builders.PILLOW_FAMILY in families:  # Pillow built with FreeType
        (aileron,) = families[builders.PILLOW_FAMILY]
        assert aileron.truetype().getname()[0] == "Aileron"


def test_unknown_family_photo_or_case_names_the_allowed_values():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"unknown font family Helvetica; allowed: .*DejaVuSans"):
        builders.build_glyphs(rng, size=4, fonts=["DejaVuSans", "Helvetica"])
    with pytest.raises(ValueError, match=r"unknown photo lena; allowed: china, flower"):
        builders.build_photo_crops(rng, size=4, photos=["lena"])
    with pytest.raises(ValueError, match=r"unknown case 'title'; allowed: upper, lower, both"):
        builders.build_glyphs(rng, size=4, case="title")
    with pytest.raises(ValueError, match=r"unknown photo"):
        builders.build_public(rng, size=4, photos=["china", "lena"])


@pytest.mark.parametrize(("case", "classes"), [("upper", 26), ("lower", 26), ("both", 52)])
def test_glyph_classes_follow_the_case_and_sources_name_font_and_character(case, classes):
    raw = builders.build_glyphs(
        np.random.default_rng(0), size=2 * classes, fonts=["STIXGeneral"], case=case
    )
    assert raw.classes == list(builders.LETTERS[case]) and len(raw.classes) == classes
    assert sorted(set(raw.labels.tolist())) == list(range(classes))
    files = builders.font_families()["STIXGeneral"]
    for label, source in zip(raw.labels, raw.sources, strict=True):
        char = raw.classes[label]
        expected = {hashlib.sha256(f.data + char.encode()).digest()[:16] for f in files}
        assert bytes(source) in expected


def test_photo_crop_sources_are_the_photograph_hashes():
    raw = builders.build_photo_crops(np.random.default_rng(0), size=40, photos=["coins", "moon"])
    pixels = {name: builders.load_photo(name).tobytes() for name in ("coins", "moon")}
    expected = {hashlib.sha256(p).digest()[:16] for p in pixels.values()}
    assert {bytes(s) for s in raw.sources} == expected  # 40 crops: both photographs drawn


def test_every_photograph_loads_offline_as_a_natural_image():
    for name in builders.PHOTOS:
        photo = builders.load_photo(name)
        assert photo.dtype == np.uint8 and min(photo.shape[:2]) >= 250, name
    hashes = {builders.photo_source(name) for name in builders.PHOTOS}
    assert len(hashes) == len(builders.PHOTOS)  # no photograph listed twice


# --------------------------------------------------------------- disjoint builders


def test_disjoint_families_share_no_image_and_no_source():
    a = _table("a", "glyphs", {"train": -1}, size=104, fonts=["DejaVuSans"], case="both")
    b = _table("b", "glyphs", {"pool": -1}, size=104, fonts=["DejaVuSansMono"], case="both")
    assert not _image_hashes(a) & _image_hashes(b)
    assert not _sources(a) & _sources(b)
    # the control: two datasets of one family share sources (the font files and letters)
    c = _table("c", "glyphs", {"pool": -1}, size=104, fonts=["DejaVuSans"], case="both")
    assert _sources(a) & _sources(c)


def test_disjoint_photo_lists_share_no_image_and_no_source():
    a = _table("a", "photo-crops", {"train": -1}, size=60, photos=["china", "coins", "brick"])
    b = _table("b", "photo-crops", {"pool": -1}, size=60, photos=["flower", "moon", "gravel"])
    assert not _image_hashes(a) & _image_hashes(b)
    assert not _sources(a) & _sources(b)
    c = _table("c", "photo-crops", {"pool": -1}, size=60, photos=["coins"])
    assert _sources(c) <= _sources(a)


def test_public_corpus_labels_letters_then_one_class_per_photograph():
    photos = ["camera", "rocket"]
    raw = builders.build_public(
        np.random.default_rng(0), size=200, fonts=["Aileron"], photos=photos, photo_share=0.3
    )
    assert raw.classes == [*builders.LETTERS["both"], *photos]
    is_photo = raw.labels >= 52
    assert is_photo.sum() == 60 and raw.labels.max() == 53
    assert sorted(set(raw.labels[~is_photo].tolist())) == list(range(52))
    for k, name in enumerate(photos):
        crop_sources = {bytes(s) for s in raw.sources[raw.labels == 52 + k]}
        assert crop_sources == {builders.photo_source(name)}  # each crop labelled by its photo
    (aileron,) = builders.font_families()["Aileron"]
    for label, source in zip(raw.labels[~is_photo], raw.sources[~is_photo], strict=True):
        assert bytes(source) == builders.glyph_source(aileron, raw.classes[label])
    assert is_photo[:140].any()  # rows shuffled: not the 140 letters first, then the crops


# ----------------------------------------------------------------------- roles


CONFIG = {
    "victims": {
        "mnist-lenet": {"dataset": "mnist5k", "arch": "lenet"},
        "glyphs-lenet": {"dataset": "glyphs", "arch": "lenet"},
        "mnist-resnet8": {"dataset": "mnist5k", "arch": "resnet8"},
    },
    "attacks": {
        "random-mnist5k": {"strategy": "random", "pool": "mnist5k"},
        "random-letters": {"strategy": "random", "pool": "letters"},
        "random-photos": {"strategy": "random", "pool": "photos"},
        "adaptive-letters": {"strategy": "adaptive", "pool": "letters"},
    },
    "defenses": {"detector": {"arch": "lenet", "out": ["letters-defender", "photos-defender"]}},
    "pretrain": {"public-lenet": {"dataset": "public", "arch": "lenet"}},
}
SPECS = {
    "mnist5k": {"source": "mnist5k", "splits": {"train": 60, "val": 20, "test": 20, "pool": 60}},
    "glyphs": {
        "source": "glyphs",
        "options": {"size": 104, "fonts": ["DejaVuSans", "STIXGeneral"]},
        "splits": {"train": 52, "val": 26, "test": 26},
    },
    "letters": {
        "source": "glyphs",
        "options": {"size": 104, "fonts": ["DejaVuSerif", "DejaVuSansMono"]},
        "splits": {"pool": -1},
    },
    "letters-defender": {
        "source": "glyphs",
        "options": {"size": 52, "fonts": ["ComputerModern"], "case": "both"},
        "splits": {"train": -1},
    },
    "photos": {
        "source": "photo-crops",
        "options": {"size": 40, "photos": ["china", "coins"]},
        "splits": {"pool": -1},
    },
    "photos-defender": {
        "source": "photo-crops",
        "options": {"size": 40, "photos": ["flower", "brick"]},
        "splits": {"train": -1},
    },
    "public": {
        "source": "public",
        "options": {"size": 80, "fonts": ["Aileron"], "photos": ["camera"], "photo_share": 0.25},
        "splits": {"train": 60, "val": 20},
    },
}


def _materialised(specs, folder) -> dict:
    """Each spec written to ``folder`` and read back, as the workflow would."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, spec in specs.items():
        sources.materialise_to(name, spec, 0, folder / f"{name}.parquet")
        out[name] = datasets.load(folder / f"{name}.parquet")
    return out


def test_role_datasets_reads_every_role_from_the_config():
    config = {**CONFIG, "defenses": {**CONFIG["defenses"], "misinformation": {"outlier": ["x"]}}}
    assert roles.role_datasets(config) == {
        "victim": [
            ("mnist5k", "train"),
            ("mnist5k", "val"),
            ("mnist5k", "test"),
            ("glyphs", "train"),
            ("glyphs", "val"),
            ("glyphs", "test"),
        ],
        "defender": [("letters-defender", "train"), ("photos-defender", "train"), ("x", "train")],
        "attacker": [("mnist5k", "pool"), ("letters", "pool"), ("photos", "pool")],
        "public": [("public", "train"), ("public", "val")],
    }
    assert roles.role_datasets({"victims": {}})["public"] == []


def test_check_roles_passes_disjoint_roles_and_reports_a_shared_font_family(tmp_path):
    materialised = _materialised(SPECS, tmp_path)
    layout = roles.role_datasets(CONFIG)
    # mnist5k is both the victim's data and an attacker's pool: disjoint digits, no violation
    assert roles.check_roles(materialised, layout) == []

    # the defender's letters now come from a family of the victim's
    spec = {**SPECS["letters-defender"], "options": {"size": 52, "fonts": ["STIXGeneral"]}}
    materialised.update(_materialised({"letters-defender": spec}, tmp_path / "shared"))
    violations = roles.check_roles(materialised, layout)
    assert len(violations) == 3, violations  # victim's train, val and test splits
    assert all(
        "victim (glyphs/" in v and "defender (letters-defender/train)" in v for v in violations
    )
    assert all("source hash" in v and "font STIXGeneral/STIXGeneral" in v for v in violations)


def test_check_roles_reports_shared_images_and_photographs(tmp_path):
    materialised = _materialised({k: SPECS[k] for k in ("photos", "photos-defender")}, tmp_path)
    layout = {"attacker": [("photos", "pool")], "defender": [("photos", "pool")]}
    (message,) = [v for v in roles.check_roles(materialised, layout) if "image hash" in v]
    assert message.startswith("attacker (photos/pool) and defender (photos/pool) share 40 image")
    layout = {"attacker": [("photos", "pool")], "defender": [("photos-defender", "train")]}
    assert roles.check_roles(materialised, layout) == []
    # the defender now crops one of the attacker's photographs too
    spec = {**SPECS["photos-defender"], "options": {"size": 40, "photos": ["flower", "coins"]}}
    materialised.update(_materialised({"photos-defender": spec}, tmp_path / "shared"))
    violations = roles.check_roles(materialised, layout)
    (message,) = [v for v in violations if "source hash" in v]
    assert "share 1 source hash" in message and "(photo coins)" in message
    # same seed, coins drawn at the same rows of both: some crops are identical images too
    assert any("image hash" in v for v in violations)
    with pytest.raises(ValueError, match="not materialised: nowhere"):
        roles.check_roles(materialised, {"victim": [("nowhere", "train")]})


def test_outlier_exposure_data_is_the_defenders_and_checked_by_content(tmp_path):
    """A victim's Outlier Exposure data is defender data: when it shares a font family with
    an attacker's pool, the content check reports it."""
    oe = {"training": {"outlier_exposure": {"data": ["letters-oe"], "weight": 1.0}}}
    config = {**CONFIG, "victims": {**CONFIG["victims"], "oe-lenet": {**oe, "dataset": "mnist5k"}}}
    layout = roles.role_datasets(config)
    assert ("letters-oe", "train") in layout["defender"]
    own = {**SPECS["letters-defender"], "options": {"size": 52, "fonts": ["ComputerModern"]}}
    materialised = _materialised({**SPECS, "letters-oe": own}, tmp_path)
    assert roles.check_roles(materialised, layout) == []
    # the outliers are now letters of the attacker's DejaVuSerif family
    spec = {**own, "options": {"size": 52, "fonts": ["DejaVuSerif"]}}
    materialised.update(_materialised({"letters-oe": spec}, tmp_path / "shared"))
    violations = roles.check_roles(materialised, layout)
    assert any(
        "attacker (letters/pool)" in v and "defender (letters-oe/train)" in v for v in violations
    ), violations


@pytest.mark.parametrize(
    "path", ["config.yaml", "configs/smoke.yaml", "configs/reproduce/adaptive-misinformation.yaml"]
)
def test_the_shipped_configs_give_every_role_its_own_images_and_sources(root, tmp_path, path):
    """Victim data, defender data, attacker pools and the public corpus of the shipped grids
    share no image and no source image, by content hash, as materialised."""
    import yaml

    from stealbench import config as stealbench_config

    cfg = stealbench_config.validate(yaml.safe_load((root / path).read_text()))
    layout = roles.role_datasets(cfg)
    assert layout["victim"] and layout["defender"] and layout["attacker"]
    assert layout["public"] or not cfg["pretrain"]
    for victim in cfg["victims"]:  # Outlier Exposure data is the defender's
        for name in stealbench_config.outlier_exposure_data(cfg, victim):
            assert (name, "train") in layout["defender"]
    used = {name for pairs in layout.values() for name, _ in pairs}
    materialised = _materialised({name: cfg["datasets"][name] for name in used}, tmp_path)
    assert roles.check_roles(materialised, layout) == []
