# Config validation, the grid, and input functions shared by every stage.
import os
import re

from stealbench import config as stealbench_config
from stealbench.config import resources as stealbench_resources
from stealbench.defense import monitor as stealbench_monitors

# A training job's checkpoint directory and interval (torch-free, as planning needs). Rules
# pass it as a param that is no builtin type: Snakemake leaves such a param out of its params
# rerun trigger, so changing checkpoint_minutes reruns no finished job.
from stealbench.models.checkpoint import CheckpointPlan

try:
    for configfile_path in workflow.configfiles:
        stealbench_config.check_duplicate_keys(configfile_path)
    config = stealbench_config.validate(config)
except stealbench_config.ConfigError as err:
    raise WorkflowError(f"invalid config:\n{err}") from None

# Victims the workflow trains, and those it imports (a model file or an endpoint).
TRAINED_VICTIMS = stealbench_config.victims_of(config, "train")
LOCAL_VICTIMS = stealbench_config.victims_of(
    config, "checkpoint", "torchscript", "torchvision"
)
REMOTE_VICTIMS = stealbench_config.victims_of(config, "remote")
# The one-batch probe of every external victim, once, before any job: in the main process
# only (a job that re-parses the Snakefile, e.g. on a SLURM node, skips it), and not with
# STEALBENCH_NO_PROBE=1 (e.g. to plan offline, without a request to a remote victim).
if (
    (LOCAL_VICTIMS or REMOTE_VICTIMS)
    and workflow.is_main_process
    and os.environ.get("STEALBENCH_NO_PROBE") != "1"
):
    from stealbench.victim import probe as stealbench_probe

    try:
        stealbench_probe.probe(config)
    except (ValueError, OSError, RuntimeError) as err:
        raise WorkflowError(f"invalid victim:\n{err}") from None

DATASETS = list(config["datasets"])
BACKBONES = list(config["pretrain"])
VICTIMS = list(config["victims"])
ATTACKS = list(config["attacks"])
SAMPLING = [a for a in ATTACKS if not stealbench_config.is_sequential(config, a)]
SEQUENTIAL = [a for a in ATTACKS if stealbench_config.is_sequential(config, a)]
PAIRS = stealbench_config.victim_attacks(config)
S = config["surrogates"]
ENV = "../envs/stealbench.yaml"
DEFENSES = config.get("defenses")
INSTANCES = {d.id: d for d in stealbench_config.defense_instances(config)}
DEFENSE_NAMES = {d.name for d in INSTANCES.values()}
# Victims the defense stage evaluates (the detector, PRADA): all but remote ones.
DEFENSE_VICTIMS = stealbench_config.defense_victims(config)
# Victims whose API is defended (they get the models their defenses need).
DEFENDED_VICTIMS = sorted({v for v, _ in stealbench_config.defended_pairs(config)})
# Every surrogate architecture of the grid, the defended surrogates' included.
ARCHS = sorted(
    {
        arch
        for victim, attack in PAIRS
        for arch in stealbench_config.axes(config, attack, victim)["archs"]
    }
    | set(DEFENSES["defended"]["archs"] if DEFENSES else [])
)
DEFENSE_TABLES = [
    "detection",
    "prada",
    "prada_curve",
    "defended",
    "matched_cost",
    "dawn",
]
# Datasets an attacker could query: the detector is scored on every one of them.
POOL_DATASETS = [
    name
    for name, spec in config["datasets"].items()
    if stealbench_config.split_sizes(spec).get("pool", 0) != 0
]
# The runtime (minutes), memory (MB) and GPUs of every model rule's jobs, computed from each
# job's work (stealbench.config.resources: images trained and inferred x the measured cost per
# image of the architecture, x cluster.safety_factor). gpu is 1 with `device: cuda` where the
# job puts a model on the device (the SLURM profile turns it into `sbatch --gpus=1`), else 0.
# A profile's set-resources replaces any of them (Snakemake applies it over the rule's own).
RESOURCES = stealbench_resources.Planner(config)


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    backbone=_alternatives(BACKBONES),
    victim=_alternatives(VICTIMS),
    attack=_alternatives(ATTACKS),
    arch=_alternatives(ARCHS),
    defense=_alternatives(["none", *INSTANCES]),
    seed=r"\d+",
    part=r"all|[A-Za-z0-9_.-]+-[a-z0-9]+-b\d+",


def dataset_path(name):
    return f"results/data/{name}.parquet"


def backbone_paths(inits):
    """The model files of the pretrain backbones among ``inits``."""
    return [f"results/pretrain/{i}/model.pt" for i in inits if i in config["pretrain"]]


def victim_dataset(wildcards):
    return dataset_path(config["victims"][wildcards.victim]["dataset"])


def attack_pool(wildcards):
    return dataset_path(config["attacks"][wildcards.attack]["pool"])


def victim_files(victim):
    """A victim's model and metrics, the inputs of every job that queries it (a remote
    victim has no model file: its answers come from its endpoint, through its ledger).
    """
    files = {"victim_metrics": f"results/victims/{victim}/metrics.json"}
    if victim not in REMOTE_VICTIMS:
        files = {"model": f"results/victims/{victim}/model.pt", **files}
    return files


def defense_models(victim, names, verification=False):
    """The per-victim model files the given defenses declare they need: those their API
    reads, and with ``verification`` those a defense is verified with (DAWN's independent
    models); with the record of their training when any but the detector is needed."""
    files = {
        model: f"results/defenses/{victim}/{model}.pt"
        for model in stealbench_config.defense_models(names, api_only=not verification)
    }
    if set(files) - {"detector"}:
        files["models_info"] = f"results/defenses/{victim}/models.json"
    return files


def query_cache(victim, attack, seed, defense="none"):
    """The query cache one attacker (seed) of an attack reads."""
    if stealbench_config.is_sequential(config, attack):
        return f"results/queries/{victim}/{attack}/{defense}/s{seed}.parquet"
    return f"results/queries/{victim}/{attack}/s{seed}.parquet"


def earlier_caches(victim, attack, seed):
    """The query caches of a sampling attack's seeds before ``seed``: they hold the answers
    to the images ``seed`` shares with them, so its own cache asks only for the rest."""
    seeds = stealbench_config.query_seeds(config, victim, attack)
    return [query_cache(victim, attack, s) for s in seeds if s < int(seed)]


def all_surrogate_cells(wildcards=None):
    return [
        f"results/surrogates/{victim}/{attack}/{arch}/s{seed}/{part}.parquet"
        for victim, attack, arch, seed in stealbench_config.surrogate_jobs(config)
        for part in stealbench_config.surrogate_parts(config, attack, victim)
    ]


def all_query_caches(wildcards=None):
    return [
        query_cache(v, a, s, d or "none")
        for v, a, d, s in stealbench_config.query_runs(config)
    ]


def victim_streams(wildcards):
    """The undefended query caches of every attack against a victim (the detector's and
    PRADA's attacker streams)."""
    return [
        query_cache(wildcards.victim, a, s)
        for v, a, d, s in stealbench_config.query_runs(config)
        if v == wildcards.victim and d in (None, "none")
    ]


def victim_attack_pools(wildcards):
    attacks = config["victims"][wildcards.victim]["attacks"]
    return sorted({dataset_path(config["attacks"][a]["pool"]) for a in attacks})


def benign_sources(wildcards):
    task = config["datasets"][config["victims"][wildcards.victim]["dataset"]].get(
        "task"
    )
    return [
        d
        for d in DEFENSES["benign"]["sources"]
        if task is not None and config["datasets"][d].get("task") == task
    ]


def all_defended_cells(wildcards=None):
    return [
        f"results/defended/{v}/{a}/{arch}/s{seed}/cells.parquet"
        for v, a, arch, seed in stealbench_config.defended_jobs(config)
    ]


FIGURES = ["recovery_vs_budget", "strategies"]
DEFENSE_FIGURES = ["defense_utility", "defense_perturbation"]


def final_outputs():
    return [
        *expand("results/tables/{table}.{ext}", table=TABLES, ext=["parquet", "csv"]),
        *expand(
            "results/figures/accuracy_vs_budget/{victim}.{ext}",
            victim=VICTIMS,
            ext=["png", "svg"],
        ),
        *expand("results/figures/{figure}.{ext}", figure=FIGURES, ext=["png", "svg"]),
        "results/findings.md",
        "results/findings.json",
        *(
            [
                *expand(
                    "results/tables/{table}.{ext}",
                    table=DEFENSE_TABLES,
                    ext=["parquet", "csv"],
                ),
                *expand(
                    "results/figures/{figure}.{ext}",
                    figure=DEFENSE_FIGURES,
                    ext=["png", "svg"],
                ),
            ]
            if DEFENSES
            else []
        ),
    ]


def attack_inputs(wildcards):
    """A sequential run's inputs: the victim, the pool, and the models of its defense; the
    victim's test split scores an online model (DFME's student), never the attacker's choices.
    """
    names = [INSTANCES[wildcards.defense].name] if wildcards.defense != "none" else []
    return {
        **victim_files(wildcards.victim),
        "pool": attack_pool(wildcards),
        "victim_dataset": victim_dataset(wildcards),
        "victim_test": f"results/victims/{wildcards.victim}/test_outputs.parquet",
        **defense_models(wildcards.victim, names),
    }


def surrogate_inputs(wildcards):
    v, a, s = wildcards.victim, wildcards.attack, wildcards.seed
    inputs = {
        "queries": query_cache(v, a, s),
        "earlier": (
            []
            if stealbench_config.is_sequential(config, a)
            else earlier_caches(v, a, s)
        ),
        "pool": attack_pool(wildcards),
        "victim_dataset": victim_dataset(wildcards),
        "victim_test": f"results/victims/{v}/test_outputs.parquet",
        "victim_metrics": f"results/victims/{v}/metrics.json",
        "backbones": backbone_paths(stealbench_config.axes(config, a, v)["inits"]),
    }
    return inputs


def defense_model_outputs():
    """What train_defense_models makes: every model the configured defenses need but the
    detector (its own rule), and their record."""
    out = defense_models("{victim}", DEFENSE_NAMES, verification=True)
    out.pop("detector", None)
    return out


def defended_inputs(wildcards):
    v, a, s = wildcards.victim, wildcards.attack, wildcards.seed
    inputs = {
        **victim_files(v),
        "pool": attack_pool(wildcards),
        "victim_dataset": victim_dataset(wildcards),
        "victim_test": f"results/victims/{v}/test_outputs.parquet",
        **defense_models(v, DEFENSE_NAMES, verification=True),
    }
    if stealbench_config.is_sequential(config, a):
        inputs["queries"] = [
            query_cache(v, a, s, d.id)
            for d in stealbench_config.attack_defenses(config, a, v)
        ]
    else:
        inputs["queries"] = [query_cache(v, a, s)]
        inputs["earlier"] = earlier_caches(v, a, s)
    return inputs
