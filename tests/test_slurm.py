"""The smoke workflow on a real single-node SLURM cluster, through profiles/slurm.

The cluster (munged, slurmctld, slurmd; no accounting) is started here, in a temporary
directory, and stopped by its process ids whatever happens. Every rule job must run inside a
SLURM job, and the cells table must equal that of a local run of the same config.

Needs: root, Debian's slurm-wlm and munge (installed with apt-get if missing), and a node
(this machine) with the CPUs and memory of the largest SLURM job the smoke config asks for
through profiles/slurm: today 1 CPU and 2000 MB (the fixed memory of the dataset and report
rules; the model jobs compute ~1600 MB from their work), plus 2 GB this machine keeps for
itself. The fixture `needs` reads them from a dry run before any daemon starts and fails (in
CI) or skips (elsewhere) with the numbers if the machine is smaller.
Time: the smoke run through SLURM, a few minutes on 2 cores (9.5 min measured on a shared,
loaded 2-core machine, apt-get included).
Job states are read from slurmctld's job completion log (jobcomp/filetxt), which keeps every
finished job for good, not from squeue, which forgets a job MinJobAge after it ends.
"""

import math
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import assert_same_tables
from slurm_cluster import (
    MEMORY_HEADROOM_MB,
    SlurmCluster,
    SlurmNotPossibleHere,
    SlurmUnavailable,
    new_cluster,
)

from stealbench.config import validate

pytestmark = pytest.mark.slurm

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _profile(root):
    return yaml.safe_load((root / "profiles" / "slurm" / "config.yaml").read_text())


def _snakemake(root, workdir, *args):
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(root / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(root / "configs" / "smoke.yaml"),
        *args,
    ]


@pytest.fixture(scope="module")
def needs(root, tmp_path_factory) -> dict[str, int]:
    """The largest CPUs and memory (MB) one SLURM job of the smoke run asks for: a dry run
    through the profile prints every job's resources."""
    workdir = tmp_path_factory.mktemp("slurm-dry-run")
    run = subprocess.run(
        _snakemake(root, workdir, "--profile", str(root / "profiles" / "slurm"), "--dry-run"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    found = {
        key: [int(n) for n in re.findall(rf"\b{key}=(\d+)", run.stdout + run.stderr)]
        for key in ("cpus_per_task", "mem_mb")
    }
    assert all(found.values()), (run.stdout + run.stderr)[-3000:]
    return {"cpus": max(found["cpus_per_task"]), "memory_mb": max(found["mem_mb"])}


@pytest.fixture(scope="module")
def cluster(needs):
    try:
        cluster = new_cluster()
    except OSError as err:
        pytest.fail(f"no temporary directory for the SLURM cluster: {err}")
    if cluster.cpus < needs["cpus"] or cluster.memory_mb < needs["memory_mb"]:
        shutil.rmtree(cluster.root, ignore_errors=True)
        message = (
            f"the SLURM test needs a node with {needs['cpus']} CPUs and {needs['memory_mb']} MB "
            f"(+{MEMORY_HEADROOM_MB} MB kept for this machine); this one has {cluster.cpus} "
            f"CPUs and {cluster.memory_mb} MB to give"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        cluster.start()
    except SlurmUnavailable as err:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
        message = f"could not start a single-node SLURM cluster: {err}"
        if IN_CI or not isinstance(err, SlurmNotPossibleHere):
            pytest.fail(message)
        pytest.skip(message)
    except BaseException:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
        raise
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm_run(root, cluster: SlurmCluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm")
    cmd = _snakemake(
        root,
        workdir,
        "--profile",
        str(root / "profiles" / "slurm"),
        # status checks 1 s after a submission and after every finished job, not 10 s (the
        # plugin adds 10 s per check that sees nothing finish); a faster give-up on outputs
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "1",
        "--latency-wait",
        "5",
    )
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=cluster.env)
    assert run.returncode == 0, (
        run.stderr[-6000:] + "\n" + _slurm_logs(workdir)[-4000:] + cluster.diagnostics()
    )
    return workdir, run.stdout + run.stderr


@pytest.fixture(scope="module")
def local_run(slurm_run, smoke_workdir):
    """The same config run locally (the session's shared run; never both at once)."""
    return smoke_workdir


def _slurm_logs(workdir: Path) -> str:
    logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    return "".join(f"--- {p}\n{p.read_text(errors='replace')}" for p in logs)


def _job_stats(log: str) -> Counter:
    """Rule -> number of jobs, from the "Job stats" table Snakemake prints before it starts."""
    table = re.search(r"Job stats:\n.*?\n-+ +-+\n(.*?)\ntotal +(\d+)", log, re.S)
    stats = Counter({rule: int(n) for rule, n in re.findall(r"^(\w+) +(\d+)$", table[1], re.M)})
    assert stats.total() == int(table[2])
    return stats


def _executed(log: str) -> list[tuple[str, str]]:
    """(rule, output) of every job a Snakemake process ran itself ("localrule" blocks)."""
    jobs = []
    for block in re.split(r"\n(?=\S)", log):
        head = re.match(r"localrule (\w+):", block)
        output = re.search(r"^ +output: (.+)$", block, re.M)
        if head:
            jobs.append((head[1], output[1].strip() if output else ""))
    return jobs


def _submissions(log: str) -> dict[str, str]:
    """SLURM job id -> Snakemake job (or group) id, from the executor's submission lines."""
    found = re.findall(r"Job (\S+) has been submitted with SLURM jobid (\d+)", log)
    return {slurm_id: job for job, slurm_id in found}


def test_every_job_ran_as_a_slurm_job(root, cluster, slurm_run):
    workdir, log = slurm_run
    run_id = re.search(r"SLURM run ID: (\S+)", log)[1]
    submitted = _submissions(log)
    assert submitted, log[-3000:]

    # slurmctld's own record of every job it finished (jobcomp/filetxt; no accounting
    # database): exactly the jobs the executor submitted, all completed with exit code 0
    finished = {
        job_id: job for job_id, job in cluster.finished_jobs().items() if job["Name"] == run_id
    }
    assert set(finished) == set(submitted), (sorted(finished), sorted(submitted))
    for job_id, job in finished.items():
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", (job_id, job)
        assert job["NodeList"] == cluster.node

    # Every job of the DAG finished, and only `all` (which runs nothing) ran on the submit host.
    stats = _job_stats(log)
    assert Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log)) == stats
    assert _executed(log) == [("all", "")]
    # Every other job ran inside a SLURM job, once: the SLURM logs (kept, one per SLURM job)
    # show the job step's Snakemake running each rule job for its output.
    slurm_logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert {p.stem for p in slurm_logs} == set(submitted)
    in_slurm = [job for p in slurm_logs for job in _executed(p.read_text())]
    assert Counter(rule for rule, _ in in_slurm) == stats - Counter(all=1)
    assert len(set(in_slurm)) == len(in_slurm)
    # Grouping: the smoke grid's surrogate jobs are short, so they are all in the group of
    # cluster.max_group_jobs (surrogates-x8), group-components to a SLURM job; the report jobs
    # in one; every other rule job is a SLURM job of its own.
    profile = _profile(root)
    k = validate(yaml.safe_load((root / "configs" / "smoke.yaml").read_text()))["cluster"][
        "max_group_jobs"
    ]
    grouped = {*profile["groups"], "train_surrogates"}  # it groups itself (rules/surrogates.smk)
    size = profile["group-components"][f"surrogates-x{k}"]
    groups = Counter(p.parent.name.split("_")[1] for p in slurm_logs if "group_" in str(p))
    expected = {f"surrogates-x{k}": math.ceil(stats["train_surrogates"] / size), "report": 1}
    assert groups == expected
    alone = sum(n for rule, n in stats.items() if rule not in grouped and rule != "all")
    assert len(submitted) == alone + groups.total()
    # A group's members run one after another in its allocation, so it asks for one CPU.
    for path in slurm_logs:
        if "group_" in str(path):
            assert finished[path.stem]["ProcCnt"] == "1", finished[path.stem]


def test_same_tables_as_a_local_run(slurm_run, local_run):
    assert_same_tables(slurm_run[0], local_run)
