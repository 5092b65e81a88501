"""Outlier Exposure as a victim-training option (Hendrycks et al. 2019, as Adaptive
Misinformation's authors train their victim): what it does to the victim, that plain training
is unchanged, its config errors, and the per-victim narrowing of the defended grid."""

import copy

import numpy as np
import pytest
import torch
import yaml
from toys import labelled_pool

from stealbench import config
from stealbench.data import roles
from stealbench.io import state_dict_checksum
from stealbench.models.training import TrainConfig, uniform_cross_entropy
from stealbench.models.victims import train_victim, victim_posteriors


def _digits(n: int = 120, seed: int = 1):
    """Four classes of horizontal bands, split into train, val and test."""
    data = labelled_pool(n, 4, seed=seed)
    third = n // 6
    data.splits[:] = np.array(
        ["train"] * (n - 2 * third) + ["val"] * third + ["test"] * third, dtype=object
    )
    return data


def _outliers(n: int = 200, seed: int = 2) -> np.ndarray:
    """Images unlike any class: a bright vertical band at a random column."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(n, 28, 28, 1)).astype(np.uint8)
    for i, col in enumerate(rng.integers(0, 21, n)):
        images[i, :, col : col + 7] += 180
    return images


# Weights of train_victim(_digits(), arch, TrainConfig(epochs=3, batch_size=16), seed=5) with
# no outliers and one torch thread (conftest), computed with the package of commit 712eea7,
# before Outlier Exposure was added to the loop (git archive 712eea7 src tests/toys.py): the
# plain path must stay bit-identical (every existing victim, cache and figure depends on it).
PLAIN_WEIGHTS = {
    "lenet": "11514f5f92ac3f948db6ecf8240fa38633ac3e53a9fa478d15253c20f863c980",
    "resnet8": "e4237f1a52d49c2a76104da442115e8df79b083caa9116daeb806db67803668e",
}


@pytest.mark.parametrize("arch", sorted(PLAIN_WEIGHTS))
def test_training_without_outliers_is_unchanged(arch):
    model, *_ = train_victim(_digits(), arch, TrainConfig(epochs=3, batch_size=16), seed=5)
    assert state_dict_checksum(model.state_dict()) == PLAIN_WEIGHTS[arch]


def test_outlier_exposure_lowers_the_top_probability_on_outliers():
    data, outliers = _digits(240), _outliers()
    cfg = TrainConfig(epochs=5, batch_size=16)
    plain, _, plain_test, plain_acc = train_victim(data, "lenet", cfg, seed=3)
    exposed, _, oe_test, oe_acc = train_victim(
        data, "lenet", cfg, seed=3, outliers=outliers, outlier_weight=1.0
    )
    held_out = _outliers(100, seed=9)  # outliers of the same kind it never saw
    for images in (outliers, held_out):
        top = {
            name: np.median(victim_posteriors(model, images).max(1))
            for name, model in (("plain", plain), ("oe", exposed))
        }
        assert top["oe"] < top["plain"] - 0.1, top
        assert top["oe"] < 0.35, top  # near the uniform 0.25 of four classes
    # the task itself is still learnt
    assert oe_acc >= plain_acc - 0.1 and np.median(oe_test.max(1)) > 0.5


def test_outlier_weight_scales_the_outlier_loss():
    data, outliers = _digits(), _outliers(40)
    cfg = TrainConfig(epochs=2, batch_size=16)

    def weights(weight):
        model, *_ = train_victim(data, "lenet", cfg, 3, outliers=outliers, outlier_weight=weight)
        return state_dict_checksum(model.state_dict())

    assert weights(1.0) == weights(1.0)  # seeded
    assert weights(1.0) != weights(0.5)
    plain, *_ = train_victim(data, "lenet", cfg, 3)
    assert state_dict_checksum(plain.state_dict()) != weights(1.0)


def test_uniform_cross_entropy_is_minus_the_mean_log_softmax():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    expected = -torch.log_softmax(logits, dim=1).mean(dim=1).mean()
    assert torch.allclose(uniform_cross_entropy(logits), expected)
    # uniform answers reach its minimum, log K
    assert torch.isclose(uniform_cross_entropy(logits[1:]), torch.log(torch.tensor(3.0)))


# ----------------------------------------------------------------------- config


@pytest.fixture(scope="module")
def default(root):
    return yaml.safe_load((root / "config.yaml").read_text())


def _with(cfg, fn):
    cfg = copy.deepcopy(cfg)
    fn(cfg)
    return cfg


def _oe(cfg, **oe):
    cfg["victims"]["mnist-lenet-oe"]["training"]["outlier_exposure"] = oe


def test_the_default_twin_is_trained_with_outlier_exposure(default):
    cfg = config.validate(default)
    oe = cfg["victims"]["mnist-lenet-oe"]["training"]["outlier_exposure"]
    assert oe == {"data": ["letters-defender", "photos-defender"], "weight": 1.0}
    assert config.outlier_exposure_data(cfg, "mnist-lenet-oe") == oe["data"]
    assert config.outlier_exposure_data(cfg, "mnist-lenet") == []
    # the twin is the same victim otherwise
    plain, twin = (config.victim_spec(cfg, v) for v in ("mnist-lenet", "mnist-lenet-oe"))
    twin["training"].pop("outlier_exposure")
    assert plain == twin
    # weight defaults to the authors' 1
    out = config.validate(_with(default, lambda c: _oe(c, data=["photos-defender"])))
    assert out["victims"]["mnist-lenet-oe"]["training"]["outlier_exposure"]["weight"] == 1.0


@pytest.mark.parametrize(
    ("oe", "needles"),
    [
        (
            {"data": ["letters-defendr"]},
            [
                "victims.mnist-lenet-oe.training.outlier_exposure.data",
                "unknown dataset",
                "did you mean 'letters-defender'?",
                "allowed values",
                "photos-defender",
            ],
        ),
        (
            {"data": ["letters"]},
            [
                "outlier_exposure.data",
                "the pool of attack",
                "random-letters, adaptive-letters",
                "allowed values",
            ],
        ),
        (
            {"data": ["mnist5k"]},
            ["pool of attack random-mnist5k, jbda-mnist5k; the data of victim mnist-lenet"],
        ),
        ({"data": ["glyphs"]}, ["outlier_exposure.data", "the data of victim glyphs-lenet"]),
        ({"data": ["public"]}, ["outlier_exposure.data", "public corpus of backbone"]),
        ({"data": ["photos-defender", "uci-digits"]}, ["empty 'train' split", "'uci-digits'"]),
        ({"data": []}, ["outlier_exposure.data"]),
        ({"data": ["photos-defender"], "weight": 0}, ["outlier_exposure.weight"]),
        ({"data": ["photos-defender"], "lamb": 1}, ["unknown key 'lamb'", "allowed keys"]),
    ],
)
def test_bad_outlier_exposure_names_key_and_allowed_values(default, oe, needles):
    with pytest.raises(config.ConfigError) as err:
        config.validate(_with(default, lambda c: _oe(c, **oe)))
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_outlier_exposure_is_for_trained_victims_only(default):
    def external(c):
        c["victims"]["mnist-lenet-oe"].update(
            source="checkpoint",
            checkpoint={"file": "x.pt", "arch": "lenet"},
            classes=10,
            input={"size": 28, "channels": 1},
        )
        c["victims"]["mnist-lenet-oe"].pop("arch")

    with pytest.raises(config.ConfigError, match=r"victims.mnist-lenet-oe.training'.*trained"):
        config.validate(_with(default, external))
    # and never on the shared victim_training (nor a backbone's, which inherits it)
    with pytest.raises(config.ConfigError, match="victim_training.*unknown key 'outlier_exp"):
        config.validate(
            _with(default, lambda c: c["victim_training"].update(outlier_exposure={"data": []}))
        )


def test_the_roles_count_outlier_exposure_data_as_the_defenders(default):
    cfg = config.validate(default)
    cfg["defenses"]["detector"]["out"] = ["letters-defender"]
    cfg["defenses"]["misinformation"]["outlier"] = []
    assert ("photos-defender", "train") in roles.role_datasets(cfg)["defender"]
    cfg["victims"]["mnist-lenet-oe"]["training"].pop("outlier_exposure")
    assert ("photos-defender", "train") not in roles.role_datasets(cfg)["defender"]


# ------------------------------------------------------- per-victim defended grid


def test_a_defended_override_narrows_one_victims_grid(default):
    cfg = config.validate(default)
    jobs = config.defended_jobs(cfg)
    assert {(v, a) for v, a, _, _ in jobs} == {
        ("mnist-lenet", "random-letters"),
        ("mnist-lenet", "random-mnist5k"),
        ("mnist-lenet-oe", "random-letters"),
    }
    names = {d.name for d in config.attack_defenses(cfg, "random-letters", "mnist-lenet-oe")}
    assert names == {"none", "ood-shuffle", "mad", "adaptive-misinformation"}
    taus = [d.value for d in config.defense_instances(cfg, "mnist-lenet-oe") if d.strength == "tau"]
    assert taus == cfg["defenses"]["defended"]["defenses"]["adaptive-misinformation"]["tau"]
    # the plain victim keeps every defense
    assert len(config.defense_instances(cfg, "mnist-lenet")) == len(config.defense_instances(cfg))
    twin_runs = [r for r in config.query_runs(cfg) if r[0] == "mnist-lenet-oe"]
    assert twin_runs == [("mnist-lenet-oe", "random-letters", None, s) for s in (0, 1, 2)]
    # without the override the twin meets every defense and both defended attacks
    cfg = config.validate(_with(default, lambda c: c["defenses"]["defended"].pop("overrides")))
    assert len(config.defense_instances(cfg, "mnist-lenet-oe")) == len(
        config.defense_instances(cfg)
    )


def test_a_sequential_attack_in_an_override_is_rerun_only_behind_its_defenses(default):
    def override(c):
        c["victims"]["mnist-lenet-oe"]["attacks"].append("adaptive-letters")
        c["defenses"]["defended"]["overrides"]["mnist-lenet-oe"] = {
            "defenses": ["none", "adaptive-misinformation"],
            "attacks": ["adaptive-letters"],
        }

    cfg = config.validate(_with(default, override))
    runs = {
        d
        for v, a, d, _ in config.query_runs(cfg)
        if a == "adaptive-letters" and v == "mnist-lenet-oe"
    }
    taus = cfg["defenses"]["defended"]["defenses"]["adaptive-misinformation"]["tau"]
    assert runs == {"none", *(f"adaptive-misinformation@{t:g}" for t in taus)}
    assert cfg["defenses"]["defended"]["budgets"]["adaptive-letters"] == [1000]


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        (
            {"mnist-lenet-eo": {"defenses": ["none"]}},
            [
                "defenses.defended.overrides.mnist-lenet-eo",
                "not a defended victim",
                "did you mean 'mnist-lenet-oe'?",
                "allowed values",
                "mnist-lenet",
            ],
        ),
        (
            {"mnist-lenet-oe": {"defenses": ["none", "adaptive-misinfo"]}},
            [
                "defenses.defended.overrides.mnist-lenet-oe.defenses",
                "unknown defense",
                "did you mean 'adaptive-misinformation'?",
                "allowed values",
                "ood-shuffle",
            ],
        ),
        (
            {"mnist-lenet-oe": {"attacks": ["random-mnist5k"]}},
            [
                "defenses.defended.overrides.mnist-lenet-oe.attacks",
                "unknown attack",
                "'random-mnist5k'",
                "allowed values: random-letters",
            ],
        ),
        (
            {"mnist-lenet-oe": {"seeds": [0]}},
            ["unknown key 'seeds'", "allowed keys: attacks, defenses"],
        ),
    ],
)
def test_bad_defended_override_names_key_and_allowed_values(default, override, needles):
    def bad(c):
        c["defenses"]["defended"]["overrides"] = override

    with pytest.raises(config.ConfigError) as err:
        config.validate(_with(default, bad))
    for needle in needles:
        assert needle in str(err.value), str(err.value)
