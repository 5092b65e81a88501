"""The defense stage on real query streams: PRADA against JbDA and random, the defended API."""

import numpy as np
import pandas as pd
import pytest

from stealbench import attacks, datasets, defense_eval
from stealbench.blackbox import Blackbox
from stealbench.models import create_model


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
    rows = {}
    for strategy, options in [("random", {}), ("jbda", {"seed_size": 50, "epochs": 2})]:
        queries = attacks.run_attack(strategy, Blackbox(victim), mnist_pool, 400, seed=0, **options)
        images = (
            queries.images if queries.images is not None else mnist_pool.images[queries.sample_ids]
        )
        rows[strategy] = defense_eval.prada_rows(
            images, queries.probs.argmax(1), {"delta": 0.9, "deltas": [0.9]}, strategy=strategy
        )
    assert rows["jbda"]["flagged"] and rows["jbda"]["flagged_at"] <= 400
    assert not rows["random"]["flagged"] and rows["random"]["min_w"] > 0.9
    assert len(rows["jbda"]["w_steps"]) == len(rows["jbda"]["w_values"]) > 0


def test_benign_streams_never_repeat_an_image_within_a_client():
    streams = defense_eval.benign_streams(np.zeros((50, 2, 2, 1)), 3, 20, np.random.default_rng(0))
    assert len(streams) == 3
    for s in streams:
        assert len(s) == 20 and len(set(s.tolist())) == 20
    short = defense_eval.benign_streams(np.zeros((5, 2, 2, 1)), 1, 20, np.random.default_rng(0))
    assert sorted(short[0].tolist()) == list(range(5))


def test_prada_curve_from_traces():
    streams = pd.DataFrame(
        [
            {
                "victim": "v",
                "kind": "attacker",
                "strategy": "jbda",
                "w_steps": [10, 20],
                "w_values": [0.95, 0.7],
            },
            {
                "victim": "v",
                "kind": "attacker",
                "strategy": "random",
                "w_steps": [10],
                "w_values": [0.97],
            },
            {
                "victim": "v",
                "kind": "benign",
                "strategy": None,
                "w_steps": [10],
                "w_values": [0.93],
            },
        ]
    )
    curve = defense_eval.prada_curve(streams, [0.8, 0.96])
    jbda = curve[curve["strategy"] == "jbda"].set_index("delta")
    assert (
        jbda.loc[0.8, "detection_rate"] == 1.0 and jbda.loc[0.8, "mean_queries_to_detection"] == 20
    )
    assert jbda.loc[0.96, "mean_queries_to_detection"] == 10
    random = curve[curve["strategy"] == "random"].set_index("delta")
    assert random.loc[0.8, "detection_rate"] == 0.0
    assert random.loc[0.96, "false_positive_rate"] == 1.0


class StubDetector:
    """Flags images whose mean pixel is above 100."""

    def flags(self, images):
        return images.reshape(len(images), -1).mean(1) > 100


def test_detection_row_reports_tpr_for_in_and_tnr_for_out():
    images = np.concatenate([np.zeros((3, 2, 2, 1)), np.full((1, 2, 2, 1), 200)])
    row_in = defense_eval.detection_row(StubDetector(), images, True, source="x")
    assert row_in["tpr_in"] == 0.75 and row_in["flagged_share"] == 0.25
    row_out = defense_eval.detection_row(StubDetector(), images, False, source="x")
    assert row_out["tnr_out"] == 0.25


def test_defended_answers_shuffle_only_flagged_queries():
    probs = np.tile(np.array([[0.7, 0.2, 0.1]], dtype=np.float32), (4, 1))
    images = np.concatenate([np.zeros((2, 2, 2, 1)), np.full((2, 2, 2, 1), 200)])
    answers, flagged = defense_eval.defended_answers(
        probs, images, "ood-shuffle", 0, StubDetector(), {}
    )
    assert flagged == 0.5
    np.testing.assert_array_equal(answers[:2], probs[:2])
    assert (answers[2:].argmax(1) != 0).all()
    np.testing.assert_allclose(np.sort(answers[2:], 1), np.sort(probs[2:], 1))
    noisy, flagged = defense_eval.defended_answers(
        probs, images, "gaussian-noise", 0, None, {"scale": 0.1}
    )
    assert flagged == 0.0 and not np.allclose(noisy, probs)
    utility = defense_eval.utility(
        probs, images, np.zeros(4, dtype=int), "ood-shuffle", 0, StubDetector(), {}
    )
    assert utility == 0.5
