"""The config's JSON schema and strict loading: structure, types, allowed values, defaults.

The schema is ``workflow/schemas/config.schema.yaml`` with its method sections generated from
the strategies' and defenses' own declarations (:func:`load_schema`). Messages name the key,
the problem and the allowed values.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path

import jsonschema
import yaml

from .. import plugins
from ..attack.strategies import registry as strategy_registry
from ..defense import registry as defense_registry

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


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
    schema["definitions"]["arch"]["enum"] += plugins.names("architectures")
    source = schema["properties"]["datasets"]["additionalProperties"]["properties"]["source"]
    source["enum"] += plugins.names("datasets")
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
        hint = ""
        path = list(error.absolute_path)
        # as YAML spells them (channels_last: true, not True)
        allowed = [str(v).lower() if isinstance(v, bool) else str(v) for v in error.validator_value]
        if (len(path) == 3 and path[::2] == ["victims", "source"]) or (
            len(path) >= 2 and str(path[-2]).endswith("training")  # precision, optimizer, ...
        ):
            close = difflib.get_close_matches(str(error.instance), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
        return (
            f"config key '{key}': {error.instance!r} is not allowed{hint}; "
            f"allowed values: {', '.join(allowed)}"
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
        strength = defense_registry.lookup(path[3]).strength
        return f"config key '{key}': only the strength ({strength}) may be a list of values"
    if error.validator == "oneOf" and error.context:
        # A strength is one value or a list of them: report what is wrong with the value.
        specific = [e for e in error.context if e.validator != "type"] or list(error.context)
        return f"config key '{_key(error.absolute_path)}': {specific[0].message}"
    return f"config key '{key}': {error.message}"


def canonical(value):
    """Dicts with sorted keys, recursively. Snakemake compares rule params by their text, so
    reordering keys in a YAML file must not look like a change that reruns jobs."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


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
