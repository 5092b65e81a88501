"""Evaluating defenses on the query streams: who is flagged, and what the API answers.

Every attack's cached query sequence is one attacker client's stream; benign clients send the
victim's held-out (test) images in random order, and optionally images of another source of
the same task. Nothing here queries the victim for an attacker: defended answers are
transformations of the cached vectors (:mod:`stealbench.defenses`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import prada
from .registry import benign_utility
from .detector import OodDetector


def benign_streams(
    images: np.ndarray, streams: int, length: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Index arrays of ``streams`` benign clients, each ``length`` images in random order.

    A client never repeats an image; clients overlap when the held-out data is small.
    """
    length = min(length, len(images))
    return [rng.permutation(len(images))[:length] for _ in range(streams)]


def prada_rows(stream_images: np.ndarray, predicted: np.ndarray, params: dict, **axes) -> dict:
    """Replay PRADA over one stream; one row with the verdict at ``delta`` and the W trace."""
    result = prada.replay(
        stream_images, predicted, **{k: v for k, v in params.items() if k not in ("deltas",)}
    )
    steps = [q for q, _ in result.w_trace]
    values = [w for _, w in result.w_trace]
    return {
        **axes,
        "queries": result.queries,
        "flagged": result.flagged,
        "flagged_at": result.flagged_at,
        "min_w": min(values) if values else np.nan,
        "w_steps": steps,
        "w_values": values,
    }


def prada_curve(streams: pd.DataFrame, deltas) -> pd.DataFrame:
    """Detection rate vs false-positive rate over a sweep of delta, per victim."""
    frames = []
    for victim, rows in streams.groupby("victim"):
        traces = {
            kind: [
                list(zip(s, w, strict=True))
                for s, w in zip(part["w_steps"], part["w_values"], strict=True)
            ]
            for kind, part in rows.groupby("kind")
        }
        for strategy in sorted(rows.loc[rows["kind"] == "attacker", "strategy"].unique()):
            attackers = rows[(rows["kind"] == "attacker") & (rows["strategy"] == strategy)]
            attacker_traces = [
                list(zip(s, w, strict=True))
                for s, w in zip(attackers["w_steps"], attackers["w_values"], strict=True)
            ]
            curve = prada.detection_curve(attacker_traces, traces.get("benign", []), deltas)
            frames.append(curve.assign(victim=victim, strategy=strategy))
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    return out[["victim", "strategy", *[c for c in out.columns if c not in ("victim", "strategy")]]]


def detection_row(detector: OodDetector, images: np.ndarray, in_distribution: bool, **axes) -> dict:
    """The pre-classifier on one set of queries: TPR if they are in-distribution, else TNR."""
    flags = detector.flags(images)
    rate = float(np.mean(~flags) if in_distribution else np.mean(flags))
    return {
        **axes,
        "in_distribution": in_distribution,
        "queries": len(images),
        "flagged_share": float(np.mean(flags)),
        "tpr_in" if in_distribution else "tnr_out": rate,
    }


def defended_answers(
    probs: np.ndarray,
    images: np.ndarray,
    defense: str,
    seed: int,
    detector: OodDetector | None,
    params: dict,
) -> tuple[np.ndarray, float]:
    """The defended API's answers to cached queries, and the share of queries it flagged."""
    flags = detector.flags(images) if defense == "ood-shuffle" else None
    answers = defend(probs, defense, np.random.default_rng(seed), flags=flags, **params)
    return answers, float(np.mean(flags)) if flags is not None else 0.0


def utility(
    test_probs: np.ndarray,
    test_images: np.ndarray,
    labels: np.ndarray,
    defense: str,
    seed: int,
    detector: OodDetector | None,
    params: dict,
) -> float:
    """Benign users' accuracy on the test split through the defended API."""
    answers, _ = defended_answers(test_probs, test_images, defense, seed, detector, params)
    return benign_utility(answers, labels)
