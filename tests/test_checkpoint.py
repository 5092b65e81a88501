"""Checkpoints inside training jobs: a fit stopped at a step or epoch boundary and resumed
from its checkpoint (by a fresh model, or a fresh process after SIGKILL) ends with the
weights of an uninterrupted run, bit for bit; a checkpoint of another training is refused."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import TIMING, run_snakemake, snakemake_cmd
from torch import nn

from stealbench.models import checkpoint as ckpt
from stealbench.models.training import TrainConfig, fit

ROWS, BATCH = 96, 32  # 3 steps an epoch; with every_seconds=0, 4 saves an epoch (3 steps + end)


def _data(n=ROWS + 32, seed=0):
    """Two classes (a bright left or right half), the last 32 rows for validation."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.integers(0, 60, size=(n, 12, 12, 1)).astype(np.uint8)
    for i, y in enumerate(labels):
        images[i, :, (0 if y == 0 else 6) : (6 if y == 0 else 12)] += 150
    return images, np.eye(2, dtype=np.float32)[labels], labels


class Net(nn.Module):
    """Batch norm (buffers to restore) and dropout (draws from torch's global generator)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(4 * 10 * 10, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.head(self.drop(torch.relu(self.norm(self.conv(x)))).flatten(1))


def _model():
    torch.manual_seed(1)
    return Net()


class Interrupted(Exception):
    pass


class StopAfter(ckpt.Checkpointer):
    """Saves at every boundary, then stops the run after its ``stop``-th save (a kill)."""

    def __init__(self, path, stop):
        super().__init__(path, every_seconds=0)
        self.stop, self.saves = stop, 0

    def save(self, state):
        super().save(state)
        self.saves += 1
        if self.saves == self.stop:
            raise Interrupted


CASES = {
    "adam": dict(cfg=TrainConfig(epochs=3, batch_size=BATCH, lr=3e-3)),
    "sgd-schedule": dict(
        cfg=TrainConfig(
            epochs=4,
            batch_size=BATCH,
            lr=0.05,
            optimizer="sgd",
            momentum=0.9,
            weight_decay=1e-3,
            lr_step=1,
            lr_gamma=0.5,
        ),
    ),
    "validation-patience": dict(
        cfg=TrainConfig(epochs=6, batch_size=BATCH, lr=1e-2, patience=2), validate=True
    ),
    "validation-best": dict(cfg=TrainConfig(epochs=3, batch_size=BATCH, lr=1e-2), validate=True),
    "outliers": dict(cfg=TrainConfig(epochs=3, batch_size=BATCH, lr=3e-3), outliers=True),
    # mixed precision: fp16's GradScaler (loss scale, growth count) is part of the state
    "fp16": dict(cfg=TrainConfig(epochs=3, batch_size=BATCH, lr=3e-3, precision="fp16")),
}


def _fit(case, checkpoint=None, seed=5):
    images, targets, labels = _data()
    spec = CASES[case]
    validate = spec.get("validate", False)
    outliers = _data(40, seed=9)[0] if spec.get("outliers") else None
    model = _model()
    result = fit(
        model,
        images[:ROWS],
        targets[:ROWS],
        images[ROWS:] if validate else None,
        labels[ROWS:] if validate else None,
        spec["cfg"],
        seed,
        outliers=outliers,
        checkpoint=checkpoint,
    )
    return model, result


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


# Stops: mid-epoch (after the 2nd step), at an epoch's end (its 3 steps and the end save),
# and after the last step of epoch 2, before its validation.
@pytest.mark.parametrize("stop", [2, 4, 7])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_resumed_fit_ends_with_the_weights_of_an_uninterrupted_one(case, stop, tmp_path):
    reference, ref_result = _fit(case)
    path = tmp_path / "fit.pt"
    with pytest.raises(Interrupted):
        _fit(case, StopAfter(path, stop))
    saved = torch.load(path, weights_only=True)
    assert (saved["epoch"], saved["step"]) == {2: (1, 2), 4: (2, 0), 7: (2, 3)}[stop]
    resumed, result = _fit(case, ckpt.Checkpointer(path, every_seconds=None))
    # it did resume: fewer forward passes than a whole run
    assert resumed.calls < reference.calls
    assert _same_weights(resumed, reference)
    assert result.history == ref_result.history or _same_history(result, ref_result)
    assert (result.best_epoch, result.epochs) == (ref_result.best_epoch, ref_result.epochs)


def _same_history(a, b):
    # NaN != NaN: compare the rows with NaN as a value
    return [{k: repr(v) for k, v in r.items()} for r in a.history] == [
        {k: repr(v) for k, v in r.items()} for r in b.history
    ]


def test_patience_stops_early_in_the_patience_case():
    """The patience case exercises early stopping (else it tests nothing more than 'best')."""
    _, result = _fit("validation-patience")
    assert result.epochs < CASES["validation-patience"]["cfg"].epochs


def test_a_checkpoint_of_another_training_is_refused(tmp_path):
    path = tmp_path / "fit.pt"
    with pytest.raises(Interrupted):
        _fit("adam", StopAfter(path, 2))
    with pytest.raises(ckpt.CheckpointMismatch, match="another training run"):
        _fit("adam", ckpt.Checkpointer(path, None), seed=6)
    with pytest.raises(ckpt.CheckpointMismatch, match="another training run"):
        _fit("sgd-schedule", ckpt.Checkpointer(path, None))


def test_saves_wait_for_their_interval(tmp_path):
    """A checkpointer saves only once its interval has passed since the last save."""
    path = tmp_path / "fit.pt"
    _fit("adam", ckpt.Checkpointer(path, every_seconds=3600))
    assert not path.exists()
    _fit("adam", ckpt.Checkpointer(path, every_seconds=0))
    assert path.exists()


# ------------------------------------------------------------ jobs: finished cells, directories


def _plan(tmp_path, minutes=1.0):
    return ckpt.CheckpointPlan(str(tmp_path / "results/checkpoints/rule/a/b"), minutes)


def test_a_job_keeps_finished_cells_and_removes_its_directory(tmp_path):
    job = ckpt.JobCheckpoints(_plan(tmp_path), {"params": 1})
    job.clock.last -= 3600  # due
    row = {"z": np.float64(0.5), "a": np.int64(3), "flag": np.bool_(True), "nan": float("nan")}
    job.record("cell-1", row, {"w": torch.ones(2)})
    again = ckpt.JobCheckpoints(_plan(tmp_path), {"params": 1})
    saved_row, state = again.finished("cell-1")
    assert list(saved_row) == ["z", "a", "flag", "nan"]  # the table's column order
    assert saved_row["z"] == 0.5 and saved_row["a"] == 3 and saved_row["flag"] is True
    assert torch.equal(state["w"], torch.ones(2))
    assert again.finished("cell-2") is None
    again.remove()
    assert not (tmp_path / "results/checkpoints/rule").exists()
    assert not (tmp_path / "results/checkpoints").exists()


def test_a_job_discards_checkpoints_of_another_version_of_itself(tmp_path):
    job = ckpt.JobCheckpoints(_plan(tmp_path), {"params": 1})
    job.clock.last -= 3600
    job.record("cell-1", {"x": 1})
    assert ckpt.JobCheckpoints(_plan(tmp_path), {"params": 1}).finished("cell-1")
    assert ckpt.JobCheckpoints(_plan(tmp_path), {"params": 2}).finished("cell-1") is None


def test_finished_cells_wait_for_the_interval_unless_a_fit_saves(tmp_path):
    job = ckpt.JobCheckpoints(_plan(tmp_path, minutes=60), {})
    job.record("cell-1", {"x": 1})
    assert not (tmp_path / "results/checkpoints/rule/a/b/cells/cell-1.pt").exists()
    job.fit("cell-2").save({"epoch": 1, "step": 0})  # a fit's save writes the finished first
    assert (tmp_path / "results/checkpoints/rule/a/b/cells/cell-1.pt").exists()


def test_zero_minutes_saves_nothing(tmp_path):
    job = ckpt.JobCheckpoints(_plan(tmp_path, minutes=0), {})
    assert job.fit("cell") is None
    job.record("cell", {"x": 1})
    assert not (tmp_path / "results").exists()


# ------------------------------------------------- the real thing: SIGKILL a process, rerun it

DRIVER = textwrap.dedent(
    """
    import sys, time
    import torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    from test_checkpoint import CASES, _fit
    from stealbench.models import checkpoint as ckpt

    class Slow(ckpt.Checkpointer):  # slower steps, so that the test can kill one mid-run
        def save(self, state):
            super().save(state)
            time.sleep(0.05)

        def load(self, key):
            state = super().load(key)
            if state is not None:
                print("resumed", state["epoch"], state["step"], flush=True)
            return state

    path, out = sys.argv[1], sys.argv[2]
    model, _ = _fit("outliers", Slow(path, every_seconds=0) if path != "-" else None)
    torch.save(model.state_dict(), out)
    """
)


def _driver(tmp_path, checkpoint, out):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=os.path.dirname(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, str(script), str(checkpoint), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_killed_training_process_resumes_to_the_uninterrupted_weights(tmp_path):
    path = tmp_path / "ckpt" / "fit.pt"
    killed = _driver(tmp_path, path, tmp_path / "killed.pt")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and killed.poll() is None:
        if path.exists() and torch.load(path, weights_only=True)["epoch"] >= 2:
            break
        time.sleep(0.01)
    assert killed.poll() is None, "the run ended before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert not (tmp_path / "killed.pt").exists()
    resumed = _driver(tmp_path, path, tmp_path / "resumed.pt")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    epoch, step = map(int, out.split("resumed")[1].split())
    assert epoch >= 2
    whole = _driver(tmp_path, "-", tmp_path / "whole.pt")
    assert whole.wait(timeout=300) == 0, whole.stderr.read()[-3000:]
    a = torch.load(tmp_path / "resumed.pt", weights_only=True)
    b = torch.load(tmp_path / "whole.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in b)


# -------------------------------------- the workflow: SIGKILL a surrogate job, rerun the same

TINY = """
seed: 0
device: cpu
checkpoint_minutes: 0.0005  # 30 ms: a checkpoint at nearly every step
datasets:
  digits:
    source: mnist5k
    task: digits
    splits: {train: 400, val: 100, test: 200, pool: 300}
victim_training: {epochs: 2, batch_size: 64}
victims:
  digits-lenet: {dataset: digits, arch: lenet, attacks: [random-digits]}
attacks:
  random-digits: {strategy: random, pool: digits}
surrogates:
  archs: [lenet]
  granularities: [probs, label]
  budgets: [50, 200]
  seeds: [0]
  save_models: true
  selection: transfer-val
  training: {epochs: 6, batch_size: 16}
"""
JOB = "results/surrogates/digits-lenet/random-digits/lenet/s0/all"
JOB_CHECKPOINTS = "results/checkpoints/train_surrogates/digits-lenet/random-digits/lenet/0/all"


@pytest.mark.workflow
def test_a_killed_surrogate_job_resumes_to_the_table_and_models_of_an_uninterrupted_run(
    tmp_path,
):
    """train_surrogates on a tiny grid (4 cells, a checkpoint every 30 ms), SIGKILLed with
    its Snakemake (the whole process group) once a cell is finished and another is training;
    `snakemake --unlock` and the same command again reuse the finished cell, resume the
    other mid-training, and give the table and models of an uninterrupted run."""
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    target = f"{JOB}.parquet"
    whole = run_snakemake(tmp_path / "whole", "--cores", "1", target, configfile=config)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert not (tmp_path / "whole/results/checkpoints").exists()  # removed once written

    # The same run up to the surrogate job: its data, victim and queries (and Snakemake's
    # records of them), without the job's outputs.
    workdir = tmp_path / "killed"
    shutil.copytree(tmp_path / "whole", workdir)
    (workdir / target).unlink()
    shutil.rmtree(workdir / f"{JOB}.models")
    job = workdir / JOB_CHECKPOINTS
    proc = subprocess.Popen(
        snakemake_cmd(workdir, "--cores", "1", target, configfile=config),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if any((job / "cells").glob("*.pt")) and any((job / "fit").glob("*.pt")):
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert not (workdir / target).exists(), "the job finished before it could be killed"
    assert any((job / "cells").glob("*.pt")), "killed before a cell was finished"
    assert run_snakemake(workdir, "--unlock", configfile=config).returncode == 0
    rerun = run_snakemake(workdir, "--cores", "1", target, configfile=config)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (workdir / f"results/logs/surrogates/{JOB.split('/', 2)[2]}.log").read_text()
    assert "finished by an earlier run" in log and "resuming from" in log, log[-3000:]
    assert not (workdir / "results/checkpoints").exists()
    left, right = (pd.read_parquet(d / target) for d in (tmp_path / "whole", workdir))
    left, right = (
        t.drop(columns=[c for c in t.columns if TIMING.search(c)]) for t in (left, right)
    )
    pd.testing.assert_frame_equal(left, right, check_exact=True)
    models = sorted(p.name for p in (tmp_path / "whole" / f"{JOB}.models").glob("*.pt"))
    assert len(models) == 4
    assert models == sorted(p.name for p in (workdir / f"{JOB}.models").glob("*.pt"))
    for name in models:
        a, b = (
            torch.load(d / f"{JOB}.models" / name, weights_only=True)
            for d in (tmp_path / "whole", workdir)
        )
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # The interval is no part of what a job computes: changing it reruns nothing.
    config.write_text(TINY.replace("checkpoint_minutes: 0.0005", "checkpoint_minutes: 0"))
    plan = run_snakemake(tmp_path / "whole", "-n", target, configfile=config)
    assert plan.returncode == 0 and "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout


@pytest.mark.parametrize("value", [-1, "often"])
def test_a_bad_checkpoint_interval_names_the_key(root, value):
    from stealbench import config

    cfg = yaml.safe_load((root / "configs" / "smoke.yaml").read_text())
    with pytest.raises(config.ConfigError, match="checkpoint_minutes"):
        config.validate({**cfg, "checkpoint_minutes": value})


def test_a_resumed_fit_with_batches_produced_ahead_in_a_thread(monkeypatch, tmp_path):
    """The GPU path's producer thread runs ahead of the step: a checkpoint still records the
    outliers drawn for the batches trained, not those prepared."""
    from stealbench.models import loader

    monkeypatch.setattr(loader, "BACKGROUND", True)
    reference, _ = _fit("outliers")
    path = tmp_path / "fit.pt"
    with pytest.raises(Interrupted):
        _fit("outliers", StopAfter(path, 2))
    resumed, _ = _fit("outliers", ckpt.Checkpointer(path, every_seconds=None))
    assert resumed.calls < reference.calls
    assert _same_weights(resumed, reference)
