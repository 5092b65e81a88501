"""What the benchmark scripts share: the snakemake command and the sections of results.md."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.md"


def snakemake(workdir: Path, *args: str, configfile: Path | None = None) -> list[str]:
    """The workflow in ``workdir`` as an argument list (never a shell string)."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
    ]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    return [*cmd, *args]


def write_section(name: str, text: str) -> None:
    """Replace (or append) results.md's section between <!-- name:start --> and :end -->."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{start}\n{text.strip()}\n{end}"
    if start in old and end in old:
        new = old[: old.index(start)] + block + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(new)
