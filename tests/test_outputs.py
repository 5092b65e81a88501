"""The output tables are documented column by column, in one place: every Parquet field
carries its meaning and unit, a table with an undocumented column is not written, and
docs/outputs.md is the generated page of the same source."""

import os
import re
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import ROOT

from stealbench import io
from stealbench.report import columns, tables


def _frame(table: str) -> pd.DataFrame:
    """A one-row frame with every fixed column of ``table``."""
    return pd.DataFrame({c: [1.0] for c in columns.TABLES[table].columns})


def test_docs_page_is_generated_from_the_column_docs(root):
    # Regenerate with the documented command, not markdown(): the command is what people run.
    generated = subprocess.run(
        [sys.executable, "-m", "stealbench.report.columns"],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
    ).stdout
    page = (root / "docs" / "outputs.md").read_text()
    assert page == generated, (
        "docs/outputs.md is out of date: python -m stealbench.report.columns > docs/outputs.md"
    )


def test_every_field_carries_its_meaning_and_unit(tmp_path):
    frame = _frame("cells")
    tables.write_table(frame, tmp_path / "t.parquet", tmp_path / "t.csv", {"table": "cells"})
    schema = pq.read_schema(tmp_path / "t.parquet")
    for name in frame.columns:
        meta = schema.field(name).metadata
        doc = columns.TABLES["cells"].columns[name]
        assert meta[b"description"].decode() == doc.meaning
        assert meta[b"unit"].decode() == doc.unit
    # The table-level metadata stays where readers look for it.
    assert io.read_parquet_meta(tmp_path / "t.parquet") == {"kind": "table", "table": "cells"}


def test_a_table_with_an_undocumented_column_is_not_written(tmp_path):
    frame = _frame("summary").assign(mystery_score=0.5)
    with pytest.raises(columns.UndocumentedColumn, match="'summary': column 'mystery_score'"):
        tables.write_table(frame, tmp_path / "t.parquet", tmp_path / "t.csv", {"table": "summary"})
    assert not (tmp_path / "t.parquet").exists() and not (tmp_path / "t.csv").exists()
    with pytest.raises(columns.UndocumentedColumn, match="table 'nonesuch' is not documented"):
        tables.write_table(frame, tmp_path / "t.parquet", tmp_path / "t.csv", {"table": "nonesuch"})


def test_config_dependent_columns_resolve_by_pattern():
    for column in ("probs_acc", "top2_ci95", "round1_acc", "label_ci95"):
        assert columns.describe("granularity", column).unit == columns.TEST_SHARE
    with pytest.raises(columns.UndocumentedColumn):
        columns.describe("granularity", "top_acc")
    with pytest.raises(columns.UndocumentedColumn):  # a pattern belongs to its table only
        columns.describe("cells", "probs_acc")


def test_every_documented_column_has_a_meaning_and_a_unit():
    for table, spec in columns.TABLES.items():
        assert spec.row, table
        docs = [*spec.columns.values(), *(p.column for p in spec.patterns)]
        for doc in docs:
            assert doc.meaning.strip() and doc.unit.strip(), (table, doc)


@pytest.mark.workflow
def test_every_column_of_the_smoke_run_is_described(smoke_workdir):
    written = sorted((smoke_workdir / "results" / "tables").glob("*.parquet"))
    # The smoke config runs every stage, defenses included: every documented table is written.
    assert sorted(p.stem for p in written) == sorted(columns.TABLES)
    for path in written:
        for field in pq.read_schema(path):
            meta = field.metadata or {}
            assert meta.get(b"description") and meta.get(b"unit"), (path.name, field.name)


def _reading_examples() -> list[str]:
    """The Python blocks of the README's "Reading the tables"."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Reading the tables", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.workflow
@pytest.mark.parametrize("code", _reading_examples(), ids=["pyarrow", "pandas", "duckdb"])
def test_the_readmes_table_examples_run_on_the_smoke_tables(code, smoke_workdir, monkeypatch):
    # The smoke grid has no budget of 1000: the queries return no rows, but every column they
    # name must exist (pandas and DuckDB both reject an unknown column on an empty result).
    if "import duckdb" in code:
        pytest.importorskip("duckdb")  # optional: the README says to pip install it
    monkeypatch.chdir(smoke_workdir)
    exec(compile(code, "README.md", "exec"), {})
