"""The house style is checked by the test command, so CI enforces it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _tool(name):
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else shutil.which(name)


@pytest.mark.skipif(_tool("ruff") is None, reason="ruff is installed by `make test`")
def test_ruff(root):
    for args in (["check"], ["format", "--check"]):
        run = subprocess.run(
            [_tool("ruff"), *args, "src", "tests", "workflow", "benchmarks"],
            cwd=root,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stdout + run.stderr


def test_snakemake_lint(root):
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--cores", "1"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "good condition" in run.stdout + run.stderr, run.stdout


@pytest.mark.skipif(_tool("snakefmt") is None, reason="snakefmt is installed by `make test`")
def test_snakefmt(root):
    run = subprocess.run(
        [_tool("snakefmt"), "--check", "Snakefile", "rules"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
