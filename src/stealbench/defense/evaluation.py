"""Evaluating defenses: who is flagged, what the API answers, what it costs benign users.

Every attacker's query sequence (a seed of an attack) is one client's stream; benign clients
send the victim's held-out (test) images in random order, and optionally images of another
source of the same task. Each stream is replayed through every configured stream monitor
(:mod:`.monitor`: PRADA, and e.g. the query-count baseline), one fresh monitor per stream.
Defended answers of a sampling attack are the cached posteriors passed through the defense
(:func:`stealbench.attack.api.serve`): nothing here queries the victim for an attacker.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import monitor as monitors
from . import prada  # noqa: F401 (registers the PRADA monitor)
from .registry import benign_utility

# How the pre-classifier relates to a source of queries (the detection table's `seen` column).
IN_DISTRIBUTION, SEEN_KIND, UNSEEN_KIND = "in-distribution", "seen kind", "unseen kind"


def source_kind(task: str | None, victim_task: str | None, detector_tasks) -> str:
    """In-distribution (the victim's own task), a kind of images the detector saw as
    out-of-distribution in training, or a kind it never saw."""
    if task is not None and task == victim_task:
        return IN_DISTRIBUTION
    return SEEN_KIND if task is not None and task in set(detector_tasks) else UNSEEN_KIND


def benign_streams(
    images: np.ndarray, streams: int, length: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Index arrays of ``streams`` benign clients, each ``length`` images in random order.

    A client never repeats an image; clients overlap when the held-out data is small.
    """
    length = min(length, len(images))
    return [rng.permutation(len(images))[:length] for _ in range(streams)]


def calibration_streams(
    images: np.ndarray, streams: int, length: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Index arrays of the benign *calibration* clients PRADA's ``delta: calibrate`` tunes on.

    Drawn like :func:`benign_streams`, but the pipeline passes a different source and
    generator: the victim's ``val`` split (by default, ``defenses.prada.calibration.split``),
    which its training never fits and which no evaluation stream sends (those send the test
    split and the ``defenses.benign.sources`` pools), under a seed of its own
    (``derive_seed(seed, "prada-calibration", victim)``). The false-positive rate is thus
    measured on benign streams the threshold never saw: tuning and reporting on the same
    streams would give zero false positives by construction. The paper tunes ``delta`` "so
    that benign streams raise no false alarm" without naming the data it tunes on.
    """
    return benign_streams(images, streams, length, rng)


def resolve_prada_delta(params: dict, margin: float, calibration_stream_data) -> tuple[dict, dict]:
    """PRADA's constructor parameters with ``delta`` a number, and what the choice rests on.

    ``params['delta']``: a number (kept) or ``"calibrate"``: then ``calibration_stream_data``
    (a callable returning ``[(images, answers), ...]``, called only then) is replayed through
    PRADA and ``delta`` is :func:`~stealbench.defense.prada.calibrate_delta` of their traces
    with ``margin`` (``defenses.prada.calibration.margin``). Returns (params, info); info
    holds ``delta``, ``delta_calibrated`` and, when calibrated, ``calibration_streams`` and
    ``calibration_min_w``.
    """
    from .prada import CALIBRATE, calibrate_delta

    delta = params.get("delta", 0.9)
    if delta != CALIBRATE:
        return params, {"delta": float(delta), "delta_calibrated": False}
    rest = {k: v for k, v in params.items() if k != "delta"}
    traces = [
        monitors.replay("prada", images, answers, **rest).trace
        for images, answers in calibration_stream_data()
    ]
    chosen = calibrate_delta(traces, margin)
    info = {
        "delta": chosen,
        "delta_calibrated": True,
        "calibration_streams": len(traces),
        "calibration_min_w": float(min(w for t in traces for _, w in t)),
    }
    return {**rest, "delta": chosen}, info


def monitor_row(
    name: str, params: dict, stream_images: np.ndarray, answers: np.ndarray, **axes
) -> dict:
    """Replay a fresh monitor ``name`` (``params`` go to its constructor) over one stream;
    one row with its verdict at the configured threshold and its trace of test scores.

    ``answers``: what the API served for each query, posteriors (N, C) or labels (N,).
    The monitor's :meth:`~stealbench.defense.monitor.Monitor.summary` adds its own columns
    (PRADA: ``min_w``).
    """
    result = monitors.replay(name, stream_images, answers, **params)
    steps = [q for q, _ in result.trace]
    values = [s for _, s in result.trace]
    return {
        **axes,
        "monitor": name,
        "queries": result.queries,
        "flagged": result.flagged,
        "flagged_at": result.flagged_at,
        **monitors.lookup_monitor(name).summary(result.trace),
        "score_steps": steps,
        "score_values": values,
    }


def monitor_curve(streams: pd.DataFrame, sweeps: dict) -> pd.DataFrame:
    """Detection rate vs false-positive rate over each monitor's threshold sweep, per victim,
    monitor and strategy (the ``prada_curve`` table). ``sweeps``: monitor name -> thresholds.

    The threshold column is named by each monitor's ``sweep`` (PRADA's ``delta``), so it is
    NaN on the rows of other monitors.
    """
    frames = []
    for (victim, name), rows in streams.groupby(["victim", "monitor"], sort=True):

        def traces(part):
            return [
                list(zip(s, w, strict=True))
                for s, w in zip(part["score_steps"], part["score_values"], strict=True)
            ]

        benign = traces(rows[rows["kind"] == "benign"])
        attackers = rows[rows["kind"] == "attacker"]
        for strategy, part in attackers.groupby("strategy"):
            curve = monitors.detection_curve(traces(part), benign, sweeps[name], name)
            frames.append(curve.assign(victim=victim, strategy=strategy, monitor=name))
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    first = ["victim", "strategy"]
    return out[[*first, *[c for c in out.columns if c not in first]]]


def detection_row(detector, images: np.ndarray, seen: str, **axes) -> dict:
    """The pre-classifier on one set of queries: the share it flags, and the paper's rate:
    in-distribution TPR (share accepted) for the victim's own task, OOD TNR (share flagged)
    for any other source."""
    flags = detector.flags(images)
    in_distribution = seen == IN_DISTRIBUTION
    rate = float(np.mean(~flags) if in_distribution else np.mean(flags))
    return {
        **axes,
        "seen": seen,
        "in_distribution": in_distribution,
        "queries": len(images),
        "flagged_share": float(np.mean(flags)),
        "tpr_in" if in_distribution else "tnr_out": rate,
    }


def perturbation(true_probs: np.ndarray, served: np.ndarray, eps: float = 1e-8) -> dict:
    """How far a defense moved the answers: mean L1 and KL(true || served) per query, and the
    share of queries whose top-1 changed."""
    p = np.asarray(true_probs, dtype=np.float64)
    q = np.asarray(served, dtype=np.float64)
    if not len(p):
        return {"l1": np.nan, "kl": np.nan, "top1_changed": np.nan}
    kl = np.where(p > 0, p * (np.log(np.clip(p, eps, None)) - np.log(np.clip(q, eps, None))), 0.0)
    return {
        "l1": float(np.abs(p - q).sum(axis=1).mean()),
        "kl": float(kl.sum(axis=1).mean()),
        "top1_changed": float(np.mean(p.argmax(axis=1) != q.argmax(axis=1))),
    }


def benign_costs(defense, test_probs: np.ndarray, test_images: np.ndarray, labels) -> dict:
    """What a defense costs benign users on the victim's test split: their accuracy through
    the defended API, and how far their answers moved."""
    served = defense(test_probs, test_images) if defense is not None else test_probs
    moved = perturbation(test_probs, served)
    return {
        "benign_utility": benign_utility(served, labels),
        "benign_l1": moved["l1"],
        "benign_kl": moved["kl"],
        "benign_top1_changed": moved["top1_changed"],
    }
