"""README, "Attack your own model": its configs run as written, on model and data files this
test writes at the paths they name; and the probe stops a bad victim before any job."""

import re

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


def test_the_readme_has_the_two_local_configs():
    configs = [yaml.safe_load(c) for c in readme_configs()]
    assert [next(iter(c["victims"].values()))["source"] for c in configs] == [
        "checkpoint",
        "torchvision",
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
