"""The defense registry and the simple perturbation defenses, checked against their formulas
(MAD, Adaptive Misinformation and DAWN have test files of their own; the contract every
defense keeps is tests/test_defense_contract.py)."""

import sys

import numpy as np
import pytest

from stealbench.defense import DEFENSES, DefenseContext, create, defense_parameters
from stealbench.defense.registry import Defense, benign_utility, register, renormalise


def _probs(n=200, c=10, seed=0):
    logits = np.random.default_rng(seed).normal(0, 3, size=(n, c))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _images(n, low=0, high=256, seed=0):
    """Distinct small images whose mean brightness lies in [low, high)."""
    return np.random.default_rng(seed).integers(low, high, size=(n, 3, 3, 1), dtype=np.uint8)


def _is_distribution(p):
    return p.dtype == np.float32 and np.all(p >= 0) and np.allclose(p.sum(axis=1), 1, atol=1e-5)


class StubDetector:
    """The OOD pre-classifier's interface: P(out) is the mean brightness; learned cut 0.5."""

    threshold = 0.5

    def p_out(self, images):
        return images.reshape(len(images), -1).mean(axis=1) / 255.0


CONTEXT = DefenseContext(key=b"test-owner", num_classes=10, detector=StubDetector())


# ----------------------------------------------------------------------- the registry


def test_every_defense_class_in_the_package_is_registered():
    """Discovery imports each file that registers a defense: a new defense is one file."""
    import ast
    from pathlib import Path

    import stealbench.defense

    classes = set()
    for path in Path(stealbench.defense.__path__[0]).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                getattr(d, "id", None) == "register" for d in node.decorator_list
            ):
                classes.add(node.name)
    assert classes == {cls.__name__ for cls in DEFENSES.values()}


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_parameters_and_strength_of_each_defense(name):
    cls = DEFENSES[name]
    assert defense_parameters(name) == defense_parameters(cls) == list(cls.params)
    assert cls.strength is None or cls.strength in cls.params
    assert cls.name == name
    assert sys.modules[cls.__module__].__doc__, "its docs: the module docstring"


def test_a_defense_whose_strength_is_not_a_parameter_is_refused():
    class Broken(Defense):
        name = "broken"
        strength = "power"
        params = {"level": {"type": "number"}}

        def __init__(self, context, level: float = 1.0):
            super().__init__(context)

        def perturb(self, probs, images):
            return probs

    with pytest.raises(TypeError, match="Broken.strength 'power' is not a parameter"):
        register(Broken)
    assert "broken" not in DEFENSES


def test_bad_requests_name_the_allowed_values():
    p, images = _probs(4), _images(4)
    with pytest.raises(ValueError, match="allowed: " + ", ".join(sorted(DEFENSES)) + "$"):
        create("shuffle", CONTEXT)
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['sigma'\]; allowed: scale"):
        create("gaussian-noise", CONTEXT, sigma=0.1)
    with pytest.raises(ValueError, match="allowed: beta, gamma"):
        create("reverse-sigmoid", CONTEXT, alpha=1)
    with pytest.raises(ValueError, match="allowed: none"):
        create("none", CONTEXT, scale=1)
    with pytest.raises(ValueError, match="4 posteriors but 3 images"):
        create("none", CONTEXT)(p, images[:3])
    with pytest.raises(ValueError, match="finite"):
        create("none", CONTEXT)(np.full((2, 3), np.nan), images[:2])


def test_a_defense_without_the_model_it_needs_is_an_error():
    with pytest.raises(ValueError, match="defense 'ood-shuffle' needs detector in its context"):
        create("ood-shuffle", DefenseContext())


def test_renormalise_scales_rows_and_makes_empty_rows_uniform():
    out = renormalise(np.array([[2.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.5, 0.5, 0, 0], [0.25] * 4])


def test_none_returns_the_vectors():
    p = _probs()
    out = create("none", CONTEXT)(p, _images(len(p)))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, p)


# ------------------------------------------------------------------------ ood-shuffle


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_shuffle_keeps_values_moves_the_top1_and_spares_unflagged_rows(classes):
    p = _probs(c=classes)
    images = _images(len(p), seed=1)
    flags = StubDetector().p_out(images) > 0.5
    assert 0 < flags.sum() < len(p)
    out = create("ood-shuffle", CONTEXT)(p, images)
    np.testing.assert_array_equal(np.sort(out, axis=1), np.sort(p, axis=1))
    np.testing.assert_array_equal(out[~flags], p[~flags])
    unique_max = (p == p.max(axis=1, keepdims=True)).sum(axis=1) == 1
    assert unique_max[flags].all()
    assert np.all(out[flags].argmax(axis=1) != p[flags].argmax(axis=1))


def test_the_threshold_parameter_overrides_the_learned_one():
    p = _probs(300)
    images = _images(300, seed=2)
    p_out = StubDetector().p_out(images)
    between = (p_out > 0.5) & (p_out <= 0.6)
    assert between.any()
    learned = create("ood-shuffle", CONTEXT)(p, images)
    strict = create("ood-shuffle", CONTEXT, threshold=0.6)(p, images)
    assert create("ood-shuffle", CONTEXT).threshold == 0.5
    np.testing.assert_array_equal(strict[p_out <= 0.6], p[p_out <= 0.6])  # unflagged at 0.6
    assert (learned[between].argmax(1) != p[between].argmax(1)).all()  # flagged at 0.5
    np.testing.assert_array_equal(strict[p_out > 0.6], learned[p_out > 0.6])  # same key
    with pytest.raises(ValueError, match=r"threshold on P\(out\) in \[0, 1\], got 2"):
        create("ood-shuffle", CONTEXT, threshold=2)


def test_shuffle_spreads_the_top1_evenly_over_distinct_images():
    """The per-query key gives each image its own permutation: many flagged images spread
    their top-1 uniformly over the other positions; one image repeated always gets one."""
    n = 3000
    p = np.tile(np.array([[0.7, 0.1, 0.1, 0.05, 0.05]], np.float32), (n, 1))
    images = _images(n, low=200, seed=3)  # all bright: all flagged
    shuffle = create("ood-shuffle", CONTEXT)
    a = shuffle(p, images)
    np.testing.assert_array_equal(a, shuffle(p, images))
    positions = np.bincount(a.argmax(axis=1), minlength=5)
    assert positions[0] == 0
    assert positions[1:].min() > 650  # 750 each if uniform over the four other positions
    repeated = shuffle(p, np.repeat(images[:1], n, axis=0))
    assert len(np.unique(repeated, axis=0)) == 1


def test_the_owners_key_decides_the_permutations():
    p, images = _probs(100), _images(100, low=200, seed=4)
    other = DefenseContext(key=b"another-owner", detector=StubDetector())
    a = create("ood-shuffle", CONTEXT)(p, images)
    b = create("ood-shuffle", other)(p, images)
    assert not np.array_equal(a, b)


# ------------------------------------------------------------ the formula defenses


def test_reverse_sigmoid_matches_the_formula_on_a_known_vector():
    p = np.array([[0.7, 0.2, 0.1]])
    beta, gamma = 0.8, 0.5
    logit = np.log(p / (1 - p))
    perturbation = beta * (1 / (1 + np.exp(-gamma * logit)) - 0.5)
    expected = np.clip(p - perturbation, 0, 1)
    expected /= expected.sum()
    out = create("reverse-sigmoid", CONTEXT, beta=beta, gamma=gamma)(p, _images(1))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    # By hand: logit(0.7) = 0.8473, sigmoid(0.4236) = 0.6044, r = 0.0835, 0.7 - r = 0.6165.
    assert (p - perturbation)[0, 0] == pytest.approx(0.6165, abs=1e-4)


def test_reverse_sigmoid_is_a_valid_deterministic_distribution():
    p = _probs()
    p[0] = np.eye(10, dtype=np.float32)[3]  # a one-hot row must survive the logarithm
    images = _images(len(p))
    out = create("reverse-sigmoid", CONTEXT, beta=2.0, gamma=0.1)(p, images)
    assert _is_distribution(out)
    other_key = DefenseContext(key=b"other")
    again = create("reverse-sigmoid", other_key, beta=2.0, gamma=0.1)(p, images)
    np.testing.assert_array_equal(out, again)  # no randomness at all
    with pytest.raises(ValueError, match="beta > 0"):
        create("reverse-sigmoid", CONTEXT, beta=0.0)


def test_gaussian_noise_is_a_keyed_valid_distribution():
    p = _probs()
    images = _images(len(p))
    a = create("gaussian-noise", CONTEXT, scale=0.3)(p, images)
    b = create("gaussian-noise", CONTEXT, scale=0.3)(p, images)
    c = create("gaussian-noise", DefenseContext(key=b"other"), scale=0.3)(p, images)
    assert _is_distribution(a)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a - p).sum(axis=1).mean() > 0.1  # it does perturb
    # Two classes and a large scale: rows that lose every entry become uniform, not NaN.
    two = create("gaussian-noise", CONTEXT, scale=5.0)(_probs(c=2), images)
    assert _is_distribution(two)
    assert (two == 0.5).all(axis=1).any()
    with pytest.raises(ValueError, match="scale > 0"):
        create("gaussian-noise", CONTEXT, scale=0)


def test_gaussian_noise_has_the_configured_standard_deviation():
    """The answer's spread is the configured scale, within what a sample of n explains.

    Two classes at 0.5 each and a small scale s: with noise n0, n1 ~ N(0, s) the answer is
    a0 = (0.5 + n0) / (1 + n0 + n1), never clipped (that needs n < -0.5, 25 s below 0), so
    2 a0 - 1 = D / (1 + S) with D = n0 - n1 and S = n0 + n1, independent normals (the noise
    of the two classes being independent), each of standard deviation sqrt(2) s. Hence
    std(2 a0 - 1) = sqrt(2) s sqrt(E[(1 + S)^-2]) ~ sqrt(2) s (1 + 3 s^2): the
    renormalisation adds 3 s^2 = 0.12% here. The sample std of n normals has standard error
    std / sqrt(2 (n - 1)), 0.71% at n = 10,000; five of them, plus the 0.12%, is the
    tolerance (a scale 10% off fails)."""
    scale, n = 0.02, 10_000
    images = _images(n)
    answers = create("gaussian-noise", CONTEXT, scale=scale)(np.full((n, 2), 0.5), images)
    assert (answers > 0).all()  # nothing was clipped
    spread = (2 * answers[:, 0].astype(np.float64) - 1).std(ddof=1)
    expected = np.sqrt(2) * scale
    tolerance = 5 * expected / np.sqrt(2 * (n - 1)) + 3 * scale**2 * expected
    assert abs(spread - expected) < tolerance, (spread, expected, tolerance)


def test_top_k_answers_the_k_largest_renormalised():
    p = np.array([[0.05, 0.60, 0.25, 0.10], [0.40, 0.10, 0.15, 0.35]])
    out = create("top-k", CONTEXT, k=2)(p, _images(2))
    np.testing.assert_allclose(
        out, [[0, 0.6 / 0.85, 0.25 / 0.85, 0], [0.4 / 0.75, 0, 0, 0.35 / 0.75]], rtol=1e-6
    )
    np.testing.assert_array_equal(create("top-k", CONTEXT, k=1)(p, _images(2)), np.eye(4)[[1, 0]])
    np.testing.assert_allclose(create("top-k", CONTEXT, k=9)(p, _images(2)), p, rtol=1e-6)
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="integer k >= 1"):
            create("top-k", CONTEXT, k=bad)


def test_rounding_renormalises_and_answers_empty_rows_with_their_top1():
    p = np.array([[0.05, 0.60, 0.25, 0.10], [0.40, 0.10, 0.15, 0.35]])
    out = create("rounding", CONTEXT, decimals=1)(p, _images(2))
    rounded = np.array([[0.0, 0.6, 0.2, 0.1], [0.4, 0.1, 0.2, 0.4]])  # 0.25 and 0.15 to even
    np.testing.assert_allclose(out, rounded / rounded.sum(1, keepdims=True), rtol=1e-6)
    # decimals 0: row 0 rounds to a one-hot; row 1 rounds to nothing and answers its top-1
    out = create("rounding", CONTEXT, decimals=0)(p, _images(2))
    np.testing.assert_array_equal(out, [[0, 1, 0, 0], [1, 0, 0, 0]])
    with pytest.raises(ValueError, match="integer number of decimals >= 0"):
        create("rounding", CONTEXT, decimals=-1)


# ------------------------------------------------------------------------ utility


def test_benign_utility_is_top1_accuracy():
    answers = np.array([[0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8]])
    assert benign_utility(answers, np.array([0, 1, 1, 1])) == 0.75
    p = _probs()
    labels = p.argmax(axis=1)
    images = _images(len(p), low=200)  # all flagged
    assert benign_utility(create("none", CONTEXT)(p, images), labels) == 1.0
    assert benign_utility(create("ood-shuffle", CONTEXT)(p, images), labels) == 0.0
    with pytest.raises(ValueError, match="3 answers but 2 labels"):
        benign_utility(answers[:3], labels[:2])
