# Config validation, the grid, and input functions shared by every stage.
import re

from stealbench import config as stealbench_config

try:
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


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    victim=_alternatives(VICTIMS),
    attack=_alternatives(ATTACKS),
    granularity=_alternatives(S["granularities"]),
    arch=_alternatives(S["archs"]),
    seed=r"\d+",


def dataset_path(name):
    return f"results/data/{name}.parquet"


def victim_dataset(wildcards):
    return dataset_path(config["victims"][wildcards.victim]["dataset"])


def attack_pool(wildcards):
    return dataset_path(config["attacks"][wildcards.attack]["pool"])


def cell_metrics(victim, attack, granularity, arch, seed):
    return expand(
        "results/surrogates/{victim}/{attack}/{granularity}/b{budget}/{arch}/s{seed}/metrics.json",
        victim=victim, attack=attack, granularity=granularity, budget=BUDGETS, arch=arch,
        seed=seed,
    )


def all_cell_metrics(wildcards=None):
    return sorted({
        path
        for victim, attack in PAIRS
        for granularity in S["granularities"]
        for arch in S["archs"]
        for seed in S["seeds"]
        for path in cell_metrics(victim, attack, granularity, arch, seed)
    })


def all_query_caches(wildcards=None):
    return [f"results/queries/{v}/{a}.parquet" for v, a in PAIRS]


def final_outputs():
    return [
        "results/tables/cells.parquet",
        "results/tables/cells.csv",
        "results/tables/queries.parquet",
        "results/tables/queries.csv",
        *expand("results/figures/accuracy_vs_budget/{victim}.{ext}", victim=VICTIMS,
                ext=["png", "svg"]),
        "results/findings.md",
    ]
