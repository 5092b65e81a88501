"""A victim behind an Open Inference Protocol endpoint, attacked by the workflow over HTTP.

The smoke grid's ``digits-lenet`` (every strategy: random sampling of three pools, adaptive,
JbDA, ActiveThief, DFME; every granularity) is trained once by the shared smoke run, then
served and attacked as ``source: remote``: by ``stealbench serve`` with the whole smoke grid,
and by MLServer, a server this project did not write, from a TorchScript copy, with two of the
attacks (one sampling, one sequential). Each remote run's cells are the in-process run's.

The answers are the victim's own to the last bit: a victim computes every posterior in a batch
of one fixed size (:func:`stealbench.models.victims.victim_posteriors`; MLServer's runtime in
tests/fixtures/mlserver does the same), since a CPU's kernels round differently with a batch's
size, by ~1e-8 in a posterior, which training carries into the cells' divergences and DFME's
finite differences into its queries. So every cell is the same number, to the last bit. The
victim's description differs by design (``victim_arch`` is ``remote``): the columns that
describe its source are left out.
"""

import copy
import sqlite3
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import SMOKE, TIMING, run_snakemake

from stealbench import io
from stealbench.models.victims import load_victim, victim_posteriors
from stealbench.serve import runner
from stealbench.serve.app import ServedModel, create_app

sys.path.insert(0, str(Path(__file__).parent))
from oip_mlserver import mlserver  # noqa: E402

pytestmark = pytest.mark.workflow

VICTIM = "digits-lenet"
SOURCE_COLUMNS = ["victim_arch", "victim_init"]  # what the victim is, not what it answered
PROBE_IMAGES = 4  # the probe's one batch of grey images, sent once per snakemake call


def remote_config(url: str, model: str = VICTIM, attacks: list[str] | None = None) -> dict:
    """The smoke grid with ``digits-lenet`` behind ``url`` (its other victims and the
    defenses left out: a remote victim's API cannot be defended)."""
    cfg = yaml.safe_load(SMOKE.read_text())
    attacks = attacks or cfg["victims"][VICTIM]["attacks"]
    cfg["victims"] = {
        VICTIM: {
            "source": "remote",
            "dataset": cfg["victims"][VICTIM]["dataset"],
            "classes": 10,
            "input": {"size": 28, "channels": 1, "normalize": "none"},
            "remote": {"url": url, "model": model, "returns": "probs"},
            "attacks": attacks,
        }
    }
    cfg["attacks"] = {name: cfg["attacks"][name] for name in attacks}
    cfg.pop("defenses")
    return cfg


def run(workdir: Path, cfg: dict) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = run_snakemake(workdir, "--cores", "2", configfile=path)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def cells(workdir: Path, attacks) -> pd.DataFrame:
    table = pd.read_parquet(workdir / "results/tables/cells.parquet")
    table = table[(table["victim"] == VICTIM) & table["attack"].isin(attacks)]
    drop = [c for c in table.columns if TIMING.search(c)] + SOURCE_COLUMNS
    keys = ["attack", "granularity", "budget", "surrogate_arch", "surrogate_init", "seed"]
    return table.drop(columns=drop).sort_values(keys).reset_index(drop=True)


def assert_same_cells(in_process: Path, remote: Path, attacks) -> None:
    left, right = cells(in_process, attacks), cells(remote, attacks)
    assert list(left.columns) == list(right.columns) and len(left) == len(right) > 0
    pd.testing.assert_frame_equal(left, right, check_exact=True)


def ledger_rows(workdir: Path) -> int:
    with sqlite3.connect(workdir / "results/victims" / VICTIM / "answers.sqlite") as db:
        return db.execute("select count(*) from answers").fetchone()[0]


@pytest.fixture(scope="module")
def victim_model(smoke_workdir):
    folder = smoke_workdir / "results/victims" / VICTIM
    return load_victim(folder / "model.pt", io.read_json(folder / "metrics.json"))


def test_the_smoke_grid_over_stealbench_serve_gives_the_in_process_cells(
    smoke_workdir, victim_model, tmp_path
):
    served = ServedModel(VICTIM, lambda x: victim_posteriors(victim_model, x), (28, 28, 1), 10)
    app = create_app([served])
    cfg = remote_config("")
    with runner.background(app) as url:
        cfg["victims"][VICTIM]["remote"]["url"] = url
        remote = run(tmp_path, cfg)
        billed = app.state.gate.stats()["anonymous"]["images"]
    attacks = list(cfg["attacks"])
    assert len(cells(remote, attacks)) == 84  # the smoke grid's cells of digits-lenet
    assert_same_cells(smoke_workdir, remote, attacks)
    # every image the ledger holds (the attackers' distinct queries and the test split) paid
    # once, and the probe's batch
    assert billed == ledger_rows(remote) + PROBE_IMAGES


def test_mlserver_gives_the_in_process_cells(smoke_workdir, victim_model, tmp_path):
    scripted = tmp_path / "victim.pt"
    torch.jit.script(copy.deepcopy(victim_model)).save(str(scripted))
    attacks = ["random-digits", "jbda-digits"]
    with mlserver(scripted, tmp_path, name="victim") as url:
        remote = run(tmp_path / "remote", remote_config(url, "victim", attacks))
    assert_same_cells(smoke_workdir, remote, attacks)
