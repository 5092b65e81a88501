import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

try:  # two threads on this shared 2-core machine make every torch test ~10x slower
    import torch

    torch.set_num_threads(1)
except ImportError:  # the workflow tests need no torch in this process
    pass

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SMOKE = ROOT / "configs" / "smoke.yaml"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def snakemake_cmd(workdir, *args, configfile=SMOKE) -> list[str]:
    """The workflow on ``configfile`` (None: the embedded default) in ``workdir``, as a list:
    no shell string."""
    config = [] if configfile is None else ["--configfile", str(configfile)]
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        *config,
        *args,
    ]


def run_snakemake(workdir, *args, configfile=SMOKE, timeout=900, **kwargs):
    return subprocess.run(
        snakemake_cmd(workdir, *args, configfile=configfile),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


@pytest.fixture(scope="session")
def smoke_workdir(tmp_path_factory) -> Path:
    """One clean local run of configs/smoke.yaml, shared by every test that reads it."""
    workdir = tmp_path_factory.mktemp("smoke")
    run = run_snakemake(workdir, "--cores", "2")
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir


TIMING = re.compile(r"seconds|_time$")  # columns that measure the machine, not the science


def assert_same_tables(a: Path, b: Path) -> None:
    """Every result table of two runs is equal, up to the columns that time the machine."""
    names = sorted(p.stem for p in (a / "results/tables").glob("*.parquet"))
    assert names == sorted(p.stem for p in (b / "results/tables").glob("*.parquet"))
    assert "cells" in names
    for name in names:
        left, right = (pd.read_parquet(d / f"results/tables/{name}.parquet") for d in (a, b))
        left, right = (
            t.drop(columns=[c for c in t.columns if TIMING.search(c)]) for t in (left, right)
        )
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)


@pytest.fixture
def drawn(monkeypatch):
    """The figures a plotting function draws, kept instead of written."""
    from stealbench.report import figures

    kept = []
    monkeypatch.setattr(figures, "save_figure", lambda figure, paths: kept.append(figure))
    yield kept
    import matplotlib.pyplot as plt

    for figure in kept:
        plt.close(figure)
