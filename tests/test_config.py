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
        r"allowed values: lenet, cnn5, cnn9, resnet8",
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
    "unknown strategy option": (
        lambda c: c["attacks"]["jbda-mnist5k"]["options"].update(seeds=10),
        r"attacks.jbda-mnist5k.options': unknown option\(s\) seeds for strategy 'jbda'; "
        r"allowed: seed_size",
    ),
    "pretrained small victim": (
        lambda c: c["victims"]["mnist-lenet"].update(pretrained=True),
        r"victims.mnist-lenet.pretrained': 'lenet' has no pretrained",
    ),
    "unknown defense": (
        lambda c: c["defenses"]["defended"].update(defenses=["none", "shuffle"]),
        r"defenses.defended.defenses\[1\]': 'shuffle' is not allowed; allowed values: none, "
        r"ood-shuffle",
    ),
    "unknown defense parameter": (
        lambda c: c["defenses"]["defended"].update(params={"gaussian-noise": {"sigma": 1}}),
        r"params.gaussian-noise': unknown parameter\(s\) sigma; allowed: scale",
    ),
    "detector without out data": (
        lambda c: c["defenses"]["detector"].update(out="noise"),
        r"datasets.noise.splits': the detector's out dataset needs",
    ),
    "unknown paper configuration": (
        lambda c: c["victims"]["mnist-lenet"].update(paper="mnist"),
        r"victims.mnist-lenet.paper'.*allowed values: caltech-rn34",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_names_key_and_fix(default, case):
    mutate, pattern = BAD[case]
    with pytest.raises(config.ConfigError, match=pattern):
        config.validate(_mutate(default, mutate))


def test_grid_enumeration(default):
    cfg = config.validate(default)
    cells = config.cells(cfg)
    budgets = cfg["surrogates"]["budgets"]
    expected = 0
    for _, attack in config.victim_attacks(cfg):
        axes = config.axes(cfg, attack)
        expected += (
            len(axes["granularities"]) * len(budgets) * len(axes["archs"]) * len(axes["seeds"])
        )
    assert len(cells) == expected
    assert len(set(cells)) == len(cells)
    jobs = config.surrogate_jobs(cfg)
    assert {(c.victim, c.attack, c.surrogate_arch, c.seed) for c in cells} == set(jobs)


def test_realistic_adversary_is_same_task(default):
    cfg = config.validate(default)
    assert config.is_realistic(cfg, "mnist-lenet", "random-uci-digits")
    assert config.is_realistic(cfg, "mnist-lenet", "random-mnist5k")
    assert not config.is_realistic(cfg, "mnist-lenet", "random-glyphs")
    assert not config.is_realistic(cfg, "glyphs-lenet", "random-mnist5k")
    assert not config.is_realistic(cfg, "mnist-lenet", "random-photo-crops")


def test_attack_overrides_shape_the_grid(default):
    cfg = config.validate(default)
    cells = config.cells(cfg)
    adaptive = {(c.granularity, c.surrogate_arch) for c in cells if c.attack == "adaptive-glyphs"}
    assert adaptive == {("probs", "lenet"), ("label", "lenet")}
    full = {(c.granularity, c.surrogate_arch) for c in cells if c.attack == "random-glyphs"}
    assert len(full) == 8
    assert {c.seed for c in cells} == {0, 1, 2}


def test_strategy_options_agree_with_signatures():
    import inspect

    from stealbench import adaptive, attacks, jbda

    functions = {
        "random": attacks.random_strategy,
        "adaptive": adaptive.run_adaptive,
        "jbda": jbda.run_jbda,
    }
    assert set(functions) == set(attacks.STRATEGIES) == set(config.STRATEGY_OPTIONS)
    for name, fn in functions.items():
        params = set(inspect.signature(fn).parameters) - {
            "blackbox",
            "pool",
            "budget",
            "rng",
            "device",
        }
        assert params == set(config.STRATEGY_OPTIONS[name]), name


def test_pretrained_archs_agree_with_registry():
    from stealbench import models

    assert set(config.PRETRAINED_ARCHS) == set(models.TORCHVISION_MODELS)


def test_paper_keys_agree_with_schema():
    from stealbench.paper import PAPER_RESULTS

    schema = config.load_schema()
    victim = schema["properties"]["victims"]["additionalProperties"]["properties"]
    assert set(victim["paper"]["enum"]) == set(PAPER_RESULTS)


def test_key_order_does_not_change_the_validated_config(default):
    reordered = yaml.safe_load(yaml.safe_dump(default, sort_keys=True))
    assert repr(config.validate(reordered)) == repr(config.validate(default))
    assert list(config.validate(default)["victims"]) == sorted(default["victims"])


def test_duplicate_names_in_a_config_file_are_an_error(tmp_path, root):
    text = (root / "config.yaml").read_text()
    path = tmp_path / "dup.yaml"
    path.write_text(text.replace("  glyphs-lenet:\n", "  mnist-lenet:\n", 1))
    with pytest.raises(config.ConfigError, match="duplicate key 'mnist-lenet'"):
        config.check_duplicate_keys(path)
    config.check_duplicate_keys(root / "config.yaml")
