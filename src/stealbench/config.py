"""Config validation and the grid it defines.

Kept free of torch so that Snakemake can plan (and reject a bad config) before any job
starts, in a few milliseconds. Two layers: the JSON schema in
``workflow/schemas/config.schema.yaml`` (structure, types, allowed values, defaults), then
cross-references the schema cannot express (a victim's dataset must exist, a budget must fit
its pool, ...). Every message names the key, the problem and the allowed values.
"""

from __future__ import annotations

import copy
import difflib
import itertools
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The config is invalid; the message says which key and how to fix it."""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _fill_defaults(value, schema: dict, root: dict):
    """Fill schema defaults into ``value`` (recursively, into objects it holds)."""
    schema = _resolve(schema, root)
    if not isinstance(value, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        if name not in value and "default" in sub:
            value[name] = copy.deepcopy(sub["default"])
        if name in value:
            _fill_defaults(value[name], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for name in value:
            if name not in schema.get("properties", {}):
                _fill_defaults(value[name], extra, root)


def _message(error: jsonschema.ValidationError) -> str:
    key = _key(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, allowed, n=1)
            hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return (
            f"config key '{key}': unknown key {', '.join(hints)}; "
            f"allowed keys: {', '.join(allowed)}"
        )
    if error.validator == "enum":
        return (
            f"config key '{key}': {error.instance!r} is not allowed; "
            f"allowed values: {', '.join(map(str, error.validator_value))}"
        )
    if error.validator == "required":
        return f"config key '{key}': {error.message}"
    return f"config key '{key}': {error.message}"


def validate(config: dict, schema: dict | None = None) -> dict:
    """Return a validated copy of ``config`` with defaults filled in, or raise ConfigError."""
    schema = schema or load_schema()
    config = copy.deepcopy(config or {})
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("\n".join(_message(e) for e in errors))
    _fill_defaults(config, schema, schema)
    # Defaults of nested training blocks: a partial block inherits the rest.
    base = _resolve(schema["properties"]["victim_training"], schema)["default"]
    config["victim_training"] = {**base, **config["victim_training"]}
    for victim in config["victims"].values():
        victim["training"] = {**config["victim_training"], **victim.get("training", {})}
    surrogate_base = schema["properties"]["surrogates"]["properties"]["training"]["default"]
    config["surrogates"]["training"] = {**surrogate_base, **config["surrogates"]["training"]}
    _check_references(config)
    return config


def split_sizes(dataset_spec: dict, builder_sizes: dict[str, int] | None = None) -> dict:
    """Images per split, as far as the config tells (``-1`` is resolved with known sizes)."""
    sizes = builder_sizes or DEFAULT_SIZES
    splits = dataset_spec["splits"]
    if -1 not in splits.values():
        return dict(splits)
    total = dataset_spec.get("options", {}).get("size", sizes.get(dataset_spec["source"]))
    if total is None:
        return {k: v for k, v in splits.items() if v != -1}
    fixed = sum(v for v in splits.values() if v != -1)
    return {k: (total - fixed if v == -1 else v) for k, v in splits.items()}


# Images each builder makes with its default options (used to check budgets before any job).
DEFAULT_SIZES = {
    "mnist5k": 5000,
    "uci-digits": 1797,
    "glyphs": 5200,
    "photo-crops": 2000,
    "noise": 1000,
}


def _check_references(config: dict) -> None:
    errors = []
    datasets, attacks = config["datasets"], config["attacks"]
    for name, spec in datasets.items():
        if list(spec["splits"].values()).count(-1) > 1:
            errors.append(f"config key 'datasets.{name}.splits': only one split may be -1")
        sizes = split_sizes(spec)
        total = spec.get("options", {}).get("size", DEFAULT_SIZES.get(spec["source"]))
        if total is not None and sum(sizes.values()) > total:
            errors.append(
                f"config key 'datasets.{name}.splits': {spec['splits']} needs "
                f"{sum(sizes.values())} images but source '{spec['source']}' makes "
                f"{total}"
            )
    for name, attack in attacks.items():
        if attack["pool"] not in datasets:
            errors.append(
                f"config key 'attacks.{name}.pool': unknown dataset "
                f"'{attack['pool']}'; allowed: {', '.join(datasets)}"
            )
    for name, victim in config["victims"].items():
        if victim["dataset"] not in datasets:
            errors.append(
                f"config key 'victims.{name}.dataset': unknown dataset "
                f"'{victim['dataset']}'; allowed: {', '.join(datasets)}"
            )
        else:
            sizes = split_sizes(datasets[victim["dataset"]])
            for split in ("train", "val", "test"):
                if sizes.get(split, 0) == 0:
                    errors.append(
                        f"config key 'datasets.{victim['dataset']}.splits': victim "
                        f"'{name}' needs a non-empty '{split}' split"
                    )
        for attack in victim["attacks"]:
            if attack not in attacks:
                errors.append(
                    f"config key 'victims.{name}.attacks': unknown attack "
                    f"'{attack}'; allowed: {', '.join(attacks)}"
                )
    budget = max(config["surrogates"]["budgets"])
    for name, attack in attacks.items():
        pool = datasets.get(attack["pool"])
        if pool is None:
            continue
        available = split_sizes(pool).get("pool", 0)
        if budget > available:
            errors.append(
                f"config key 'surrogates.budgets': the largest budget {budget} exceeds "
                f"the {available} images of the pool split of '{attack['pool']}' "
                f"(attack '{name}'); lower the budget or enlarge the pool"
            )
    if errors:
        raise ConfigError("\n".join(errors))


# ------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Cell:
    victim: str
    attack: str
    granularity: str
    budget: int
    surrogate_arch: str
    seed: int


def victim_attacks(config: dict) -> list[tuple[str, str]]:
    """Every (victim, attack) pair: one query cache each."""
    return [(v, a) for v, spec in config["victims"].items() for a in spec["attacks"]]


def cells(config: dict) -> list[Cell]:
    s = config["surrogates"]
    return [
        Cell(v, a, g, b, arch, seed)
        for (v, a), g, b, arch, seed in itertools.product(
            victim_attacks(config), s["granularities"], sorted(s["budgets"]), s["archs"], s["seeds"]
        )
    ]


def is_realistic(config: dict, victim: str, attack: str) -> bool:
    """A realistic adversary queries with data of the victim's own task (Atli et al. §4)."""
    task = config["datasets"][config["victims"][victim]["dataset"]].get("task")
    pool_task = config["datasets"][config["attacks"][attack]["pool"]].get("task")
    return task is not None and task == pool_task
