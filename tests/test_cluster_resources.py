"""SLURM job resources computed from the work (stealbench.config.resources): the cost model on
hand-made configs, and the paper grid as Snakemake plans it through profiles/slurm."""

import copy
import json
import re
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT, SMOKE, run_snakemake

from stealbench.config import resources, validate

PAPER = ROOT / "configs" / "paper.yaml"
PROFILE = ROOT / "profiles" / "slurm"
REPORT_RULES = ("aggregate_cells", "plot_claims", "write_findings", "aggregate_defenses")

# Made-up costs: every figure below follows from them, none from a measurement.
COSTS = {
    "cpu": {
        "lenet@28": {
            "train_seconds_per_image": 0.01,
            "infer_seconds_per_image": 0.001,
            "train_batch": 64,
            "train_peak_mb": 100.0,
            "params": 1000,
        },
        "resnet8@28": {
            "train_seconds_per_image": 0.02,
            "infer_seconds_per_image": 0.002,
            "train_batch": 64,
            "train_peak_mb": 200.0,
            "params": 1000,
        },
    },
    "native_sizes": {"lenet": 28, "resnet8": 28},
}


def smoke(**changes) -> dict:
    config = yaml.safe_load(SMOKE.read_text())
    for key, value in changes.items():
        section, name = key.split("__")
        config.setdefault(section, {})[name] = value
    return validate(config)


def cell(planner, budget, arch="lenet"):
    part = f"scratch-probs-b{budget}"
    wc = {"victim": "digits-lenet", "attack": "random-digits", "arch": arch, "seed": "0"}
    return planner.job("train_surrogates", {**wc, "part": part})


# ------------------------------------------------------------------------ the cost model


def test_a_cells_work_is_its_epochs_times_its_images():
    training = {"epochs": 3, "batch_size": 64, "min_steps": 0}
    planner = resources.Planner(smoke(surrogates__training=training), COSTS)
    small, large = cell(planner, 50), cell(planner, 200)
    assert small.train_images == 3 * 50 and large.train_images == 3 * 200
    assert large.steps == 3 * 4 and small.steps == 3 * 1
    test = planner.split("digits", "test")  # each cell is scored on the victim's test split
    assert large.infer_images == small.infer_images == test
    # The priced seconds: images x the architecture's seconds per image
    assert large.device_seconds == pytest.approx(3 * 200 * 0.01 + test * 0.001)
    doubled = resources.Planner(smoke(surrogates__training={**training, "epochs": 6}), COSTS)
    assert cell(doubled, 200).train_images == 2 * large.train_images
    assert cell(planner, 200, "resnet8").device_seconds == pytest.approx(
        3 * 200 * 0.02 + test * 0.002
    )


def test_min_steps_lengthen_a_small_cell():
    training = {"epochs": 1, "batch_size": 10, "min_steps": 40}
    planner = resources.Planner(smoke(surrogates__training=training), COSTS)
    assert cell(planner, 50).steps == 40  # 5 steps an epoch, 8 epochs
    assert cell(planner, 50).train_images == 8 * 50


def test_runtime_is_startup_plus_the_safety_factor_times_the_work():
    training = {"epochs": 100, "batch_size": 64, "min_steps": 0}
    for safety in (1, 3):
        config = smoke(
            surrogates__training=training,
            cluster__safety_factor=safety,
            cluster__startup_minutes=2,
        )
        job = cell(resources.Planner(config, COSTS), 200)
        assert job.runtime == pytest.approx(2 + safety * job.device_seconds / 60, abs=1)
        assert job.gpu == 0  # device cpu


def test_a_gpu_only_with_device_cuda_and_a_model_on_it():
    config = smoke(surrogates__training={"epochs": 1})
    assert cell(resources.Planner({**config, "device": "cuda"}, COSTS), 50).gpu == 1
    assert cell(resources.Planner(config, COSTS), 50).gpu == 0


def test_a_remote_victims_answers_take_no_gpu_and_are_priced_by_its_timeout():
    config = yaml.safe_load(SMOKE.read_text())
    config["victims"]["api"] = {
        "source": "remote",
        "dataset": "digits",
        "classes": 10,
        "input": {"size": 28, "channels": 1},
        "remote": {"url": "http://127.0.0.1:9", "model": "digits", "batch_size": 10},
        "attacks": ["random-uci-digits"],
    }
    config = {**validate(config), "device": "cuda"}
    planner = resources.Planner(config, {**COSTS, "cuda": COSTS["cpu"]})
    wc = {"victim": "api", "attack": "random-uci-digits", "seed": "0"}
    job = planner.job("sample_pool", wc)
    budget = max(config["attacks"]["random-uci-digits"].get("budgets", [50, 200]))
    assert job.gpu == 0 and job.infer_images == 0
    assert job.device_seconds == pytest.approx(-(-budget // 10) * 30 / 4)  # timeout_s, concurrency
    local = planner.job("sample_pool", {**wc, "victim": "digits-resnet8"})
    assert local.gpu == 1 and local.infer_images == budget


def test_an_unmeasured_size_is_priced_by_pixels():
    planner = resources.Planner(smoke(), COSTS)
    double = planner.entry("lenet", 56)
    assert double["train_seconds_per_image"] == pytest.approx(4 * 0.01)
    # an architecture without an entry costs as the costliest one known
    assert planner.entry("vgg16", 28)["train_seconds_per_image"] == 0.02


def test_an_imagefolder_split_is_read_from_the_materialised_dataset(tmp_path):
    config = yaml.safe_load(SMOKE.read_text())
    config["datasets"]["tree"] = {
        "source": "imagefolder",
        "task": "trees",
        "options": {"root": str(tmp_path / "tree"), "image_size": 32},
        "splits": {"pool": -1},
    }
    config["attacks"]["random-tree"] = {"strategy": "random", "pool": "tree"}
    config["victims"]["digits-lenet"]["attacks"].append("random-tree")
    config["cluster"] = {"unknown_split_images": 12345}
    config = validate(config)
    planner = resources.Planner(config, COSTS, data_root=tmp_path)
    assert planner.split("tree", "pool") == 12345  # not materialised: the assumption
    path = tmp_path / "results" / "data" / "tree.parquet"
    path.parent.mkdir(parents=True)
    meta = {"split_counts": {"train": 0, "val": 0, "test": 0, "pool": 777}}
    table = pa.table({"label": [0]}).replace_schema_metadata(
        {b"stealbench": json.dumps(meta).encode()}
    )
    pq.write_table(table, path)
    planner = resources.Planner(config, COSTS, data_root=tmp_path)
    assert planner.split("tree", "pool") == 777
    # the data a job holds grows with the images it loads
    assert planner.held("tree") == 777 * 32 * 32 * 3


def test_groups_stay_under_the_ceiling():
    training = {"epochs": 100, "batch_size": 64, "min_steps": 0}
    for ceiling in (30, 60, 600, 100000):
        config = smoke(
            surrogates__training=training,
            cluster__max_group_runtime_minutes=ceiling,
            cluster__max_group_jobs=16,
        )
        planner = resources.Planner(config, COSTS)
        for budget in (50, 200):
            wc = {"victim": "digits-lenet", "attack": "random-digits", "arch": "lenet"}
            wc = {**wc, "seed": "0", "part": f"scratch-probs-b{budget}"}
            runtime = planner.job("train_surrogates", wc).runtime
            group = planner.group("train_surrogates")(wc)
            if runtime * 2 > ceiling:
                assert group is None, (ceiling, runtime)
                continue
            k = int(group.removeprefix("surrogates-x"))
            assert 2 <= k <= 16 and k * runtime <= ceiling, (ceiling, runtime, group)
            assert k == 16 or 2 * k * runtime > ceiling  # as many as fit


def test_the_profile_merges_every_group_size_the_config_allows():
    """A group id surrogates-x<k> without group-components k would leave its jobs alone."""
    from stealbench.config import load_schema

    allowed = load_schema()["properties"]["cluster"]["properties"]["max_group_jobs"]["enum"]
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    expected = {f"{resources.SURROGATE_GROUP}-x{k}": k for k in allowed if k > 1}
    assert {
        name: n for name, n in profile["group-components"].items() if name in expected
    } == expected
    assert "train_surrogates" not in profile["groups"]  # it would replace the rule's group


def test_the_plan_imports_no_torch():
    code = (
        "import sys, yaml; from stealbench.config import resources, validate;"
        f"c = validate(yaml.safe_load(open({str(PAPER)!r})));"
        "rows = resources.summary(c); assert rows;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_every_architecture_has_a_cost_with_its_provenance():
    from stealbench.models.architectures import ARCHITECTURES

    costs = resources.load_costs()
    assert costs["native_sizes"] == {a: s.size for a, s in ARCHITECTURES.items()}
    for kind in ("cpu", "cuda"):
        for arch, spec in ARCHITECTURES.items():
            entry = costs[kind][f"{arch}@{spec.size}"]
            assert entry["train_seconds_per_image"] > entry["infer_seconds_per_image"] > 0
            stamp = entry.get("measured_on") or entry["estimated_from"]
            assert stamp["device"] and stamp["date"], (kind, arch)
            if "measured_on" in entry:
                assert stamp["torch"], (kind, arch)
            else:
                assert "source" in stamp, (kind, arch)


# ------------------------------------------------------------ the paper grid, as planned


def parse_plan(text: str) -> tuple[list[dict], list[dict]]:
    """Every job of a dry run (rule, wildcards, resources) and every group (id, members)."""
    jobs, groups, group, job = [], [], None, None
    for line in text.splitlines():
        header = re.match(r"\[.*\] Group job (\S+) ", line)
        if header:
            group = {"id": header.group(1), "members": []}
            groups.append(group)
            continue
        rule = re.match(r"(\s*)(?:local)?rule (\w+):", line)
        if rule:
            if not rule.group(1):
                group = None  # a job at the top level ends a group's listing
            job = {"rule": rule.group(2), "wildcards": {}, "resources": {}}
            jobs.append(job)
            if group is not None:
                group["members"].append(job)
            continue
        field = re.match(r"\s+(wildcards|resources): (.*)", line)
        if field and job is not None:
            pairs = (item.split("=", 1) for item in field.group(2).split(", ") if "=" in item)
            job[field.group(1)] = dict(pairs)
    return jobs, groups


def plan(tmp_path, config_path, profile=PROFILE):
    run = run_snakemake(
        tmp_path, "--profile", str(profile), "-n", configfile=config_path, timeout=300
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return parse_plan(run.stdout + run.stderr)


@pytest.fixture(scope="module")
def paper_plan(tmp_path_factory):
    return plan(tmp_path_factory.mktemp("paper-plan"), PAPER)


def runtime(job) -> int:
    return int(job["resources"]["runtime"])


@pytest.mark.workflow
def test_the_paper_grids_runtimes_grow_with_the_work(paper_plan):
    jobs, _ = paper_plan
    cells = {}
    for job in jobs:
        if job["rule"] == "train_surrogates":
            w = job["wildcards"]
            rest, budget = w["part"].rsplit("-b", 1)
            key = (w["victim"], w["attack"], w["arch"], w["seed"], rest)
            cells.setdefault(key, {})[int(budget)] = runtime(job)
    assert len(cells) == 168 and all(len(c) == 4 for c in cells.values())
    for key, by_budget in cells.items():
        runtimes = [by_budget[b] for b in sorted(by_budget)]
        assert runtimes == sorted(runtimes) and runtimes[0] < runtimes[-1], (key, by_budget)
        if key[2] == "resnet34":  # 10x the images: many times the runtime
            assert by_budget[100000] >= 5 * by_budget[10000], (key, by_budget)
    # A VGG-16 cell costs more than a ResNet-34 one on the same queries
    for (v, a, arch, s, rest), by_budget in cells.items():
        if arch == "vgg16":
            assert by_budget[100000] > cells[(v, a, "resnet34", s, rest)][100000]
    # Victims: a ResNet-34 fine-tuned at 224 asks for more than a 32x32 CNN
    victims = {j["wildcards"]["victim"]: runtime(j) for j in jobs if j["rule"] == "train_victim"}
    assert victims["gtsrb-rn34"] > victims["gtsrb-5l"]


@pytest.mark.workflow
def test_the_paper_grids_groups_stay_under_the_ceiling(paper_plan):
    jobs, groups = paper_plan
    ceiling = validate(yaml.safe_load(PAPER.read_text()))["cluster"]["max_group_runtime_minutes"]
    surrogate_groups = [g for g in groups if g["id"].startswith("surrogates-")]
    assert any(len(g["members"]) > 1 for g in surrogate_groups), "nothing was grouped"
    for group in surrogate_groups:
        # Members run one after another (group_slot), so a group asks for their sum; were
        # some side by side, it would ask for less.
        total = sum(runtime(job) for job in group["members"])
        assert total <= ceiling, (group["id"], total)
        assert len(group["members"]) <= int(group["id"].removeprefix("surrogates-x"))
    grouped = {id(job) for g in groups for job in g["members"]}
    long = [j for j in jobs if j["rule"] == "train_surrogates" and runtime(j) * 2 > ceiling]
    assert long and not any(id(job) in grouped for job in long)


@pytest.mark.workflow
def test_the_paper_grid_asks_a_gpu_only_for_model_jobs(paper_plan):
    jobs, _ = paper_plan
    seen = set()
    for job in jobs:
        gpu = int(job["resources"].get("gpu", 0))
        if job["rule"] in resources.MODEL_RULES:
            assert gpu == 1, job
            seen.add(job["rule"])
        else:
            assert gpu == 0, job
    assert {"train_victim", "train_surrogates", "sample_pool"} <= seen
    assert any(j["rule"] in REPORT_RULES for j in jobs)


@pytest.mark.workflow
def test_on_cpu_no_gpu_is_asked_and_the_profile_overrides_the_computed_value(tmp_path):
    config = yaml.safe_load(PAPER.read_text())
    config["device"] = "cpu"
    path = tmp_path / "paper-cpu.yaml"
    path.write_text(yaml.safe_dump(config))
    # The documented route: a copy of the profile with the rule's value under set-resources
    # (--set-resources on the command line would replace the profile's whole mapping).
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    profile["set-resources"]["train_victim"] = {"runtime": 7}
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    jobs, _ = plan(tmp_path, path, tmp_path / "profile")
    assert jobs and all(int(j["resources"].get("gpu", 0)) == 0 for j in jobs)
    victims = [j for j in jobs if j["rule"] == "train_victim"]
    assert victims and all(runtime(j) == 7 for j in victims)
    # the others keep their computed values: on one CPU thread a ResNet-34 cell takes days
    cells = [runtime(j) for j in jobs if j["rule"] == "train_surrogates"]
    assert min(cells) > 7 and max(cells) > 24 * 60


def test_the_smoke_grid_asks_for_little_memory():
    """tests/test_slurm.py runs the smoke grid on a single-node cluster of this machine."""
    config = validate(copy.deepcopy(yaml.safe_load(SMOKE.read_text())))
    rows = resources.summary(config)
    assert max(r["max_mem_mb"] for r in rows) <= 4000
