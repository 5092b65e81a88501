"""Cross-references the schema cannot express: a victim's dataset must exist, a budget must
fit its pool, a backbone must not have seen the victim's task, ... Each message names the key,
the problem and the allowed values."""

from __future__ import annotations

import difflib

from ..data.sizes import (
    DEFAULT_SIZES,
    PER_CLASS_TEST_LAYOUTS,
    REAL_SOURCE_SPLITS,
    REAL_SOURCES,
    has_test_part,
    split_parts,
    split_sizes,
)
from ..victim import sources as victim_sources
from .grid import (
    _axis_key,
    axes,
    defendable_victims,
    defense_strength,
    defense_victims,
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
        trained = victim_sources.source(victim) == "train"
        if victim["dataset"] not in datasets:
            errors.append(
                _unknown(f"victims.{name}.dataset", "dataset", victim["dataset"], datasets)
            )
        else:
            sizes = split_sizes(datasets[victim["dataset"]])
            for split in ("train", "val", "test") if trained else ("test",):
                if sizes.get(split, 0) == 0:
                    errors.append(
                        f"config key 'datasets.{victim['dataset']}.splits': victim "
                        f"'{name}' needs a non-empty '{split}' split"
                        + ("" if trained else " (its labelled test data)")
                    )
            if trained:
                errors.extend(
                    _check_init(config, f"victims.{name}.init", victim["init"], victim["arch"])
                )
        if trained:
            errors.extend(_check_outlier_exposure(config, name))
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
    errors.extend(_check_remote_granularities(config))
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


def _did_you_mean(name: str, allowed) -> str:
    close = difflib.get_close_matches(name, list(allowed), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_outlier_exposure(config: dict, victim: str) -> list[str]:
    """A trained victim's Outlier Exposure data: the defender's own generic datasets (with a
    train split), never an attacker's pool, a victim's data or the public corpus."""
    names = config["victims"][victim]["training"].get("outlier_exposure", {}).get("data", [])
    datasets = config["datasets"]
    users: dict[str, dict[str, list[str]]] = {}  # dataset -> role -> names
    for role, entries, field in (
        ("the public corpus of backbone", config["pretrain"], "dataset"),
        ("the data of victim", config["victims"], "dataset"),
        ("the pool of attack", config["attacks"], "pool"),
    ):
        for name, spec in entries.items():
            users.setdefault(spec[field], {}).setdefault(role, []).append(name)
    taken = {  # the attackers first: what matters most is that the defender never sees them
        dataset: "; ".join(f"{role} {', '.join(names)}" for role, names in reversed(by.items()))
        for dataset, by in users.items()
    }
    allowed = [
        d for d, spec in datasets.items() if d not in taken and split_sizes(spec).get("train", 0)
    ]
    key = f"config key 'victims.{victim}.training.outlier_exposure.data'"
    errors = []
    for name in names:
        if name not in datasets:
            reason = "unknown dataset"
        elif name in taken:
            reason = f"{taken[name]}, not the defender's generic data:"
        elif split_sizes(datasets[name]).get("train", 0) == 0:
            reason = "a dataset with an empty 'train' split (its outliers):"
        else:
            continue
        errors.append(
            f"{key}: {reason} '{name}'{_did_you_mean(name, allowed)}; allowed values (the "
            f"defender's datasets with a train split): {', '.join(allowed) or 'none'}"
        )
    return errors


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
    victims = (
        [victim] if victim else [v for v, s in config["victims"].items() if s.get("init") == init]
    )
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
    local = defense_victims(config)
    if not local:
        errors.append(
            "config key 'defenses': every victim is remote, and stealbench's defenses apply "
            "only to victims it runs; remove the section, or serve a model behind a defense "
            "with `stealbench serve`"
        )
    if not errors:
        for victim in local:
            if not detector_out(config, victim):
                errors.append(
                    f"config key 'defenses.detector.out': every dataset has the task of victim "
                    f"'{victim}'; the defender's generic data must hold other kinds of images"
                )
    delta = d["prada"]["delta"]
    if delta != "calibrate" and (isinstance(delta, str) or not 0 <= delta <= 1):
        close = difflib.get_close_matches(str(delta), ["calibrate"], n=1)
        errors.append(
            f"config key 'defenses.prada.delta': {delta!r} is neither a number in [0, 1] nor "
            f"'calibrate'; allowed: a number in [0, 1], calibrate"
            + (f" (did you mean '{close[0]}'?)" if close else "")
        )
    for source in d["benign"]["sources"]:
        if source not in datasets:
            errors.append(_unknown("defenses.benign.sources", "dataset", source, datasets))
    defended = d["defended"]
    defended.setdefault("attacks", list(config["attacks"]))
    defendable = defendable_victims(config)
    defended.setdefault("victims", defendable)
    for victim in defended["victims"]:
        if victim not in config["victims"]:
            errors.append(
                _unknown("defenses.defended.victims", "victim", victim, config["victims"])
            )
        elif victim not in local:
            errors.append(
                f"config key 'defenses.defended.victims': victim '{victim}' is remote; its API "
                f"answers as it is, so stealbench cannot put a defense in front of it (serve a "
                f"model behind one with `stealbench serve`); allowed: {', '.join(defendable)}"
            )
        elif victim not in defendable:
            source = victim_sources.source(config["victims"][victim])
            errors.append(
                f"config key 'defenses.defended.victims': victim '{victim}' is a {source} "
                f"model, and the defense stage trains models of the victim's registered "
                f"architecture (a trained victim's or a checkpoint's); allowed: "
                f"{', '.join(defendable)}"
            )
    for victim in local:
        spec = config["victims"][victim]
        if victim_sources.source(spec) == "train" or spec["dataset"] not in datasets:
            continue
        defended_victim = victim in defended["victims"]
        sizes = split_sizes(datasets[spec["dataset"]])
        for split in ("train", "val") if defended_victim else ("train",):
            if sizes.get(split, 0) == 0:
                why = (
                    "defended (the defense stage trains models on its task's train and val splits)"
                    if defended_victim
                    else "evaluated with the defenses' detectors (trained on its task's train "
                    "split)"
                )
                errors.append(
                    f"config key 'datasets.{spec['dataset']}.splits': victim '{victim}' is "
                    f"{why}, so its dataset needs a non-empty '{split}' split"
                )
    defended.setdefault("archs", config["surrogates"]["archs"][:1])
    defended.setdefault("seeds", config["surrogates"]["seeds"])
    for attack in defended["attacks"]:
        if attack not in config["attacks"]:
            errors.append(
                _unknown("defenses.defended.attacks", "attack", attack, config["attacks"])
            )
    errors.extend(_check_defended_overrides(config, defended))
    if errors:
        return errors
    # Budgets per defended attack (an override's included): the given ones, else the
    # attack's largest.
    given = defended.pop("budgets", None)
    attacks = list(defended["attacks"])
    for override in defended["overrides"].values():
        attacks += [a for a in override.get("attacks", []) if a not in attacks]
    defended["budgets"] = {
        a: sorted(given) if given else [max(axes(config, a)["budgets"])] for a in attacks
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


def _check_defended_overrides(config: dict, defended: dict) -> list[str]:
    """``defenses.defended.overrides``: each key a defended victim, its ``defenses`` among
    ``defended.defenses`` and its ``attacks`` among the victim's own."""
    errors = []
    for victim, override in defended.setdefault("overrides", {}).items():
        key = f"config key 'defenses.defended.overrides.{victim}'"
        if victim not in defended["victims"]:
            allowed = defended["victims"]
            errors.append(
                f"{key}: '{victim}' is not a defended victim{_did_you_mean(victim, allowed)}; "
                f"allowed values (defenses.defended.victims): {', '.join(allowed)}"
            )
            continue
        for what, allowed in (
            ("defenses", list(defended["defenses"])),
            ("attacks", config["victims"][victim]["attacks"]),
        ):
            for name in override.get(what, []):
                if name not in allowed:
                    errors.append(
                        f"{key[:-1]}.{what}': unknown {what[:-1]} '{name}'"
                        f"{_did_you_mean(name, allowed)}; allowed values: {', '.join(allowed)}"
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


def _check_remote_granularities(config: dict) -> list[str]:
    """A remote victim's answers are what its API returns: a finer granularity cannot be
    derived from them."""
    errors = []
    for victim, attack in victim_attacks(config):
        spec = config["victims"][victim]
        if victim_sources.source(spec) != "remote":
            continue
        returns = spec["remote"]["returns"]
        for granularity in axes(config, attack, victim)["granularities"]:
            if not victim_sources.derivable(granularity, returns):
                key = _axis_key(config, victim, attack, "granularities")
                errors.append(
                    f"config key '{key}': '{granularity}' is finer than what remote victim "
                    f"'{victim}' returns ({returns}, victims.{victim}.remote.returns); allowed: "
                    f"{victim_sources.derivable_from(returns)}"
                )
    return errors


def check_victim_sources(config: dict) -> None:
    """Each victim's keys fit its source. Run on the config as written (after the schema,
    before defaults are filled in): a training key given to an external victim is an error,
    and so is the section of another source."""
    errors = []
    for name, spec in config.get("victims", {}).items():
        src = victim_sources.source(spec)
        key = f"config key 'victims.{name}"
        if src == "train":
            given = [k for k in (*victim_sources.EXTERNAL, "classes", "input") if k in spec]
            for k in given:
                errors.append(
                    f"{key}.{k}': applies to an external victim, and this one is trained "
                    f"(source: train); set victims.{name}.source to one of "
                    f"{', '.join(victim_sources.EXTERNAL)}, or remove the key"
                )
            continue
        for k in victim_sources.TRAIN_ONLY:
            if k in spec:
                where = (
                    f"; give the checkpoint's architecture as victims.{name}.checkpoint.arch"
                    if k == "arch" and src == "checkpoint"
                    else ""
                )
                errors.append(
                    f"{key}.{k}': applies only to a trained victim (source: train), and this one "
                    f"is source: {src}{where}; allowed keys for it: attacks, classes, dataset, "
                    f"input, overrides, paper, source, {src}"
                )
        for other in victim_sources.EXTERNAL:
            if other != src and other in spec:
                errors.append(
                    f"{key}.{other}': the section of source {other}, and this victim is source: "
                    f"{src}; give victims.{name}.{src}, or set source: {other}"
                )
        if src == "torchvision":
            model = spec["torchvision"]["model"]
            if model not in victim_sources.TORCHVISION_CLASSIFIERS:
                close = difflib.get_close_matches(
                    model, victim_sources.TORCHVISION_CLASSIFIERS, n=1
                )
                errors.append(
                    f"{key}.torchvision.model': {model!r} is not a torchvision classification "
                    f"model"
                    + (f" (did you mean '{close[0]}'?)" if close else "")
                    + f"; allowed values: {', '.join(victim_sources.TORCHVISION_CLASSIFIERS)}"
                )
        if src == "checkpoint" and spec["input"].get("normalize", "none") != "none":
            errors.append(
                f"{key}.input.normalize': a checkpoint of a registered architecture is scaled "
                f"as its architecture registers it (its Classifier's adapter); allowed values: "
                f"none (or leave it out)"
            )
        if "input" in spec:
            normalize = spec["input"].get("normalize", "none")
            if isinstance(normalize, dict):
                channels = spec["input"]["channels"]
                for stat in ("mean", "std"):
                    if len(normalize[stat]) != channels:
                        errors.append(
                            f"{key}.input.normalize.{stat}': {len(normalize[stat])} values for "
                            f"{channels} channel(s); give one per channel"
                        )
    if errors:
        raise ConfigError("\n".join(dict.fromkeys(errors)))
