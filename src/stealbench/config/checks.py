"""Cross-references the schema cannot express: a victim's dataset must exist, a budget must
fit its pool, a backbone must not have seen the victim's task, ... Each message names the key,
the problem and the allowed values."""

from __future__ import annotations

from ..data.sizes import (
    DEFAULT_SIZES,
    PER_CLASS_TEST_LAYOUTS,
    REAL_SOURCE_SPLITS,
    REAL_SOURCES,
    has_test_part,
    split_parts,
    split_sizes,
)
from .grid import (
    _axis_key,
    axes,
    defense_strength,
    detector_out,
    query_budget,
    strategy_kind,
    victim_attacks,
)
from .schema import ConfigError, source_options


def _unknown(key: str, what: str, name: str, allowed) -> str:
    """The message for a reference to a ``what`` (dataset, attack, victim) the config lacks."""
    return f"config key '{key}': unknown {what} '{name}'; allowed: {', '.join(allowed)}"


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
    groups = split_parts(spec, DEFAULT_SIZES)
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


def fill_dataset_defaults(config: dict, schema: dict) -> None:
    """Options defaults of real sources (the schema's if/then branches), default splits."""
    for spec in config["datasets"].values():
        if spec["source"] in REAL_SOURCES:
            spec["options"] = source_options(spec, schema)
            if "splits" not in spec and has_test_part(spec):
                spec["splits"] = dict(REAL_SOURCE_SPLITS)


def check_references(config: dict) -> None:
    errors = []
    datasets, attacks = config["datasets"], config["attacks"]
    for name, spec in datasets.items():
        errors.extend(_check_dataset(name, spec))
    for name, attack in attacks.items():
        if attack["pool"] not in datasets:
            errors.append(_unknown(f"attacks.{name}.pool", "dataset", attack["pool"], datasets))
    for name, spec in config["pretrain"].items():
        if spec["dataset"] not in datasets:
            errors.append(
                _unknown(f"pretrain.{name}.dataset", "dataset", spec["dataset"], datasets)
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
                _unknown(f"victims.{name}.dataset", "dataset", victim["dataset"], datasets)
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
                errors.append(_unknown(f"victims.{name}.attacks", "attack", attack, attacks))
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
            errors.append(_unknown(f"defenses.{key}", "dataset", name, datasets))
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
            errors.append(_unknown("defenses.benign.sources", "dataset", source, datasets))
    defended = d["defended"]
    defended.setdefault("attacks", list(config["attacks"]))
    defended.setdefault("victims", list(config["victims"]))
    for victim in defended["victims"]:
        if victim not in config["victims"]:
            errors.append(
                _unknown("defenses.defended.victims", "victim", victim, config["victims"])
            )
    defended.setdefault("archs", config["surrogates"]["archs"][:1])
    defended.setdefault("seeds", config["surrogates"]["seeds"])
    for attack in defended["attacks"]:
        if attack not in config["attacks"]:
            errors.append(
                _unknown("defenses.defended.attacks", "attack", attack, config["attacks"])
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
