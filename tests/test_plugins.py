"""A plug-in package installed beside stealbench: its methods work with no edit to stealbench.

`tests/fixtures/stealbench-plugin-example` is a package as a third party would write it: a
label-smoothing defense and a stride sampler, registered through the entry-point groups
`stealbench.defenses` and `stealbench.strategies` (see `stealbench.plugins`). pip installs it
into a folder of its own, put on PYTHONPATH of the processes that should see it, so this
test process and the rest of the suite never do.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import yaml
from conftest import ROOT, SMOKE, run_snakemake

FIXTURE = ROOT / "tests" / "fixtures" / "stealbench-plugin-example"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """The plug-in, installed by pip (offline: no dependency, no build isolation) into a
    folder of its own; a copy of the fixture is built, so the repository stays clean."""
    work = tmp_path_factory.mktemp("plugin")
    shutil.copytree(FIXTURE, work / "src")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(work / "site"), str(work / "src")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return work / "site"


def with_plugin(site) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src")])}


PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import yaml
    from stealbench import config
    from stealbench.attack.strategies.registry import declared, lookup
    from stealbench.defense import DefenseContext, create, lookup as defense

    cfg = yaml.safe_load(open(sys.argv[1]))
    cfg["attacks"]["stride-digits"] = {"strategy": "stride", "pool": "digits",
                                       "options": {"stride": 7}}
    cfg["defenses"]["defended"]["defenses"]["label-smoothing"] = {"alpha": [0.2, 0.6]}
    cfg = config.validate(cfg)
    ids = [d.id for d in config.defense_instances(cfg)]
    smooth = create("label-smoothing", DefenseContext(), alpha=0.5)
    answers = smooth(np.array([[0.7, 0.2, 0.1]]), np.zeros((1, 2, 2, 1), np.uint8))
    print(json.dumps({
        "kind": declared()["stride"].kind,
        "options": sorted(declared()["stride"].options),
        "module": lookup("stride").module,
        "strength": defense("label-smoothing").strength,
        "instances": [i for i in ids if i.startswith("label-smoothing")],
        "answers": answers.tolist(),
    }))
    """
)


def test_a_plugins_methods_are_declared_validated_and_run(plugin_site):
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(SMOKE)],
        capture_output=True, text=True, timeout=300, env=with_plugin(plugin_site),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["kind"] == "sampling" and found["options"] == ["stride"]
    assert found["module"] == "stealbench_plugin_example.stride"
    assert found["strength"] == "alpha"
    assert found["instances"] == ["label-smoothing@0.2", "label-smoothing@0.6"]
    # (1 - 0.5) p + 0.5 / 3, by hand
    assert found["answers"] == [pytest.approx([0.35 + 1 / 6, 0.1 + 1 / 6, 0.05 + 1 / 6])]


def test_without_the_plugin_its_names_are_config_errors(tmp_path):
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["defenses"]["defended"]["defenses"]["label-smoothing"] = {"alpha": [0.5]}
    path = tmp_path / "needs-plugin.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = run_snakemake(tmp_path, "-n", "--cores", "1", configfile=path, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "config key 'defenses.defended.defenses': unknown key 'label-smoothing'" in out, out


@pytest.mark.workflow
def test_a_plugin_runs_through_the_smoke_grid(plugin_site, smoke_workdir, tmp_path):
    """On a copy of the finished smoke run (time stamps kept, so only what the plug-in adds
    runs): the stride sampler as a new attack on digits-lenet, label smoothing as a new
    defended configuration. Nothing inside src/, rules/, workflow/ or the schema changes."""
    workdir = tmp_path / "run"
    shutil.copytree(smoke_workdir, workdir, symlinks=True)
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["attacks"]["stride-digits"] = {
        "strategy": "stride",
        "pool": "digits",
        "options": {"stride": 7},
        "granularities": ["probs"],
        "archs": ["lenet"],
    }
    cfg["victims"]["digits-lenet"]["attacks"].append("stride-digits")
    cfg["defenses"]["defended"]["defenses"]["label-smoothing"] = {"alpha": [0.6]}
    path = tmp_path / "with-plugin.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = run_snakemake(
        workdir, "--cores", "2", configfile=path, timeout=1800, env=with_plugin(plugin_site)
    )
    assert run.returncode == 0, run.stderr[-4000:]

    cells = pd.read_parquet(workdir / "results/tables/cells.parquet")
    stride = cells[cells["attack"] == "stride-digits"]
    # 2 budgets x 2 seeds, probs, lenet from scratch
    assert len(stride) == 4 and set(stride["strategy"]) == {"stride"}
    assert stride["test_acc"].gt(0.2).all()  # it stole something: chance is 0.1
    defended = pd.read_parquet(workdir / "results/tables/defended.parquet")
    smooth = defended[defended["defense"] == "label-smoothing"]
    # the sampling attacks met it through their caches; adaptive-letters' sequential
    # defenses (none, mad) do not include it
    assert set(smooth["attack"]) == {"random-digits", "random-letters"}
    assert set(smooth["defense_id"]) == {"label-smoothing@0.6"}
    # smoothing never changes a top-1: benign users lose nothing; the answers moved
    assert (smooth["benign_utility"] == smooth["victim_acc"]).all()
    assert (smooth["attack_l1"] > 0).all()


def test_an_entry_point_that_registers_nothing_is_named_in_the_error(monkeypatch):
    """docs/bad-inputs.md: a plug-in whose module does not register the method its entry
    point names fails at import, naming the entry point and the module."""
    from importlib.metadata import EntryPoint

    from stealbench import plugins

    broken = EntryPoint(name="smoothing", value="json", group="stealbench.defenses")
    monkeypatch.setattr(plugins, "entry_points", lambda group: [broken])
    with pytest.raises(
        plugins.PluginError,
        match="entry point 'smoothing' of group 'stealbench.defenses': importing 'json' "
        "registered no method named 'smoothing'",
    ):
        plugins.load("defenses", {})
    missing = EntryPoint(name="gone", value="no_such_module_here", group="stealbench.strategies")
    with pytest.raises(plugins.PluginError, match="names module 'no_such_module_here'"):
        plugins.module_source(missing)
