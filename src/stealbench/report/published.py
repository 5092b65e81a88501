"""Published vs stealbench: each method's published figure beside ours, read from the tables
of its ``configs/reproduce/`` run.

The figures and where ours is are data (:data:`stealbench.paper.PUBLISHED_METHODS`); this
module only reads: :func:`read_ours` turns one :class:`~stealbench.paper.Reading` and a run's
tables into a mean and a 95% CI over seeds (:func:`~stealbench.report.tables.ci95`),
:func:`comparison_rows` does it for every method, and :func:`markdown` writes the README's
table. A run that is missing, a table or column it lacks, or rows that match nothing are
"not run" with the reason, never an error: the other helpers' runs land at different times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .tables import ci95


class NotRun(LookupError):
    """The tables do not hold what a reading needs (the message says what is missing)."""


@dataclass(frozen=True)
class Ours:
    value: float
    ci95: float  # NaN with a single seed
    n: int  # seeds (or rows) behind the value


@dataclass(frozen=True)
class ComparisonRow:
    key: str
    method: str
    metric: str
    published: float | None
    bound: str
    unit: str
    ours: float | None
    ci95: float | None
    n: int
    difference: float | None  # ours - published
    setting: str  # how ours differs from theirs
    source: str
    config: str
    status: str  # "ok", or "not run: <why>"
    provisional: bool


def load_tables(directory: Path | str) -> dict[str, pd.DataFrame]:
    """Every ``<name>.parquet`` of a run's tables folder, by name (empty if there is none)."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    return {p.stem: pd.read_parquet(p) for p in sorted(directory.glob("*.parquet"))}


def _match(frame: pd.DataFrame, where: dict) -> pd.Series:
    """Rows whose columns equal ``where``'s values: None matches a missing value, a float
    matches within rounding, a list matches any of its items."""
    keep = pd.Series(True, index=frame.index)
    for column, wanted in where.items():
        if column not in frame.columns:
            raise NotRun(f"column {column!r} not in the table")
        values = frame[column]
        options = wanted if isinstance(wanted, list | tuple) else [wanted]
        hit = pd.Series(False, index=frame.index)
        for option in options:
            if option is None:
                hit |= values.isna()
            elif isinstance(option, float):
                numeric = pd.to_numeric(values, errors="coerce")
                hit |= pd.Series(np.isclose(numeric, option, rtol=0, atol=1e-9), index=frame.index)
            else:
                hit |= values == option
        keep &= hit
    return keep


def _values(frame: pd.DataFrame, reading) -> pd.Series:
    """The reading's value in each row (``column`` minus ``minus``; booleans as 0/1)."""
    for column in (reading.column, reading.minus):
        if column is not None and column not in frame.columns:
            raise NotRun(f"column {column!r} not in table {reading.table!r}")
    value = frame[reading.column].astype(float)
    if reading.minus is not None:
        value = value - frame[reading.minus].astype(float)
    if reading.complement:
        value = 1.0 - value
    return value


def _by_seed(frame: pd.DataFrame, values: pd.Series) -> pd.Series:
    """One value per seed (the mean of its rows: a seed is what redraws a cell); where the
    table has no seed (PRADA's benign streams, say) each row is its own unit."""
    if "seed" not in frame.columns or frame["seed"].isna().all():
        return values.reset_index(drop=True)
    return values.groupby(frame["seed"].to_numpy()).mean()


def read_ours(reading, tables: dict[str, pd.DataFrame]) -> Ours:
    """Ours for one reading (see :class:`stealbench.paper.Reading`); :class:`NotRun` if the
    tables do not hold it."""
    if reading.table not in tables:
        raise NotRun(f"no {reading.table!r} table")
    frame = tables[reading.table]
    rows = frame[_match(frame, reading.where)]
    if rows.empty:
        raise NotRun(f"no row of {reading.table!r} matches {reading.where}")
    at = {}
    if reading.largest is not None:
        if reading.largest not in rows.columns:
            raise NotRun(f"column {reading.largest!r} not in table {reading.table!r}")
        top = rows[reading.largest].max()
        rows = rows[rows[reading.largest] == top]
        at = {reading.largest: top}
    if reading.aggregate == "summary":
        return _summarised(rows, reading)
    values = _by_seed(rows, _values(rows, reading)).dropna()
    if reading.aggregate != "mean":
        if not reading.baseline:
            raise ValueError(f"a {reading.aggregate!r} reading needs a baseline")
        base_rows = frame[_match(frame, {**reading.where, **reading.baseline, **at})]
        if base_rows.empty:
            raise NotRun(f"no baseline row of {reading.table!r} matches {reading.baseline}")
        base = _by_seed(base_rows, _values(base_rows, reading)).dropna()
        values, base = values.align(base, join="inner")
        if values.empty:
            raise NotRun("no seed in common with the baseline")
        if reading.aggregate == "ratio":
            values = values / base
        elif reading.aggregate == "drop":
            values = base - values
        else:
            raise ValueError(f"unknown aggregate {reading.aggregate!r} (mean, ratio, drop)")
    values = values[np.isfinite(values.to_numpy(dtype=float))]
    if values.empty:
        raise NotRun(f"no finite value of {reading.column!r}")
    return Ours(float(values.mean()), ci95(values.to_numpy()), int(len(values)))


def _summarised(rows: pd.DataFrame, reading) -> Ours:
    """A row of a table already summarised over seeds: its value, CI and seed count as given."""
    if len(rows) != 1:
        raise ValueError(
            f"a summary reading needs exactly one matching row of {reading.table!r}, got "
            f"{len(rows)} for {reading.where}: add filters"
        )
    row = rows.iloc[0]
    value = float(_values(rows, reading).iloc[0])
    if not np.isfinite(value):
        raise NotRun(f"no finite value of {reading.column!r}")
    half = float(row[reading.ci_column]) if reading.ci_column else float("nan")
    seeds = int(row["seeds"]) if "seeds" in rows.columns else 1
    return Ours(value, half, seeds)


def comparison_rows(methods, tables_for) -> list[ComparisonRow]:
    """One row per published method. ``tables_for(config)`` gives the tables of that
    config's run, or None where it has not run."""
    rows = []
    for method in methods:
        tables = tables_for(method.config)
        ours, status = None, "ok"
        if tables is None:
            status = f"not run: {method.config} has no results"
        else:
            try:
                ours = read_ours(method.reading, tables)
            except NotRun as missing:
                status = f"not run: {missing}"
        difference = None
        if ours is not None and method.published is not None:
            difference = ours.value - method.published
        rows.append(
            ComparisonRow(
                key=method.key,
                method=method.method,
                metric=method.metric,
                published=method.published,
                bound=method.bound,
                unit=method.unit,
                ours=None if ours is None else ours.value,
                ci95=None if ours is None else ours.ci95,
                n=0 if ours is None else ours.n,
                difference=difference,
                setting=method.our_setting,
                source=method.source,
                config=method.config,
                status=status,
                provisional=method.provisional,
            )
        )
    return rows


def _number(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}x" if unit == "ratio" else f"{value:.3f}"


def markdown(rows: list[ComparisonRow]) -> str:
    """The README's "published vs stealbench" table (fractions, never %; x for ratios), then
    each figure's source."""
    lines = [
        "| method | metric | published | stealbench (95% CI) | difference | our setting |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        published = "not found" if row.published is None else _number(row.published, row.unit)
        if row.bound and row.published is not None:
            published = f"{row.bound} {published}"
        if row.ours is None:
            ours = row.status
        else:
            ours = _number(row.ours, row.unit)
            if row.ci95 is not None and not math.isnan(row.ci95):
                ours += f" ± {_number(row.ci95, row.unit).rstrip('x')}"
            ours += f" (n={row.n})"
        difference = "-"
        if row.difference is not None:
            digits = 2 if row.unit == "ratio" else 3
            difference = f"{row.difference:+.{digits}f}"
        lines.append(
            f"| {row.method} | {row.metric} | {published} | {ours} | {difference} | {row.setting} |"
        )
    sources = dict.fromkeys(f"{row.method}: {row.source}" for row in rows)
    lines += ["", "Sources:", *(f"- {source}" for source in sources)]
    return "\n".join(lines)
