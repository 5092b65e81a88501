import math

import numpy as np

from stealbench.metrics import accuracy, agreement, recovery


def test_accuracy_and_agreement():
    assert accuracy(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == 0.5
    assert agreement(np.array([0, 0, 1]), np.array([0, 1, 1])) == 2 / 3
    assert accuracy(np.array([]), np.array([])) == 0.0


def test_recovery_is_ratio_of_accuracies():
    assert recovery(0.722, 0.741) == 0.722 / 0.741  # Caltech-RN34 in Atli et al.: 0.97x
    assert math.isnan(recovery(0.5, 0.0))
