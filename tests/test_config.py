import copy

import pytest
import yaml

from stealbench import config


@pytest.fixture(scope="module")
def default(root):
    return yaml.safe_load((root / "config.yaml").read_text())


@pytest.mark.parametrize("path", ["config.yaml", "configs/smoke.yaml"])
def test_shipped_configs_are_valid(root, path):
    cfg = config.validate(yaml.safe_load((root / path).read_text()))
    assert cfg["surrogates"]["training"]["batch_size"] > 0
    assert len(config.cells(cfg)) > 0


def test_defaults_are_filled(default):
    cfg = copy.deepcopy(default)
    del cfg["surrogates"]
    out = config.validate(cfg)
    assert out["surrogates"]["granularities"] == ["probs", "top2", "round1", "label"]
    assert out["surrogates"]["training"]["min_steps"] == 100
    # a partial training block inherits the rest
    cfg["victims"]["mnist-lenet"]["training"] = {"epochs": 2}
    out = config.validate(cfg)
    assert out["victims"]["mnist-lenet"]["training"]["epochs"] == 2
    assert out["victims"]["mnist-lenet"]["training"]["batch_size"] == 64


def _mutate(cfg, fn):
    cfg = copy.deepcopy(cfg)
    fn(cfg)
    return cfg


BAD = {
    "misspelled top-level key": (
        lambda c: c.update(surrogate={}),
        r"unknown key 'surrogate' \(did you mean 'surrogates'\?\)",
    ),
    "misspelled nested key": (
        lambda c: c["surrogates"].update(budget=[10]),
        r"'surrogates': unknown key 'budget' \(did you mean 'budgets'",
    ),
    "unknown architecture": (
        lambda c: c["victims"]["mnist-lenet"].update(arch="lenett"),
        r"victims.mnist-lenet.arch': 'lenett' is not allowed; "
        r"allowed values: lenet, resnet8",
    ),
    "unknown surrogate architecture": (
        lambda c: c["surrogates"].update(archs=["vgg"]),
        r"surrogates.archs\[0\]': 'vgg' is not allowed",
    ),
    "unknown granularity": (
        lambda c: c["surrogates"].update(granularities=["top0"]),
        r"surrogates.granularities\[0\]'",
    ),
    "unknown strategy": (
        lambda c: c["attacks"]["random-glyphs"].update(strategy="rand"),
        r"'rand' is not allowed; allowed values: random",
    ),
    "unknown dataset source": (
        lambda c: c["datasets"]["noise"].update(source="imagenet"),
        r"datasets.noise.source'.*allowed values: mnist5k",
    ),
    "non-positive budget": (
        lambda c: c["surrogates"].update(budgets=[0, 100]),
        r"surrogates.budgets\[0\]': 0 is less than the minimum of 2",
    ),
    "budget larger than pool": (
        lambda c: c["surrogates"].update(budgets=[100, 1001]),
        r"largest budget 1001 exceeds the 1000 images of the pool",
    ),
    "duplicate budgets": (
        lambda c: c["surrogates"].update(budgets=[100, 100]),
        r"surrogates.budgets'.*non-unique",
    ),
    "victim on unknown dataset": (
        lambda c: c["victims"]["mnist-lenet"].update(dataset="mnist"),
        r"unknown dataset 'mnist'; allowed: mnist5k",
    ),
    "attack on unknown pool": (
        lambda c: c["attacks"]["random-glyphs"].update(pool="glyph"),
        r"attacks.random-glyphs.pool': unknown dataset 'glyph'",
    ),
    "victim with unknown attack": (
        lambda c: c["victims"]["glyphs-lenet"].update(attacks=["x"]),
        r"unknown attack 'x'",
    ),
    "victim dataset without test split": (
        lambda c: c["datasets"]["glyphs"].update(splits={"train": 100, "val": 100, "pool": -1}),
        r"victim 'glyphs-lenet' needs a non-empty 'test' split",
    ),
    "splits larger than the source": (
        lambda c: c["datasets"]["mnist5k"]["splits"].update(train=9000),
        r"needs 11500 images but source 'mnist5k' makes 5000",
    ),
    "wrong type": (lambda c: c.update(seed="zero"), r"config key 'seed': 'zero' is not of type"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_names_key_and_fix(default, case):
    mutate, pattern = BAD[case]
    with pytest.raises(config.ConfigError, match=pattern):
        config.validate(_mutate(default, mutate))


def test_grid_enumeration(default):
    cfg = config.validate(default)
    cells = config.cells(cfg)
    s = cfg["surrogates"]
    n_pairs = sum(len(v["attacks"]) for v in cfg["victims"].values())
    assert len(cells) == n_pairs * len(s["granularities"]) * len(s["budgets"]) * len(
        s["archs"]
    ) * len(s["seeds"])
    assert len(set(cells)) == len(cells)


def test_realistic_adversary_is_same_task(default):
    cfg = config.validate(default)
    assert config.is_realistic(cfg, "mnist-lenet", "random-uci-digits")
    assert config.is_realistic(cfg, "mnist-lenet", "random-mnist5k")
    assert not config.is_realistic(cfg, "mnist-lenet", "random-glyphs")
    assert not config.is_realistic(cfg, "glyphs-lenet", "random-mnist5k")
    assert not config.is_realistic(cfg, "mnist-lenet", "random-photo-crops")
