# Config validation, the grid, and input functions shared by every stage.
import re

from stealbench import config as stealbench_config

try:
    for configfile_path in workflow.configfiles:
        stealbench_config.check_duplicate_keys(configfile_path)
    config = stealbench_config.validate(config)
except stealbench_config.ConfigError as err:
    raise WorkflowError(f"invalid config:\n{err}") from None

DATASETS = list(config["datasets"])
VICTIMS = list(config["victims"])
ATTACKS = list(config["attacks"])
PAIRS = stealbench_config.victim_attacks(config)
S = config["surrogates"]
BUDGETS = sorted(S["budgets"])
ENV = "../envs/stealbench.yaml"
DEFENSES = config.get("defenses")
# Every surrogate architecture of the grid, the defended surrogates' included.
ARCHS = sorted(
    {
        arch
        for _, attack in PAIRS
        for arch in stealbench_config.axes(config, attack)["archs"]
    }
    | set(DEFENSES["defended"]["archs"] if DEFENSES else [])
)
DEFENSE_TABLES = ["detection", "prada", "prada_curve", "defended"]
# Datasets an attacker could query: the detector is scored on every one of them.
POOL_DATASETS = [
    name
    for name, spec in config["datasets"].items()
    if stealbench_config.split_sizes(spec).get("pool", 0) != 0
]
# GPUs of one model job (resources gpu=GPUS): 1 with `device: cuda`, which the SLURM profile
# turns into `sbatch --gpus=1`; 0 on CPU, which requests none.
GPUS = 1 if config["device"] == "cuda" else 0


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    victim=_alternatives(VICTIMS),
    attack=_alternatives(ATTACKS),
    arch=_alternatives(ARCHS),
    seed=r"\d+",
    part=r"all|[a-z0-9]+-b\d+",


def dataset_path(name):
    return f"results/data/{name}.parquet"


def victim_dataset(wildcards):
    return dataset_path(config["victims"][wildcards.victim]["dataset"])


def attack_pool(wildcards):
    return dataset_path(config["attacks"][wildcards.attack]["pool"])


def all_surrogate_cells(wildcards=None):
    return [
        f"results/surrogates/{victim}/{attack}/{arch}/s{seed}/{part}.parquet"
        for victim, attack, arch, seed in stealbench_config.surrogate_jobs(config)
        for part in stealbench_config.surrogate_parts(config, attack)
    ]


def victim_caches(wildcards):
    attacks = config["victims"][wildcards.victim]["attacks"]
    return [f"results/queries/{wildcards.victim}/{a}.parquet" for a in attacks]


def victim_attack_pools(wildcards):
    attacks = config["victims"][wildcards.victim]["attacks"]
    return [dataset_path(config["attacks"][a]["pool"]) for a in attacks]


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


def all_query_caches(wildcards=None):
    return [f"results/queries/{v}/{a}.parquet" for v, a in PAIRS]


def final_outputs():
    return [
        *expand("results/tables/{table}.{ext}", table=TABLES, ext=["parquet", "csv"]),
        *expand(
            "results/figures/accuracy_vs_budget/{victim}.{ext}",
            victim=VICTIMS,
            ext=["png", "svg"],
        ),
        "results/findings.md",
        *(
            [
                *expand(
                    "results/tables/{table}.{ext}",
                    table=DEFENSE_TABLES,
                    ext=["parquet", "csv"],
                ),
                *expand("results/figures/defense_tradeoff.{ext}", ext=["png", "svg"]),
            ]
            if DEFENSES
            else []
        ),
    ]
