"""The grid a validated config defines: cells, query runs, jobs, defense instances, and how
each method takes part in them (its kind, strength and models, as its file declares)."""

from __future__ import annotations

from dataclasses import dataclass

from ..attack.strategies import registry as strategy_registry
from ..defense import registry as defense_registry


def query_budget(config: dict, attack: str, victim: str) -> int:
    """The most queries any seed of an attack against a victim sends: the largest budget it
    is trained or defended at."""
    budget = max(axes(config, attack, victim)["budgets"])
    if (victim, attack) in defended_pairs(config):
        budget = max(budget, *config["defenses"]["defended"]["budgets"][attack])
    return budget


def query_budgets(config: dict, attack: str, victim: str) -> list[int]:
    """Every budget an attack against a victim is trained or defended at, ascending (where a
    sequential attacker's online model is snapshotted)."""
    budgets = set(axes(config, attack, victim)["budgets"])
    if (victim, attack) in defended_pairs(config):
        budgets |= set(config["defenses"]["defended"]["budgets"][attack])
    return sorted(int(b) for b in budgets)


def strategy_kind(strategy: str) -> str:
    """sampling, sequential or data-free, as the strategy's file declares."""
    return strategy_registry.info(strategy).kind


def defense_strength(defense: str) -> str | None:
    """The parameter a defense's strength sweep varies, as its class declares."""
    return defense_registry.lookup(defense).strength


def defense_models(names, api_only: bool = False) -> list[str]:
    """The per-victim models the defense stage trains for the defenses ``names``, as their
    classes declare (``needs``); with ``api_only`` only those a defended API reads."""
    needs = defense_registry.needed(names)
    return [
        model
        for model in defense_registry.DEFENSE_MODELS
        if model in needs and (not api_only or model in defense_registry.MODEL_LOADERS)
    ]


def is_sequential(config: dict, attack: str) -> bool:
    """Whether an attack chooses its queries from the answers (one run per granularity,
    defense and seed) rather than sampling its pool blind (one cache for all of them)."""
    return strategy_kind(config["attacks"][attack]["strategy"]) != "sampling"


@dataclass(frozen=True)
class Cell:
    victim: str
    attack: str
    granularity: str
    budget: int
    surrogate_arch: str
    surrogate_init: str
    seed: int


@dataclass(frozen=True)
class DefenseInstance:
    """One defense at one strength: a defended cell of every defended attack."""

    id: str  # e.g. "none", "mad@0.5", "ood-shuffle@learned"
    name: str
    params: dict
    strength: str | None
    value: float | None


def defended_override(config: dict, victim: str | None) -> dict:
    """A victim's narrowing of the defended grid (``defenses.defended.overrides.<victim>``:
    its ``defenses`` and ``attacks``); empty without one, or for ``victim`` None."""
    if victim is None or "defenses" not in config:
        return {}
    return config["defenses"]["defended"].get("overrides", {}).get(victim, {})


def defense_instances(config: dict, victim: str | None = None) -> list[DefenseInstance]:
    """Every configured defense at every strength of its sweep, in config order; with
    ``victim``, those of the defenses its override keeps (all without one)."""
    if "defenses" not in config:
        return []
    kept = defended_override(config, victim).get("defenses")
    out = []
    for name, params in config["defenses"]["defended"]["defenses"].items():
        if kept is not None and name not in kept:
            continue
        strength = defense_strength(name)
        values = params.get(strength) if strength else None
        if not isinstance(values, list):
            values = [values]
        for value in values:
            fixed = {k: v for k, v in params.items() if k != strength}
            if strength is not None and value is not None:
                fixed[strength] = value
            label = "learned" if value is None else f"{value:g}"
            ident = (
                name
                if strength is None or (value is None and strength not in params)
                else f"{name}@{label}"
            )
            out.append(DefenseInstance(ident, name, fixed, strength, value))
    return out


def attack_defenses(config: dict, attack: str, victim: str | None = None) -> list[DefenseInstance]:
    """The defense instances an attack is answered through: all of them for a sampling attack
    (its cache serves every defense for free), those of ``defended.sequential_defenses`` for a
    sequential one (each is a rerun of the attack against that defended API); with
    ``victim``, only those its override keeps."""
    instances = defense_instances(config, victim)
    if not is_sequential(config, attack):
        return instances
    names = config["defenses"]["defended"]["sequential_defenses"]
    return [d for d in instances if d.name in names]


def victim_attacks(config: dict) -> list[tuple[str, str]]:
    """Every (victim, attack) pair."""
    return [(v, a) for v, spec in config["victims"].items() for a in spec["attacks"]]


AXES = ("granularities", "archs", "inits", "seeds", "budgets")


def axes(config: dict, attack: str, victim: str | None = None) -> dict:
    """The surrogate axes of one attack (against ``victim``): the victim's overrides for the
    attack, else the attack's own, else the surrogates' defaults."""
    spec = config["attacks"][attack]
    override = config["victims"][victim]["overrides"].get(attack, {}) if victim else {}
    out = {axis: override.get(axis, spec.get(axis, config["surrogates"][axis])) for axis in AXES}
    out["budgets"] = sorted(out["budgets"])
    return out


def _axis_key(config: dict, victim: str, attack: str, axis: str) -> str:
    """The config key an axis of (victim, attack) comes from, for messages."""
    if axis in config["victims"][victim]["overrides"].get(attack, {}):
        return f"victims.{victim}.overrides.{attack}.{axis}"
    return f"attacks.{attack}.{axis}" if axis in config["attacks"][attack] else f"surrogates.{axis}"


def defended_pairs(config: dict) -> list[tuple[str, str]]:
    """(victim, attack) pairs whose answers go through the defenses: the defended attacks
    of each defended victim (``defended.attacks``, or its override's ``attacks``)."""
    if "defenses" not in config:
        return []
    defended = config["defenses"]["defended"]
    return [
        (v, a)
        for v, a in victim_attacks(config)
        if v in defended["victims"]
        and a in defended_override(config, v).get("attacks", defended["attacks"])
    ]


def query_seeds(config: dict, victim: str, attack: str) -> list[int]:
    """Every seed of an attack against a victim: its own and the defended cells'."""
    seeds = set(axes(config, attack, victim)["seeds"])
    if (victim, attack) in defended_pairs(config):
        seeds |= set(config["defenses"]["defended"]["seeds"])
    return sorted(seeds)


def query_runs(config: dict) -> list[tuple[str, str, str, int]]:
    """Every query cache: (victim, attack, defense id, seed); sampling attacks have one per
    seed with defense id None (every defense reads it), sequential ones one per defense."""
    runs = []
    defended = defended_pairs(config)
    for victim, attack in victim_attacks(config):
        if not is_sequential(config, attack):
            runs += [(victim, attack, None, s) for s in query_seeds(config, victim, attack)]
            continue
        runs += [(victim, attack, "none", s) for s in axes(config, attack, victim)["seeds"]]
        if (victim, attack) in defended:
            for instance in attack_defenses(config, attack, victim):
                for s in config["defenses"]["defended"]["seeds"]:
                    if (victim, attack, instance.id, s) not in runs:
                        runs.append((victim, attack, instance.id, s))
    return runs


def run_granularities(config: dict, attack: str, victim: str, defense_id: str) -> list[str]:
    """The granularities a sequential run covers: the attack's own undefended, the defended
    granularities behind a defense (the undefended run serves both)."""
    grans = []
    if defense_id == "none":
        grans += axes(config, attack, victim)["granularities"]
    if (victim, attack) in defended_pairs(config):
        grans += config["defenses"]["defended"]["granularities"]
    return list(dict.fromkeys(grans))


def surrogate_jobs(config: dict) -> list[tuple[str, str, str, int]]:
    """(victim, attack, arch, seed): one training job, sweeping inits x granularities x budgets."""
    return [
        (v, a, arch, seed)
        for v, a in victim_attacks(config)
        for arch in axes(config, a, v)["archs"]
        for seed in axes(config, a, v)["seeds"]
    ]


def surrogate_parts(config: dict, attack: str, victim: str) -> list[str]:
    """The training jobs of one (victim, attack, arch, seed): ``all`` cells in one job, or one
    job per cell named ``{init}-{granularity}-b{budget}`` (``surrogates.job_size``)."""
    if config["surrogates"]["job_size"] == "sweep":
        return ["all"]
    ax = axes(config, attack, victim)
    return [
        f"{init}-{g}-b{b}"
        for init in ax["inits"]
        for g in ax["granularities"]
        for b in ax["budgets"]
    ]


def part_cells(
    config: dict, attack: str, victim: str, part: str
) -> tuple[list[str], list[str], list[int]]:
    """The inits, granularities and budgets one training job covers."""
    ax = axes(config, attack, victim)
    if part == "all":
        return ax["inits"], ax["granularities"], ax["budgets"]
    rest, budget = part.rsplit("-b", 1)
    init, granularity = rest.rsplit("-", 1)
    return [init], [granularity], [int(budget)]


def cells(config: dict) -> list[Cell]:
    return [
        Cell(v, a, g, b, arch, init, seed)
        for v, a, arch, seed in surrogate_jobs(config)
        for init in axes(config, a, v)["inits"]
        for g in axes(config, a, v)["granularities"]
        for b in axes(config, a, v)["budgets"]
    ]


def victim_source(config: dict, victim: str) -> str:
    """How a victim is obtained: train (the default), checkpoint, torchscript, torchvision or
    remote (:mod:`stealbench.victim`)."""
    return config["victims"][victim].get("source", "train")


def victims_of(config: dict, *sources: str) -> list[str]:
    """The victims whose source is among ``sources``, in config order."""
    return [v for v in config["victims"] if victim_source(config, v) in sources]


def defense_victims(config: dict) -> list[str]:
    """The victims stealbench's defenses can be evaluated on: every one it runs itself. A
    remote victim's API answers as it is (to defend a model, serve it with
    ``stealbench serve``)."""
    return [v for v in config["victims"] if victim_source(config, v) != "remote"]


def defendable_victims(config: dict) -> list[str]:
    """The victims whose API stealbench can defend (``defenses.defended.victims``): those of
    a registered architecture (trained, or a checkpoint of one), as the defense stage trains
    models of the victim's architecture and recipe (Adaptive Misinformation's model, DAWN's
    independent models, MAD's proxy)."""
    return victims_of(config, "train", "checkpoint")


def outlier_exposure_data(config: dict, victim: str) -> list[str]:
    """The datasets whose train splits are a trained victim's Outlier Exposure data
    (``victims.<victim>.training.outlier_exposure.data``; none without it)."""
    spec = config["victims"][victim]
    oe = (spec.get("training") or {}).get("outlier_exposure")
    return list(oe["data"]) if oe else []


def victim_spec(config: dict, victim: str) -> dict:
    """What a victim is (its data, architecture, start and training; for an external victim
    its source, classes, input contract and the source's section), without the attacks it
    faces: adding an attack leaves the victim and the jobs that read it unchanged."""
    spec = config["victims"][victim]
    source = victim_source(config, victim)
    if source == "train":
        return {key: spec[key] for key in ("dataset", "arch", "init", "input_size", "training")}
    out = {key: spec[key] for key in ("source", "dataset", "classes", "input", source)}
    # The cells' victim_arch and victim_init: the architecture (a torchvision model's name,
    # "torchscript", "remote") and, for a victim the workflow did not train, its source.
    out.update(arch=victim_arch(config, victim), init=source)
    if source == "checkpoint":  # what the defense stage trains its own models as
        out.update(input_size=spec["input"]["size"], training=config["victim_training"])
    return out


def victim_arch(config: dict, victim: str) -> str:
    """A victim's architecture as the tables name it."""
    spec, source = config["victims"][victim], victim_source(config, victim)
    if source == "train":
        return spec["arch"]
    if source == "checkpoint":
        return spec["checkpoint"]["arch"]
    if source == "torchvision":
        return spec["torchvision"]["model"]
    return source


def attack_spec(config: dict, attack: str) -> dict:
    """What an attacker does (its strategy on its pool, with options): a job's parameter that
    changes only when the attack itself does, not when its grid grows."""
    spec = config["attacks"][attack]
    return {key: spec[key] for key in ("strategy", "pool", "options")}


def training_spec(config: dict) -> dict:
    """The attacker's recipe, without the grid: adding a seed, a budget or an architecture
    leaves it (and the jobs already trained with it) unchanged."""
    s = config["surrogates"]
    return {key: s[key] for key in ("training", "selection", "val_fraction", "input_size")}


def is_realistic(config: dict, victim: str, attack: str) -> bool:
    """A realistic adversary queries with data of the victim's own task (Atli et al. §4)."""
    task = config["datasets"][config["victims"][victim]["dataset"]].get("task")
    pool_task = config["datasets"][config["attacks"][attack]["pool"]].get("task")
    return task is not None and task == pool_task


def detector_out(config: dict, victim: str) -> list[str]:
    """The defender's generic datasets for a victim's pre-classifier: those of another task."""
    task = config["datasets"][config["victims"][victim]["dataset"]].get("task")
    return [
        name
        for name in config["defenses"]["detector"]["out"]
        if task is None or config["datasets"][name].get("task") != task
    ]


def defended_jobs(config: dict) -> list[tuple[str, str, str, int]]:
    """(victim, attack, arch, seed): one job training surrogates on every defense's answers."""
    if "defenses" not in config:
        return []
    d = config["defenses"]["defended"]
    return [
        (v, a, arch, seed)
        for v, a in defended_pairs(config)
        for arch in d["archs"]
        for seed in d["seeds"]
    ]
