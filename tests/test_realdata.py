"""Real datasets (torchvision by name, ImageFolder trees) and the lazy image store.

No network: ImageFolder trees are generated here, and the torchvision datasets are written in
their published file formats (MNIST idx files, CIFAR-10 pickled batches) so that the real
torchvision loaders read them with download=False.
"""

import copy
import gzip
import hashlib
import logging
import pickle
import struct

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml
from PIL import Image

from stealbench import config
from stealbench.data import datasets, realdata, sources
from stealbench.data.realdata import DataSourceError
from stealbench.io import ArtefactError
from stealbench.models.architectures import create_model
from stealbench.models.training import TrainConfig, fit, predict_proba

# ------------------------------------------------------------------------ fixtures


def _image(rng, label: int, size: tuple[int, int], mode: str) -> Image.Image:
    """A small image whose brightness encodes its class, in a given PIL mode."""
    w, h = size
    base = np.full((h, w, 3), 40 + 50 * (label % 4), dtype=np.uint8)
    noise = rng.integers(0, 30, size=(h, w, 3), dtype=np.uint8)
    image = Image.fromarray(base + noise)
    return image.convert(mode) if mode != "RGB" else image


MODES = ("RGB", "L", "RGBA", "P", "LA")
SIZES = ((20, 20), (31, 17), (12, 40), (48, 36))


def make_tree(root, counts: dict[str, int], seed: int = 0, subdir: str = "") -> list:
    """root/[subdir/]<class>/<i>.{png,jpg}: mixed sizes, modes and formats."""
    rng = np.random.default_rng(seed)
    files = []
    for c, (name, count) in enumerate(counts.items()):
        folder = root / subdir / name if subdir else root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            mode, size = MODES[i % len(MODES)], SIZES[i % len(SIZES)]
            image = _image(rng, c, size, mode)
            if i % 3 == 2:  # some JPEGs (JPEG has no alpha or palette)
                path = folder / f"{i:04d}.jpg"
                image.convert("L" if mode in ("L", "LA") else "RGB").save(path, quality=90)
            else:
                path = folder / f"{i:04d}.png"
                image.save(path)
            files.append(path)
    return files


def imagefolder(root, **options) -> dict:
    return {"source": "imagefolder", "options": {"root": str(root), "image_size": 16, **options}}


def materialise(tmp_path, spec, seed=0, name="ds"):
    path = tmp_path / f"{name}-{seed}.parquet"
    meta = sources.materialise_to(name, spec, seed, path)
    return path, meta


CALTECH = {"001.ak47": 27, "002.bat": 26, "003.cake": 28, "257.clutter": 4}


@pytest.fixture(scope="module")
def caltech_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("caltech")
    make_tree(root, CALTECH, subdir="256_ObjectCategories")
    return root


# ------------------------------------------------------------------- imagefolder


def test_caltech256_layout_has_the_knockoff_split(tmp_path, caltech_tree):
    spec = imagefolder(caltech_tree, layout="caltech256")
    path, meta = materialise(tmp_path, spec)
    assert meta["classes"] == ["001.ak47", "002.bat", "003.cake"]  # clutter dropped
    ds = datasets.load(path)
    test_labels = ds.labels[ds.ids("test")]
    assert np.bincount(test_labels).tolist() == [25, 25, 25]  # 25 test images per class
    rest = 27 + 26 + 28 - 75
    assert meta["split_counts"] == {"train": rest - 1, "val": 1, "test": 75, "pool": 0}
    assert ds.images.shape[1:] == (16, 16, 3) and ds.images.dtype == np.uint8
    # the file is ordered split by split
    order = [s for s in datasets.SPLITS if (ds.splits == s).any()]
    assert list(dict.fromkeys(ds.splits)) == order


def test_imagefolder_is_deterministic_and_checksummed(tmp_path, caltech_tree):
    spec = imagefolder(
        caltech_tree / "256_ObjectCategories", test_per_class=3, channels=1, image_size=20
    )
    spec["splits"] = {"train": -1, "val": 0.2, "test": -1, "pool": 10}
    path, meta = materialise(tmp_path, spec, seed=3)
    again, meta_again = materialise(tmp_path / "again", spec, seed=3)
    assert meta["checksum"] == meta_again["checksum"]
    assert path.read_bytes() == again.read_bytes()
    assert meta["classes"][-1] == "257.clutter"  # generic layout keeps every folder
    counts = meta["split_counts"]
    assert counts["test"] == 3 * 4 and counts["pool"] == 10
    assert counts["val"] == round(0.2 * (sum(CALTECH.values()) - 12))  # of the train part
    ds = datasets.load(path)  # verifies the checksum
    assert ds.images.shape[1:] == (20, 20, 1)
    assert ds.checksum == datasets.checksum(ds.images, ds.labels, ds.splits, ds.sources)
    other = materialise(tmp_path, spec, seed=4)[1]
    assert other["checksum"] != meta["checksum"]
    # more val images change the splits, never the test part
    more = copy.deepcopy(spec)
    more["splits"]["val"] = 0.5
    ds_more = datasets.load(materialise(tmp_path / "more", more, seed=3)[0])
    test = {bytes(x) for x in ds.images[ds.ids("test")]}
    assert test == {bytes(x) for x in ds_more.images[ds_more.ids("test")]}


def test_imagefolder_sources_are_file_hashes_whatever_the_image_size(tmp_path):
    files = make_tree(tmp_path / "tree", {"a": 5, "b": 4})
    expected = {hashlib.sha256(f.read_bytes()).digest()[:16] for f in files}
    stored = []
    for size in (12, 20):
        spec = imagefolder(tmp_path / "tree", image_size=size, channels=1)
        spec["splits"] = {"pool": -1}
        ds = datasets.load(materialise(tmp_path, spec, name=f"s{size}")[0])
        assert {bytes(s) for s in ds.sources} == expected
        stored.append(dict(zip(map(bytes, ds.sources), ds.labels, strict=True)))
    assert stored[0] == stored[1]


def test_resize_modes(tmp_path):
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (40, 20), (255, 255, 255)).save(root / "a" / "wide.png")
    Image.new("RGB", (20, 20), (255, 255, 255)).save(root / "a" / "square.png")
    out = {}
    for resize in ("crop", "pad", "stretch"):
        spec = imagefolder(root, resize=resize, channels=1)
        spec["splits"] = {"pool": -1}
        ds = datasets.load(materialise(tmp_path, spec, name=resize)[0])
        out[resize] = ds.images
    wide = [i for i in range(2) if out["pad"][i].min() == 0]
    assert len(wide) == 1  # only the wide image is padded: black bands above and below
    assert out["pad"][wide[0], :3].max() == 0 and out["pad"][wide[0], 8].min() == 255
    assert out["crop"].min() == 255 and out["stretch"].min() == 255


def test_train_test_cub200_and_indoor67_layouts(tmp_path):
    tt = tmp_path / "tt"
    make_tree(tt / "train", {"cat": 6, "dog": 5})
    make_tree(tt / "val", {"cat": 2, "dog": 3}, seed=1)
    meta = materialise(tmp_path, imagefolder(tt, layout="train_test"), name="tt")[1]
    assert meta["split_counts"] == {"train": 10, "val": 1, "test": 5, "pool": 0}

    cub = tmp_path / "CUB_200_2011"
    files = make_tree(cub, {"001.Albatross": 4, "002.Auklet": 4}, subdir="images")
    relative = [f.relative_to(cub / "images").as_posix() for f in files]
    (cub / "images.txt").write_text("".join(f"{i + 1} {r}\n" for i, r in enumerate(relative)))
    (cub / "train_test_split.txt").write_text("".join(f"{i + 1} {i % 2}\n" for i in range(8)))
    spec = imagefolder(cub, layout="cub200")
    spec["splits"] = {"train": -1, "test": -1}
    meta = materialise(tmp_path, spec, name="cub")[1]
    assert meta["split_counts"] == {"train": 4, "val": 0, "test": 4, "pool": 0}

    indoor = tmp_path / "indoor"
    make_tree(indoor, {"bar": 3, "kitchen": 4}, subdir="Images")
    (indoor / "TestImages.txt").write_text("bar/0000.png\nkitchen/0001.png\n")
    spec = imagefolder(indoor, layout="indoor67")
    spec["splits"] = {"train": -1, "test": -1}
    meta = materialise(tmp_path, spec, name="indoor")[1]
    assert meta["split_counts"]["test"] == 2 and meta["split_counts"]["train"] == 5


def test_missing_root_names_the_path_and_the_key(tmp_path):
    spec = imagefolder(tmp_path / "nowhere", layout="caltech256")
    with pytest.raises(
        DataSourceError, match=r"nowhere' does not exist.*datasets\.ds\.options\.root"
    ):
        materialise(tmp_path, spec)
    spec = {"source": "torchvision", "options": {"name": "CIFAR10", "root": str(tmp_path / "x")}}
    with pytest.raises(DataSourceError, match=r"datasets\.ds\.options\.root.*download: true"):
        materialise(tmp_path, spec)
    (tmp_path / "empty").mkdir()
    spec["options"]["root"] = str(tmp_path / "empty")
    with pytest.raises(DataSourceError, match="cifar-10-batches-py"):
        materialise(tmp_path, spec)


def test_empty_class_folder_is_an_error(tmp_path):
    make_tree(tmp_path / "tree", {"a": 3})
    (tmp_path / "tree" / "b").mkdir()
    (tmp_path / "tree" / "b" / ".DS_Store").write_bytes(b"\0")  # hidden files are ignored
    spec = imagefolder(tmp_path / "tree", test_per_class=1)
    with pytest.raises(DataSourceError, match=r"tree/b: class folder has no images"):
        materialise(tmp_path, spec)


def test_non_image_files_fail_or_are_skipped_with_a_warning(tmp_path, caplog):
    root = tmp_path / "tree"
    make_tree(root, {"a": 4, "b": 4})
    (root / "a" / "notes.txt").write_text("not an image")
    spec = imagefolder(root, test_per_class=1)
    with pytest.raises(DataSourceError, match=r"a/notes.txt: not an image file"):
        materialise(tmp_path, spec)
    (root / "a" / "notes.txt").unlink()
    (root / "b" / "broken.png").write_bytes(b"this is no PNG")
    with pytest.raises(DataSourceError, match=r"b/broken.png: PIL cannot read"):
        materialise(tmp_path, spec)
    (root / "a" / "notes.txt").write_text("not an image")
    spec["options"]["skip_bad_files"] = True
    with caplog.at_level(logging.WARNING, logger="stealbench.realdata"):
        path, meta = materialise(tmp_path, spec)
    assert "broken.png" in caplog.text and "notes.txt" in caplog.text
    assert [p.rsplit("/", 1)[1] for p in meta["skipped_files"]] == ["notes.txt", "broken.png"]
    assert sum(meta["split_counts"].values()) == 8
    datasets.load(path)


def test_too_many_test_images_per_class(tmp_path):
    make_tree(tmp_path / "tree", {"a": 3, "b": 9})
    with pytest.raises(DataSourceError, match=r"class 'a' has 3 images.*test_per_class"):
        materialise(tmp_path, imagefolder(tmp_path / "tree", test_per_class=3))


# ------------------------------------------------------------------- torchvision


def _idx(path, array: np.ndarray, compress: bool = False) -> None:
    """An MNIST idx file (big-endian header: magic 0x08 = uint8, then the dimensions)."""
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def make_mnist(root, n_train=40, n_test=15):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        _idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        _idx(raw / f"{prefix}-images-idx3-ubyte.gz", images, compress=True)  # as downloaded
        arrays[prefix] = (images, labels)
    return arrays


def test_torchvision_mnist_from_local_idx_files(tmp_path):
    arrays = make_mnist(tmp_path)
    spec = {"source": "torchvision", "options": {"name": "MNIST", "root": str(tmp_path)}}
    spec["splits"] = {"train": -1, "val": 4, "test": -1, "pool": 6}
    ds = datasets.load(materialise(tmp_path, spec)[0])
    assert ds.meta["split_counts"] == {"train": 30, "val": 4, "test": 15, "pool": 6}
    assert ds.images.shape[1:] == (28, 28, 1) and len(ds.classes) == 10
    test_ids = ds.ids("test")
    test = {bytes(x): y for x, y in zip(ds.images[test_ids], ds.labels[test_ids], strict=True)}
    images, labels = arrays["t10k"]
    assert test == {bytes(x[..., None]): y for x, y in zip(images, labels, strict=True)}
    others = {bytes(x) for s in ("train", "val", "pool") for x in ds.images[ds.ids(s)]}
    assert others == {bytes(x[..., None]) for x in arrays["train"][0]}
    # an in-memory torchvision image's source: the hash of its mode, size and pixels
    header = b"L (28, 28)\n"
    expected = {hashlib.sha256(header + x.tobytes()).digest()[:16] for x in images}
    assert {bytes(s) for s in ds.sources[test_ids]} == expected
    # the whole dataset as a pool, resized and in RGB: the same sources
    spec = {**spec, "splits": {"pool": -1}}
    spec["options"] = {**spec["options"], "image_size": 16, "channels": 3}
    pool = datasets.load(materialise(tmp_path, spec, name="pool")[0])
    assert pool.images.shape == (55, 16, 16, 3) and (pool.splits == "pool").all()
    assert {bytes(s) for s in pool.sources} == {bytes(s) for s in ds.sources}


def test_torchvision_cifar10_from_local_pickled_batches(tmp_path, monkeypatch):
    import torchvision

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(batch))
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse"]
    classes += ["ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": classes}))

    def md5(name):
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    # torchvision checks the published MD5 of every file; point it at these files' own
    cifar = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cifar, "train_list", [[n, md5(n)] for n in names[:5]])
    monkeypatch.setattr(cifar, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": md5("batches.meta")})
    spec = {"source": "torchvision", "options": {"name": "CIFAR10", "root": str(tmp_path)}}
    path, meta = materialise(tmp_path, spec)
    assert meta["classes"] == classes
    assert meta["split_counts"] == {"train": 18, "val": 2, "test": 4, "pool": 0}
    ds = datasets.load(path)
    assert ds.images.shape == (24, 32, 32, 3)
    expected = pickle.loads((folder / "test_batch").read_bytes())["data"]
    expected = expected.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert {bytes(x) for x in ds.images[ds.ids("test")]} == {bytes(x) for x in expected}


# ----------------------------------------------------------------- the lazy store


@pytest.fixture(scope="module")
def small_groups(tmp_path_factory):
    """A dataset written in row groups of 16 images."""
    tmp = tmp_path_factory.mktemp("lazy")
    mp = pytest.MonkeyPatch()
    mp.setattr(datasets, "ROW_GROUP_ROWS", 16)
    spec = {"source": "noise", "options": {"size": 150}, "splits": {"train": 100, "pool": -1}}
    path = tmp / "noise.parquet"
    sources.materialise_to("noise", spec, 0, path)
    mp.undo()
    return path


def test_lazy_store_equals_the_in_memory_load(small_groups):
    eager, lazy = datasets.load(small_groups, lazy=False), datasets.open(small_groups)
    store = lazy.images
    assert isinstance(store, datasets.ImageStore) and not isinstance(
        eager.images, datasets.ImageStore
    )
    assert len(store) == 150 and store.shape == eager.images.shape and store.dtype == np.uint8
    assert lazy.checksum == eager.checksum
    np.testing.assert_array_equal(lazy.labels, eager.labels)
    assert list(lazy.splits) == list(eager.splits)
    np.testing.assert_array_equal(np.asarray(store), eager.images)
    rng = np.random.default_rng(0)
    ids = rng.integers(-150, 150, size=70)  # any order, repeats, negative indices
    np.testing.assert_array_equal(store[ids], eager.images[ids])
    np.testing.assert_array_equal(store[5], eager.images[5])
    np.testing.assert_array_equal(store[-1], eager.images[-1])
    np.testing.assert_array_equal(store[10:90:7], eager.images[10:90:7])
    mask = rng.random(150) < 0.3
    np.testing.assert_array_equal(store[mask], eager.images[mask])
    assert store[np.zeros(0, dtype=np.int64)].shape == (0, 28, 28, 1)
    x, y = lazy.split("pool")
    x_eager, y_eager = eager.split("pool")
    assert isinstance(x, datasets.ImageStore) and len(x) == 50
    np.testing.assert_array_equal(x[np.arange(50)[::-1]], x_eager[::-1])
    np.testing.assert_array_equal(y, y_eager)
    with pytest.raises(IndexError):
        store[150]
    with pytest.raises(IndexError):
        store[np.array([0.5])]


def test_load_goes_lazy_above_the_threshold(small_groups, monkeypatch):
    assert isinstance(datasets.load(small_groups).images, np.ndarray)
    monkeypatch.setattr(datasets, "LAZY_THRESHOLD_BYTES", 1000)
    assert isinstance(datasets.load(small_groups).images, datasets.ImageStore)


def test_block_order_covers_every_index_once_and_reads_each_group_once(small_groups):
    generator = torch.Generator().manual_seed(0)
    for store in (
        datasets.open(small_groups).images,
        datasets.open(small_groups).split("train")[0],
    ):
        touched = len(store.row_groups())
        assert touched == 10  # 150 images in row groups of 16; train rows lie in all of them
        orders = [store.epoch_order(generator) for _ in range(3)]
        assert not np.array_equal(orders[0], orders[1])  # a new order every epoch
        for epoch, order in enumerate(orders):
            assert sorted(order.tolist()) == list(range(len(store)))
            before = store.reads
            for i in range(0, len(store), 10):
                store[order[i : i + 10]]
            # each row group decoded at most once per epoch (the first epoch starts cold)
            assert (
                store.reads - before == touched if epoch == 0 else store.reads - before <= touched
            )
    same = datasets.open(small_groups).images
    np.testing.assert_array_equal(same.epoch_order(7), same.epoch_order(7))


def test_fit_and_predict_on_a_lazy_store(small_groups):
    ds = datasets.open(small_groups)
    x, _ = ds.split("train")
    rng = np.random.default_rng(0)
    targets = np.eye(3, dtype=np.float32)[rng.integers(0, 3, len(x))]
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = create_model("lenet", 3)
        result = fit(model, x, targets, x[:20], targets[:20].argmax(1), TrainConfig(epochs=2), 1)
        assert result.images_seen == 2 * len(x)
        runs.append(predict_proba(model, ds.images))
    assert runs[0].shape == (150, 3)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_lazy_verify_streams_and_detects_edits(small_groups, tmp_path):
    table, meta = datasets.materialise(
        "noise", {"source": "noise", "options": {"size": 30}, "splits": {"pool": -1}}, seed=0
    )
    labels = pa.array(np.full(table.num_rows, 3, dtype=np.int16))
    edited = table.set_column(table.schema.get_field_index("label"), "label", labels)
    datasets.save(edited, meta, tmp_path / "edited.parquet")
    with pytest.raises(ArtefactError, match="does not match its checksum"):
        datasets.open(tmp_path / "edited.parquet")
    datasets.open(tmp_path / "edited.parquet", verify=False)


# ------------------------------------------------------------------------ config


def test_config_accepts_real_sources_with_placeholder_roots(root):
    cfg = yaml.safe_load((root / "configs" / "smoke.yaml").read_text())
    cfg["datasets"]["cifar10"] = {
        "source": "torchvision",
        "options": {"name": "CIFAR10", "root": "/data/placeholder"},
    }
    cfg["datasets"]["imagenet"] = {
        "source": "imagefolder",
        "options": {"root": "$DATA/imagenet-subset"},
        "splits": {"pool": -1},
    }
    cfg["victims"]["digits-lenet"]["dataset"] = "cifar10"
    cfg["attacks"]["random-digits"]["pool"] = "imagenet"
    out = config.validate(cfg)
    spec = out["datasets"]["cifar10"]
    assert spec["splits"] == {"train": -1, "val": 0.1, "test": -1}
    assert config.split_sizes(spec) == {"train": 45000, "val": 5000, "test": 10000}
    assert out["datasets"]["imagenet"]["options"]["image_size"] == 64
    assert config.split_sizes(out["datasets"]["imagenet"]) == {"pool": None}  # checked at run time
    bad = copy.deepcopy(cfg)
    bad["datasets"]["imagenet"]["options"]["layout"] = "imagenet"
    with pytest.raises(config.ConfigError, match="layout'.*allowed values: generic"):
        config.validate(bad)
    bad = copy.deepcopy(cfg)
    bad["datasets"]["cifar10"]["splits"] = {"train": 45000, "val": 6000, "test": -1}
    with pytest.raises(config.ConfigError, match="needs 51000 images but torchvision CIFAR10"):
        config.validate(bad)


def test_choose_rows_parts():
    plan = realdata.Plan(
        labels=np.arange(20) % 2,
        classes=["a", "b"],
        source="t",
        shape=(1, 1, 1),
        decode=None,
        describe=str,
        test_part=np.arange(20) >= 15,
    )
    rows, splits = realdata.choose_rows("x", plan, {"train": -1, "val": 0.2, "test": -1}, 0)
    assert set(rows[splits == "test"]) == set(range(15, 20))
    assert (splits == "val").sum() == 3 and (splits == "train").sum() == 12
    rows, splits = realdata.choose_rows("x", plan, {"pool": -1}, 0)  # the whole source
    assert sorted(rows) == list(range(20)) and (splits == "pool").all()
    with pytest.raises(
        DataSourceError, match=r"ask for 6 images.*its test part.*datasets\.x\.splits"
    ):
        realdata.choose_rows("x", plan, {"train": -1, "test": 6}, 0)
