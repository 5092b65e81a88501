import math

import numpy as np
import pytest

from stealbench.metrics import accuracy, agreement, kl_divergence, per_class_accuracy, recovery


def test_accuracy_and_agreement():
    assert accuracy(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == 0.5
    assert agreement(np.array([0, 0, 1]), np.array([0, 1, 1])) == 2 / 3
    assert accuracy(np.array([]), np.array([])) == 0.0


def test_recovery_is_ratio_of_accuracies():
    assert recovery(0.722, 0.741) == 0.722 / 0.741  # Caltech-RN34 in Atli et al.: 0.97x
    assert math.isnan(recovery(0.5, 0.0))


def test_kl_divergence_against_hand_computed_values():
    # KL(p || q) = sum_i p_i ln(p_i / q_i), averaged over images
    first = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    second = 0.2 * math.log(0.2 / 0.4) + 0.8 * math.log(0.8 / 0.6)
    got = kl_divergence(np.array([[0.5, 0.5], [0.2, 0.8]]), np.array([[0.25, 0.75], [0.4, 0.6]]))
    assert got == pytest.approx((first + second) / 2, rel=1e-12)
    assert kl_divergence(np.array([[0.3, 0.7]]), np.array([[0.3, 0.7]])) == 0.0
    assert kl_divergence(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0


def test_kl_divergence_skips_classes_the_victim_gives_no_mass():
    # 0 ln(0 / q) is 0 (its limit), not NaN: only the victim's class 0 counts
    assert kl_divergence(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]])) == pytest.approx(
        math.log(2), rel=1e-12
    )


def test_kl_divergence_clips_the_surrogates_zeros_at_eps():
    # a surrogate that gives no mass to a class the victim believes in: ln(p / eps), finite
    p, q = np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]])
    expected = 0.5 * math.log(0.5 / 1.0) + 0.5 * math.log(0.5 / 1e-8)
    assert kl_divergence(p, q) == pytest.approx(expected, rel=1e-12)
    expected = 0.5 * math.log(0.5 / 1.0) + 0.5 * math.log(0.5 / 1e-3)
    assert kl_divergence(p, q, eps=1e-3) == pytest.approx(expected, rel=1e-12)


def test_per_class_accuracy_by_hand():
    predictions = np.array([0, 1, 1, 2, 2, 0])
    labels = np.array([0, 0, 1, 2, 2, 2])
    got = per_class_accuracy(predictions, labels, num_classes=4)
    # class 0: 1 of 2 right; class 1: 1 of 1; class 2: 2 of 3; class 3: no test image
    np.testing.assert_array_equal(got[:3], [1 / 2, 1.0, 2 / 3])
    assert math.isnan(got[3])
    assert got.shape == (4,)
