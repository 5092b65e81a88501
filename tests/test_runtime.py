"""What every workflow script does first: log to its file, pin threads, derive seeds."""

import subprocess
import sys
import textwrap

from stealbench.runtime import derive_seed


def test_a_failing_job_writes_its_error_to_its_log(root, tmp_path):
    """Snakemake shows a failed job's log: the cause must be in it, not only on stderr."""
    log = tmp_path / "job.log"
    script = textwrap.dedent(
        f"""
        import sys
        from types import SimpleNamespace
        sys.path.insert(0, {str(root / "src")!r})
        from stealbench.runtime import setup
        sm = SimpleNamespace(log=[{str(log)!r}], rule="demo", threads=1, wildcards={{}})
        setup(sm, use_torch=False)
        raise ValueError("the cause, named")
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode != 0 and "ValueError: the cause, named" in run.stderr
    text = log.read_text()
    assert "the job failed" in text and "ValueError: the cause, named" in text


def test_derived_seeds_depend_on_every_name_and_the_master_seed():
    seeds = {derive_seed(0, "a", 1), derive_seed(0, "a", 2), derive_seed(1, "a", 1)}
    assert len(seeds) == 3 and derive_seed(0, "a", 1) == derive_seed(0, "a", 1)
    assert all(0 <= s < 2**31 for s in seeds)
