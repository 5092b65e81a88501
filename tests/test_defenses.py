import numpy as np
import pytest

from stealbench.defenses import DEFENSES, benign_utility, defend, defense_parameters


def _probs(n=200, c=10, seed=0):
    logits = np.random.default_rng(seed).normal(0, 3, size=(n, c))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _is_distribution(p):
    return p.dtype == np.float32 and np.all(p >= 0) and np.allclose(p.sum(axis=1), 1, atol=1e-5)


def test_registry_lists_the_defenses():
    assert set(DEFENSES) == {"none", "ood-shuffle", "reverse-sigmoid", "gaussian-noise"}
    assert defense_parameters("reverse-sigmoid") == ["beta", "gamma"]
    assert defense_parameters("gaussian-noise") == ["scale"]


def test_none_returns_the_vectors():
    p = _probs()
    out = defend(p, "none", np.random.default_rng(0))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, p)


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_shuffle_keeps_values_moves_the_top1_and_spares_unflagged_rows(classes):
    p = _probs(c=classes)
    flags = np.random.default_rng(1).random(len(p)) < 0.5
    out = defend(p, "ood-shuffle", np.random.default_rng(2), flags=flags)
    np.testing.assert_array_equal(np.sort(out, axis=1), np.sort(p, axis=1))
    np.testing.assert_array_equal(out[~flags], p[~flags])
    unique_max = (p == p.max(axis=1, keepdims=True)).sum(axis=1) == 1
    assert unique_max[flags].all()
    assert np.all(out[flags].argmax(axis=1) != p[flags].argmax(axis=1))


def test_shuffle_is_seeded_and_spreads_the_top1_evenly():
    p = np.tile(np.array([[0.7, 0.1, 0.1, 0.05, 0.05]], np.float32), (3000, 1))
    flags = np.ones(3000, bool)
    a = defend(p, "ood-shuffle", np.random.default_rng(3), flags=flags)
    b = defend(p, "ood-shuffle", np.random.default_rng(3), flags=flags)
    np.testing.assert_array_equal(a, b)
    positions = np.bincount(a.argmax(axis=1), minlength=5)
    assert positions[0] == 0
    assert positions[1:].min() > 650  # 750 each if uniform over the four other positions


def test_shuffle_needs_flags():
    with pytest.raises(ValueError, match="needs flags"):
        defend(_probs(), "ood-shuffle", np.random.default_rng(0))


def test_reverse_sigmoid_matches_the_formula_on_a_known_vector():
    p = np.array([[0.7, 0.2, 0.1]])
    beta, gamma = 0.8, 0.5
    logit = np.log(p / (1 - p))
    perturbation = beta * (1 / (1 + np.exp(-gamma * logit)) - 0.5)
    expected = np.clip(p - perturbation, 0, 1)
    expected /= expected.sum()
    out = defend(p, "reverse-sigmoid", np.random.default_rng(0), beta=beta, gamma=gamma)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    # By hand: logit(0.7) = 0.8473, sigmoid(0.4236) = 0.6044, r = 0.0835, 0.7 - r = 0.6165.
    assert (p - perturbation)[0, 0] == pytest.approx(0.6165, abs=1e-4)


def test_reverse_sigmoid_is_a_valid_deterministic_distribution():
    p = _probs()
    p[0] = np.eye(10, dtype=np.float32)[3]  # a one-hot row must survive the logarithm
    out = defend(p, "reverse-sigmoid", np.random.default_rng(0), beta=2.0, gamma=0.1)
    assert _is_distribution(out)
    again = defend(p, "reverse-sigmoid", np.random.default_rng(9), beta=2.0, gamma=0.1)
    np.testing.assert_array_equal(out, again)  # no randomness at all
    with pytest.raises(ValueError, match="beta > 0"):
        defend(p, "reverse-sigmoid", np.random.default_rng(0), beta=0.0)


def test_gaussian_noise_is_a_seeded_valid_distribution():
    p = _probs()
    a = defend(p, "gaussian-noise", np.random.default_rng(4), scale=0.3)
    b = defend(p, "gaussian-noise", np.random.default_rng(4), scale=0.3)
    c = defend(p, "gaussian-noise", np.random.default_rng(5), scale=0.3)
    assert _is_distribution(a)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Two classes and a large scale: rows that lose every entry become uniform, not NaN.
    two = defend(_probs(c=2), "gaussian-noise", np.random.default_rng(0), scale=5.0)
    assert _is_distribution(two)


def test_perturbations_apply_only_to_flagged_rows_when_flags_are_given():
    p = _probs()
    flags = np.arange(len(p)) % 3 == 0
    everywhere = defend(p, "gaussian-noise", np.random.default_rng(6))
    flagged_only = defend(p, "gaussian-noise", np.random.default_rng(6), flags=flags)
    np.testing.assert_array_equal(flagged_only[~flags], p[~flags])
    np.testing.assert_array_equal(flagged_only[flags], everywhere[flags])


def test_bad_requests_name_the_allowed_values():
    p = _probs()
    allowed = "allowed: gaussian-noise, none, ood-shuffle, reverse-sigmoid"
    with pytest.raises(ValueError, match=allowed):
        defend(p, "rounding", np.random.default_rng(0))
    with pytest.raises(ValueError, match="allowed: scale"):
        defend(p, "gaussian-noise", np.random.default_rng(0), sigma=0.1)
    with pytest.raises(ValueError, match="one entry per query"):
        defend(p, "ood-shuffle", np.random.default_rng(0), flags=np.ones(3, bool))


def test_benign_utility_is_top1_accuracy():
    answers = np.array([[0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8]])
    assert benign_utility(answers, np.array([0, 1, 1, 1])) == 0.75
    p = _probs()
    labels = p.argmax(axis=1)
    assert benign_utility(defend(p, "none", np.random.default_rng(0)), labels) == 1.0
    shuffled = defend(p, "ood-shuffle", np.random.default_rng(0), flags=np.ones(len(p), bool))
    assert benign_utility(shuffled, labels) == 0.0
