"""Published vs stealbench: run every ``configs/reproduce/*.yaml`` and print the README's table.

Each config runs in its own working directory, ``<results>/<config stem>/`` (its tables in
``<results>/<stem>/results/tables/``), so the runs never share a cache with each other or with
the default. The table sets each published figure (stealbench.paper.PUBLISHED_METHODS) beside
ours with its 95% CI over seeds, the difference and how our setting differs; a method whose
config or results are missing is "not run", not an error.

    .venv/bin/python benchmarks/reproduce.py --cores 2          # run them all, then the table
    .venv/bin/python benchmarks/reproduce.py --only mad         # one config
    .venv/bin/python benchmarks/reproduce.py --report-only      # the table from earlier runs
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sections import snakemake  # noqa: E402

CONFIGS = ROOT / "configs" / "reproduce"
RESULTS = ROOT / "results" / "reproduce"


def run_dir(results: Path, config: Path | str) -> Path:
    """The working directory of one reproduce config's run."""
    return results / Path(config).stem


def tables_for(results: Path):
    """config path (as in PUBLISHED_METHODS) -> that run's tables, or None if it has none."""
    from stealbench.report.published import load_tables

    def tables(config: str):
        found = load_tables(run_dir(results, config) / "results" / "tables")
        return found or None

    return tables


def run(config: Path, results: Path, cores: str) -> int:
    workdir = run_dir(results, config)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = snakemake(workdir, "--cores", cores, configfile=config.resolve())
    start = time.monotonic()
    code = subprocess.call(cmd, cwd=ROOT)
    minutes = (time.monotonic() - start) / 60
    print(f"{config.relative_to(ROOT)}: exit {code} after {minutes:.1f} min", file=sys.stderr)
    return code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="all", help="snakemake --cores (default: all)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="runs' parent folder")
    parser.add_argument("--only", nargs="*", help="config stems to run (default: all)")
    parser.add_argument(
        "--report-only", action="store_true", help="run nothing: read earlier runs' tables"
    )
    args = parser.parse_args(argv)

    from stealbench.paper import PUBLISHED_METHODS
    from stealbench.report.published import comparison_rows, markdown

    failed = []
    if not args.report_only:
        configs = sorted(CONFIGS.glob("*.yaml"))
        if args.only:
            configs = [c for c in configs if c.stem in args.only]
        for config in configs:
            if run(config, args.results, args.cores) != 0:
                failed.append(config.stem)
    rows = comparison_rows(PUBLISHED_METHODS, tables_for(args.results))
    print(markdown(rows))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
