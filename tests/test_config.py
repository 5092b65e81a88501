"""Config validation: defaults, the grid a config defines, and bad configs, each failing
before any job starts with a message that names the key and the fix."""

import copy
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from stealbench import config
from stealbench.attack.strategies import declared
from stealbench.defense import DEFENSES

# The allowed values a message lists: every registered method, in name order.
STRATEGY_NAMES = sorted(declared())
DEFENSE_NAMES = sorted(DEFENSES)


@pytest.fixture(scope="module")
def default(root):
    return yaml.safe_load((root / "config.yaml").read_text())


def test_the_default_config_is_valid(default):
    cfg = config.validate(default)
    assert cfg["surrogates"]["training"]["batch_size"] > 0
    assert len(config.cells(cfg)) > 0


SHIPPED = sorted(
    str(p.relative_to(Path(__file__).resolve().parents[1]))
    for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")
)


def test_each_method_measured_at_its_published_setting_has_a_reproduce_config():
    reproduce = {Path(p).stem for p in SHIPPED if "/reproduce/" in p}
    assert reproduce >= {"mad", "adaptive-misinformation", "dawn", "activethief", "prada", "dfme"}


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_configs_are_valid(root, path):
    """Every grid in configs/ (reproduce/ included) validates and has cells."""
    cfg = config.validate(yaml.safe_load((root / path).read_text()))
    assert len(config.cells(cfg)) > 0


@pytest.mark.parametrize("path", ["configs/scale.yaml", "configs/reproduce/dawn.yaml"])
def test_dawn_at_half_a_percent_runs_only_where_its_bound_can_reach_2_to_the_minus_64(root, path):
    from stealbench.defense.dawn import min_watermarks

    cfg = config.validate(yaml.safe_load((root / path).read_text()))
    defended = cfg["defenses"]["defended"]
    shares = defended["defenses"]["dawn"]["share"]
    assert 0.005 in shares
    budgets = [b for attack in defended["attacks"] for b in defended["budgets"][attack]]
    need = min_watermarks(2.0**-64, cfg["defenses"]["dawn"]["threshold"], num_classes=10)
    assert budgets and all(0.005 * b >= need for b in budgets)


def test_defaults_are_filled(default):
    cfg = copy.deepcopy(default)
    del cfg["surrogates"]
    out = config.validate(cfg)
    assert out["surrogates"]["granularities"] == ["probs", "top2", "round1", "label"]
    assert out["surrogates"]["training"]["min_steps"] == 640
    assert out["surrogates"]["selection"] == "none"
    assert out["surrogates"]["inits"] == ["scratch"]
    assert out["victims"]["mnist-lenet"]["init"] == "scratch"
    assert out["victims"]["mnist-lenet-pt"]["init"] == "public-lenet"
    # a partial training block inherits the rest (victims and pretrained backbones alike)
    cfg["victims"]["mnist-lenet"]["training"] = {"epochs": 2}
    out = config.validate(cfg)
    assert out["victims"]["mnist-lenet"]["training"]["epochs"] == 2
    assert out["victims"]["mnist-lenet"]["training"]["batch_size"] == 64
    backbone = out["pretrain"]["public-lenet"]["training"]
    assert backbone["epochs"] == 5 and backbone["batch_size"] == 64


def test_defended_defaults_and_instances(default):
    default = _mutate(default, lambda c: _defenses(c)["ood-shuffle"].update(threshold=[None, 0.5]))
    cfg = config.validate(default)
    defended = cfg["defenses"]["defended"]
    assert defended["budgets"] == {"random-letters": [1000], "random-mnist5k": [1000]}
    assert defended["archs"] == ["lenet"] and defended["seeds"] == [0, 1, 2]
    ids = {i.id: i for i in config.defense_instances(cfg)}
    assert ids["none"].params == {} and ids["none"].strength is None
    assert ids["ood-shuffle@learned"].params == {}  # null threshold: the detector's own
    assert ids["ood-shuffle@0.5"].params == {"threshold": 0.5}
    assert ids["mad@0.5"].params == {"epsilon": 0.5} and ids["mad@0.5"].value == 0.5
    # none, ood-shuffle at 2 thresholds, reverse-sigmoid and gaussian-noise at 4 strengths
    # each, mad and adaptive-misinformation at 5, dawn at 1: 1 + 2 + 2 x 4 + 2 x 5 + 1
    assert len(ids) == 22


def _mutate(cfg, fn):
    cfg = copy.deepcopy(cfg)
    fn(cfg)
    return cfg


def _defenses(c):
    return c["defenses"]["defended"]["defenses"]


def _public_digits(c):
    """The public corpus relabelled as digits: the victims' own task."""
    c["datasets"]["public"]["task"] = "digits"


def _surrogate_backbone_on_victim_task(c):
    c["victims"]["mnist-lenet-pt"]["init"] = "scratch"  # only the surrogates start from it
    c["pretrain"]["public-lenet"]["dataset"] = "mnist5k"


ALLOWED_DATASETS = "allowed: mnist5k, uci-digits, glyphs, letters, letters-defender, photos"

BAD = {
    "misspelled top-level key": (
        lambda c: c.update(surrogate={}),
        r"config key '<top level>': unknown key 'surrogate' \(did you mean 'surrogates'\?\); "
        r"allowed keys: attacks, checkpoint_minutes, cluster, datasets, defenses",
    ),
    "misspelled nested key": (
        lambda c: c["surrogates"].update(budget=[10]),
        r"config key 'surrogates': unknown key 'budget' \(did you mean 'budgets'\?\); allowed",
    ),
    "misspelled cluster key": (
        lambda c: c.update(cluster={"max_group_runtime": 600}),
        r"config key 'cluster': unknown key 'max_group_runtime' \(did you mean "
        r"'max_group_runtime_minutes'\?\); allowed keys: max_group_jobs",
    ),
    "group size not a power of two": (
        lambda c: c.update(cluster={"max_group_jobs": 3}),
        r"config key 'cluster.max_group_jobs': 3 is not allowed; allowed values: 1, 2, 4, 8",
    ),
    "safety factor below one": (
        lambda c: c.update(cluster={"safety_factor": 0.5}),
        r"config key 'cluster.safety_factor': 0.5 is less than the minimum of 1",
    ),
    "unknown architecture": (
        lambda c: c["victims"]["mnist-lenet"].update(arch="lenett"),
        r"config key 'victims.mnist-lenet.arch': 'lenett' is not allowed; "
        r"allowed values: lenet, cnn5, cnn9, resnet8",
    ),
    "unknown surrogate architecture": (
        lambda c: c["surrogates"].update(archs=["vgg"]),
        r"config key 'surrogates.archs\[0\]': 'vgg' is not allowed; allowed values: lenet",
    ),
    "unknown granularity": (
        lambda c: c["surrogates"].update(granularities=["top0"]),
        r"config key 'surrogates.granularities\[0\]': 'top0' does not match",
    ),
    "unknown strategy": (
        lambda c: c["attacks"]["random-letters"].update(strategy="rand"),
        r"config key 'attacks.random-letters.strategy': 'rand' is not allowed; "
        r"allowed values: " + ", ".join(STRATEGY_NAMES) + "$",
    ),
    "unknown dataset source": (
        lambda c: c["datasets"]["noise"].update(source="imagenet"),
        r"config key 'datasets.noise.source': 'imagenet' is not allowed; allowed values: mnist5k",
    ),
    "non-positive budget": (
        lambda c: c["surrogates"].update(budgets=[0, 100]),
        r"config key 'surrogates.budgets\[0\]': 0 is less than the minimum of 2",
    ),
    "budget larger than pool": (
        lambda c: c["surrogates"].update(budgets=[100, 1001]),
        r"config key 'surrogates.budgets': the largest budget 1001 exceeds the 1000 images of "
        r"the pool split of 'mnist5k' \(attack 'random-mnist5k'\); lower the budget",
    ),
    "attack budget larger than pool": (
        lambda c: c["attacks"]["random-letters"].update(budgets=[100, 20000]),
        r"config key 'attacks.random-letters.budgets': the largest budget 20000 exceeds the "
        r"12000 images of the pool split of 'letters'",
    ),
    "victim's budget override larger than pool": (
        lambda c: c["victims"]["glyphs-lenet"]["overrides"]["random-letters"].update(
            budgets=[100, 13000]
        ),
        r"config key 'victims.glyphs-lenet.overrides.random-letters.budgets': the largest budget "
        r"13000 exceeds the 12000 images of the pool split of 'letters'",
    ),
    "override of an attack the victim does not face": (
        lambda c: c["victims"]["mnist-resnet8"].update(overrides={"random-letters": {}}),
        r"config key 'victims.mnist-resnet8.overrides': 'random-letters' is not among the "
        r"victim's attacks \(random-mnist5k\)",
    ),
    "defended budget larger than pool": (
        lambda c: c["defenses"]["defended"].update(budgets=[5000]),
        r"config key 'defenses.defended.budgets': the largest budget 5000 exceeds the 1000 "
        r"images of the pool split of 'mnist5k'",
    ),
    "duplicate budgets": (
        lambda c: c["surrogates"].update(budgets=[100, 100]),
        r"config key 'surrogates.budgets': \[100, 100\] has non-unique elements",
    ),
    "victim on unknown dataset": (
        lambda c: c["victims"]["mnist-lenet"].update(dataset="mnist"),
        r"config key 'victims.mnist-lenet.dataset': unknown dataset 'mnist'; " + ALLOWED_DATASETS,
    ),
    "attack on unknown pool": (
        lambda c: c["attacks"]["random-letters"].update(pool="letter"),
        r"config key 'attacks.random-letters.pool': unknown dataset 'letter'; " + ALLOWED_DATASETS,
    ),
    "victim with unknown attack": (
        lambda c: c["victims"]["glyphs-lenet"].update(attacks=["x"]),
        r"config key 'victims.glyphs-lenet.attacks': unknown attack 'x'; allowed: random-letters",
    ),
    "victim dataset without test split": (
        lambda c: c["datasets"]["glyphs"].update(splits={"train": 100, "val": 100}),
        r"config key 'datasets.glyphs.splits': victim 'glyphs-lenet' needs a non-empty 'test' "
        r"split",
    ),
    "splits larger than the source": (
        lambda c: c["datasets"]["mnist5k"]["splits"].update(train=9000),
        r"config key 'datasets.mnist5k.splits': .* needs 11500 images but source 'mnist5k' "
        r"makes 5000",
    ),
    "wrong type": (
        lambda c: c.update(seed="zero"),
        r"config key 'seed': 'zero' is not of type 'integer'",
    ),
    "unknown strategy option": (
        lambda c: c["attacks"]["jbda-mnist5k"]["options"].update(seeds=10),
        r"config key 'attacks.jbda-mnist5k.options': unknown key 'seeds' \(did you mean "
        r"'seed_size'\?\); allowed keys: batch_size, epochs, lr, seed_size",
    ),
    "unknown selection": (
        lambda c: c["surrogates"].update(selection="best"),
        r"config key 'surrogates.selection': 'best' is not allowed; allowed values: none, "
        r"transfer-val",
    ),
    "unknown defense": (
        lambda c: _defenses(c).update(shuffle={}),
        r"config key 'defenses.defended.defenses': unknown key 'shuffle' \(did you mean "
        r"'ood-shuffle'\?\); allowed keys: " + ", ".join(DEFENSE_NAMES) + "$",
    ),
    "unknown defense parameter": (
        lambda c: _defenses(c).update({"gaussian-noise": {"sigma": 1}}),
        r"config key 'defenses.defended.defenses.gaussian-noise': unknown key 'sigma'; "
        r"allowed keys: scale",
    ),
    "negative mad epsilon": (
        lambda c: _defenses(c).update(mad={"epsilon": [-0.1, 0.5]}),
        r"config key 'defenses.defended.defenses.mad.epsilon': -0.1 is less than the minimum "
        r"of 0",
    ),
    "dawn share above one": (
        lambda c: _defenses(c).update(dawn={"share": 1.5}),
        r"config key 'defenses.defended.defenses.dawn.share': 1.5 is greater than or equal to "
        r"the maximum of 1",
    ),
    "ood-shuffle threshold above one": (
        lambda c: _defenses(c).update({"ood-shuffle": {"threshold": 2}}),
        r"config key 'defenses.defended.defenses.ood-shuffle.threshold': 2 is greater than the "
        r"maximum of 1",
    ),
    "a sweep of a parameter that is not the strength": (
        lambda c: _defenses(c).update({"reverse-sigmoid": {"beta": [0.5], "gamma": [0.1, 0.2]}}),
        r"config key 'defenses.defended.defenses.reverse-sigmoid.gamma': only the strength "
        r"\(beta\) may be a list of values",
    ),
    "prada delta misspelt": (
        lambda c: c["defenses"]["prada"].update(delta="calibrat"),
        r"config key 'defenses.prada.delta': 'calibrat' is neither a number in \[0, 1\] nor "
        r"'calibrate'; allowed: a number in \[0, 1\], calibrate \(did you mean 'calibrate'\?\)",
    ),
    "prada delta above 1": (
        lambda c: c["defenses"]["prada"].update(delta=1.5),
        r"config key 'defenses.prada.delta': 1.5 is neither a number in \[0, 1\] nor "
        r"'calibrate'; allowed: a number in \[0, 1\], calibrate$",
    ),
    "prada calibration split unknown": (
        lambda c: c["defenses"]["prada"].update(calibration={"split": "test"}),
        r"config key 'defenses.prada.calibration.split': 'test' is not allowed; allowed "
        r"values: val, train",
    ),
    "detector out not a list": (
        lambda c: c["defenses"]["detector"].update(out="photos-defender"),
        r"config key 'defenses.detector.out': 'photos-defender' is not of type 'array'",
    ),
    "detector out unknown": (
        lambda c: c["defenses"]["detector"].update(out=["photo"]),
        r"config key 'defenses.detector.out': unknown dataset 'photo'; " + ALLOWED_DATASETS,
    ),
    "detector out without train data": (
        lambda c: c["defenses"]["detector"].update(out=["noise"]),
        r"config key 'datasets.noise.splits': the defender's dataset 'noise' needs a non-empty "
        r"'train' split \(defenses.detector.out\)",
    ),
    "detector out only of the victim's task": (
        lambda c: c["defenses"]["detector"].update(out=["letters-defender"]),
        r"config key 'defenses.detector.out': every dataset has the task of victim "
        r"'glyphs-lenet'; the defender's generic data must hold other kinds of images",
    ),
    "unknown defended victim": (
        lambda c: c["defenses"]["defended"].update(victims=["x"]),
        r"config key 'defenses.defended.victims': unknown victim 'x'; allowed: mnist-lenet",
    ),
    "unknown paper configuration": (
        lambda c: c["victims"]["mnist-lenet"].update(paper="mnist"),
        r"config key 'victims.mnist-lenet.paper': 'mnist' is not allowed; allowed values: "
        r"caltech-rn34",
    ),
    "imagenet weights for a small victim": (
        lambda c: c["victims"]["mnist-lenet"].update(init="imagenet"),
        r"config key 'victims.mnist-lenet.init': 'lenet' has no ImageNet weights; imagenet is "
        r"allowed with: resnet18",
    ),
    "imagenet weights for small surrogates": (
        lambda c: c["surrogates"].update(inits=["imagenet"]),
        r"config key 'surrogates.inits': 'lenet' has no ImageNet weights",
    ),
    "unknown backbone": (
        lambda c: c["victims"]["mnist-lenet"].update(init="public-vgg"),
        r"config key 'victims.mnist-lenet.init': unknown init 'public-vgg'; allowed: scratch, "
        r"imagenet, public-lenet",
    ),
    "unknown surrogate backbone": (
        lambda c: c["attacks"]["random-letters"].update(inits=["scratch", "nope"]),
        r"config key 'attacks.random-letters.inits': unknown init 'nope'; allowed: scratch, "
        r"imagenet, public-lenet",
    ),
    "backbone of another architecture": (
        lambda c: c["victims"]["mnist-resnet8"].update(init="public-lenet"),
        r"config key 'victims.mnist-resnet8.init': backbone 'public-lenet' is a lenet, not a "
        r"resnet8; a model starts only from a backbone of its own architecture",
    ),
    "backbone trained on the victim's task": (
        _public_digits,
        r"config key 'victims.mnist-lenet-pt.init': backbone 'public-lenet' was trained on "
        r"'public', data of victim 'mnist-lenet-pt''s own task \(digits\); a public backbone "
        r"must never see the victim's task data",
    ),
    "surrogate backbone trained on the victim's data": (
        _surrogate_backbone_on_victim_task,
        r"config key 'victims.mnist-lenet-pt.overrides.random-letters.inits': backbone "
        r"'public-lenet' was trained on 'mnist5k', data of victim 'mnist-lenet-pt''s own task",
    ),
    "backbone on an unknown dataset": (
        lambda c: c["pretrain"]["public-lenet"].update(dataset="pub"),
        r"config key 'pretrain.public-lenet.dataset': unknown dataset 'pub'; " + ALLOWED_DATASETS,
    ),
    "backbone without a val split": (
        lambda c: c["datasets"]["public"].update(splits={"train": 8000, "pool": 1000}),
        r"config key 'datasets.public.splits': backbone 'public-lenet' needs non-empty 'train' "
        r"and 'val' splits",
    ),
    "unknown precision": (
        lambda c: c.setdefault("victim_training", {}).update(precision="bf61"),
        r"config key 'victim_training.precision': 'bf61' is not allowed \(did you mean "
        r"'bf16'\?\); allowed values: fp32, bf16, fp16$",
    ),
    "unknown precision of one victim": (
        lambda c: c["victims"]["mnist-lenet"].setdefault("training", {}).update(precision="fp36"),
        r"config key 'victims.mnist-lenet.training.precision': 'fp36' is not allowed \(did you "
        r"mean 'fp32'\?\); allowed values: fp32, bf16, fp16$",
    ),
    "unknown surrogate channels_last": (
        lambda c: c["surrogates"].setdefault("training", {}).update(channels_last="atuo"),
        r"config key 'surrogates.training.channels_last': 'atuo' is not allowed \(did you mean "
        r"'auto'\?\); allowed values: auto, true, false$",
    ),
    "unknown defense precision": (
        lambda c: c["defenses"]["detector"].setdefault("training", {}).update(precision="half"),
        r"config key 'defenses.detector.training.precision': 'half' is not allowed; allowed "
        r"values: fp32, bf16, fp16$",
    ),
    "unknown backbone precision": (
        lambda c: c["pretrain"]["public-lenet"].setdefault("training", {}).update(precision=16),
        r"^config key 'pretrain.public-lenet.training.precision': 16 is not allowed \(did you "
        r"mean 'fp16'\?\); allowed values: fp32, bf16, fp16$",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_names_key_and_fix(default, case):
    mutate, pattern = BAD[case]
    with pytest.raises(config.ConfigError, match=pattern):
        config.validate(_mutate(default, mutate))


# The cells of config.yaml per (victim, attack), counted by hand from the file: granularities
# x budgets x archs x inits x seeds, each from the victim's override for the attack, else the
# attack, else surrogates (archs [lenet], inits [scratch], granularities [probs, label],
# budgets [1000], seeds [0, 1, 2]).
DEFAULT_CELLS = {
    ("mnist-lenet", "random-letters"): 2 * 5 * 1 * 1 * 3,  # 5 budgets of its own
    ("mnist-lenet", "random-mnist5k"): 3 * 1 * 2 * 1 * 3,  # probs, top2, label; lenet, resnet8
    ("mnist-lenet", "random-photos"): 2 * 1 * 1 * 1 * 3,
    ("mnist-lenet", "adaptive-letters"): 1 * 1 * 1 * 1 * 3,  # probs only
    ("mnist-lenet", "activethief-kcenter"): 2 * 1 * 1 * 1 * 3,
    ("mnist-lenet", "activethief-uncertainty"): 1 * 1 * 1 * 1 * 3,  # probs only
    ("mnist-lenet", "jbda-mnist5k"): 2 * 1 * 1 * 1 * 3,
    # override: probs; budgets 100, 1000; lenet; inits scratch, public-lenet
    ("mnist-lenet-pt", "random-letters"): 1 * 2 * 1 * 2 * 3,
    # override: probs, label; the attack's lenet, resnet8
    ("mnist-resnet8", "random-mnist5k"): 2 * 1 * 2 * 1 * 3,
    ("mnist-lenet-oe", "random-letters"): 1 * 1 * 1 * 1 * 3,  # override: probs at 1000
    ("glyphs-lenet", "random-letters"): 2 * 1 * 1 * 1 * 3,  # override: budget 1000 only
    ("glyphs-lenet", "random-photos"): 2 * 1 * 1 * 1 * 3,
}


def test_grid_enumeration(default):
    cfg = config.validate(default)
    cells = config.cells(cfg)
    counts = Counter((c.victim, c.attack) for c in cells)
    assert counts == DEFAULT_CELLS
    assert len(cells) == 111  # 72 against mnist-lenet + 12 + 12 + 12 + 3
    assert len(set(cells)) == len(cells)
    jobs = config.surrogate_jobs(cfg)
    # one job per (victim, attack, arch, seed): 3 seeds x (1 arch for each of the 12 pairs,
    # and a second, resnet8, for both random-mnist5k pairs) = 3 x 14
    assert len(jobs) == 42
    assert {(c.victim, c.attack, c.surrogate_arch, c.seed) for c in cells} == set(jobs)


def test_default_queries_and_defended_grid(default):
    cfg = config.validate(default)
    # a seed sends the largest budget of its cells (the defended budget, 1000, is no larger)
    assert config.query_budget(cfg, "random-letters", "mnist-lenet") == 10000
    assert config.query_budget(cfg, "random-letters", "glyphs-lenet") == 1000  # override
    assert config.query_budget(cfg, "random-letters", "mnist-lenet-pt") == 1000  # override
    assert config.query_budget(cfg, "random-mnist5k", "mnist-lenet") == 1000
    # 8 sampling (victim, attack) pairs x 3 seeds, and 4 sequential ones against mnist-lenet
    # (none defended) x 3 seeds, each at defense none: 24 + 12
    runs = config.query_runs(cfg)
    assert len(runs) == 36 and len(set(runs)) == 36
    assert sum(d == "none" for _, _, d, _ in runs) == 12
    # the 21 defense instances (1 + 1 + 2 x 4 + 2 x 5 + 1) behind both defended attacks
    # against mnist-lenet, and the 12 its OE twin's override keeps (none, ood-shuffle, mad at 5,
    # AM at 5) behind random-letters, at 1 budget, granularity and arch, 3 seeds: 126 + 36
    # defended cells (README)
    assert len(config.defense_instances(cfg)) == 21
    assert len(config.defense_instances(cfg, "mnist-lenet-oe")) == 12
    jobs = config.defended_jobs(cfg)
    assert len(jobs) == (2 + 1) * 1 * 3
    cells = sum(len(config.attack_defenses(cfg, attack, v)) for v, attack, _, _ in jobs)
    assert cells == 126 + 36


def test_realistic_adversary_is_same_task(default):
    cfg = config.validate(default)
    assert config.is_realistic(cfg, "mnist-lenet", "random-mnist5k")
    assert config.is_realistic(cfg, "glyphs-lenet", "random-letters")  # other fonts' letters
    assert not config.is_realistic(cfg, "mnist-lenet", "random-letters")
    assert config.is_realistic(cfg, "mnist-resnet8", "random-mnist5k")
    assert not config.is_realistic(cfg, "mnist-lenet", "random-photos")


def test_attack_overrides_shape_the_grid(default):
    cfg = config.validate(default)
    cells = config.cells(cfg)
    adaptive = {(c.granularity, c.surrogate_arch) for c in cells if c.attack == "adaptive-letters"}
    assert adaptive == {("probs", "lenet")}
    full = {(c.granularity, c.surrogate_arch) for c in cells if c.attack == "random-mnist5k"}
    assert full == {(g, a) for g in ("probs", "top2", "label") for a in ("lenet", "resnet8")}
    # a victim narrows an attack's axes: mnist-resnet8 meets the realistic attack at two
    resnet = {c.granularity for c in cells if c.victim == "mnist-resnet8"}
    assert resnet == {"probs", "label"}
    letters = [c for c in cells if c.attack == "random-letters"]
    assert {c.surrogate_init for c in letters} == {"scratch", "public-lenet"}
    assert max(c.budget for c in letters) == 10000
    assert max(c.budget for c in cells if c.attack == "random-mnist5k") == 1000
    assert {c.seed for c in cells} == {0, 1, 2}


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
    assert "\n  mnist-resnet8:" in text
    path.write_text(text.replace("\n  mnist-resnet8:", "\n  mnist-lenet:", 1))
    with pytest.raises(config.ConfigError, match="duplicate key 'mnist-lenet'"):
        config.check_duplicate_keys(path)
    config.check_duplicate_keys(root / "config.yaml")


# ------------------------------------------------------- the README's figures of the grid


def _readme_grid_counts(root) -> dict[str, int]:
    """The grid sizes README.md states: the default's victims, attacks, cells and seeds
    ("What the embedded default finds") and the paper grid's surrogate cells."""
    text = (root / "README.md").read_text()
    counts = {}
    found = re.search(
        r"(\d+) victims \(test accuracy[^)]*\), (\d+) attacks, ([\d,]+) cells, (\d+) seeds", text
    )
    if found:
        values = [int(v.replace(",", "")) for v in found.groups()]
        counts.update(zip(["victims", "attacks", "cells", "seeds"], values, strict=True))
    paper = re.search(r"configs/paper.yaml` plans .*?\(([\d,]+) surrogate cells\)", text, re.S)
    if paper:
        counts["paper_cells"] = int(paper.group(1).replace(",", ""))
    return counts


def test_readme_states_the_grid_sizes_of_the_shipped_configs(root, default):
    stated = _readme_grid_counts(root)
    assert set(stated) == {"victims", "attacks", "cells", "seeds", "paper_cells"}, stated
    cfg = config.validate(default)
    cells = config.cells(cfg)
    actual = {
        "victims": len(cfg["victims"]),
        "attacks": len(cfg["attacks"]),
        "cells": len(cells),
        "seeds": len({c.seed for c in cells}),
    }
    assert {k: actual[k] for k in stated if k in actual} == {
        k: v for k, v in stated.items() if k in actual
    }
    if "paper_cells" in stated:
        paper = yaml.safe_load((root / "configs/paper.yaml").read_text())
        assert len(config.cells(config.validate(paper))) == stated["paper_cells"]
