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
import math
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from .attack.strategies import registry as strategy_registry
from .defense import registry as defense_registry

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The config is invalid; the message says which key and how to fix it."""


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that rejects a key given twice in one mapping (YAML keeps the last)."""


def _strict_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"duplicate key '{key}' (lines {seen[key] + 1} and {key_node.start_mark.line + 1}"
                f" of {key_node.start_mark.name}); every name must be unique"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def check_duplicate_keys(path: str | Path) -> None:
    """Fail on duplicate names in a config file, which a plain YAML load silently drops."""
    with open(path) as handle:
        yaml.load(handle, Loader=_StrictLoader)  # a SafeLoader subclass: no code runs


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    """The config schema: the file's, with the method sections generated from the methods'
    own declarations (the strategies and their options, the defenses and their parameters)."""
    schema = yaml.safe_load(Path(path).read_text())
    names, branches = strategy_registry.config_schema()
    attack = schema["properties"]["attacks"]["additionalProperties"]
    attack["properties"]["strategy"]["enum"] = names
    attack["allOf"] = branches
    defended = schema["properties"]["defenses"]["properties"]["defended"]["properties"]
    defended["defenses"]["properties"] = defense_registry.config_schema()
    return schema


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
    path = list(error.absolute_path)
    if (
        error.validator == "type"
        and isinstance(error.instance, list)
        and len(path) == 5
        and path[:3] == ["defenses", "defended", "defenses"]
    ):
        return (
            f"config key '{key}': only the strength ({defense_strength(path[3])}) may be a "
            f"list of values"
        )
    if error.validator == "oneOf" and error.context:
        # A strength is one value or a list of them: report what is wrong with the value.
        specific = [e for e in error.context if e.validator != "type"] or list(error.context)
        return f"config key '{_key(error.absolute_path)}': {specific[0].message}"
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
    _fill_dataset_defaults(config, schema)
    # Defaults of nested training blocks: a partial block inherits the rest.
    base = _resolve(schema["properties"]["victim_training"], schema)["default"]
    config["victim_training"] = {**base, **config["victim_training"]}
    for victim in config["victims"].values():
        victim["training"] = {**config["victim_training"], **victim.get("training", {})}
    for backbone in config["pretrain"].values():
        backbone["training"] = {**config["victim_training"], **backbone.get("training", {})}
    surrogate_base = schema["properties"]["surrogates"]["properties"]["training"]["default"]
    config["surrogates"]["training"] = {**surrogate_base, **config["surrogates"]["training"]}
    if "defenses" in config:
        d, props = config["defenses"], schema["properties"]["defenses"]["properties"]
        for block in ("detector", "misinformation"):
            base = props[block]["properties"]["training"]["default"]
            d[block]["training"] = {**base, **d[block].get("training", {})}
    _check_references(config)
    return canonical(config)


def canonical(value):
    """Dicts with sorted keys, recursively. Snakemake compares rule params by their text, so
    reordering keys in a YAML file must not look like a change that reruns jobs."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def split_sizes(dataset_spec: dict, builder_sizes: dict[str, int] | None = None) -> dict:
    """Images per split, as far as the config tells: an int, or None where only the data
    can tell (an ImageFolder tree; -1 or a fraction of a part of unknown size).

    Checks that need a size skip the splits whose size is None; the jobs then fail with a
    clear message if the data turns out too small (e.g. a pool smaller than the budget).
    """
    return {
        split: count
        for _, counts, _, _ in _split_parts(dataset_spec, builder_sizes or DEFAULT_SIZES)
        for split, count in counts.items()
    }


# Images each builder makes with its default options (used to check budgets before any job).
DEFAULT_SIZES = {
    "mnist5k": 5000,
    "uci-digits": 1797,
    "glyphs": 5200,
    "photo-crops": 2000,
    "public": 9000,
    "noise": 1000,
}

# Real datasets (stealbench.realdata): read from disk, streamed into Parquet.
REAL_SOURCES = ("torchvision", "imagefolder")
# Their default splits: the source's train part, 10% of it carved for val, its test part.
REAL_SOURCE_SPLITS = {"train": -1, "val": 0.1, "test": -1}
# (train, test) images of each torchvision dataset as published. Caltech256 has no test
# split: Knockoff nets drop its clutter class (29,780 images left in 256 classes) and keep
# test_per_class (25) images per class for test.
TORCHVISION_SIZES = {
    "MNIST": (60000, 10000),
    "FashionMNIST": (60000, 10000),
    "KMNIST": (60000, 10000),
    "CIFAR10": (50000, 10000),
    "CIFAR100": (50000, 10000),
    "SVHN": (73257, 26032),
    "GTSRB": (26640, 12630),
    "STL10": (5000, 8000),
    "Caltech256": None,
}
CALTECH256_IMAGES, CALTECH256_CLASSES, CALTECH256_TEST_PER_CLASS = 29780, 256, 25
# ImageFolder layouts whose test part comes with the data (the others need test_per_class
# or test_fraction), and those whose test part may be drawn per class.
TEST_PART_LAYOUTS = ("caltech256", "cub200", "indoor67", "train_test")
PER_CLASS_TEST_LAYOUTS = ("generic", "caltech256")


def _options_schema(source: str, schema: dict) -> dict | None:
    """The schema of ``options`` for a real source (from the datasets' allOf branches)."""
    entry = schema["properties"]["datasets"]["additionalProperties"]
    for branch in entry.get("allOf", []):
        condition = branch.get("if", {}).get("properties", {}).get("source", {})
        options = branch.get("then", {}).get("properties", {}).get("options")
        if condition.get("const") == source and options is not None:
            return options
    return None


def source_options(dataset_spec: dict, schema: dict | None = None) -> dict:
    """The options of a dataset with the schema's defaults filled in (real sources)."""
    options = copy.deepcopy(dataset_spec.get("options", {}))
    sub = _options_schema(dataset_spec["source"], schema or load_schema())
    for key, prop in (sub or {}).get("properties", {}).items():
        if key not in options and "default" in prop:
            options[key] = copy.deepcopy(prop["default"])
    return options


def has_test_part(dataset_spec: dict) -> bool:
    """Whether a source has a test part of its own (a torchvision test split, a layout's
    test list, per-class test images); builders have none."""
    source, options = dataset_spec["source"], dataset_spec.get("options", {})
    if source == "torchvision":
        return True
    if source == "imagefolder":
        return (
            options.get("layout", "generic") in TEST_PART_LAYOUTS
            or "test_per_class" in options
            or "test_fraction" in options
        )
    return False


def _part_sizes(spec: dict, sizes: dict[str, int]) -> dict[str, int | None]:
    """Images in each part of a source ("all", and "train"/"test" where it has a test part)."""
    source, options = spec["source"], spec.get("options", {})
    if source == "imagefolder":
        return {"all": None, "train": None, "test": None}
    if source == "torchvision":
        known = TORCHVISION_SIZES.get(options.get("name"))
        if options.get("name") == "Caltech256":
            per_class = options.get("test_per_class", CALTECH256_TEST_PER_CLASS)
            test = min(CALTECH256_IMAGES, per_class * CALTECH256_CLASSES)
            known = (CALTECH256_IMAGES - test, test)
        if known is None:
            return {"all": None, "train": None, "test": None}
        return {"all": sum(known), "train": known[0], "test": known[1]}
    return {"all": options.get("size", sizes.get(source))}


def _count(value: float, n: int | None) -> int | None:
    if isinstance(value, float) and not value.is_integer():  # a fraction of the part
        return None if n is None else math.floor(value * n + 0.5)
    return int(value)


def _split_parts(spec: dict, sizes: dict[str, int]) -> list[tuple[dict, dict, int | None, str]]:
    """Each part of a source with the splits drawn from it: (requested, counts, part size,
    part name); counts are resolved (fractions, -1) where the part's size is known, else None.
    """
    splits = spec.get("splits") or REAL_SOURCE_SPLITS
    parts = _part_sizes(spec, sizes)
    if has_test_part(spec) and "test" in splits:
        groups = [
            ({k: v for k, v in splits.items() if k != "test"}, parts["train"], "train"),
            ({"test": splits["test"]}, parts["test"], "test"),
        ]
    else:
        groups = [(dict(splits), parts["all"], "all")]
    out = []
    for requested, n, part in groups:
        counts = {k: _count(v, n) for k, v in requested.items()}
        fixed = [c for c in counts.values() if c != -1]
        rest = None if n is None or None in fixed else n - sum(fixed)
        out.append((requested, {k: (rest if c == -1 else c) for k, c in counts.items()}, n, part))
    return out


def _check_dataset(name: str, spec: dict) -> list[str]:
    """Errors of one dataset entry: split values, -1s, known sizes, real-source options."""
    errors, key = [], f"config key 'datasets.{name}"
    source, options = spec["source"], spec.get("options", {})
    if "splits" not in spec:
        return [
            f"{key}.splits': source '{source}' with layout "
            f"'{options.get('layout', 'generic')}' has no test part of its own, so the "
            f"default splits do not apply; give splits (e.g. {{pool: -1}}) or set "
            f"datasets.{name}.options.test_per_class or test_fraction"
        ]
    for split, value in spec["splits"].items():
        if isinstance(value, float) and not value.is_integer() and not 0 < value < 1:
            errors.append(
                f"{key}.splits.{split}': {value} is neither a count (-1 for the rest, 0, 1, "
                f"...) nor a fraction between 0 and 1"
            )
    if errors:
        return errors
    if source == "imagefolder":
        layout = options.get("layout", "generic")
        given = [k for k in ("test_per_class", "test_fraction") if k in options]
        if len(given) > 1:
            errors.append(f"{key}.options': set test_per_class or test_fraction, not both")
        if given and layout not in PER_CLASS_TEST_LAYOUTS:
            errors.append(
                f"{key}.options.{given[0]}': layout '{layout}' has its own test part; "
                f"per-class test images apply to layouts {', '.join(PER_CLASS_TEST_LAYOUTS)}"
            )
    if source == "torchvision" and "test_per_class" in options:
        if options.get("name") != "Caltech256":
            errors.append(
                f"{key}.options.test_per_class': applies to Caltech256 only; "
                f"{options.get('name')} has a test split of its own"
            )
    groups = _split_parts(spec, DEFAULT_SIZES)
    for requested, counts, n, part in groups:
        if list(requested.values()).count(-1) > 1:
            errors.append(
                f"{key}.splits': only one split may be -1"
                + (f" among {', '.join(requested)} (the {part} part)" if len(groups) > 1 else "")
            )
        need = sum(counts[k] for k, v in requested.items() if v != -1 and counts[k] is not None)
        if n is not None and need > n:
            what = (
                f"torchvision {options['name']}"
                if source == "torchvision"
                else f"source '{source}'"
            )
            has = f"makes {n}" if len(groups) == 1 else f"has {n} in its {part} part"
            errors.append(f"{key}.splits': {spec['splits']} needs {need} images but {what} {has}")
    return errors


def _fill_dataset_defaults(config: dict, schema: dict) -> None:
    """Options defaults of real sources (the schema's if/then branches), default splits."""
    for spec in config["datasets"].values():
        if spec["source"] in REAL_SOURCES:
            spec["options"] = source_options(spec, schema)
            if "splits" not in spec and has_test_part(spec):
                spec["splits"] = dict(REAL_SOURCE_SPLITS)


def _check_references(config: dict) -> None:
    errors = []
    datasets, attacks = config["datasets"], config["attacks"]
    for name, spec in datasets.items():
        errors.extend(_check_dataset(name, spec))
    for name, attack in attacks.items():
        if attack["pool"] not in datasets:
            errors.append(
                f"config key 'attacks.{name}.pool': unknown dataset "
                f"'{attack['pool']}'; allowed: {', '.join(datasets)}"
            )
    for name, spec in config["pretrain"].items():
        if spec["dataset"] not in datasets:
            errors.append(
                f"config key 'pretrain.{name}.dataset': unknown dataset '{spec['dataset']}'; "
                f"allowed: {', '.join(datasets)}"
            )
        elif any(
            split_sizes(datasets[spec["dataset"]]).get(split, 0) == 0 for split in ("train", "val")
        ):
            errors.append(
                f"config key 'datasets.{spec['dataset']}.splits': backbone '{name}' needs "
                f"non-empty 'train' and 'val' splits"
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
            errors.extend(
                _check_init(config, f"victims.{name}.init", victim["init"], victim["arch"])
            )
        for attack in victim["attacks"]:
            if attack not in attacks:
                errors.append(
                    f"config key 'victims.{name}.attacks': unknown attack "
                    f"'{attack}'; allowed: {', '.join(attacks)}"
                )
    if errors:
        raise ConfigError("\n".join(dict.fromkeys(errors)))
    for name, victim in config["victims"].items():
        for attack in victim["overrides"]:
            if attack not in victim["attacks"]:
                errors.append(
                    f"config key 'victims.{name}.overrides': '{attack}' is not among the "
                    f"victim's attacks ({', '.join(victim['attacks'])})"
                )
    if errors:
        raise ConfigError("\n".join(dict.fromkeys(errors)))
    for victim, attack in victim_attacks(config):
        ax = axes(config, attack, victim)
        key = _axis_key(config, victim, attack, "inits")
        for arch in ax["archs"]:
            for init in ax["inits"]:
                errors.extend(_check_init(config, key, init, arch, victim=victim))
    if "defenses" in config:
        errors.extend(_check_defenses(config))
    if errors:
        raise ConfigError("\n".join(dict.fromkeys(errors)))
    for victim, name in victim_attacks(config):
        attack = attacks[name]
        budget = query_budget(config, name, victim)
        pool = datasets[attack["pool"]]
        available = split_sizes(pool).get("pool", 0)
        if strategy_kind(attack["strategy"]) == "data-free" or available is None:
            continue  # a generator needs no pool images; an ImageFolder pool is checked by its job
        if budget > available:
            key = _axis_key(config, victim, name, "budgets")
            if budget > max(axes(config, name, victim)["budgets"]):
                key = "defenses.defended.budgets"  # the defended cells' budget is the largest
            errors.append(
                f"config key '{key}': the largest budget {budget} exceeds "
                f"the {available} images of the pool split of '{attack['pool']}' "
                f"(attack '{name}'); lower the budget or enlarge the pool"
            )
    if errors:
        raise ConfigError("\n".join(dict.fromkeys(errors)))


def _check_init(
    config: dict, key: str, init: str, arch: str, victim: str | None = None
) -> list[str]:
    """A model's starting point: scratch, imagenet (torchvision archs) or a backbone of the same
    architecture that was never trained on a victim's own task."""
    backbones = config["pretrain"]
    if init == "scratch":
        return []
    if init == "imagenet":
        if arch not in PRETRAINED_ARCHS:
            return [
                f"config key '{key}': '{arch}' has no ImageNet weights; imagenet is allowed with: "
                f"{', '.join(PRETRAINED_ARCHS)}"
            ]
        return []
    if init not in backbones:
        return [
            f"config key '{key}': unknown init '{init}'; allowed: scratch, imagenet"
            + "".join(f", {name}" for name in backbones)
        ]
    backbone = backbones[init]
    if backbone["arch"] != arch:
        return [
            f"config key '{key}': backbone '{init}' is a {backbone['arch']}, not a {arch}; a "
            f"model starts only from a backbone of its own architecture"
        ]
    datasets = config["datasets"]
    if backbone["dataset"] not in datasets:
        return []  # reported as an unknown dataset of pretrain.{init}.dataset
    corpus_task = datasets[backbone["dataset"]].get("task")
    victims = [victim] if victim else [v for v, s in config["victims"].items() if s["init"] == init]
    for v in victims:
        task = datasets[config["victims"][v]["dataset"]].get("task")
        if (
            task is not None
            and task == corpus_task
            or backbone["dataset"] == config["victims"][v]["dataset"]
        ):
            return [
                f"config key '{key}': backbone '{init}' was trained on '{backbone['dataset']}', "
                f"data of victim '{v}''s own task ({task}); a public backbone must never see "
                f"the victim's task data"
            ]
    return []


def query_budget(config: dict, attack: str, victim: str) -> int:
    """The most queries any seed of an attack against a victim sends: the largest budget it
    is trained or defended at."""
    budget = max(axes(config, attack, victim)["budgets"])
    if (victim, attack) in defended_pairs(config):
        budget = max(budget, *config["defenses"]["defended"]["budgets"][attack])
    return budget


def _check_defenses(config: dict) -> list[str]:
    """Fill the defense stage's derived defaults and check its references."""
    errors = []
    d, datasets = config["defenses"], config["datasets"]
    out = d["detector"].get("out")
    if not out:
        errors.append(
            "config key 'defenses.detector.out': missing; name the datasets whose train "
            f"splits are the defender's generic data ({', '.join(datasets)})"
        )
        out = []
    for name in out + d["misinformation"]["outlier"]:
        key = "detector.out" if name in out else "misinformation.outlier"
        if name not in datasets:
            errors.append(
                f"config key 'defenses.{key}': unknown dataset '{name}'; allowed: "
                f"{', '.join(datasets)}"
            )
        elif split_sizes(datasets[name]).get("train", 0) == 0:
            errors.append(
                f"config key 'datasets.{name}.splits': the defender's dataset '{name}' needs a "
                f"non-empty 'train' split (defenses.{key})"
            )
    if not errors:
        for victim in config["victims"]:
            if not detector_out(config, victim):
                errors.append(
                    f"config key 'defenses.detector.out': every dataset has the task of victim "
                    f"'{victim}'; the defender's generic data must hold other kinds of images"
                )
    for source in d["benign"]["sources"]:
        if source not in datasets:
            errors.append(
                f"config key 'defenses.benign.sources': unknown dataset '{source}'; "
                f"allowed: {', '.join(datasets)}"
            )
    defended = d["defended"]
    defended.setdefault("attacks", list(config["attacks"]))
    defended.setdefault("victims", list(config["victims"]))
    for victim in defended["victims"]:
        if victim not in config["victims"]:
            errors.append(
                f"config key 'defenses.defended.victims': unknown victim '{victim}'; "
                f"allowed: {', '.join(config['victims'])}"
            )
    defended.setdefault("archs", config["surrogates"]["archs"][:1])
    defended.setdefault("seeds", config["surrogates"]["seeds"])
    for attack in defended["attacks"]:
        if attack not in config["attacks"]:
            errors.append(
                f"config key 'defenses.defended.attacks': unknown attack '{attack}'; "
                f"allowed: {', '.join(config['attacks'])}"
            )
    if errors:
        return errors
    # Budgets per defended attack: the given ones, else the attack's largest.
    given = defended.pop("budgets", None)
    defended["budgets"] = {
        a: sorted(given) if given else [max(axes(config, a)["budgets"])]
        for a in defended["attacks"]
    }
    defended.setdefault("sequential_defenses", sorted(defended["defenses"]))
    for name in defended["sequential_defenses"]:
        if name not in defended["defenses"]:
            errors.append(
                f"config key 'defenses.defended.sequential_defenses': '{name}' is not among "
                f"defenses.defended.defenses ({', '.join(defended['defenses'])})"
            )
    for name, params in defended["defenses"].items():
        strength = defense_strength(name)
        for param, value in params.items():
            if isinstance(value, list) and param != strength:
                errors.append(
                    f"config key 'defenses.defended.defenses.{name}.{param}': only the strength "
                    f"({strength}) may be a list of values"
                )
    return errors


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
        if model in needs and (not api_only or model in defense_registry.CONTEXT_MODELS)
    ]


# Architectures with ImageNet weights (the torchvision ones of stealbench.models).
PRETRAINED_ARCHS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg16",
    "densenet121",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
)


def is_sequential(config: dict, attack: str) -> bool:
    """Whether an attack chooses its queries from the answers (one run per granularity,
    defense and seed) rather than sampling its pool blind (one cache for all of them)."""
    return strategy_kind(config["attacks"][attack]["strategy"]) != "sampling"


# ------------------------------------------------------------------------- the grid


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


def defense_instances(config: dict) -> list[DefenseInstance]:
    """Every configured defense at every strength of its sweep, in config order."""
    if "defenses" not in config:
        return []
    out = []
    for name, params in config["defenses"]["defended"]["defenses"].items():
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


def attack_defenses(config: dict, attack: str) -> list[DefenseInstance]:
    """The defense instances an attack is answered through: all of them for a sampling attack
    (its cache serves every defense for free), those of ``defended.sequential_defenses`` for a
    sequential one (each is a rerun of the attack against that defended API)."""
    instances = defense_instances(config)
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
    """(victim, attack) pairs whose answers go through every defense."""
    if "defenses" not in config:
        return []
    defended = config["defenses"]["defended"]
    return [
        (v, a)
        for v, a in victim_attacks(config)
        if a in defended["attacks"] and v in defended["victims"]
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
            for instance in attack_defenses(config, attack):
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


def victim_spec(config: dict, victim: str) -> dict:
    """What a victim is (its data, architecture, start and training), without the attacks it
    faces: adding an attack leaves the victim and the jobs that read it unchanged."""
    spec = config["victims"][victim]
    return {key: spec[key] for key in ("dataset", "arch", "init", "input_size", "training")}


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
