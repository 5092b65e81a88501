"""The defense stage's evaluation: PRADA over real query streams, benign clients, the
pre-classifier's detection rows, and what a defense costs benign users."""

import numpy as np
import pandas as pd
import pytest

from stealbench.attack.query import run_sequential, sample_pool
from stealbench.data import datasets
from stealbench.defense import DefenseContext, create
from stealbench.defense import evaluation as ev
from stealbench.models.architectures import create_model


@pytest.fixture(scope="module")
def mnist_pool(tmp_path_factory):
    spec = {"source": "mnist5k", "splits": {"train": 100, "val": 20, "test": 30, "pool": 600}}
    path = tmp_path_factory.mktemp("data") / "m.parquet"
    datasets.save(*datasets.materialise("m", spec, 0), path)
    return datasets.load(path)


@pytest.fixture(scope="module")
def victim():
    return create_model("lenet", 10, seed=0).eval()


def test_prada_flags_jbda_but_not_random_sampling_of_real_digits(mnist_pool, victim):
    random = sample_pool("random", victim, mnist_pool, 400, seed=0, rng_seed=0)
    jbda = run_sequential("jbda", victim, mnist_pool, 400, 0, 0, seed_size=50, epochs=2)
    params = {"delta": 0.9}
    rows = {
        "random": ev.monitor_row(
            "prada", params, mnist_pool.images[random.sample_ids], random.probs, strategy="r"
        ),
        "jbda": ev.monitor_row("prada", params, jbda.images, jbda.answers, strategy="jbda"),
    }
    assert rows["jbda"]["strategy"] == "jbda" and rows["jbda"]["queries"] == 400
    assert rows["jbda"]["monitor"] == "prada"
    assert rows["jbda"]["flagged"] and rows["jbda"]["flagged_at"] <= 400
    assert not rows["random"]["flagged"] and rows["random"]["min_w"] > 0.9
    assert len(rows["jbda"]["score_steps"]) == len(rows["jbda"]["score_values"]) > 0
    assert rows["jbda"]["min_w"] == min(rows["jbda"]["score_values"]) < 0.9
    # The same streams through the query-count baseline: flagged past its limit, whatever
    # the queries are.
    for name, stream in (("random", mnist_pool.images[random.sample_ids]), ("jbda", jbda.images)):
        counted = ev.monitor_row("query-count", {"limit": 300}, stream, np.zeros(400, int))
        assert counted["monitor"] == "query-count" and "min_w" not in counted, name
        assert counted["flagged"] and counted["flagged_at"] == 301, name


def test_benign_streams_never_repeat_an_image_within_a_client():
    streams = ev.benign_streams(np.zeros((50, 2, 2, 1)), 3, 20, np.random.default_rng(0))
    assert len(streams) == 3
    for s in streams:
        assert len(s) == 20 and len(set(s.tolist())) == 20
    assert len({tuple(s) for s in streams}) == 3  # each client its own order
    short = ev.benign_streams(np.zeros((5, 2, 2, 1)), 1, 20, np.random.default_rng(0))
    assert sorted(short[0].tolist()) == list(range(5))


def test_prada_curve_from_traces():
    def row(kind, strategy, steps, values, victim="v"):
        return {
            "victim": victim,
            "monitor": "prada",
            "kind": kind,
            "strategy": strategy,
            "score_steps": steps,
            "score_values": values,
        }

    streams = pd.DataFrame(
        [
            row("attacker", "jbda", [10, 20], [0.95, 0.7]),
            row("attacker", "random", [10], [0.97]),
            row("benign", None, [10], [0.93]),
            row("attacker", "jbda", [10], [0.5], victim="w"),
        ]
    )
    curve = ev.monitor_curve(streams, {"prada": [0.8, 0.96]})
    assert list(curve.columns[:3]) == ["victim", "strategy", "delta"]
    assert set(curve["monitor"]) == {"prada"}
    jbda = curve[(curve["strategy"] == "jbda") & (curve["victim"] == "v")].set_index("delta")
    assert jbda.loc[0.8, "detection_rate"] == 1.0
    assert jbda.loc[0.8, "mean_queries_to_detection"] == 20
    assert jbda.loc[0.96, "mean_queries_to_detection"] == 10
    random = curve[curve["strategy"] == "random"].set_index("delta")
    assert random.loc[0.8, "detection_rate"] == 0.0
    assert random.loc[0.96, "false_positive_rate"] == 1.0
    assert random.loc[0.8, "false_positive_rate"] == 0.0
    other = curve[curve["victim"] == "w"].set_index("delta")  # no benign stream of its own
    assert other.loc[0.8, "mean_queries_to_detection"] == 10
    assert other["false_positive_rate"].isna().all()
    assert ev.monitor_curve(streams.iloc[:0], {"prada": [0.9]}).empty


def test_each_monitor_gets_its_own_curve_over_its_own_threshold():
    def row(monitor, kind, steps, victim="v"):
        return {
            "victim": victim,
            "monitor": monitor,
            "kind": kind,
            "strategy": "jbda" if kind == "attacker" else None,
            "score_steps": steps,
            "score_values": [float(s) for s in steps],
        }

    streams = pd.DataFrame(
        [
            row("query-count", "attacker", list(range(1, 301))),
            row("query-count", "benign", list(range(1, 151))),
            row("prada", "attacker", []),
        ]
    )
    curve = ev.monitor_curve(streams, {"prada": [0.9], "query-count": [100, 200]})
    counted = curve[curve["monitor"] == "query-count"].set_index("limit")
    assert counted.loc[100, "detection_rate"] == 1.0
    assert counted.loc[100, "mean_queries_to_detection"] == 101
    assert counted.loc[100, "false_positive_rate"] == 1.0
    assert counted.loc[200, "false_positive_rate"] == 0.0
    assert counted["delta"].isna().all()
    prada = curve[curve["monitor"] == "prada"]
    assert len(prada) == 1 and prada["limit"].isna().all()
    assert prada["detection_rate"].iloc[0] == 0.0


def test_source_kind_relates_a_source_to_the_victim_and_the_detector():
    assert ev.source_kind("digits", "digits", ["letters"]) == ev.IN_DISTRIBUTION
    assert ev.source_kind("letters", "digits", ["letters", "photos"]) == ev.SEEN_KIND
    assert ev.source_kind("noise", "digits", ["letters", "photos"]) == ev.UNSEEN_KIND
    assert ev.source_kind(None, "digits", ["letters"]) == ev.UNSEEN_KIND
    assert ev.source_kind(None, None, []) == ev.UNSEEN_KIND  # no task: never in-distribution


class StubDetector:
    """Flags images whose mean pixel is above 100."""

    def flags(self, images):
        return images.reshape(len(images), -1).mean(1) > 100


def test_detection_row_reports_tpr_for_in_and_tnr_for_out():
    images = np.concatenate([np.zeros((3, 2, 2, 1)), np.full((1, 2, 2, 1), 200)])
    row_in = ev.detection_row(StubDetector(), images, ev.IN_DISTRIBUTION, source="x")
    assert row_in["tpr_in"] == 0.75 and row_in["flagged_share"] == 0.25
    assert row_in["in_distribution"] and row_in["seen"] == ev.IN_DISTRIBUTION
    assert row_in["source"] == "x" and row_in["queries"] == 4 and "tnr_out" not in row_in
    for seen in (ev.SEEN_KIND, ev.UNSEEN_KIND):
        row_out = ev.detection_row(StubDetector(), images, seen, source="x")
        assert row_out["tnr_out"] == 0.25 and "tpr_in" not in row_out
        assert not row_out["in_distribution"] and row_out["seen"] == seen


def test_perturbation_on_known_vectors():
    true = np.array([[0.5, 0.5, 0.0], [0.8, 0.1, 0.1]])
    served = np.array([[0.25, 0.75, 0.0], [0.8, 0.1, 0.1]])
    moved = ev.perturbation(true, served)
    assert moved["l1"] == pytest.approx((0.5 + 0.0) / 2)
    # KL(true || served): row 0 = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75); row 1 = 0
    kl0 = 0.5 * np.log(2) + 0.5 * np.log(2 / 3)
    assert moved["kl"] == pytest.approx(kl0 / 2, rel=1e-6)
    # row 0: argmax of [0.5, 0.5, 0] is class 0, of the served vector class 1
    assert moved["top1_changed"] == 0.5
    assert np.isnan(ev.perturbation(true[:0], served[:0])["l1"])
    # a zero in the served vector where the truth has mass stays finite
    assert np.isfinite(ev.perturbation(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]]))["kl"])


def test_benign_costs_of_a_defense():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=50)
    labels = probs.argmax(1)
    images = rng.integers(0, 256, size=(50, 2, 2, 1), dtype=np.uint8)
    free = ev.benign_costs(None, probs, images, labels)
    assert free == {
        "benign_utility": 1.0,
        "benign_l1": 0.0,
        "benign_kl": 0.0,
        "benign_top1_changed": 0.0,
    }
    label_only = create("top-k", DefenseContext(), k=1)
    costs = ev.benign_costs(label_only, probs, images, labels)
    served = label_only(probs, images)
    assert costs["benign_utility"] == 1.0 and costs["benign_top1_changed"] == 0.0
    assert costs["benign_l1"] == pytest.approx(np.abs(probs - served).sum(1).mean(), rel=1e-6)
    assert costs["benign_kl"] > 0
