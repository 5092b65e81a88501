"""Local sources give the same cells: a victim the workflow trained, saved as a checkpoint, a
TorchScript module and a torchvision model file, and imported under the same name in a fresh
run, is attacked to the same cells (the surrogates' seeds derive from the victim's name, so
the same name is what makes the runs comparable)."""

import re
import shutil

import pandas as pd
import pytest
import torch
import yaml
from conftest import TIMING, run_snakemake

from stealbench import io
from stealbench.models.victims import load_victim

pytestmark = pytest.mark.workflow

DATASETS = {
    "digits": {
        "source": "mnist5k",
        "task": "digits",
        "splits": {"train": 300, "val": 100, "test": 200, "pool": 100},
    }
}
ATTACKS = {"random-digits": {"strategy": "random", "pool": "digits"}}
SURROGATES = {
    "archs": ["lenet"],
    "granularities": ["probs", "label"],
    "budgets": [50],
    "seeds": [0],
    "training": {"epochs": 1, "batch_size": 64, "min_steps": 5},
}
# resnet18 is torchvision's: trained here at 16 px, it is a torchvision model of its own.
TRAINED = {
    "digits-lenet": {"dataset": "digits", "arch": "lenet", "attacks": ["random-digits"]},
    "digits-resnet18": {
        "dataset": "digits",
        "arch": "resnet18",
        "input_size": 16,
        "attacks": ["random-digits"],
    },
}
LENET_INPUT = {"size": 28, "channels": 1}
RESNET_INPUT = {"size": 16, "channels": 3, "normalize": "imagenet"}
SAME = ["test_acc", "agreement", "recovery", "kl_divergence", "granularity", "budget", "seed"]


def _config(victims) -> dict:
    return {
        "seed": 0,
        "datasets": DATASETS,
        "victim_training": {"epochs": 3, "batch_size": 64},
        "victims": victims,
        "attacks": ATTACKS,
        "surrogates": SURROGATES,
    }


def _run(workdir, victims):
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(_config(victims), sort_keys=False))
    run = run_snakemake(
        workdir, "--cores", "2", "results/tables/cells.parquet", configfile=path, timeout=600
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return pd.read_parquet(workdir / "results/tables/cells.parquet"), run


def _cells(cells, victim):
    rows = cells[cells["victim"] == victim]
    assert len(rows) == 2  # probs and label at budget 50, seed 0
    rows = rows.drop(columns=[c for c in rows.columns if TIMING.search(c)])
    return rows.sort_values(["granularity"]).reset_index(drop=True)


def test_checkpoint_torchscript_and_torchvision_victims_give_the_trained_victims_cells(
    tmp_path,
):
    trained, _ = _run(tmp_path / "trained", TRAINED)
    victims = tmp_path / "trained/results/victims"
    files = tmp_path / "files"
    files.mkdir()
    # the checkpoint: the trained Classifier's state dict, as train_victim saved it
    shutil.copy(victims / "digits-lenet/model.pt", files / "lenet.pt")
    lenet = load_victim(
        victims / "digits-lenet/model.pt", io.read_json(victims / "digits-lenet/metrics.json")
    )
    # the TorchScript module: the whole Classifier (adapter included) traced on 28x28 images
    traced = torch.jit.trace(lenet, torch.rand(2, 1, 28, 28))
    torch.jit.save(traced, files / "lenet.ts")
    # the torchvision model: resnet18's own state dict (without stealbench's adapter)
    resnet = load_victim(
        victims / "digits-resnet18/model.pt",
        io.read_json(victims / "digits-resnet18/metrics.json"),
    )
    torch.save(resnet.net.state_dict(), files / "resnet18.pth")

    external = {
        "digits-lenet": {
            "source": "checkpoint",
            "dataset": "digits",
            "classes": 10,
            "input": LENET_INPUT,
            "checkpoint": {
                "file": str(files / "lenet.pt"),
                "arch": "lenet",
                "sha256": io_sha256(files / "lenet.pt"),
            },
            "attacks": ["random-digits"],
        },
        "digits-resnet18": {
            "source": "torchvision",
            "dataset": "digits",
            "classes": 10,
            "input": RESNET_INPUT,
            "torchvision": {"model": "resnet18", "file": str(files / "resnet18.pth")},
            "attacks": ["random-digits"],
        },
    }
    imported, run = _run(tmp_path / "imported", external)
    assert "import_victim" in run.stderr and "train_victim" not in run.stderr
    scripted = {
        "digits-lenet": {
            "source": "torchscript",
            "dataset": "digits",
            "classes": 10,
            "input": LENET_INPUT,
            "torchscript": {"file": str(files / "lenet.ts")},
            "attacks": ["random-digits"],
        }
    }
    torchscript, _ = _run(tmp_path / "torchscript", scripted)

    for victim, cells, arch, init in [
        ("digits-lenet", imported, "lenet", "checkpoint"),
        ("digits-resnet18", imported, "resnet18", "torchvision"),
        ("digits-lenet", torchscript, "torchscript", "torchscript"),
    ]:
        want, got = _cells(trained, victim), _cells(cells, victim)
        assert (got["victim_arch"] == arch).all() and (got["victim_init"] == init).all()
        pd.testing.assert_frame_equal(got[SAME], want[SAME])
        others = [c for c in want.columns if c not in ("victim_arch", "victim_init")]
        pd.testing.assert_frame_equal(got[others], want[others])
    # the victims' own test accuracy, from the imported files
    for name in ("digits-lenet", "digits-resnet18"):
        a = io.read_json(victims / name / "metrics.json")
        b = io.read_json(tmp_path / "imported/results/victims" / name / "metrics.json")
        assert b["test_acc"] == a["test_acc"]
    # a checkpoint is the trained Classifier's own state dict: the same weights checksum
    a, b = (
        io.read_json(tmp_path / run / "results/victims/digits-lenet/metrics.json")
        for run in ("trained", "imported")
    )
    assert b["source"] == "checkpoint" and b["weights_checksum"] == a["weights_checksum"]


def io_sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_remote_victim_is_imported_without_a_model_file_and_left_out_of_the_defenses(
    root, tmp_path
):
    """The DAG of configs/smoke.yaml plus a remote victim (a dry run, STEALBENCH_NO_PROBE=1:
    no endpoint is asked): one import_remote_victim job, no model.pt of it anywhere, and no
    detector, PRADA or defended job for it."""
    import os

    cfg = yaml.safe_load((root / "configs/smoke.yaml").read_text())
    cfg["victims"]["api"] = {
        "source": "remote",
        "dataset": "digits",
        "classes": 10,
        "input": {"size": 28, "channels": 1},
        "remote": {"url": "http://127.0.0.1:9", "model": "digits"},
        "attacks": ["random-uci-digits", "jbda-digits"],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "STEALBENCH_NO_PROBE": "1"}
    run = run_snakemake(tmp_path, "-n", "--cores", "1", configfile=path, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout + run.stderr
    assert re.search(r"^import_remote_victim +1$", out, flags=re.M)
    assert re.search(r"^train_detector +3$", out, flags=re.M)  # the three trained victims
    assert "results/victims/api/model.pt" not in out
    assert "defenses/api" not in out and "defended/api" not in out
    assert "results/queries/api/random-uci-digits/s0.parquet" in out
    assert "results/queries/api/jbda-digits/none/s0.parquet" in out
