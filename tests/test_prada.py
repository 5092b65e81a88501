import numpy as np
import pytest

from stealbench.prada import Prada, PradaResult, detection_curve, first_detection, replay, shapiro_w

_STUB_WEIGHTS = np.random.default_rng(123).normal(size=(10, 28 * 28)).astype(np.float32)


def _stub_classes(images: np.ndarray) -> np.ndarray:
    """A fixed random linear classifier standing in for the victim's top-1."""
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return ((x - x.mean(axis=1, keepdims=True)) @ _STUB_WEIGHTS.T).argmax(axis=1)


def _gaussian_stream(seed: int, n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(128, 25, size=(n, 28, 28, 1)), 0, 255).astype(np.uint8)


def _jbda_stream(seed: int, seeds: int = 10, rounds: int = 6, step: int = 25) -> np.ndarray:
    """Jacobian-based augmentation's shape: each round adds a +-step perturbation of every image
    so far (random signs stand in for the signs of the Jacobian)."""
    rng = np.random.default_rng(seed)
    current = np.clip(rng.normal(128, 40, size=(seeds, 28, 28, 1)), 0, 255).astype(np.uint8)
    stream = [current]
    for _ in range(rounds):
        signs = rng.choice([-1, 1], size=current.shape)
        children = np.clip(current.astype(int) + step * signs, 0, 255).astype(np.uint8)
        stream.append(children)
        current = np.concatenate([current, children])
    return np.concatenate(stream)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_independent_gaussian_queries_are_not_flagged(seed):
    images = _gaussian_stream(seed)
    result = replay(images, _stub_classes(images), delta=0.9)
    assert result.queries == 600
    assert not result.flagged and result.flagged_at is None
    assert result.w_trace, "600 queries over 10 classes must reach the test"
    assert min(w for _, w in result.w_trace) > 0.95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiny_perturbations_of_few_seeds_are_flagged(seed):
    images = _jbda_stream(seed)
    result = replay(images, _stub_classes(images), delta=0.9)
    assert result.flagged
    assert result.flagged_at == first_detection(result.w_trace, 0.9)
    assert result.flagged_at % 10 == 0 and 100 < result.flagged_at <= 200
    # The replay goes on after the flag, so the trace serves every delta.
    assert result.w_trace[-1][0] == result.queries == len(images)


def test_tests_run_every_check_every_once_enough_distances_are_pooled():
    images = _gaussian_stream(5, n=300)
    classes = np.zeros(300, dtype=int)  # one class: distances = queries - 1
    result = replay(images, classes, check_every=25, min_distances=120)
    # 125 queries hold 124 distances > 120: the first check at a multiple of 25.
    assert [q for q, _ in result.w_trace] == list(range(125, 301, 25))


def test_classes_with_few_distances_are_left_out_of_the_pool():
    prada = Prada(min_per_class=3)
    for x in (0.0, 1.0, 2.0, 3.0):
        prada.observe(np.array([[[x]]]), 0)
    for x in (0.0, 5.0):
        prada.observe(np.array([[[x]]]), 1)
    assert len(prada.distances()) == 4
    # 2 is 1 from G_0 = {0, 1}, not above T_0 = 1, so 3 is 2 away from G_0.
    np.testing.assert_allclose(prada.pooled_distances(), [1.0, 1.0, 2.0])


def test_threshold_rule_on_a_hand_computed_stream():
    prada = Prada()
    one_pixel = [np.array([[[x]]], dtype=np.float32) for x in (0.0, 1.0, 5.0, 12.0, 13.0, 14.5)]

    prada.observe(one_pixel[0], 0)  # G_0 was empty: joins, no distance
    assert prada.distances(0).size == 0 and prada.threshold(0) == 0.0
    assert prada.growing_set(0).ravel().tolist() == [0.0]

    prada.observe(one_pixel[1], 0)  # d = 1 > T = 0: joins, T = mean - std of [1] = 1
    assert prada.threshold(0) == pytest.approx(1.0)

    prada.observe(one_pixel[2], 0)  # d = 4 > 1: joins; [1, 4]: 2.5 - 1.5 = 1, T stays 1
    assert prada.threshold(0) == pytest.approx(1.0)

    prada.observe(one_pixel[3], 0)  # d = 7 > 1: joins; [1, 4, 7]: 4 - sqrt(6) = 1.551
    assert prada.threshold(0) == pytest.approx(4 - np.sqrt(6))

    prada.observe(one_pixel[4], 0)  # d = 1 <= 1.551: recorded, does not join, T unchanged
    assert prada.growing_set(0).ravel().tolist() == [0.0, 1.0, 5.0, 12.0]
    assert prada.threshold(0) == pytest.approx(4 - np.sqrt(6))

    prada.observe(one_pixel[5], 0)  # d = 2.5 (to 12) > 1.551: joins; 3.1 - 2.245 < T: unchanged
    assert prada.growing_set(0).ravel().tolist() == [0.0, 1.0, 5.0, 12.0, 14.5]
    assert prada.threshold(0) == pytest.approx(4 - np.sqrt(6))
    np.testing.assert_allclose(prada.distances(0), [1.0, 4.0, 7.0, 1.0, 2.5])

    prada.observe(np.array([[[0.5]]], dtype=np.float32), 1)  # another class has its own set
    assert prada.distances(1).size == 0 and prada.growing_set(1).ravel().tolist() == [0.5]
    assert prada.queries == 7


def test_uint8_images_are_measured_in_unit_scale():
    prada = Prada()
    prada.observe(np.zeros((2, 2, 1), np.uint8), 0)
    prada.observe(np.full((2, 2, 1), 255, np.uint8), 0)
    assert prada.distances(0) == pytest.approx([2.0])  # four pixels, each 1 apart


def test_identical_distances_count_as_not_normal():
    assert shapiro_w(np.full(200, 3.0)) == 0.0
    # 3-sigma outliers are dropped before the test; what is left here is constant.
    assert shapiro_w(np.r_[np.full(200, 3.0), 50.0]) == 0.0
    assert shapiro_w(np.random.default_rng(0).normal(10, 1, 500)) > 0.99


def test_mismatched_inputs_fail_clearly():
    prada = Prada()
    prada.observe(np.zeros((28, 28, 1), np.uint8), 0)
    with pytest.raises(ValueError, match="one PRADA state serves one input shape"):
        prada.observe(np.zeros((14, 14, 1), np.uint8), 0)
    with pytest.raises(ValueError, match="one class per query"):
        replay(np.zeros((3, 2, 2, 1), np.uint8), [0, 1])
    with pytest.raises(ValueError, match="delta"):
        Prada(delta=1.5)


def test_detection_curve_is_monotone_and_counts_right():
    attackers = [
        [(110, 0.95), (120, 0.80), (130, 0.70)],  # flagged at 120 for delta in (0.8, 0.95]
        [(110, 0.85), (120, 0.90)],
        PradaResult(True, 110, [(110, 0.60)], 110),
        [],  # too short to be tested: never flagged
    ]
    benign = [[(110, 0.97), (120, 0.99)], [(110, 0.92)]]
    deltas = np.round(np.linspace(0.5, 1.0, 26), 2)
    curve = detection_curve(attackers, benign, deltas)
    assert list(curve["delta"]) == sorted(deltas)
    assert curve["detection_rate"].is_monotonic_increasing
    assert curve["false_positive_rate"].is_monotonic_increasing

    row = curve.set_index("delta").loc[0.9]
    assert row["detection_rate"] == 3 / 4  # the first at 120, the second at 110, the third
    assert row["mean_queries_to_detection"] == pytest.approx((120 + 110 + 110) / 3)
    assert row["false_positive_rate"] == 0.0
    assert row["attacker_streams"] == 4 and row["benign_streams"] == 2

    low = curve.set_index("delta").loc[0.5]
    assert low["detection_rate"] == 0.0 and np.isnan(low["mean_queries_to_detection"])
    high = curve.set_index("delta").loc[1.0]
    assert high["false_positive_rate"] == 1.0


def test_detection_curve_agrees_with_replays():
    streams = [_jbda_stream(7), _gaussian_stream(7)]
    results = [replay(s, _stub_classes(s), delta=0.9) for s in streams]
    curve = detection_curve(results[:1], results[1:], [0.9]).iloc[0]
    assert curve["detection_rate"] == 1.0 and curve["false_positive_rate"] == 0.0
    assert curve["mean_queries_to_detection"] == results[0].flagged_at
