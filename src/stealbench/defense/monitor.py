"""The registry of stream monitors: defenses that watch one client's queries as they arrive.

A perturbation defense (:mod:`.registry`) answers each query on its own and keeps nothing. A
monitor keeps per-client state instead: it sees every batch the client sends, in order, and
decides whether the client looks like an extraction attacker. PRADA (:mod:`.prada`) is one;
:class:`QueryCount` is a baseline. Every monitor is a class registered by name with
:func:`register_monitor` and built by :func:`create_monitor` with its keyword parameters.

Contract (tests check it for every registered monitor):

- one instance serves one client; :meth:`Monitor.observe` takes each arriving batch (images
  (N, H, W, C) and the answers the API gave, (N, C) posteriors or (N,) labels) and returns a
  :class:`MonitorDecision`; :meth:`Monitor.reset` forgets the client;
- the monitor runs *tests* along the stream: each yields a score at a 1-based query index
  (the trace), and the client is flagged at the first test whose score :meth:`Monitor.alarm`
  s at the configured threshold (``sweep`` names that parameter). A flag is never withdrawn;
- the trace does not depend on the threshold, so one replay serves a whole sweep of it
  (:func:`detection_curve`);
- the decisions do not depend on how the stream is cut into batches, unless the monitor
  says otherwise (a rate monitor's clock is its batches).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from .registry import check_parameters, lookup_in

Trace = list[tuple[int, float]]


@dataclass(frozen=True)
class MonitorDecision:
    """What a monitor concludes after one batch.

    ``flags``: (N,) bool, whether the client stands flagged after each query of the batch;
    ``flagged``/``flagged_at``: whether, and at which 1-based query of the whole stream, the
    client was first flagged; ``scores``: the (query, score) of the tests run on this batch.
    """

    flags: np.ndarray
    flagged: bool
    flagged_at: int | None
    scores: Trace


@dataclass
class MonitorResult:
    """The outcome of one replayed stream."""

    flagged: bool
    flagged_at: int | None  # 1-based index of the query whose test first raised the alarm
    trace: Trace = field(default_factory=list)  # (1-based query index, score) per test run
    queries: int = 0

    @property
    def w_trace(self) -> Trace:
        """PRADA's name for the trace (its scores are Shapiro-Wilk ``W``)."""
        return self.trace

    def to_dict(self) -> dict:
        return {
            "flagged": self.flagged,
            "flagged_at": self.flagged_at,
            "queries": self.queries,
            "trace": [[q, s] for q, s in self.trace],
        }


def top1(answers) -> np.ndarray:
    """The class each answer names: the argmax of a posterior row, or the label itself."""
    answers = np.asarray(answers)
    return answers.argmax(axis=1) if answers.ndim == 2 else answers.astype(np.int64)


class Monitor(ABC):
    """Per-client state of a stream monitor (see the module docstring).

    Subclasses set ``name``, ``sweep`` (the threshold parameter), ``sweep_key`` (the config
    key listing that parameter's sweep), ``score`` (what the trace holds) and implement
    :meth:`alarm`, :meth:`_reset_state` and :meth:`_observe`. The base class counts queries,
    keeps the trace and the first flag.
    """

    name: ClassVar[str]
    sweep: ClassVar[str]
    sweep_key: ClassVar[str]
    score: ClassVar[str]

    def __init__(self):
        self.reset()

    @staticmethod
    @abstractmethod
    def alarm(score: float, threshold: float) -> bool:
        """Whether a test's ``score`` flags the client at ``threshold``."""

    @abstractmethod
    def _reset_state(self) -> None:
        """Forget everything the monitor learnt about the client."""

    @abstractmethod
    def _observe(self, images: np.ndarray, answers: np.ndarray) -> Trace:
        """Take one batch (``self.queries`` not yet counted); return the (1-based query
        index, score) of every test run on it, in order."""

    @classmethod
    def summary(cls, trace: Trace) -> dict:
        """Columns of its own a monitor adds to each stream's row (default: none)."""
        return {}

    @property
    def flagged(self) -> bool:
        return self.flagged_at is not None

    def reset(self) -> None:
        """Start over, as for a new client."""
        self.queries = 0
        self.flagged_at: int | None = None
        self.trace: Trace = []
        self._reset_state()

    def observe(self, images: np.ndarray, answers: np.ndarray) -> MonitorDecision:
        """Take the client's next batch of queries and the API's answers to them."""
        answers = np.asarray(answers)
        if len(images) != len(answers):
            raise ValueError(
                f"{len(images)} images but {len(answers)} answers; give one answer per query"
            )
        start = self.queries
        scores = self._observe(images, answers)
        self.queries = start + len(images)
        self.trace.extend(scores)
        if self.flagged_at is None:
            threshold = getattr(self, self.sweep)
            for query, score in scores:
                if self.alarm(score, threshold):
                    self.flagged_at = int(query)
                    break
        indices = np.arange(start + 1, self.queries + 1)
        flags = (
            indices >= self.flagged_at
            if self.flagged_at is not None
            else np.zeros(len(indices), bool)
        )
        return MonitorDecision(flags, self.flagged, self.flagged_at, list(scores))

    def result(self) -> MonitorResult:
        """What the stream has shown so far."""
        return MonitorResult(self.flagged, self.flagged_at, list(self.trace), self.queries)

    def first_detection(self, trace: Trace, threshold: float) -> int | None:
        """The query index of the first test in ``trace`` that alarms at ``threshold``."""
        return first_detection(trace, threshold, self.alarm)


MONITORS: dict[str, type[Monitor]] = {}


def register_monitor(cls: type[Monitor]) -> type[Monitor]:
    """Class decorator: make a monitor available by its ``name``."""
    if cls.sweep not in monitor_parameters(cls):
        raise TypeError(f"{cls.__name__}.sweep {cls.sweep!r} is not a parameter")
    MONITORS[cls.name] = cls
    return cls


def lookup_monitor(name: str) -> type[Monitor]:
    return lookup_in(MONITORS, "monitor", name)


def monitor_parameters(monitor: str | type[Monitor]) -> list[str]:
    """The keyword parameters a monitor takes."""
    cls = lookup_monitor(monitor) if isinstance(monitor, str) else monitor
    return list(inspect.signature(cls.__init__).parameters)[1:]


def create_monitor(name: str, **params) -> Monitor:
    """A fresh monitor (one client); unknown parameters are an error naming the allowed ones."""
    cls = lookup_monitor(name)
    check_parameters("monitor", name, params, monitor_parameters(cls))
    return cls(**params)


def split_settings(name: str, settings: dict) -> tuple[dict, list | None, int | None]:
    """A monitor's config section as (constructor parameters, its threshold sweep, the replay
    length ``max_queries``); other keys are left to the pipeline."""
    cls = lookup_monitor(name)
    params = {k: v for k, v in settings.items() if k in monitor_parameters(cls)}
    return params, settings.get(cls.sweep_key), settings.get("max_queries")


def replay(name: str, images: np.ndarray, answers, **params) -> MonitorResult:
    """Run a fresh monitor over one client's whole stream, sent as a single batch."""
    monitor = create_monitor(name, **params)
    monitor.observe(images, answers)
    return monitor.result()


def first_detection(trace: Trace, threshold: float, alarm) -> int | None:
    """The query index of the first test of a trace with ``alarm(score, threshold)``."""
    for query, score in trace:
        if alarm(score, threshold):
            return int(query)
    return None


def _trace(stream: MonitorResult | Trace) -> Trace:
    return stream.trace if isinstance(stream, MonitorResult) else stream


def detection_curve(
    attacker_traces: Iterable[MonitorResult | Trace],
    benign_traces: Iterable[MonitorResult | Trace],
    thresholds: Iterable[float],
    monitor: str | type[Monitor],
) -> pd.DataFrame:
    """Detection over a sweep of a monitor's threshold, from traces alone (no replay).

    A stream is flagged at a threshold iff some test of its trace alarms there, at the first
    such test. One row per threshold (the column is named by the monitor's ``sweep``):
    ``detection_rate`` (share of attacker streams flagged), ``false_positive_rate`` (share of
    benign streams flagged), ``mean_queries_to_detection`` (over the flagged attacker
    streams; NaN if none) and the stream counts. Rates of an empty side are NaN.
    """
    cls = lookup_monitor(monitor) if isinstance(monitor, str) else monitor
    attackers = [_trace(t) for t in attacker_traces]
    benign = [_trace(t) for t in benign_traces]
    rows = []
    for threshold in sorted(float(d) for d in thresholds):
        hits = [first_detection(t, threshold, cls.alarm) for t in attackers]
        false_alarms = [first_detection(t, threshold, cls.alarm) is not None for t in benign]
        detected = [q for q in hits if q is not None]
        rows.append(
            {
                cls.sweep: threshold,
                "detection_rate": len(detected) / len(attackers) if attackers else np.nan,
                "false_positive_rate": float(np.mean(false_alarms)) if benign else np.nan,
                "mean_queries_to_detection": float(np.mean(detected)) if detected else np.nan,
                "attacker_streams": len(attackers),
                "benign_streams": len(benign),
            }
        )
    return pd.DataFrame(rows)


@register_monitor
class QueryCount(Monitor):
    """A query-count (rate) monitor: flag a client once more than ``limit`` of its queries
    arrived within its last ``window`` batches (``window=None``: in its whole stream).

    A baseline, not from a paper: it encodes only "extraction needs many queries", the
    assumption behind the per-client quotas and rate limits of commercial prediction APIs.
    Its clock is the client's batches, one per :meth:`observe` call; the benchmark's streams
    carry no time, and the pipeline replays each one as a single batch, so there the window
    has no effect and the monitor is a per-client query budget. Its test runs after every
    query, and its score is the number of queries in the window up to that one.
    """

    name = "query-count"
    sweep = "limit"
    sweep_key = "limits"
    score = "queries in the window"

    def __init__(self, limit: int = 1000, window: int | None = None):
        if int(limit) != limit or limit < 0:
            raise ValueError(f"limit must be a whole number of queries >= 0, got {limit}")
        if window is not None and (int(window) != window or window < 1):
            raise ValueError(f"window must be a number of batches >= 1 or None, got {window}")
        self.limit = int(limit)
        self.window = None if window is None else int(window)
        super().__init__()

    @staticmethod
    def alarm(score: float, threshold: float) -> bool:
        return score > threshold

    def _reset_state(self) -> None:
        self._batches: deque[int] = deque()  # query counts of the batches in the window

    def _observe(self, images: np.ndarray, answers: np.ndarray) -> Trace:
        if self.window is not None and len(self._batches) == self.window:
            self._batches.popleft()
        if self.window is None:
            before = self.queries
        else:
            before = sum(self._batches)
            self._batches.append(len(images))
        return [(self.queries + i, float(before + i)) for i in range(1, len(images) + 1)]
