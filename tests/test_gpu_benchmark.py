"""benchmarks/gpu.py's CPU dry run: every step of the GPU benchmark (fixture, materialising,
stealbench's loop and the bare loop at each precision and batch size, the layout comparison,
the agreement cell, the report) on tiny sizes, so the script is ready when a GPU is lent."""

import os
import re
import subprocess
import sys


def test_gpu_benchmark_quick_dry_run_on_cpu(root):
    results = (root / "benchmarks" / "results.md").read_text()
    run = subprocess.run(
        [
            sys.executable,
            str(root / "benchmarks" / "gpu.py"),
            *("--device", "cpu", "--quick", "--no-write", "--classes", "2", "--images", "8"),
            *("--size", "16", "--arch", "lenet", "--agree-arch", "lenet", "--steps", "1"),
            *("--batches", "4", "8"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root / "src")},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for precision in ("fp32", "bf16", "fp16"):
        for batch in (4, 8):
            # a rate for each loop and their ratio: the setting ran, on both loops
            row = rf"\| {precision} \| {batch} \| \d+ \| \d+ \| \*\*\d+\.\d\d\*\* \| n/a / n/a \|"
            assert re.search(row, run.stdout), (precision, batch, run.stdout)
    assert re.search(r"fp32, batch 4, without channels-last .*: \d+ img/s", run.stdout)
    assert re.search(r"3-seed lenet cell .*\*\*(agree|differ)\*\*", run.stdout)
    assert (root / "benchmarks" / "results.md").read_text() == results  # --no-write
