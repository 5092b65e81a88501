"""Victims from anywhere: the config keys of external victims (checkpoint, torchscript,
torchvision, remote) and their errors, loading a model file, and the one-batch probe."""

import copy
import hashlib
import sys
import types

import numpy as np
import pytest
import torch
import yaml

from stealbench import config
from stealbench.models.architectures import create_model
from stealbench.victim import sources
from stealbench.victim.local import VictimSourceError, load_external
from stealbench.victim.probe import check_classes, probe, probe_local


@pytest.fixture(scope="module")
def smoke(root):
    return yaml.safe_load((root / "configs" / "smoke.yaml").read_text())


CHECKPOINT = {
    "source": "checkpoint",
    "dataset": "digits",
    "classes": 10,
    "input": {"size": 28, "channels": 1},
    "checkpoint": {"file": "lenet.pt", "arch": "lenet"},
    "attacks": ["random-digits"],
}
REMOTE = {
    "source": "remote",
    "dataset": "digits",
    "classes": 10,
    "input": {"size": 28, "channels": 1},
    "remote": {"url": "http://127.0.0.1:8080", "model": "digits", "returns": "top2"},
    "attacks": ["random-uci-digits"],
}


def _with(smoke, name="ext", **victim):
    cfg = copy.deepcopy(smoke)
    cfg["victims"][name] = copy.deepcopy(victim)
    return cfg


def test_external_victims_validate_and_get_their_defaults(smoke):
    cfg = _with(smoke, **CHECKPOINT)
    cfg["victims"]["api"] = copy.deepcopy(REMOTE)
    cfg["victims"]["api"]["remote"]["auth"] = {"env": "API_TOKEN"}
    cfg["attacks"]["random-uci-digits"]["granularities"] = ["top2", "top1", "label"]
    out = config.validate(cfg)
    ext, api = out["victims"]["ext"], out["victims"]["api"]
    # no training keys filled in for an external victim; the contract's default scale
    assert set(ext) == {
        "source",
        "dataset",
        "classes",
        "input",
        "checkpoint",
        "attacks",
        "overrides",
    }
    assert ext["input"]["normalize"] == "none"
    assert api["remote"] == {
        "url": "http://127.0.0.1:8080",
        "model": "digits",
        "returns": "top2",
        "input_name": "input",
        "datatype": "FP32",
        "batch_size": 64,
        "concurrency": 4,
        "timeout_s": 30,
        "retries": 8,
        "backoff_s": 0.25,
        "max_requests": None,
        "auth": {"env": "API_TOKEN", "header": "Authorization", "scheme": "Bearer"},
    }
    # a trained victim is what it was (source train filled in, its spec unchanged)
    assert out["victims"]["digits-lenet"]["source"] == "train"
    assert set(config.victim_spec(out, "digits-lenet")) == {
        "dataset",
        "arch",
        "init",
        "input_size",
        "training",
    }
    # the remote victim is left out of the defenses' victims (the smoke config lists its
    # defended victim; the detector and PRADA evaluation iterate defense_victims)
    assert "api" not in config.defense_victims(out)
    assert "ext" in config.defense_victims(out)
    assert config.victim_spec(out, "ext")["arch"] == "lenet"


def test_the_default_defended_victims_leave_remote_and_unregistered_ones_out(smoke):
    cfg = _with(smoke, **CHECKPOINT)
    cfg["victims"]["api"] = copy.deepcopy(REMOTE)
    cfg["victims"]["api"]["remote"]["returns"] = "probs"
    cfg["victims"]["ts"] = {
        **{k: v for k, v in CHECKPOINT.items() if k not in ("source", "checkpoint")},
        "source": "torchscript",
        "torchscript": {"file": "m.pt"},
    }
    del cfg["defenses"]["defended"]["victims"]
    out = config.validate(cfg)
    assert out["defenses"]["defended"]["victims"] == [
        "digits-lenet",
        "digits-lenet-pt",
        "digits-resnet8",
        "ext",
    ]


IMAGENET_STATS = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
ALLOWED_SOURCES = "allowed values: train, checkpoint, torchscript, torchvision, remote"

BAD = {
    "misspelled source": (
        dict(CHECKPOINT, source="chekpoint"),
        r"config key 'victims.ext.source': 'chekpoint' is not allowed \(did you mean "
        r"'checkpoint'\?\); " + ALLOWED_SOURCES,
    ),
    "training key on an external victim": (
        dict(CHECKPOINT, init="scratch"),
        r"config key 'victims.ext.init': applies only to a trained victim \(source: train\), "
        r"and this one is source: checkpoint; allowed keys for it: attacks, classes",
    ),
    "top-level arch on a checkpoint": (
        dict(CHECKPOINT, arch="lenet"),
        r"config key 'victims.ext.arch': applies only to a trained victim .*give the "
        r"checkpoint's architecture as victims.ext.checkpoint.arch",
    ),
    "training block on a torchscript victim": (
        dict(
            {k: v for k, v in CHECKPOINT.items() if k != "checkpoint"},
            source="torchscript",
            torchscript={"file": "m.pt"},
            training={"epochs": 2},
        ),
        r"config key 'victims.ext.training': applies only to a trained victim",
    ),
    "section of another source": (
        dict(CHECKPOINT, torchscript={"file": "m.pt"}),
        r"config key 'victims.ext.torchscript': the section of source torchscript, and this "
        r"victim is source: checkpoint; give victims.ext.checkpoint, or set source: torchscript",
    ),
    "external section on a trained victim": (
        {"dataset": "digits", "arch": "lenet", "attacks": ["random-digits"], "classes": 10},
        r"config key 'victims.ext.classes': applies to an external victim, and this one is "
        r"trained \(source: train\); set victims.ext.source to one of checkpoint, torchscript",
    ),
    "missing source section": (
        {k: v for k, v in CHECKPOINT.items() if k != "checkpoint"},
        r"config key 'victims.ext': 'checkpoint' is a required property",
    ),
    "missing input contract": (
        {k: v for k, v in CHECKPOINT.items() if k != "input"},
        r"config key 'victims.ext': 'input' is a required property",
    ),
    "misspelled checkpoint key": (
        dict(CHECKPOINT, checkpoint={"fille": "x.pt", "arch": "lenet"}),
        r"config key 'victims.ext.checkpoint': unknown key 'fille' \(did you mean 'file'\?\); "
        r"allowed keys: arch, file, sha256",
    ),
    "unknown torchvision model": (
        dict(
            {k: v for k, v in CHECKPOINT.items() if k != "checkpoint"},
            source="torchvision",
            torchvision={"model": "resnet19", "file": "r.pt"},
        ),
        r"config key 'victims.ext.torchvision.model': 'resnet19' is not a torchvision "
        r"classification model \(did you mean 'resnet18'\?\); allowed values: alexnet, ",
    ),
    "a normalisation of the wrong length": (
        dict(
            {k: v for k, v in CHECKPOINT.items() if k != "checkpoint"},
            source="torchscript",
            torchscript={"file": "m.pt"},
            input={"size": 28, "channels": 1, "normalize": IMAGENET_STATS},
        ),
        r"config key 'victims.ext.input.normalize.mean': 3 values for 1 channel\(s\); give one "
        r"per channel",
    ),
    "a normalisation on a checkpoint": (
        dict(CHECKPOINT, input={"size": 28, "channels": 1, "normalize": "imagenet"}),
        r"config key 'victims.ext.input.normalize': a checkpoint of a registered architecture "
        r"is scaled as its architecture registers it .*; allowed values: none",
    ),
    "a bad checksum pin": (
        dict(CHECKPOINT, checkpoint={"file": "x.pt", "arch": "lenet", "sha256": "abc"}),
        r"config key 'victims.ext.checkpoint.sha256': 'abc' does not match",
    ),
    "external victim without test data": (
        dict(CHECKPOINT, dataset="letters"),
        r"config key 'datasets.letters.splits': victim 'ext' needs a non-empty 'test' split "
        r"\(its labelled test data\)",
    ),
    "unknown remote return": (
        dict(REMOTE, remote={"url": "http://h", "model": "m", "returns": "logits"}),
        r"config key 'victims.ext.remote.returns': 'logits' does not match",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_external_victim_names_key_and_fix(smoke, case):
    victim, pattern = BAD[case]
    with pytest.raises(config.ConfigError, match=pattern):
        config.validate(_with(smoke, **victim))


def test_a_granularity_finer_than_a_remote_victim_returns_is_an_error(smoke):
    # random-digits asks for the surrogates' granularities: probs, top2, round1, label
    cfg = _with(smoke, **dict(REMOTE, attacks=["random-digits"]))
    with pytest.raises(config.ConfigError) as err:
        config.validate(cfg)
    message = str(err.value)
    for finer in ("probs", "round1"):
        assert (
            f"config key 'surrogates.granularities': '{finer}' is finer than what remote victim "
            f"'ext' returns (top2, victims.ext.remote.returns); allowed: label, top1 … top2"
        ) in message
    assert "'top2' is finer" not in message and "'label' is finer" not in message
    # an override for this victim names its own key
    cfg["victims"]["ext"]["overrides"] = {"random-digits": {"granularities": ["top3"]}}
    with pytest.raises(
        config.ConfigError,
        match=r"config key 'victims.ext.overrides.random-digits.granularities': 'top3' is finer",
    ):
        config.validate(cfg)
    cfg["victims"]["ext"]["overrides"] = {"random-digits": {"granularities": ["top1", "label"]}}
    config.validate(cfg)


@pytest.mark.parametrize(
    ("granularity", "returns", "ok"),
    [
        ("probs", "probs", True),
        ("round2", "probs", True),
        ("top3", "probs", True),
        ("label", "label", True),
        ("label", "top1", True),
        ("top2", "top3", True),
        ("top3", "top3", True),
        ("top4", "top3", False),
        ("probs", "top3", False),
        ("round1", "top3", False),
        ("top1", "label", False),
        ("probs", "label", False),
    ],
)
def test_derivable_granularities(granularity, returns, ok):
    assert sources.derivable(granularity, returns) is ok


def test_a_remote_victim_cannot_be_defended(smoke):
    cfg = _with(smoke, **dict(REMOTE, remote={**REMOTE["remote"], "returns": "probs"}))
    cfg["defenses"]["defended"]["victims"] = ["digits-lenet", "ext"]
    with pytest.raises(
        config.ConfigError,
        match=r"config key 'defenses.defended.victims': victim 'ext' is remote; its API answers "
        r"as it is, .*`stealbench serve`\); allowed: digits-lenet, digits-lenet-pt, "
        r"digits-resnet8$",
    ):
        config.validate(cfg)


def test_torchvision_names_are_torchvisions_classifiers():
    import torchvision

    assert sources.TORCHVISION_CLASSIFIERS == tuple(
        torchvision.models.list_models(module=torchvision.models)
    )


# Loading and the probe: each error names the key and what to do.


def _spec(tmp_path, **changes):
    model = create_model("lenet", 10, seed=0)
    path = tmp_path / "lenet.pt"
    torch.save(model.state_dict(), path)
    spec = copy.deepcopy(CHECKPOINT)
    spec["checkpoint"]["file"] = str(path)
    for key, value in changes.items():
        spec[key] = value
    return spec, model


def test_a_checkpoint_loads_as_the_model_it_was_saved_from(tmp_path):
    spec, model = _spec(tmp_path)
    loaded, digest = load_external("ext", spec)
    assert digest == hashlib.sha256((tmp_path / "lenet.pt").read_bytes()).hexdigest()
    x = torch.rand(5, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    probe_local("ext", spec)


def test_a_missing_file_names_the_key_and_the_path(tmp_path):
    spec, _ = _spec(tmp_path)
    spec["checkpoint"]["file"] = str(tmp_path / "nowhere.pt")
    with pytest.raises(
        VictimSourceError, match=r"config key 'victims.ext.checkpoint.file': '.*nowhere.pt'"
    ):
        probe_local("ext", spec)


def test_a_checksum_mismatch_names_the_key_and_both_hashes(tmp_path):
    spec, _ = _spec(tmp_path)
    actual = hashlib.sha256((tmp_path / "lenet.pt").read_bytes()).hexdigest()
    spec["checkpoint"]["sha256"] = "0" * 64
    with pytest.raises(
        VictimSourceError,
        match=rf"config key 'victims.ext.checkpoint.sha256': .* has SHA-256 {actual}, but the "
        rf"config pins {'0' * 64}",
    ):
        probe_local("ext", spec)
    spec["checkpoint"]["sha256"] = actual.upper()  # a pin in capitals is the same hash
    probe_local("ext", spec)


def _torchscript_spec(tmp_path, **keys) -> dict:
    """A traced LeNet network (no input adapter: it takes 28x28 only) as a torchscript
    victim, with ``keys`` replacing the spec's."""
    spec, model = _spec(tmp_path)
    scripted = torch.jit.trace(model.net.eval(), torch.rand(1, 1, 28, 28))
    torch.jit.save(scripted, tmp_path / "lenet.ts")
    return {
        **{k: v for k, v in spec.items() if k != "checkpoint"},
        "source": "torchscript",
        "torchscript": {"file": str(tmp_path / "lenet.ts")},
        **keys,
    }


def test_a_wrong_input_size_fails_the_probe(tmp_path):
    # the contract says 16
    spec = _torchscript_spec(
        tmp_path, input={"size": 16, "channels": 1, "normalize": {"mean": [0.5], "std": [0.5]}}
    )
    with pytest.raises(
        VictimSourceError,
        match=r"config key 'victims.ext.input.size': the model fails on a batch of its input "
        r"contract's shape \(4, 1, 16, 16\)",
    ):
        probe_local("ext", spec)
    spec["input"]["size"] = 28
    probe_local("ext", spec)


def test_a_wrong_class_count_fails_the_probe(tmp_path):
    spec = _torchscript_spec(tmp_path, classes=12)
    with pytest.raises(
        VictimSourceError,
        match=r"config key 'victims.ext.classes': the model outputs 10 classes, the config "
        r"declares 12",
    ):
        probe_local("ext", spec)
    # a checkpoint of another class count does not even load: the same key
    spec, _ = _spec(tmp_path, classes=12)
    with pytest.raises(VictimSourceError, match=r"config key 'victims.ext.checkpoint': .* 12 "):
        probe_local("ext", spec)


def test_declared_classes_must_match_the_test_data():
    spec = {"classes": 3, "dataset": "d"}
    with pytest.raises(
        VictimSourceError,
        match=r"config key 'victims.v.classes': 3 classes, but its test data 'd' has 2 \(a, b\)",
    ):
        check_classes("v", spec, ["a", "b"])
    with pytest.raises(VictimSourceError, match=r"output order must be the dataset's label"):
        check_classes("v", {"classes": ["b", "a"], "dataset": "d"}, ["a", "b"])
    check_classes("v", {"classes": ["a", "b"], "dataset": "d"}, ["a", "b"])


def test_a_torchvision_model_takes_its_class_count_from_the_file(tmp_path):
    from torchvision.models import get_model

    model = get_model("mobilenet_v3_small", weights=None, num_classes=7).eval()
    torch.save(model.state_dict(), tmp_path / "mnv3.pth")
    spec = {
        "source": "torchvision",
        "dataset": "d",
        "classes": 7,
        "input": {"size": 32, "channels": 3, "normalize": "imagenet"},
        "torchvision": {"model": "mobilenet_v3_small", "file": str(tmp_path / "mnv3.pth")},
    }
    loaded, _ = load_external("ext", spec)
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model((x - mean) / std))
    spec["classes"] = 10
    with pytest.raises(VictimSourceError, match=r"model outputs 7 classes, the config declares"):
        probe_local("ext", spec)


def test_probe_uses_the_materialised_test_data_when_it_exists(tmp_path, monkeypatch):
    """With results/data/<dataset>.parquet present, the probe checks the declared classes
    against it; a remote victim goes to the remote client's probe."""
    from stealbench.data import datasets

    spec, _ = _spec(tmp_path)
    cfg = {"victims": {"ext": spec, "api": copy.deepcopy(REMOTE)}}
    seen = []
    fake = types.ModuleType("stealbench.victim.remote")
    fake.probe = lambda name, spec: seen.append(name)
    monkeypatch.setitem(sys.modules, "stealbench.victim.remote", fake)
    assert probe(cfg, tmp_path / "results") == ["ext", "api"]
    assert seen == ["api"]
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
    labels, splits = np.arange(6) % 3, np.array(["test"] * 6, dtype=object)
    table, meta = datasets.to_table("digits", images, labels, splits, ["a", "b", "c"], "t", 0, {})
    path = tmp_path / "results" / "data" / "digits.parquet"
    path.parent.mkdir(parents=True)
    datasets.save(table, meta, path)
    with pytest.raises(VictimSourceError, match=r"10 classes, but its test data 'digits' has 3"):
        probe(cfg, tmp_path / "results")


def test_bad_inputs_rows_name_tests_that_exist(root):
    """docs/bad-inputs.md rows 29-35 name this file's tests and cases: each exists."""
    import re

    text = (root / "docs" / "bad-inputs.md").read_text()
    rows = [line for line in text.splitlines() if re.match(r"\| (29|3[0-5]) \|", line)]
    assert len(rows) == 7
    module = globals()
    for name in re.findall(r"test_victim_sources\.py::(\w+)", "\n".join(rows)):
        assert name in module, name
    cases = re.findall(r"`…\[([^\]]+)\]`", "\n".join(rows[:3]))
    assert cases and set(cases) <= set(BAD), set(cases) - set(BAD)


class _FakeRemote:
    """What stealbench.victim.remote.RemoteVictim offers (its engineer's interface):
    from_spec(name, spec, ledger_path, purpose) and posteriors(uint8 NHWC) -> (N, C)."""

    calls: list = []

    @classmethod
    def from_spec(cls, name, spec, ledger_path, purpose):
        cls.calls.append((name, spec, ledger_path, purpose))
        return cls()

    def posteriors(self, images):
        return np.full((len(images), 10), 0.1, dtype=np.float32)


def test_a_remote_victim_is_loaded_through_its_client_and_queried_by_the_api(monkeypatch):
    from stealbench.attack.api import PredictionAPI
    from stealbench.models.victims import load_victim

    fake = types.ModuleType("stealbench.victim.remote")
    fake.RemoteVictim = _FakeRemote
    monkeypatch.setitem(sys.modules, "stealbench.victim.remote", fake)
    _FakeRemote.calls.clear()
    metrics = {
        "victim": "api",
        "source": "remote",
        "remote": REMOTE["remote"],
        "input": REMOTE["input"],
        "classes": 10,
        "weights_checksum": "endpoint",
    }
    victim = load_victim(None, metrics, "cpu")
    ((name, spec, ledger, purpose),) = _FakeRemote.calls
    assert (name, ledger, purpose) == ("api", "results/victims/api/answers.sqlite", "attack")
    assert spec["remote"] == REMOTE["remote"] and spec["source"] == "remote"
    api = PredictionAPI(victim, "top1")
    answers = api(np.zeros((3, 28, 28, 1), dtype=np.uint8))
    assert answers.shape == (3, 10) and api.queries == 3
