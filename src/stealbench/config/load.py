"""Validation: the schema (with defaults filled in), then the cross-reference checks."""

from __future__ import annotations

import copy

import jsonschema

from ..victim.sources import TRAIN_ONLY
from .checks import check_references, check_victim_sources, fill_dataset_defaults
from .schema import ConfigError, _fill_defaults, _message, _resolve, canonical, load_schema


def validate(config: dict, schema: dict | None = None) -> dict:
    """Return a validated copy of ``config`` with defaults filled in, or raise ConfigError."""
    schema = schema or load_schema()
    config = copy.deepcopy(config or {})
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("\n".join(_message(e) for e in errors))
    check_victim_sources(config)
    _fill_defaults(config, schema, schema)
    for victim in config["victims"].values():
        if victim["source"] != "train":  # the schema's training defaults do not apply
            for key in TRAIN_ONLY:
                victim.pop(key, None)
    fill_dataset_defaults(config, schema)
    # Defaults of nested training blocks: a partial block inherits the rest.
    base = _resolve(schema["properties"]["victim_training"], schema)["default"]
    config["victim_training"] = {**base, **config["victim_training"]}
    for victim in config["victims"].values():
        if victim["source"] == "train":
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
    check_references(config)
    return canonical(config)
