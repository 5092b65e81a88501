"""README, "Attack your own model": its configs run as written, on model and data files this
test writes at the paths they name (the remote one against the checkpoint victim served by
``stealbench serve`` as the README says); and the probe stops a bad victim before any job."""

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, run_snakemake
from PIL import Image

pytestmark = pytest.mark.workflow


def readme_configs() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Attack your own model\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", section, flags=re.S)


def _image_tree(root, classes, per_class, size, channels, seed=0):
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
            Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(
                root / name / f"{i}.png"
            )


def _checkpoint_files(workdir, cfg):
    from stealbench.models.architectures import create_model

    victim = cfg["victims"]["my-lenet"]
    _image_tree(workdir / "my-digits", [str(d) for d in range(10)], 4, 28, 1)
    (workdir / "models").mkdir()
    torch.save(
        create_model("lenet", 10, seed=0).state_dict(), workdir / victim["checkpoint"]["file"]
    )


def _torchvision_files(workdir, cfg):
    from torchvision.models import get_model

    victim = cfg["victims"]["my-mobilenet"]
    _image_tree(workdir / "my-photos", victim["classes"], 4, 48, 3)
    (workdir / "models").mkdir()
    model = get_model("mobilenet_v3_small", weights=None, num_classes=3)
    torch.save(model.state_dict(), workdir / victim["torchvision"]["file"])


def test_the_readme_has_the_three_configs():
    configs = [yaml.safe_load(c) for c in readme_configs()]
    assert [next(iter(c["victims"].values()))["source"] for c in configs] == [
        "checkpoint",
        "torchvision",
        "remote",
    ]


@pytest.mark.parametrize(
    ("index", "victim", "write"),
    [(0, "my-lenet", _checkpoint_files), (1, "my-mobilenet", _torchvision_files)],
    ids=["checkpoint", "torchvision"],
)
def test_a_readme_config_runs_as_written(tmp_path, index, victim, write):
    text = readme_configs()[index]
    path = tmp_path / "config.yaml"
    path.write_text(text)  # as written: relative paths are relative to the run's directory
    cfg = yaml.safe_load(text)
    write(tmp_path, cfg)
    run = run_snakemake(tmp_path, "--cores", "2", configfile=path, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    cells = pd.read_parquet(tmp_path / "results/tables/cells.parquet")
    grid = cfg["surrogates"]
    assert len(cells) == len(grid["granularities"]) * len(grid["budgets"])
    assert set(cells["victim"]) == {victim}
    victims = pd.read_parquet(tmp_path / "results/tables/victims.parquet")
    assert victims["test_acc"].between(0, 1).all()
    assert (tmp_path / "results/findings.md").is_file()


def test_a_bad_victim_stops_the_run_before_any_job(tmp_path):
    """The probe runs while Snakemake plans: a missing file, then a pinned checksum that
    differs, each a WorkflowError naming the key, and nothing under results/."""
    text = readme_configs()[0]
    cfg = yaml.safe_load(text)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    run = run_snakemake(tmp_path, "--cores", "1", configfile=path, timeout=300)
    assert run.returncode != 0
    assert (
        "invalid victim:\nconfig key 'victims.my-lenet.checkpoint.file': 'models/my-lenet.pt'"
        in (run.stderr + run.stdout)
    )
    assert not (tmp_path / "results").exists()
    _checkpoint_files(tmp_path, cfg)
    cfg["victims"]["my-lenet"]["checkpoint"]["sha256"] = "0" * 64
    path.write_text(yaml.safe_dump(cfg))
    run = run_snakemake(tmp_path, "--cores", "1", configfile=path, timeout=300)
    assert run.returncode != 0
    assert "config key 'victims.my-lenet.checkpoint.sha256'" in run.stderr + run.stdout
    assert not (tmp_path / "results").exists()


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_readme_remote_config_attacks_the_served_checkpoint(tmp_path):
    """The README's commands: a key for alice, `stealbench serve` of the checkpoint victim
    (after the first config ran), then the remote config run as written from another folder
    with the key in STEALBENCH_API_KEY. The server bills alice for every image the run's
    ledger holds, once (the probe's one batch besides)."""
    owner = tmp_path / "owner"
    owner.mkdir()
    text = readme_configs()[0]
    (owner / "my-lenet.yaml").write_text(text)
    _checkpoint_files(owner, yaml.safe_load(text))
    run = run_snakemake(
        owner,
        "--cores",
        "2",
        "results/victims/my-lenet/metrics.json",
        configfile=owner / "my-lenet.yaml",
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    stealbench = [sys.executable, "-m", "stealbench"]
    made = subprocess.run(
        [*stealbench, "keys", "add", "--keys", "keys.yaml", "alice"],
        cwd=owner,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = made.stdout.strip().split()[-1]
    remote_text = readme_configs()[2]
    url = yaml.safe_load(remote_text)["victims"]["my-api"]["remote"]["url"]
    port = int(url.rsplit(":", 1)[1])
    if not _free(port):  # another program holds the README's port: only the port changes
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        remote_text = remote_text.replace(url, f"http://127.0.0.1:{port}")
    server = subprocess.Popen(
        [
            *stealbench,
            "serve",
            "--configfile",
            "my-lenet.yaml",
            "--victim",
            "my-lenet",
            "--keys",
            "keys.yaml",
            "--port",
            str(port),
        ],
        cwd=owner,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    attacker = tmp_path / "attacker"
    attacker.mkdir()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "stealbench serve did not start"
                time.sleep(0.25)
        (attacker / "config.yaml").write_text(remote_text)
        _image_tree(attacker / "my-digits", [str(d) for d in range(10)], 4, 28, 1)
        env = {**os.environ, "STEALBENCH_API_KEY": key}
        run = run_snakemake(
            attacker, "--cores", "2", configfile=attacker / "config.yaml", timeout=600, env=env
        )
        assert run.returncode == 0, run.stderr[-4000:]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/models/my-lenet/stats",
            headers={"Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            import json

            billed = json.load(response)["model_stats"][0]["inference_count"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    cells = pd.read_parquet(attacker / "results/tables/cells.parquet")
    assert len(cells) == 4 and set(cells["victim"]) == {"my-api"}
    with sqlite3.connect(attacker / "results/victims/my-api/answers.sqlite") as db:
        by_purpose = dict(db.execute("select purpose, count(*) from answers group by purpose"))
    assert by_purpose["evaluation"] == 40  # the 40 test images
    assert 0 < by_purpose["attack"] <= 300
    # every image the ledger holds billed once, and the probe's one batch of 4 grey images
    assert billed == sum(by_purpose.values()) + 4, (billed, by_purpose)
    # the key reached the server and nothing else
    for path in (attacker / "results").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
