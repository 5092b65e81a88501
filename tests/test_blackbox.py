import numpy as np
import pytest

from stealbench.blackbox import (
    Blackbox,
    apply_granularity,
    information_order,
    parse_granularity,
    response_to_targets,
)

P = np.array([[0.05, 0.60, 0.25, 0.10], [0.40, 0.10, 0.15, 0.35]], dtype=np.float32)


def test_probs_is_identity_copy():
    out = apply_granularity(P, "probs")
    np.testing.assert_array_equal(out, P)
    out[0, 0] = 9
    assert P[0, 0] == np.float32(0.05)


def test_label_is_one_hot_argmax():
    np.testing.assert_array_equal(apply_granularity(P, "label"), [[0, 1, 0, 0], [1, 0, 0, 0]])


def test_top_k_keeps_k_largest_and_zeroes_rest():
    np.testing.assert_allclose(
        apply_granularity(P, "top2"), [[0, 0.60, 0.25, 0], [0.40, 0, 0, 0.35]]
    )
    np.testing.assert_allclose(apply_granularity(P, "top1"), [[0, 0.6, 0, 0], [0.4, 0, 0, 0]])
    # k beyond the number of classes is the full vector
    np.testing.assert_allclose(apply_granularity(P, "top10"), P)


def test_top_k_ties_keep_lower_index():
    tied = np.array([[0.3, 0.3, 0.3, 0.1]], dtype=np.float32)
    np.testing.assert_allclose(apply_granularity(tied, "top2"), [[0.3, 0.3, 0, 0]])


def test_round_to_decimals():
    np.testing.assert_allclose(
        apply_granularity(P, "round1"), [[0.0, 0.6, 0.2, 0.1], [0.4, 0.1, 0.2, 0.4]], atol=1e-6
    )
    np.testing.assert_allclose(apply_granularity(P, "round0"), [[0, 1, 0, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize("bad", ["top0", "top", "round", "round10", "probability", "Label", ""])
def test_unknown_granularity_names_allowed_values(bad):
    with pytest.raises(ValueError, match="allowed: probs, label, top<k>"):
        parse_granularity(bad)


def test_targets_renormalise_and_fill_empty_rows():
    rounded = apply_granularity(P, "round0")  # row 1 rounds to zero: no information
    np.testing.assert_allclose(response_to_targets(rounded), [[0, 1, 0, 0], [0.25] * 4])
    targets = response_to_targets(apply_granularity(P, "top2"))
    np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(targets[0], [0, 0.6 / 0.85, 0.25 / 0.85, 0], rtol=1e-6)


def test_blackbox_counts_every_query():
    import torch

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    box = Blackbox(model, batch_size=2)
    probs = box(np.zeros((5, 2, 2, 1), dtype=np.uint8))
    assert probs.shape == (5, 3) and box.queries == 5
    box(np.zeros((3, 2, 2, 1), dtype=np.uint8))
    assert box.queries == 8
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)


def test_information_order():
    assert information_order(["label", "round1", "top2", "probs", "top5", "round3"]) == [
        "probs",
        "top5",
        "top2",
        "round3",
        "round1",
        "label",
    ]
