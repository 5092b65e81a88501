"""What one job of the workflow costs, from the work the config gives it: the SLURM
resources (``runtime``, ``mem_mb``, ``gpu``) of the model rules, and how their jobs group.

Kept free of torch (Snakemake evaluates it when it plans). For each job it counts

- the images it trains on: epochs x training images, epochs as
  :meth:`stealbench.models.schedule.TrainConfig.epochs_for` (``min_steps`` included), the
  rule the training loops run, summed over the cells of the job;
- the images it infers: validation passes, test-set scores, the victim's answers to queries;

and prices them with the per-architecture seconds per image of ``costs.json`` (written by
``benchmarks/costs.py``) for the config's ``device`` at the input size the model is fed:

    runtime = startup + safety_factor x (train images x train s/img + inferred x infer s/img)
    mem_mb  = safety_factor x (process + model + data held in memory)

The ``cpu`` costs are measurements (one thread, as a job has one CPU); the ``cuda`` costs
ship as estimates scaled by FLOPs from a published ResNet-50 throughput (each entry says
``measured_on`` or ``estimated_from``) until ``benchmarks/costs.py --device cuda`` runs on a
GPU. An architecture or size without an entry is priced from the same architecture at
another size, scaled by pixels (a convolution's cost), else as the most expensive
architecture measured at that size.

Sizes the config cannot tell (an ImageFolder tree's splits) are read from the materialised
dataset (``results/data/<name>.parquet``, its metadata's ``split_counts``) where it exists,
else assumed to be ``cluster.unknown_split_images`` (default 50,000: more than Caltech256's
or CUB-200's train splits). Departures from the work as it runs, all of which err long:
a sampling seed's queries shared with earlier seeds are counted again; early stopping
(``patience``) is not assumed; a sequential attack is priced as the victim answering its
budget plus one substitute trained on it with the surrogates' recipe (its real rounds differ
by strategy).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..data.sizes import split_sizes
from ..models.schedule import TrainConfig
from . import grid

COSTS_PATH = Path(__file__).with_name("costs.json")


# Resident memory of a job's process before any model or data: Python, torch, pyarrow (on a
# GPU also the CUDA context's host side). Reasoned, not measured per machine.
PROCESS_MB = {"cpu": 1000, "cuda": 3000}
# How :func:`stealbench.data.datasets.load` holds a dataset: in memory up to this many bytes
# (LAZY_THRESHOLD_BYTES), beyond that a lazy store with a few 16 MB row groups cached.
IN_MEMORY_BYTES = 256 << 20
LAZY_CACHE_BYTES = 8 * (16 << 20)

# The rules whose jobs put a model on the device (gpu=1 with `device: cuda`).
MODEL_RULES = (
    "pretrain_backbone",
    "train_victim",
    "import_victim",
    "sample_pool",
    "run_attack",
    "train_surrogates",
    "train_detector",
    "train_defense_models",
    "evaluate_detectors",
    "train_defended_surrogates",
)
# The group-id prefix of train_surrogates jobs (``surrogates-x<k>``, see :meth:`Planner.group`).
SURROGATE_GROUP = "surrogates"


def epochs_for(training: dict, n: int) -> int:
    """Epochs a training set of ``n`` images gets under the ``training`` dict's schedule
    (none without images: such a job trains nothing)."""
    return TrainConfig.from_dict(training).epochs_for(n) if n else 0


@dataclass
class Work:
    """Images one model of a job trains on and infers, at one input size."""

    arch: str | None  # None: no model here (a remote victim's endpoint answers)
    size: int
    train: int = 0  # images through a training step (forward and backward)
    infer: int = 0  # images through a forward pass
    steps: int = 0  # optimisation steps
    batch: int = 64
    waiting: float = 0.0  # seconds spent waiting on a remote endpoint


@dataclass
class JobCost:
    rule: str
    runtime: int  # minutes
    mem_mb: int
    gpu: int
    work: list[Work] = field(default_factory=list)
    data_mb: float = 0.0
    device_seconds: float = 0.0  # the priced work, before the safety factor and start-up

    @property
    def train_images(self) -> int:
        return sum(w.train for w in self.work)

    @property
    def infer_images(self) -> int:
        return sum(w.infer for w in self.work)

    @property
    def steps(self) -> int:
        return sum(w.steps for w in self.work)


@functools.cache
def load_costs(path: str | None = None) -> dict:
    return json.loads(Path(path or COSTS_PATH).read_text())


@functools.cache
def _cluster_defaults() -> dict:
    from .schema import load_schema

    keys = load_schema()["properties"]["cluster"]["properties"]
    return {key: prop["default"] for key, prop in keys.items()}


def cluster_settings(config: dict) -> dict:
    """The config's ``cluster`` section, the schema's defaults filled in."""
    return {**_cluster_defaults(), **(config.get("cluster") or {})}


class Planner:
    """The resources of every model rule's jobs for one validated config.

    ``Planner(config).runtime("train_surrogates")`` is a function of a job's wildcards, as
    Snakemake's ``resources`` take; costs are computed once per job. ``data_root`` is where
    materialised datasets are looked for (the working directory).
    """

    def __init__(self, config: dict, costs: dict | None = None, data_root: str | Path = "."):
        self.config = config
        self.device = config.get("device", "cpu")
        self.settings = cluster_settings(config)
        self.costs = costs if costs is not None else load_costs()
        self.data_root = Path(data_root)
        self._cache: dict = {}

    # -------------------------------------------------------------- Snakemake's interface

    def runtime(self, rule: str):
        return lambda wildcards: self.job(rule, wildcards).runtime

    def mem_mb(self, rule: str):
        return lambda wildcards: self.job(rule, wildcards).mem_mb

    def gpu(self, rule: str):
        return lambda wildcards: self.job(rule, wildcards).gpu

    def group(self, rule: str):
        """A job's group: ``surrogates-x<k>``, where k (a power of two, at most
        ``cluster.max_group_jobs``) jobs of at most ``max_group_runtime_minutes / k`` each
        share one SLURM job (the profile's ``group-components`` merges k of them), so a
        group never asks for more than the ceiling; None (not grouped) for a job longer than
        half the ceiling."""

        def group(wildcards):
            runtime = self.job(rule, wildcards).runtime
            ceiling = self.settings["max_group_runtime_minutes"]
            k = 1
            while k * 2 <= self.settings["max_group_jobs"] and runtime * k * 2 <= ceiling:
                k *= 2
            return f"{SURROGATE_GROUP}-x{k}" if k > 1 else None

        return group

    def job(self, rule: str, wildcards) -> JobCost:
        wc = dict(wildcards.items()) if hasattr(wildcards, "items") else dict(wildcards)
        key = (rule, tuple(sorted(wc.items())))
        if key not in self._cache:
            self._cache[key] = self._price(rule, getattr(self, f"_{rule}")(**wc))
        return self._cache[key]

    # -------------------------------------------------------------------- pricing

    def entry(self, arch: str, size: int) -> dict:
        """Seconds per image and memory of ``arch`` at ``size`` on the config's device."""
        table = self.costs.get(self.device) or self.costs["cpu"]
        if f"{arch}@{size}" in table:
            return table[f"{arch}@{size}"]
        same = [(int(k.split("@")[1]), e) for k, e in table.items() if k.split("@")[0] == arch]
        if same:  # the nearest measured size, scaled by pixels
            measured, e = min(same, key=lambda s: abs(s[0] - size))
            return _scaled(e, (size / measured) ** 2)
        # An unknown architecture (a plug-in, a TorchScript file): the costliest one known
        return _scaled(
            max(table.values(), key=lambda e: e["train_seconds_per_image"]),
            1.0,
        )

    def _price(self, rule: str, parts: tuple[list[Work], float]) -> JobCost:
        work, data_bytes = parts
        seconds, model_mb = 0.0, 0.0
        for w in work:
            seconds += w.waiting
            if w.arch is None:
                continue
            e = self.entry(w.arch, w.size)
            seconds += (
                w.train * e["train_seconds_per_image"] + w.infer * e["infer_seconds_per_image"]
            )
            if self.device == "cpu":  # activations live in host memory, in proportion to the batch
                model_mb = max(model_mb, e["train_peak_mb"] * w.batch / e["train_batch"])
            else:  # on a GPU the host keeps a copy of the weights (the state dict it saves)
                model_mb = max(model_mb, 2 * 4 * e["params"] / 2**20)
        safety = self.settings["safety_factor"]
        runtime = self.settings["startup_minutes"] + safety * seconds / 60
        data_mb = data_bytes / 2**20
        mem = safety * (PROCESS_MB.get(self.device, 1000) + model_mb + data_mb)
        gpu = 1 if self.device == "cuda" and any(w.arch for w in work) else 0
        return JobCost(
            rule,
            runtime=math.ceil(runtime),
            mem_mb=int(math.ceil(mem / 100) * 100),
            gpu=gpu,
            work=work,
            data_mb=data_mb,
            device_seconds=seconds,
        )

    # -------------------------------------------------------------------- data

    def splits(self, dataset: str) -> dict[str, int]:
        """Images per split of a dataset: the config's, else the materialised file's, else
        ``cluster.unknown_split_images`` for a split only the data can size."""
        spec = self.config["datasets"][dataset]
        sizes = split_sizes(spec)
        if any(v is None for v in sizes.values()):
            sizes = {
                **sizes,
                **{k: v for k, v in _materialised(self.data_root, dataset).items() if k in sizes},
            }
        unknown = self.settings["unknown_split_images"]
        return {k: (unknown if v is None else v) for k, v in sizes.items()}

    def split(self, dataset: str, name: str) -> int:
        return self.splits(dataset).get(name, 0)

    def image_bytes(self, dataset: str) -> int:
        """Bytes of one stored image (uint8 H x W x C)."""
        spec = self.config["datasets"][dataset]
        options = spec.get("options", {})
        source = spec["source"]
        if source == "torchvision":  # the reader's defaults: each dataset's native images
            from ..data.realdata import TORCHVISION

            info = TORCHVISION[options["name"]]
            size = options.get("image_size") or info.size
            channels = options.get("channels") or info.channels
        elif source == "imagefolder":
            size, channels = options.get("image_size", 64), options.get("channels", 3)
        else:  # the builders' 28x28 greyscale images
            size, channels = 28, 1
        return size * size * channels

    def held(self, dataset: str, extra_rows: int = 0) -> int:
        """Bytes a job holds of a dataset it loads (in memory or a lazy store's cache), plus
        ``extra_rows`` images it copies out of it (a test split scored)."""
        total = sum(self.splits(dataset).values()) * self.image_bytes(dataset)
        kept = total if total <= IN_MEMORY_BYTES else LAZY_CACHE_BYTES
        return kept + extra_rows * self.image_bytes(dataset)

    # -------------------------------------------------------------------- models

    def model_size(self, arch: str, input_size: int | None = None) -> int:
        if input_size:
            return int(input_size)
        native = self.costs.get("native_sizes", {})
        return int(native.get(arch, 224))

    def fit(self, arch: str, size: int, training: dict, n: int, n_val: int = 0, oe=False) -> Work:
        """A training run of ``n`` images with a validation pass every epoch; Outlier
        Exposure trains a batch of outliers with every batch."""
        schedule = TrainConfig.from_dict(training)
        epochs, batch = schedule.epochs_for(n), schedule.batch_size
        steps = epochs * math.ceil(n / batch) if n else 0
        return Work(
            arch,
            size,
            train=epochs * n * (2 if oe else 1),
            infer=epochs * n_val,
            steps=steps,
            batch=batch,
        )

    def surrogate_fit(self, arch: str, budget: int) -> Work:
        s = self.config["surrogates"]
        n_val = (
            max(1, math.ceil(budget * s["val_fraction"])) if s["selection"] == "transfer-val" else 0
        )
        return self.fit(
            arch, self.model_size(arch, s.get("input_size")), s["training"], budget - n_val, n_val
        )

    def victim_model(self, victim: str) -> tuple[str, int]:
        spec = grid.victim_spec(self.config, victim)
        size = spec.get("input_size") or (spec.get("input") or {}).get("size")
        arch = spec["arch"]
        return arch, self.model_size(arch, size)

    # -------------------------------------------------------------------- the rules

    def _pretrain_backbone(self, backbone):
        spec = self.config["pretrain"][backbone]
        training = {**self.config["victim_training"], **(spec.get("training") or {})}
        ds = spec["dataset"]
        w = self.fit(
            spec["arch"],
            self.model_size(spec["arch"]),
            training,
            self.split(ds, "train"),
            self.split(ds, "val"),
        )
        return [w], self.held(ds)

    def _train_victim(self, victim):
        spec = grid.victim_spec(self.config, victim)
        ds = spec["dataset"]
        arch, size = self.victim_model(victim)
        oe_data = grid.outlier_exposure_data(self.config, victim)
        w = self.fit(
            arch,
            size,
            spec["training"],
            self.split(ds, "train"),
            self.split(ds, "val"),
            oe=bool(oe_data),
        )
        w.infer += self.split(ds, "test")
        data = self.held(ds) + sum(self.split(d, "train") * self.image_bytes(d) for d in oe_data)
        return [w], data

    def _import_victim(self, victim):
        ds = self.config["victims"][victim]["dataset"]
        arch, size = self.victim_model(victim)
        return [Work(arch, size, infer=self.split(ds, "test"))], self.held(ds)

    def answers(self, victim: str, queries: int) -> Work:
        """The victim answering ``queries`` images: its model's inference, or for a remote
        victim the endpoint's time, priced at its ``timeout_s`` per request (the longest one
        may take without a retry), ``concurrency`` requests at a time."""
        if grid.victim_source(self.config, victim) != "remote":
            return Work(*self.victim_model(victim), infer=queries)
        remote = self.config["victims"][victim]["remote"]
        requests = math.ceil(queries / remote.get("batch_size", 64))
        waiting = requests * remote.get("timeout_s", 30) / remote.get("concurrency", 4)
        return Work(None, 0, waiting=waiting)

    def _sample_pool(self, victim, attack, seed):
        budget = grid.query_budget(self.config, attack, victim)
        pool = self.config["attacks"][attack]["pool"]
        return [self.answers(victim, budget)], self.held(pool)

    def _run_attack(self, victim, attack, defense, seed):
        budget = grid.query_budget(self.config, attack, victim)
        arch = grid.axes(self.config, attack, victim)["archs"][0]
        options = self.config["attacks"][attack].get("options") or {}
        s = self.config["surrogates"]
        training = {
            **s["training"],
            **{k: options[k] for k in ("epochs", "min_steps") if k in options},
        }
        work = [self.fit(arch, self.model_size(arch, s.get("input_size")), training, budget)]
        work.append(self.answers(victim, budget))
        pool = self.config["attacks"][attack]["pool"]
        ds = self.config["victims"][victim]["dataset"]
        return work, self.held(pool) + self.held(ds, self.split(ds, "test"))

    def _train_surrogates(self, victim, attack, arch, seed, part):
        inits, granularities, budgets = grid.part_cells(self.config, attack, victim, part)
        ds = self.config["victims"][victim]["dataset"]
        test = self.split(ds, "test")
        work = []
        for _ in inits:
            for _ in granularities:
                for budget in budgets:
                    w = self.surrogate_fit(arch, budget)
                    w.infer += test
                    work.append(w)
        pool = self.config["attacks"][attack]["pool"]
        return work, self.held(pool) + self.held(ds, test)

    def _train_detector(self, victim):
        d = self.config["defenses"]["detector"]
        ds = self.config["victims"][victim]["dataset"]
        out = grid.detector_out(self.config, victim)
        n = self.split(ds, "train") + sum(self.split(o, "train") for o in out)
        n_val = math.ceil(n * d["val_fraction"])
        w = self.fit(d["arch"], self.model_size(d["arch"]), d["training"], n - n_val, n_val)
        return [w], self.held(ds) + sum(self.split(o, "train") * self.image_bytes(o) for o in out)

    def _train_defense_models(self, victim):
        defenses = self.config["defenses"]
        names = {d.name for d in grid.defense_instances(self.config)}
        models = set(grid.defense_models(names)) - {"detector"}
        spec = grid.victim_spec(self.config, victim)
        ds = spec["dataset"]
        arch, size = self.victim_model(victim)
        n, n_val = self.split(ds, "train"), self.split(ds, "val")
        work, data = [], self.held(ds)
        if "misinformation" in models:
            outlier = defenses["misinformation"]["outlier"]
            w = self.fit(
                arch, size, defenses["misinformation"]["training"], n, n_val, oe=bool(outlier)
            )
            w.infer += n  # the victim's answers it is trained against
            work.append(w)
            data += sum(self.split(o, "train") * self.image_bytes(o) for o in outlier)
        if "independent" in models:
            for ind_arch in defenses["defended"]["archs"]:
                for _ in defenses["dawn"]["independent_seeds"]:
                    # train_on_splits feeds them at the architecture's own size
                    work.append(
                        self.fit(ind_arch, self.model_size(ind_arch), spec["training"], n, n_val)
                    )
        return work, data

    def _evaluate_detectors(self, victim):
        d = self.config["defenses"]
        ds = self.config["victims"][victim]["dataset"]
        streams = sum(
            grid.query_budget(self.config, a, v)
            for v, a, defense, _ in grid.query_runs(self.config)
            if v == victim and defense in (None, "none")
        )
        pools = sum(
            self.split(name, "pool") for name in self.config["datasets"] if self.split(name, "pool")
        )
        benign = d["benign"]["streams"] * d["benign"]["length"]
        test = self.split(ds, "test")
        detector = Work(
            d["detector"]["arch"],
            self.model_size(d["detector"]["arch"]),
            infer=streams + pools + benign + test,
        )
        work = [detector, Work(*self.victim_model(victim), infer=test)]
        attack_pools = {
            self.config["attacks"][a]["pool"] for a in self.config["victims"][victim]["attacks"]
        }
        return work, self.held(ds, test) + sum(self.held(p) for p in attack_pools)

    def _train_defended_surrogates(self, victim, attack, arch, seed):
        d = self.config["defenses"]["defended"]
        instances = grid.attack_defenses(self.config, attack, victim)
        ds = self.config["victims"][victim]["dataset"]
        test = self.split(ds, "test")
        victim_arch, victim_size = self.victim_model(victim)
        work = []
        for _ in instances:
            for _ in d["granularities"]:
                for budget in d["budgets"][attack]:
                    w = self.surrogate_fit(arch, budget)
                    w.infer += test
                    work.append(w)
            # a defense's own models (MAD's proxy, the misinformation model) answer the budget
            work.append(Work(victim_arch, victim_size, infer=max(d["budgets"][attack])))
        pool = self.config["attacks"][attack]["pool"]
        return work, self.held(pool) + self.held(ds, test)


def _scaled(entry: dict, factor: float) -> dict:
    return {
        **entry,
        "train_seconds_per_image": entry["train_seconds_per_image"] * factor,
        "infer_seconds_per_image": entry["infer_seconds_per_image"] * factor,
        "train_peak_mb": entry["train_peak_mb"] * max(factor, 1.0),
    }


@functools.cache
def _materialised_cached(path: str, mtime: float) -> dict:
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(b"stealbench")
    return json.loads(raw).get("split_counts", {}) if raw else {}


def _materialised(root: Path, dataset: str) -> dict[str, int]:
    """A materialised dataset's images per split (empty if it is not there yet)."""
    path = root / "results" / "data" / f"{dataset}.parquet"
    if not path.exists():
        return {}
    try:
        return _materialised_cached(str(path), path.stat().st_mtime)
    except (OSError, ValueError):
        return {}


def jobs(config: dict):
    """(rule, wildcards) of every model job the workflow plans for ``config``, as
    rules/*.smk derive them."""
    for backbone in config["pretrain"]:
        yield "pretrain_backbone", {"backbone": backbone}
    for victim in grid.victims_of(config, "train"):
        yield "train_victim", {"victim": victim}
    for victim in grid.victims_of(config, "checkpoint", "torchscript", "torchvision"):
        yield "import_victim", {"victim": victim}
    for victim, attack, defense, seed in grid.query_runs(config):
        if defense is None:
            yield "sample_pool", {"victim": victim, "attack": attack, "seed": str(seed)}
        else:
            wc = {"victim": victim, "attack": attack, "defense": defense, "seed": str(seed)}
            yield "run_attack", wc
    for victim, attack, arch, seed in grid.surrogate_jobs(config):
        for part in grid.surrogate_parts(config, attack, victim):
            wc = {"victim": victim, "attack": attack, "arch": arch, "seed": str(seed)}
            yield "train_surrogates", {**wc, "part": part}
    if "defenses" not in config:
        return
    for victim in grid.defense_victims(config):
        yield "train_detector", {"victim": victim}
        yield "evaluate_detectors", {"victim": victim}
    names = {d.name for d in grid.defense_instances(config)}
    if set(grid.defense_models(names)) - {"detector"}:
        for victim in sorted({v for v, _ in grid.defended_pairs(config)}):
            yield "train_defense_models", {"victim": victim}
    for victim, attack, arch, seed in grid.defended_jobs(config):
        wc = {"victim": victim, "attack": attack, "arch": arch, "seed": str(seed)}
        yield "train_defended_surrogates", wc


def summary(config: dict, planner: Planner | None = None) -> list[dict]:
    """One row per rule, model and budget: jobs, images trained, GPU-hours (the priced work,
    without the safety factor and start-up) and the runtime asked of SLURM (with them)."""
    planner = planner or Planner(config)
    rows: dict[tuple, dict] = {}
    for rule, wc in jobs(config):
        cost = planner.job(rule, wc)
        arch = wc.get("arch") or (cost.work[0].arch if cost.work else None) or "-"
        budget = "-"
        if rule == "train_surrogates":
            budget = ",".join(
                map(str, grid.part_cells(config, wc["attack"], wc["victim"], wc["part"])[2])
            )
        row = rows.setdefault(
            (rule, arch, budget),
            {
                "rule": rule,
                "arch": arch,
                "budget": budget,
                "jobs": 0,
                "train_images": 0,
                "device_hours": 0.0,
                "asked_hours": 0.0,
                "max_runtime": 0,
                "max_mem_mb": 0,
            },
        )
        row["jobs"] += 1
        row["train_images"] += cost.train_images
        row["device_hours"] += cost.device_seconds / 3600
        row["asked_hours"] += cost.runtime / 60
        row["max_runtime"] = max(row["max_runtime"], cost.runtime)
        row["max_mem_mb"] = max(row["max_mem_mb"], cost.mem_mb)
    return list(rows.values())


def main(argv=None) -> int:
    """``python -m stealbench.config.resources CONFIG``: the grid's cost, as a table."""
    import argparse

    import yaml

    from .load import validate

    parser = argparse.ArgumentParser(description="What a config's grid costs, job by job.")
    parser.add_argument("config", help="a workflow config file (e.g. configs/paper.yaml)")
    args = parser.parse_args(argv)
    config = validate(yaml.safe_load(Path(args.config).read_text()))
    rows = summary(config)
    device = config["device"]
    table = Planner(config).costs.get(device, {})
    kinds = {"measured_on" if "measured_on" in e else "estimated_from" for e in table.values()}
    print(
        f"device {device}; per-image costs {'/'.join(sorted(kinds)) or 'missing'} "
        f"(src/stealbench/config/costs.json)\n"
    )
    print(
        "| rule | arch | budget | jobs | images trained | device-hours | asked (h) | "
        "longest job (min) | largest mem (MB) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['rule']} | {r['arch']} | {r['budget']} | {r['jobs']} | "
            f"{r['train_images']:,} | {r['device_hours']:,.1f} | {r['asked_hours']:,.1f} | "
            f"{r['max_runtime']:,} | {r['max_mem_mb']:,} |"
        )
    total = sum(r["device_hours"] for r in rows)
    asked = sum(r["asked_hours"] for r in rows)
    print(
        f"| **total** | | | {sum(r['jobs'] for r in rows)} | "
        f"{sum(r['train_images'] for r in rows):,} | **{total:,.0f}** | {asked:,.0f} | | |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
