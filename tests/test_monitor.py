"""Stream monitors: the registry, the per-client contract, and the query-count baseline."""

from pathlib import Path

import numpy as np
import pytest

from stealbench.defense import prada  # noqa: F401 (registers PRADA)
from stealbench.defense.monitor import (
    MONITORS,
    Monitor,
    QueryCount,
    create_monitor,
    detection_curve,
    monitor_parameters,
    replay,
    split_settings,
)

ROOT = Path(__file__).resolve().parents[1]


def _stream(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Jacobian-like stream: few seeds and small steps from them, so PRADA tests and flags."""
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 256, size=(5, 6, 6, 1))
    parents = rng.integers(0, 5, n)
    images = np.clip(seeds[parents] + rng.choice([-9, 9], size=(n, 6, 6, 1)), 0, 255)
    return images.astype(np.uint8), parents % 2


def _cut(n: int, sizes) -> list[slice]:
    edges = np.cumsum([0, *sizes])
    assert edges[-1] == n
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def test_the_registry_holds_prada_and_the_baseline():
    assert {"prada", "query-count"} <= set(MONITORS)
    for cls in MONITORS.values():
        assert issubclass(cls, Monitor) and cls.sweep in monitor_parameters(cls)
    assert monitor_parameters("query-count") == ["limit", "window"]
    with pytest.raises(ValueError, match="allowed: limit, window"):
        create_monitor("query-count", limt=3)
    with pytest.raises(ValueError, match="unknown monitor 'prade'"):
        create_monitor("prade")


def test_split_settings_separates_parameters_sweep_and_length():
    section = {"delta": 0.8, "deltas": [0.8, 0.9], "max_queries": 500, "min_distances": 50}
    assert split_settings("prada", section) == (
        {"delta": 0.8, "min_distances": 50},
        [0.8, 0.9],
        500,
    )
    assert split_settings("query-count", {"limit": 5, "limits": [5], "max_queries": 9}) == (
        {"limit": 5},
        [5],
        9,
    )


@pytest.mark.parametrize(
    ("name", "params"),
    [("prada", {"min_distances": 20, "min_per_class": 5}), ("query-count", {"limit": 70})],
)
def test_batches_carry_state_and_any_cut_gives_the_same_verdict(name, params):
    """One client's stream in one batch, in uneven batches, or query by query: the same
    trace, flag and per-query flags (state is kept between batches)."""
    images, classes = _stream(150)
    whole = create_monitor(name, **params)
    decision = whole.observe(images, classes)
    assert whole.flagged and decision.flagged_at == whole.flagged_at
    np.testing.assert_array_equal(
        decision.flags, np.arange(1, 151) >= whole.flagged_at
    )  # flagged from the first alarm on, never withdrawn

    for sizes in ([150], [1] * 150, [7, 60, 1, 40, 42], [100, 50]):
        parts = create_monitor(name, **params)
        flags = []
        for part in _cut(150, sizes):
            flags.append(parts.observe(images[part], classes[part]).flags)
        assert parts.result() == whole.result(), sizes
        np.testing.assert_array_equal(np.concatenate(flags), decision.flags)


@pytest.mark.parametrize("name", ["prada", "query-count"])
def test_reset_forgets_the_client(name):
    images, classes = _stream(150)
    params = {"limit": 70} if name == "query-count" else {"min_distances": 20}
    monitor = create_monitor(name, **params)
    monitor.observe(images, classes)
    first = monitor.result()
    monitor.reset()
    assert monitor.queries == 0 and not monitor.flagged and monitor.trace == []
    monitor.observe(images, classes)
    assert monitor.result() == first


def test_query_count_flags_the_query_past_its_limit():
    images = np.zeros((10, 2, 2, 1), np.uint8)
    labels = np.zeros(10, int)
    monitor = QueryCount(limit=4)
    first = monitor.observe(images[:3], labels[:3])
    assert not first.flagged and not first.flags.any()
    assert first.scores == [(1, 1.0), (2, 2.0), (3, 3.0)]
    second = monitor.observe(images[3:7], labels[3:7])
    assert second.flagged and second.flagged_at == 5  # the 5th query is the one past 4
    assert second.flags.tolist() == [False, True, True, True]
    assert monitor.observe(images[7:], labels[7:]).flags.all()
    assert replay("query-count", images[:4], labels[:4], limit=4).flagged is False
    assert replay("query-count", images, labels, limit=0).flagged_at == 1


def test_query_count_window_counts_only_recent_batches():
    """Its clock is the batches: 3 queries per batch never exceed 5 in a 1-batch window, but
    do in a 2-batch window, at the 2nd batch's 3rd query (the 6th in the window)."""
    batch = (np.zeros((3, 2, 2, 1), np.uint8), np.zeros(3, int))
    narrow, wide = QueryCount(limit=5, window=1), QueryCount(limit=5, window=2)
    for _ in range(4):
        narrow.observe(*batch)
    assert not narrow.flagged and narrow.queries == 12
    assert [s for _, s in narrow.trace][-3:] == [1.0, 2.0, 3.0]
    wide.observe(*batch)
    decision = wide.observe(*batch)
    assert decision.flagged_at == 6 and decision.flags.tolist() == [False, False, True]
    wide.observe(*batch)  # the window slid: the count restarts from the previous batch's 3
    assert [s for _, s in wide.trace][-3:] == [4.0, 5.0, 6.0]


@pytest.mark.parametrize("params", [{"limit": -1}, {"limit": 2.5}, {"window": 0}])
def test_query_count_refuses_bad_parameters_by_name(params):
    with pytest.raises(ValueError, match=next(iter(params))):
        QueryCount(**params)


def test_observe_wants_one_answer_per_query():
    with pytest.raises(ValueError, match="one answer per query"):
        QueryCount().observe(np.zeros((3, 2, 2, 1)), np.zeros(2))


def test_detection_curve_sweeps_the_monitors_own_threshold():
    def stream(n):
        return replay("query-count", np.zeros((n, 1, 1, 1)), np.zeros(n), limit=0)

    attackers, benign = [stream(300), stream(80)], [stream(50)]
    curve = detection_curve(attackers, benign, [40, 100], "query-count").set_index("limit")
    assert curve.loc[40, "detection_rate"] == 1.0 and curve.loc[40, "false_positive_rate"] == 1.0
    assert curve.loc[40, "mean_queries_to_detection"] == 41
    assert curve.loc[100, "detection_rate"] == 0.5 and curve.loc[100, "false_positive_rate"] == 0
