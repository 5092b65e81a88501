"""Plug-ins: methods that packages installed beside stealbench register through entry points.

A plug-in package declares, in its own ``pyproject.toml``, one entry point per method, in the
group of its kind; the entry point's name is the method's name and its value the module that
registers it (importing the module runs its ``@register``), exactly as a built-in file does::

    [project.entry-points."stealbench.defenses"]
    label-smoothing = "my_package.label_smoothing"

Groups: ``stealbench.strategies``, ``stealbench.defenses``, ``stealbench.monitors``,
``stealbench.architectures`` and ``stealbench.datasets`` (dataset builders). A plug-in method
is treated like a built-in one: the config schema allows its name, its declaration gives its
parameters, and the workflow builds what it needs. Names are read from the installed
distributions' metadata, so planning a workflow imports no plug-in code until a method is
used (strategies and defenses are declared in their source, read without running it).
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

GROUPS = {
    "strategies": "stealbench.strategies",
    "defenses": "stealbench.defenses",
    "monitors": "stealbench.monitors",
    "architectures": "stealbench.architectures",
    "datasets": "stealbench.datasets",
}


class PluginError(RuntimeError):
    """A plug-in's entry point is broken: its module cannot be found or does not register
    the method the entry point names."""


def _group(kind: str) -> str:
    if kind not in GROUPS:
        raise ValueError(f"unknown plug-in kind {kind!r}; allowed: {', '.join(GROUPS)}")
    return GROUPS[kind]


def plugins(kind: str) -> list[EntryPoint]:
    """The entry points of one kind of method, by name (the first of a name wins, so two
    distributions claiming one name load once)."""
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=_group(kind)):
        found.setdefault(entry.name, entry)
    return [found[name] for name in sorted(found)]


def names(kind: str) -> list[str]:
    """The method names plug-ins declare for ``kind``, without importing them."""
    return [entry.name for entry in plugins(kind)]


def module_source(entry: EntryPoint) -> tuple[str, Path]:
    """The module an entry point names and its source file, found without importing it."""
    module = entry.module
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise PluginError(
            f"entry point {entry.name!r} of group {entry.group!r} names module {module!r}, "
            "which has no Python source here: is its package installed?"
        )
    return module, Path(spec.origin)


def load(kind: str, registry: dict) -> None:
    """Import every plug-in module of ``kind`` that has not registered its method in
    ``registry`` yet; fail, naming the entry point, when the import registers nothing."""
    for entry in plugins(kind):
        if entry.name in registry:
            continue
        importlib.import_module(entry.module)
        if entry.name not in registry:
            raise PluginError(
                f"entry point {entry.name!r} of group {entry.group!r}: importing "
                f"{entry.module!r} registered no method named {entry.name!r}"
            )
