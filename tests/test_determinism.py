"""Determinism does not hang on the number of cores: the same artefacts at --cores 1.

`tests/test_reliability.py` compares two clean runs at --cores 2. With one core Snakemake runs
the jobs in another order, one at a time; every seed derives from the config and the
artefact's names, never from the order jobs ran in, so the artefacts must be identical. To keep
the test short it builds only the chain behind a few surrogate jobs (datasets, the victim, a
sampling attacker's second seed, whose cache reads the first seed's, and a sequential
attacker), not the whole grid.
"""

import pandas as pd
import pytest
from conftest import TIMING, run_snakemake

from stealbench import io

pytestmark = pytest.mark.workflow

TARGETS = [
    "results/victims/digits-lenet/model.pt",
    # s1's cache asks the victim only for the images s0 did not draw: it reads s0's cache
    "results/surrogates/digits-lenet/random-digits/lenet/s1/all.parquet",
    "results/surrogates/digits-lenet/adaptive-letters/lenet/s0/all.parquet",
]


def untimed(path):
    frame = pd.read_parquet(path)
    return frame.drop(columns=[c for c in frame.columns if TIMING.search(c)])


def test_one_core_gives_the_artefacts_of_two(smoke_workdir, tmp_path):
    run = run_snakemake(tmp_path, "--cores", "1", *TARGETS)
    assert run.returncode == 0, run.stderr[-4000:]
    built = sorted(p.relative_to(tmp_path) for p in tmp_path.glob("results/**/*.parquet"))
    # the chain really ran here: datasets, query caches of both seeds, the surrogate tables
    assert any("queries/digits-lenet/random-digits/s0" in str(p) for p in built), built
    for relative in built:
        if "logs" in relative.parts or "benchmarks" in relative.parts:
            continue
        pd.testing.assert_frame_equal(
            untimed(tmp_path / relative), untimed(smoke_workdir / relative), obj=str(relative)
        )
    models = sorted(p.relative_to(tmp_path) for p in tmp_path.glob("results/**/*.pt"))
    assert models, "the victim was trained"
    for relative in models:
        left, right = (io.load_state_dict(d / relative) for d in (tmp_path, smoke_workdir))
        assert list(left) == list(right), relative
        for key in left:
            assert left[key].dtype == right[key].dtype and left[key].equal(right[key]), (
                relative,
                key,
            )
