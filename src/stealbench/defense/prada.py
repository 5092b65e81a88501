"""PRADA: a stateful detector of model-extraction query streams (Juuti et al., EuroS&P 2019).

PRADA is a stream monitor (:class:`stealbench.defense.monitor.Monitor`, registered as
``prada``): it watches one client's queries. For every query ``x`` whose predicted class (the
victim's top-1) is ``c``, it keeps, per class, a *growing set* ``G_c`` of past queries, the
distances ``D_G,c`` at which those queries joined ``G_c``, and a threshold ``T_c``:

1. The first query of class ``c`` founds ``G_c = [x]``, with ``D_G,c = [0]`` and ``T_c = 0``.
   It records no distance.
2. Every later query of class ``c`` records ``d``, the smallest L2 distance from ``x`` to
   ``G_c``, in the class's distance list ``D_c``. Every such query is recorded, whether or not
   it joins ``G_c``.
3. If ``d > T_c`` (strict), ``x`` joins ``G_c``, ``d`` is appended to ``D_G,c``, and
   ``T_c = max(T_c, mean(D_G,c) - std(D_G,c))``. The threshold reads only ``D_G,c``, never
   ``D_c``. Because of the leading 0, ``T_c`` stays 0 until ``G_c`` has three members.
4. The detection test runs every ``check_every`` queries. It pools ``D_c`` over the classes
   that hold at least ``min_per_class`` distances. Then it drops the values with
   ``|d - mean| >= 3 std`` (the kept ones satisfy ``|d - mean| < 3 std``). If **more than**
   ``min_distances`` values are left *after* this cut, Shapiro-Wilk runs on them, and the
   client is flagged when ``W < delta``.

Benign traffic is expected to give roughly normal distances. Synthetic queries do not: small
perturbations of a few seeds, as in Jacobian-based augmentation, give many small distances
and a few large ones. Steps 1-4 follow the paper's Algorithm 1 and the authors' released
code (``src/growing_set.py``, ``GrowingDistanceAgent.single_query``). The code fixes what the
paper leaves open: the pooling rule, the order "cut, then count", the strict inequalities,
and ``std`` with ``ddof=0``, used both for ``T_c`` and for the cut.

Where the paper and the code leave room, this module chooses as follows:

- **Test schedule.** The test runs after query ``k`` (1-based) whenever ``k`` is a multiple
  of ``check_every``. The authors read their counter before incrementing it, so their test
  runs after the 1st, 11th, 21st, ... query. Ours runs after the 10th, 20th, ...; a
  detection index can therefore differ from theirs by up to ``check_every - 1`` queries.
  The paper does not state a schedule.
- **Counting.** ``D_c`` holds one distance fewer than class ``c`` has queries (see step 1).
  ``min_per_class`` counts ``D_c`` (``>=``). ``min_distances`` counts the pooled values left
  after the 3-sigma cut (``>``). A class that holds too few distances is left out of the pool
  entirely.
- **Identical distances.** If every pooled distance is equal, ``std = 0``. The authors'
  strict cut then drops every value, so no test runs. If the values left after a cut are all
  equal, scipy's Shapiro-Wilk reports ``W = 1``. Either way the client would never be
  flagged. Instead, we keep every value when ``std = 0`` (no value differs from the mean),
  and report ``W = 0`` for a sample with zero range. A point mass is as far from normal as a
  sample can be: Shapiro-Wilk is undefined there, rather than a perfect fit. Every query of
  such a stream is one fixed-size step from its nearest earlier query, which is exactly what
  a synthetic stream looks like. With continuous image data, benign streams never reach this
  case.
- **Flag.** The authors re-evaluate ``attacker_present = (W < delta)`` at every test, so
  their flag can drop back to 0. We report the *first* test with ``W < delta``
  (:attr:`Prada.flagged_at`), because the benchmark measures the number of queries before
  detection. The full ``W`` trace is kept, and the authors' flag at any test is ``W < delta``
  of that entry. The trace does not depend on ``delta``, so a replay never stops at the
  first flag: one replay serves a whole sweep of ``delta`` (:func:`detection_curve`).
- **Batches.** The authors feed one query at a time. :meth:`Prada.observe` takes a batch
  (the monitor interface) and runs the same per-query steps over it in order, tests included,
  so any cut of a stream into batches gives the same trace, flag and state.
- **Answers.** The class of a query is the top-1 of the answer the API served (the argmax of
  a posterior row, or the label); the pipeline replays the victim's undefended answers.
- **Scale.** uint8 images are scaled to [0, 1], which is what the models see
  (:func:`stealbench.models.training.to_tensor`). Float images are taken as they are. The
  authors measure raw 0-255 pixels, cast to float here so that differences cannot wrap. The
  scaling changes neither which queries join (``T_c`` and ``d`` scale together), nor the
  cut, nor ``W``.
- **Default delta.** 0.9, the value the authors' ``main.py`` passes. The paper tunes
  ``delta`` per dataset so that benign streams raise no false alarm (Section V), without
  naming the benign data it tunes on. ``defenses.prada.delta: calibrate`` does the same per
  victim (:func:`calibrate_delta`): the largest ``delta`` that flags none of the victim's
  held-out calibration streams (its ``val`` split, a seed of their own), less an optional
  margin; the false-positive rate is then reported on the separate evaluation streams
  (test split, ``defenses.benign.sources``), which the calibration never saw.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from . import monitor as monitors
from .monitor import Monitor, MonitorResult, register_monitor, top1

WTrace = list[tuple[int, float]]
# A replayed stream's outcome; its ``w_trace`` is the (query, W) of every test.
PradaResult = MonitorResult


class _GrowingRows:
    """A float32 matrix that grows by doubling, so appending a row is amortised O(1)."""

    def __init__(self, width: int, capacity: int = 64):
        self.rows = np.empty((capacity, width), dtype=np.float32)
        self.size = 0

    def append(self, row: np.ndarray) -> None:
        if self.size == len(self.rows):
            grown = np.empty((2 * len(self.rows), self.rows.shape[1]), dtype=np.float32)
            grown[: self.size] = self.rows[: self.size]
            self.rows = grown
        self.rows[self.size] = row
        self.size += 1

    @property
    def values(self) -> np.ndarray:
        return self.rows[: self.size]


class _GrowingVector:
    """A float64 vector that grows by doubling."""

    def __init__(self, capacity: int = 64):
        self.data = np.empty(capacity, dtype=np.float64)
        self.size = 0

    def append(self, value: float) -> None:
        if self.size == len(self.data):
            self.data = np.concatenate([self.data, np.empty_like(self.data)])
        self.data[self.size] = value
        self.size += 1

    @property
    def values(self) -> np.ndarray:
        return self.data[: self.size]


def _as_flat_float(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    flat = image.reshape(-1).astype(np.float32)
    if image.dtype == np.uint8:
        flat /= 255.0
    return flat


OUTLIER_SIGMAS = 3.0


def reject_outliers(distances: np.ndarray, sigmas: float = OUTLIER_SIGMAS) -> np.ndarray:
    """The values with ``|d - mean| < sigmas * std`` (strict; population std), in order.

    When ``std = 0``, every value is kept: no value differs from the mean. The authors' strict
    cut would drop them all there (see the module docstring).
    """
    distances = np.asarray(distances, dtype=np.float64)
    if distances.size == 0:
        return distances
    mean, std = distances.mean(), distances.std()
    if std == 0:
        return distances
    return distances[np.abs(distances - mean) < sigmas * std]


def _w_statistic(kept: np.ndarray) -> float:
    """Shapiro-Wilk ``W`` of values already cut; 0 for a sample of zero range."""
    if np.ptp(kept) == 0:
        return 0.0
    with warnings.catch_warnings():
        # scipy warns that its p-value is approximate beyond 5000 values; PRADA uses only W.
        warnings.simplefilter("ignore", UserWarning)
        return float(stats.shapiro(kept).statistic)


def shapiro_w(distances: np.ndarray, sigmas: float = OUTLIER_SIGMAS) -> float:
    """Shapiro-Wilk ``W`` of ``distances`` after :func:`reject_outliers` (0 if they are equal)."""
    distances = np.asarray(distances, dtype=np.float64)
    if len(distances) < 3:
        raise ValueError(f"Shapiro-Wilk needs at least 3 distances, got {len(distances)}")
    # n values can hold none beyond sqrt(n - 1) std devs: at 3 sigma, 3 or more stay.
    return _w_statistic(reject_outliers(distances, sigmas))


@register_monitor
class Prada(Monitor):
    """PRADA's state for one client; feed it the client's queries in order, in batches with
    :meth:`observe` (the monitor interface) or one by one with :meth:`observe_query`.

    ``delta``: flag when ``W < delta``. ``check_every``: run the test after every this many
    queries. ``min_distances``: test only when more than this many pooled distances are left
    after the 3-sigma cut. ``min_per_class``: pool only classes that hold at least this many
    distances.
    """

    name = "prada"
    sweep = "delta"
    sweep_key = "deltas"
    score = "Shapiro-Wilk W"

    def __init__(
        self,
        delta: float = 0.9,
        check_every: int = 10,
        min_distances: int = 100,
        min_per_class: int = 10,
    ):
        if not 0.0 <= delta <= 1.0:
            raise ValueError(
                f"delta must lie in [0, 1] (W is a Shapiro-Wilk statistic), got {delta}"
            )
        if check_every < 1:
            raise ValueError(f"check_every must be at least 1, got {check_every}")
        if min_distances < 2 or min_per_class < 1:
            raise ValueError(
                f"min_distances must be at least 2 and min_per_class at least 1, got "
                f"{min_distances} and {min_per_class}"
            )
        self.delta = delta
        self.check_every = check_every
        self.min_distances = min_distances
        self.min_per_class = min_per_class
        super().__init__()

    def _reset_state(self) -> None:
        self._growing: dict[int, _GrowingRows] = {}
        self._distances: dict[int, _GrowingVector] = {}
        self._growing_distances: dict[int, _GrowingVector] = {}
        self._thresholds: dict[int, float] = {}
        self._width: int | None = None

    @staticmethod
    def alarm(score: float, threshold: float) -> bool:
        return score < threshold

    @classmethod
    def summary(cls, trace: WTrace) -> dict:
        """``min_w``: the smallest ``W`` of the stream (NaN if no test ran)."""
        return {"min_w": min(w for _, w in trace) if trace else np.nan}

    @property
    def w_trace(self) -> WTrace:
        """The (1-based query index, ``W``) of every test run so far."""
        return self.trace

    def threshold(self, predicted_class: int) -> float:
        """``T_c`` of a class: max over its history of ``mean(D_G,c) - std(D_G,c)``, at least 0."""
        return self._thresholds.get(int(predicted_class), 0.0)

    def growing_set(self, predicted_class: int) -> np.ndarray:
        """A copy of ``G_c``: one flattened float32 image per row."""
        rows = self._growing.get(int(predicted_class))
        return rows.values.copy() if rows is not None else np.empty((0, self._width or 0))

    def growing_distances(self, predicted_class: int) -> np.ndarray:
        """A copy of ``D_G,c``: ``[0]``, then the distance at which each later member joined
        ``G_c`` (empty before the class's first query). ``T_c`` is computed from these."""
        vector = self._growing_distances.get(int(predicted_class))
        return vector.values.copy() if vector is not None else np.empty(0)

    def distances(self, predicted_class: int | None = None) -> np.ndarray:
        """``D_c`` in query order, or, with no class, every recorded distance (class order)."""
        if predicted_class is None:
            parts = [self._distances[c].values for c in sorted(self._distances)]
            return np.concatenate(parts) if parts else np.empty(0)
        vector = self._distances.get(int(predicted_class))
        return vector.values.copy() if vector is not None else np.empty(0)

    def pooled_distances(self) -> np.ndarray:
        """The pool the test cuts and counts: ``D_c`` of the classes holding at least
        ``min_per_class`` distances (before the 3-sigma cut)."""
        parts = [
            v.values for _, v in sorted(self._distances.items()) if v.size >= self.min_per_class
        ]
        return np.concatenate(parts) if parts else np.empty(0)

    def observe_query(self, image: np.ndarray, predicted_class: int) -> float | None:
        """Record one query; return ``W`` when the normality test ran on it, else None."""
        scores = self.observe(np.asarray(image)[None], [int(predicted_class)]).scores
        return scores[0][1] if scores else None

    def _observe(self, images: np.ndarray, answers: np.ndarray) -> WTrace:
        classes = top1(answers)
        scores = []
        for i, (image, c) in enumerate(zip(images, classes, strict=True)):
            w = self._step(image, int(c), self.queries + i + 1)
            if w is not None:
                scores.append((self.queries + i + 1, w))
        return scores

    def _step(self, image: np.ndarray, c: int, query: int) -> float | None:
        """Steps 1-4 for the ``query``-th (1-based) query; ``W`` if the test ran on it."""
        x = _as_flat_float(image)
        if self._width is None:
            self._width = x.size
        elif x.size != self._width:
            raise ValueError(
                f"query {query} has {x.size} values but earlier queries had "
                f"{self._width}; one PRADA state serves one input shape"
            )
        growing = self._growing.get(c)
        if growing is None:
            # The class's first query founds G_c and records no distance; D_G,c starts at [0].
            growing = self._growing[c] = _GrowingRows(x.size)
            growing.append(x)
            self._distances[c] = _GrowingVector()
            self._growing_distances[c] = _GrowingVector()
            self._growing_distances[c].append(0.0)
            self._thresholds[c] = 0.0
        else:
            # Differences, not the |g|^2 - 2 g.x + |x|^2 expansion: float32 cancellation there
            # would swamp the small distances that mark synthetic queries.
            diff = growing.values - x
            d = float(np.sqrt(np.einsum("ij,ij->i", diff, diff).min()))
            self._distances[c].append(d)
            if d > self._thresholds[c]:
                growing.append(x)
                joined = self._growing_distances[c]
                joined.append(d)
                self._thresholds[c] = max(
                    self._thresholds[c], float(joined.values.mean() - joined.values.std())
                )
        if query % self.check_every:
            return None
        pooled = self.pooled_distances()
        if len(pooled) <= self.min_distances:
            return None  # the cut only removes values: it cannot bring the count above
        kept = reject_outliers(pooled)
        if len(kept) <= self.min_distances:
            return None
        return _w_statistic(kept)


def replay(
    images: np.ndarray, predicted_classes: Sequence[int] | np.ndarray, **params
) -> PradaResult:
    """Run a fresh :class:`Prada` (``params`` go to its constructor) over one client's stream.

    ``images``: (N, H, W, C) in query order; ``predicted_classes``: the victim's top-1 per query.
    """
    predicted_classes = np.asarray(predicted_classes)
    if len(images) != len(predicted_classes):
        raise ValueError(
            f"{len(images)} images but {len(predicted_classes)} predicted classes; "
            f"give one class per query"
        )
    prada = Prada(**params)
    prada.observe(images, predicted_classes)
    return prada.result()


def first_detection(w_trace: WTrace, delta: float) -> int | None:
    """The query index of the first test with ``W < delta`` in a trace, or None."""
    return monitors.first_detection(w_trace, delta, Prada.alarm)


def detection_curve(
    attacker_traces: Iterable[PradaResult | WTrace],
    benign_traces: Iterable[PradaResult | WTrace],
    deltas: Iterable[float],
) -> pd.DataFrame:
    """Detection over a sweep of ``delta``, from ``W`` traces alone (no replay).

    A stream is flagged at ``delta`` iff some ``W`` of its trace is below ``delta``, at the
    first such test. One row per delta: ``detection_rate`` (share of attacker streams
    flagged), ``false_positive_rate`` (share of benign streams flagged),
    ``mean_queries_to_detection`` (over the flagged attacker streams; NaN if none) and the
    stream counts. Rates of an empty side are NaN.
    """
    return monitors.detection_curve(attacker_traces, benign_traces, deltas, Prada)


CALIBRATE = "calibrate"


def calibrate_delta(
    calibration_traces: Iterable[PradaResult | WTrace], margin: float = 0.0
) -> float:
    """The largest ``delta`` at which no calibration stream is flagged, less ``margin``.

    A stream is flagged at ``delta`` iff some test of its trace has ``W < delta`` (strict), so
    no stream is flagged iff ``delta <= m``, the smallest ``W`` over every calibration trace:
    the largest such ``delta`` is ``m`` itself, and any larger one flags the stream(s) holding
    ``m`` (ties included: two streams at ``m`` are both unflagged at ``m``). ``margin``
    (``>= 0``) lowers the choice to ``m - margin`` (clipped at 0): less sensitive, for slack
    against benign streams that dip lower than the calibration ones did. The result never
    exceeds 1, the largest ``W``.

    The paper (Juuti et al. 2019, Section V) tunes ``delta`` per dataset so that benign
    streams raise no false alarm; it does not say on which benign data. Here the caller passes
    held-out calibration streams, never the ones the false-positive rate is reported on
    (:func:`stealbench.defense.evaluation.calibration_streams`).

    Raises ValueError when no test ran on any calibration stream (streams shorter than the
    test needs): the streams then bound nothing.
    """
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must lie in [0, 1), got {margin}")
    ws = [w for trace in calibration_traces for _, w in monitors._trace(trace)]
    if not ws:
        raise ValueError(
            "no PRADA test ran on any calibration stream: make the calibration streams longer "
            "than min_distances (plus the first query of each class)"
        )
    return float(min(1.0, max(0.0, min(ws) - margin)))
