"""The prediction API: response granularities, what an attacker trains on, and the API object
that answers queries through a defense and keeps the owner's record of them."""

import numpy as np
import pytest
import torch

from stealbench.attack.api import (
    PredictionAPI,
    apply_granularity,
    information_order,
    parse_granularity,
    response_to_targets,
    serve,
)
from stealbench.defense import DefenseContext, create

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


def test_targets_renormalise_truncated_rows():
    targets, kept = response_to_targets(apply_granularity(P, "top2"))
    assert kept.all()
    np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(targets[0], [0, 0.6 / 0.85, 0.25 / 0.85, 0], rtol=1e-6)
    np.testing.assert_allclose(targets[1], [0.4 / 0.75, 0, 0, 0.35 / 0.75], rtol=1e-6)


def test_rows_with_no_mass_are_dropped_not_made_uniform():
    """A row rounded to all zeros tells the attacker nothing: it must leave the transfer set,
    since a uniform target would teach a wrong answer."""
    rounded = apply_granularity(P, "round0")  # row 1 (max 0.40) rounds to zero
    targets, kept = response_to_targets(rounded)
    np.testing.assert_array_equal(kept, [True, False])
    np.testing.assert_allclose(targets, [[0, 1, 0, 0]])
    nothing = np.zeros((3, 4), dtype=np.float32)
    targets, kept = response_to_targets(nothing)
    assert targets.shape == (0, 4) and not kept.any()


def test_information_order():
    assert information_order(["label", "round1", "top2", "probs", "top5", "round3"]) == [
        "probs",
        "top5",
        "top2",
        "round3",
        "round1",
        "label",
    ]
    assert information_order(["label", "probs", "label"]) == ["probs", "label"]


# ------------------------------------------------------------------ the API object


def _model(classes=3, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, classes))


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 2, 2, 1), dtype=np.uint8)


def test_serve_is_the_defense_then_the_granularity():
    probs = np.tile(P, (3, 1))
    images = _images(len(probs), seed=1)
    noise = create("gaussian-noise", DefenseContext(), scale=0.3)
    expected = apply_granularity(noise(probs, images), "top2")
    np.testing.assert_array_equal(serve(probs, images, "top2", noise), expected)
    # the defense changed something, so the comparison above could fail
    assert not np.allclose(expected, apply_granularity(probs, "top2"))
    np.testing.assert_array_equal(serve(probs, images, "label"), apply_granularity(probs, "label"))


def test_api_counts_every_image_as_a_query():
    api = PredictionAPI(_model())
    answers = api(_images(5))
    assert answers.shape == (5, 3) and api.queries == 5
    api(_images(3, seed=1))
    assert api.queries == 8
    np.testing.assert_allclose(answers.sum(1), 1.0, rtol=1e-6)
    # the owner's view computes posteriors without spending the attacker's budget
    api.posteriors(_images(4))
    assert api.queries == 8


def test_api_records_images_posteriors_and_answers_in_call_order():
    model = _model()
    api = PredictionAPI(model, "round1")
    first, second = _images(4, seed=2), _images(2, seed=3)
    a1, a2 = api(first), api(second)
    a1[:] = -1  # what the attacker does with its copy does not touch the owner's record
    images, probs, answers = api.record()
    np.testing.assert_array_equal(images, np.concatenate([first, second]))
    np.testing.assert_array_equal(probs, api.posteriors(images))
    np.testing.assert_array_equal(answers, apply_granularity(probs, "round1"))
    np.testing.assert_array_equal(answers[4:], a2)
    assert (answers >= 0).all()


def test_api_answers_at_its_granularity_through_its_defense():
    model = _model(classes=4)
    defense = create("reverse-sigmoid", DefenseContext(), beta=0.8)
    images = _images(6, seed=4)
    api = PredictionAPI(model, "top2", defense)
    answers = api(images)
    probs = api.posteriors(images)
    np.testing.assert_array_equal(answers, apply_granularity(defense(probs, images), "top2"))
    assert not np.allclose(answers, apply_granularity(probs, "top2"))  # the defense acted
    assert ((answers > 0).sum(1) == 2).all()  # and the granularity too
    # the record keeps the victim's true posteriors, not the defended ones
    np.testing.assert_array_equal(api.record()[1], probs)


def test_a_defended_api_answers_the_same_image_the_same_way():
    api = PredictionAPI(_model(), "probs", create("gaussian-noise", DefenseContext(), scale=0.2))
    images = _images(5, seed=5)
    once = api(images)
    again = api(images[::-1])
    np.testing.assert_array_equal(once, again[::-1])


def test_api_refuses_unknown_granularity_and_empty_record():
    with pytest.raises(ValueError, match="allowed: probs, label"):
        PredictionAPI(_model(), "top0")
    with pytest.raises(ValueError, match="has not been queried"):
        PredictionAPI(_model()).record()
