"""Interrupted runs resume to the same tables; clean runs are deterministic; provenance."""

import base64
import os
import re
import shutil
import signal
import subprocess
import time
from fnmatch import fnmatch
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import assert_same_tables, run_snakemake, snakemake_cmd

from stealbench import io

pytestmark = pytest.mark.workflow


def running_jobs(workdir: Path) -> set[str]:
    """Outputs of the jobs Snakemake has started and not finished, from its incomplete markers
    (``.snakemake/incomplete/<urlsafe base64 of the output path>``, split into ``@``-prefixed
    folders where the name is too long). Empty while Snakemake plans or between jobs."""
    root = workdir / ".snakemake" / "incomplete"
    outputs = set()
    try:
        for folder, _, files in os.walk(root):
            prefix = "".join(p.lstrip("@") for p in Path(folder).relative_to(root).parts)
            for name in files:
                if name != "migration_underway":
                    outputs.add(base64.urlsafe_b64decode(prefix + name).decode())
    except (OSError, ValueError):  # a marker removed or half written while we read
        return set()
    return outputs


def group_alive(pgid: int) -> list[int]:
    """Processes of a process group that are still running (zombies excluded)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def kill_while_running(
    workdir: Path, patterns: list[str], timeout: float = 1800, log: Path | None = None
) -> tuple[str, list[str]]:
    """Start the workflow and SIGKILL its whole process group (Snakemake and every job, as a
    dying node would: no cleanup at all) at the first moment a job whose output matches one of
    ``patterns`` runs: Snakemake has marked it started and its output does not exist yet.
    Returns that pattern and the outputs of every job running at that moment. Snakemake's
    output goes to ``log`` (if given), for :func:`started_jobs`."""
    with open(log or os.devnull, "w") as handle:
        proc = subprocess.Popen(
            snakemake_cmd(workdir, "--cores", "2"),
            start_new_session=True,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            running = running_jobs(workdir)
            hit = next(
                (
                    pattern
                    for pattern in patterns
                    for output in running
                    if fnmatch(output, pattern) and not (workdir / output).exists()
                ),
                None,
            )
            if hit:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                # every process of the group is gone, the job's script included
                while group_alive(proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert not group_alive(proc.pid), group_alive(proc.pid)
                return hit, sorted(running)
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    raise AssertionError(
        f"no job writing {' or '.join(patterns)} was caught running: the run "
        + (f"exited with {proc.returncode}" if time.monotonic() < deadline else "timed out")
    )


# One started job in a Snakemake log: its "rule NAME:" line and the indented lines under it.
JOB_BLOCK = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", re.M)


def started_jobs(log: str) -> list[tuple[str, list[str], list[str]]]:
    """The jobs a Snakemake run started, from its log: each job's rule, its outputs, and the
    other files it writes (its log and benchmark)."""
    jobs = []
    for rule, body in JOB_BLOCK.findall(log):
        fields = dict(re.findall(r"^    (\w+): (.*)$", body, re.M))
        files = {
            key: [f.strip() for f in fields[key].split(",")] if key in fields else []
            for key in ("output", "log", "benchmark")
        }
        jobs.append((rule, files["output"], files["log"] + files["benchmark"]))
    return jobs


def result_states(workdir: Path) -> dict[str, tuple[str, int]]:
    """SHA-256 and modification time of every file under results/, but the temporaries that
    a killed writer leaves (``.NAME.*.tmp``, io.atomic_path's; no reader ever sees them)."""
    return {
        str(p.relative_to(workdir)): (io.sha256_file(p), p.stat().st_mtime_ns)
        for p in sorted((workdir / "results").rglob("*"))
        if p.is_file() and not fnmatch(p.name, ".*.tmp")
    }


def within(path: str, output: str) -> bool:
    """``path`` is ``output``, or a file inside it (a directory output)."""
    return path == output or path.startswith(output.rstrip("/") + "/")


def assert_finished_work_kept(
    states: dict[str, tuple[str, int]],
    running: list[str],
    later_logs: list[str],
    final: dict[str, tuple[str, int]],
) -> list[str]:
    """What was finished at a kill is kept to the end: no later launch starts a job that had
    written an output complete at the kill, and every file complete at the kill has, at the
    end, the same bytes and modification time (a rerun job would rewrite both). ``states``:
    :func:`result_states` at the kill; ``running``: the outputs of the jobs running at it;
    ``later_logs``: the Snakemake logs of every later launch; ``final``: the states at the
    end. Returns the files checked, so that a caller can see the check bite."""
    # An output of a job still marked running is not finished, even if it exists: the job
    # may have been killed after its rename, before Snakemake saw it end, so it reruns.
    finished = {p for p in states if not any(within(p, r) for r in running)}
    later = [job for log in later_logs for job in started_jobs(log)]
    redone = [
        (rule, p) for rule, outputs, _ in later for o in outputs for p in finished if within(p, o)
    ]
    assert not redone, f"jobs rerun though their outputs were complete: {redone}"
    # A job that reruns (it was running at the kill, or had not started) rewrites its log and
    # benchmark, which may be there from the killed attempt: those are not finished work.
    rewritten = {f for _, _, files in later for f in files}
    kept = sorted(finished - rewritten)
    changed = [p for p in kept if final.get(p) != states[p]]
    assert not changed, f"finished files rewritten or removed after the kill: {changed}"
    return kept


def visible_artefacts(workdir: Path):
    return [
        p
        for p in (workdir / "results").rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix in (".parquet", ".json")
    ]


def assert_same_checkpoint(left, right, where: str) -> None:
    """Two loaded checkpoints (state dicts, possibly nested with metadata) are identical:
    the same keys in the same order, tensors of the same dtype and values, equal the rest."""
    import torch

    assert type(left) is type(right), where
    if isinstance(left, dict):
        assert list(left) == list(right), where
        for key in left:
            assert_same_checkpoint(left[key], right[key], f"{where}[{key!r}]")
    elif isinstance(left, torch.Tensor):
        same = left.dtype == right.dtype and torch.equal(left, right)
        assert same, f"{where}: {left.dtype} {tuple(left.shape)} differs"
    else:
        assert left == right, where


# One kill in each stage that trains a model: a victim, a surrogate sweep, a surrogate on
# defended responses (the smoke config has all three).
KILL_POINTS = ("results/victims/*", "results/surrogates/*", "results/defended/*")


def test_killed_runs_resume_to_the_tables_and_models_of_an_uninterrupted_run(
    smoke_workdir, tmp_path
):
    """Three SIGKILLs, each while a job of another stage runs; after each, the README's
    recovery (`snakemake --unlock`, then the same command) continues the run, keeping what was
    finished (no finished job runs again, no finished file is rewritten), and the end result
    equals the uninterrupted run's: every table and every saved model."""
    workdir = tmp_path / "killed"
    # Each launch is killed in whichever stage not yet hit runs first, so that no stage can
    # finish unseen in an earlier launch: every kill lands in a running job, in any DAG order.
    remaining = list(KILL_POINTS)
    kills = []  # per kill: the states of the files under results/, the jobs running
    logs = []  # per launch: Snakemake's log (the jobs it started)
    while remaining:
        log = tmp_path / f"launch{len(logs) + 1}.log"
        pattern, running = kill_while_running(workdir, remaining, log=log)
        logs.append(log.read_text())
        kills.append((result_states(workdir), running))
        remaining.remove(pattern)
        caught = [o for o in running if fnmatch(o, pattern)]
        # The kill landed mid-job: the job is still marked started, its output never appeared.
        assert caught and set(caught) <= running_jobs(workdir), (pattern, running)
        assert not any((workdir / o).exists() for o in caught), caught
        # A killed job never leaves a file that looks complete.
        for path in visible_artefacts(workdir):
            if path.suffix == ".parquet":
                pq.read_metadata(path)
            else:
                io.read_json(path)
        unlock = run_snakemake(workdir, "--unlock")
        assert unlock.returncode == 0, unlock.stderr[-2000:]
    resumed = run_snakemake(workdir, "--cores", "2", timeout=1800)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert running_jobs(workdir) == set()
    logs.append(resumed.stdout + resumed.stderr)
    # Resuming keeps the work done: what each kill found finished, every later launch left
    # alone. The last check bites on much of the run: by the third kill, the data and at least
    # a victim (a surrogate and a defended surrogate have run, on its answers) are done.
    final = result_states(workdir)
    kept = [
        assert_finished_work_kept(states, running, logs[k + 1 :], final)
        for k, (states, running) in enumerate(kills)
    ]
    assert len(kept[-1]) > 20 and any(fnmatch(p, "results/victims/*/model.pt") for p in kept[-1])
    # ... and does what was left: the jobs the last kill cut short ran again.
    rerun = {o for _, outputs, _ in started_jobs(logs[-1]) for o in outputs}
    assert set(kills[-1][1]) <= rerun, (kills[-1][1], rerun)
    assert_same_tables(smoke_workdir, workdir)
    models = sorted(p.relative_to(smoke_workdir) for p in smoke_workdir.glob("results/**/*.pt"))
    assert any(fnmatch(str(m), KILL_POINTS[0]) for m in models), models
    assert models == sorted(p.relative_to(workdir) for p in workdir.glob("results/**/*.pt"))
    for model in models:
        left, right = (io.load_state_dict(d / model) for d in (smoke_workdir, workdir))
        assert_same_checkpoint(left, right, str(model))


def test_two_clean_runs_give_identical_metrics(smoke_workdir, tmp_path):
    run = run_snakemake(tmp_path, "--cores", "2")
    assert run.returncode == 0, run.stderr[-4000:]
    assert_same_tables(smoke_workdir, tmp_path)
    for path in sorted((smoke_workdir / "results/queries").rglob("*.parquet")):
        twin = tmp_path / path.relative_to(smoke_workdir)
        pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(twin))


def test_artefacts_record_their_provenance(smoke_workdir):
    results = smoke_workdir / "results"
    cache = io.read_parquet_meta(next(results.glob("queries/*/*/s0.parquet")))
    assert {"victim_checksum", "pool_checksum", "strategy", "seed", "options"} <= set(cache)
    victim = io.read_json(next(results.glob("victims/*/metrics.json")))
    assert {"dataset_checksum", "weights_checksum", "training", "seed"} <= set(victim)
    cells = io.read_parquet_meta(next(results.glob("surrogates/*/*/*/*/all.parquet")))
    assert {"victim_checksum", "pool_checksum", "query_cache", "training"} <= set(cells)
    table = io.read_parquet_meta(results / "tables/cells.parquet")
    inputs = table["inputs"]
    assert len(inputs) > 10 and all(len(h) == 64 for h in inputs.values())
    some = next(iter(inputs))
    assert io.sha256_file(smoke_workdir / some) == inputs[some]


def test_a_bad_config_damages_nothing_already_complete(smoke_workdir, root, tmp_path):
    import yaml

    before = {p: io.sha256_file(p) for p in (smoke_workdir / "results").rglob("*") if p.is_file()}
    bad = yaml.safe_load((root / "configs/smoke.yaml").read_text())
    bad["surrogates"]["budgets"] = [50, 100000]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    run = run_snakemake(smoke_workdir, "--cores", "2", configfile=path)
    assert run.returncode != 0 and "largest budget 100000 exceeds" in run.stderr
    after = {p: io.sha256_file(p) for p in (smoke_workdir / "results").rglob("*") if p.is_file()}
    assert after == before


def results_hashes(workdir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(workdir)): io.sha256_file(p)
        for p in sorted((workdir / "results").rglob("*"))
        if p.is_file()
    }


def test_a_corrupt_artefact_fails_the_one_job_that_reads_it_and_damages_nothing(
    smoke_workdir, tmp_path
):
    """docs/bad-inputs.md: an artefact error fails the one job that meets it, with the message
    that says what to do, and nothing else under results/ changes. On a copy of the finished
    smoke run, one query cache is cut to half its bytes (its footer gone, as after a full disk),
    with its time stamp kept so that Snakemake sees nothing new; then one surrogate job that
    reads it is forced to rerun, inside the default target's DAG."""
    workdir = tmp_path / "run"
    shutil.copytree(smoke_workdir, workdir, symlinks=True)  # copy2: time stamps kept
    cache = sorted(workdir.glob("results/queries/*/*/s0.parquet"))[0]  # a sampling attacker's
    victim, attack = cache.parent.parent.name, cache.parent.name
    forced = sorted(workdir.glob(f"results/surrogates/{victim}/{attack}/*/s0/*.parquet"))[0]
    cache_rel, forced_rel = (str(p.relative_to(workdir)) for p in (cache, forced))
    before = results_hashes(workdir)

    stat = cache.stat()
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) // 2])
    os.utime(cache, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    run = run_snakemake(workdir, "--cores", "2", "--forcerun", forced_rel)
    log = run.stdout + run.stderr

    assert run.returncode != 0
    # the documented message (docs/bad-inputs.md, row 17), naming the file
    assert f"{cache_rel}: not a readable Parquet file (" in log, log[-4000:]
    assert "delete it and rerun the workflow" in log
    # exactly one job ran, the forced one, and it failed
    started = re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    output: (.+)$", log, re.M)
    assert [output.split(",")[0].strip() for _, output in started] == [forced_rel], started
    assert len(re.findall(r"^Error in rule (\w+):", log, re.M)) == 1

    after = results_hashes(workdir)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    # Allowed to differ, and nothing else: the cache we cut; the failed job's output, which
    # Snakemake removes (a failed job leaves no output, so nothing can look complete); and
    # the failed job's log, which its new start rewrote.
    forced_log = [p for p in changed if p.startswith("results/logs/")]
    assert changed == {cache_rel, forced_rel, *forced_log} and len(forced_log) == 1, changed
    assert forced_rel not in after

    # The message's advice works: delete the file and run the same command again. The victim
    # is queried again, to the same answers and metadata (all but the seconds it took), and the
    # run ends with the uninterrupted run's tables.
    cache.unlink()
    rerun = run_snakemake(workdir, "--cores", "2", "--forcerun", forced_rel, timeout=1800)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    original = smoke_workdir / cache_rel
    assert pq.read_table(cache).equals(pq.read_table(original))
    untimed = [
        {k: v for k, v in io.read_parquet_meta(f).items() if k != "seconds"}
        for f in (cache, original)
    ]
    assert untimed[0] == untimed[1]
    assert_same_tables(smoke_workdir, workdir)
