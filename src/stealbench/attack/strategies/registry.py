"""The registry of attack strategies, and what every strategy may use.

A strategy decides which images an attacker sends. Strategies are registered by name with
:func:`register` (one file each in this package, as timm registers models) and come in two
kinds, which decide who may share a query cache (:mod:`stealbench.attack.cache`):

- *sampling* strategies never look at answers: ``fn(pool, budget, rng, **options) -> Draw``
  returns the images one seed sends. One victim pass serves every seed, granularity and
  defense (random sampling);
- *sequential* strategies choose the next queries from the answers:
  ``fn(api, pool, budget, rng, device="cpu", **options) -> sample_ids`` talks to a
  :class:`stealbench.attack.api.PredictionAPI` (which answers at the attacker's granularity,
  through the defense it faces, and counts every image as a query) and returns, per query in
  the order sent, the pool image it is or descends from (-1 for none). It must spend exactly
  ``budget`` queries, and its first B queries must be what a run with budget B sends: budgets
  are prefixes of one run.

A *data-free* strategy is a sequential one that needs no pool images (the pool gives only
the image shape). A query is one image sent to the API: seed sets, augmented copies,
validation sets and gradient-estimation queries all count.

A strategy's file is its single source of truth: ``@register(name, kind=..., options=...)``
names it, gives its kind and the JSON schema of each option (defaults are the function's);
its module docstring documents it. The config schema's strategy section, the config checks
and README's table derive from these. Planning a workflow must not load torch, which most
strategy files import, so :func:`declared` reads the decorators' arguments from the source
(they must be literals) without importing it; a test checks that agrees with the imports.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Draw:
    """The images one seed of a sampling strategy sends, in its query order."""

    sample_ids: np.ndarray  # int64 (B,): pool ids
    images: np.ndarray | None = None  # uint8 (B, H, W, C) when not the pool images themselves


KINDS = ("sampling", "sequential", "data-free")


@dataclass(frozen=True)
class StrategyInfo:
    """What a strategy's file declares: its kind, the schema of each option, its docs."""

    name: str
    kind: str
    options: dict = field(default_factory=dict)  # option -> JSON schema of its value
    module: str = ""
    doc: str = ""  # the module docstring

    @property
    def sequential(self) -> bool:
        return self.kind != "sampling"


@dataclass(frozen=True)
class StrategySpec(StrategyInfo):
    """A registered (imported) strategy: its declaration and its function."""

    fn: Callable | None = None

    @property
    def parameters(self) -> list[str]:
        """The keyword options the function takes (``device`` comes from the config's)."""
        skip = 4 if self.sequential else 3
        return [p for p in list(inspect.signature(self.fn).parameters)[skip:] if p != "device"]

    def defaults(self) -> dict:
        signature = inspect.signature(self.fn).parameters
        return {p: signature[p].default for p in self.parameters}


STRATEGIES: dict[str, StrategySpec] = {}


def register(name: str, kind: str, options: dict | None = None) -> Callable[[Callable], Callable]:
    """Function decorator: make a strategy available by ``name``; ``options`` holds the
    JSON schema of every keyword option (literals only: :func:`declared` reads them)."""
    if kind not in KINDS:
        raise ValueError(f"strategy {name!r}: kind {kind!r} is not one of {', '.join(KINDS)}")

    def decorate(fn: Callable) -> Callable:
        module = importlib.import_module(fn.__module__)
        doc = inspect.cleandoc(module.__doc__ or "")
        spec = StrategySpec(name, kind, dict(options or {}), fn.__module__, doc, fn)
        if sorted(spec.parameters) != sorted(spec.options):
            raise TypeError(
                f"strategy {name!r} declares options {sorted(spec.options)} but "
                f"{fn.__name__} takes {sorted(spec.parameters)}"
            )
        STRATEGIES[name] = spec
        return fn

    return decorate


def _modules():
    """(module, source file) of every strategy file: this package's, then plug-ins'
    (:mod:`stealbench.plugins`, group ``stealbench.strategies``)."""
    from ... import plugins

    package = __name__.rpartition(".")[0]
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        yield f"{package}.{module.name}", Path(module.module_finder.path, f"{module.name}.py")
    for entry in plugins.plugins("strategies"):
        yield plugins.module_source(entry)


@functools.cache
def declared() -> dict[str, StrategyInfo]:
    """Every strategy of this package as its file declares it, read from the source (no
    import, hence no torch): the ``@register(...)`` decorators' literal arguments."""
    out = {}
    for module, path in _modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "register":
                    args = [ast.literal_eval(a) for a in dec.args]
                    kwargs = {k.arg: ast.literal_eval(k.value) for k in dec.keywords}
                    call = dict(zip(("name", "kind", "options"), args, strict=False), **kwargs)
                    out[call["name"]] = StrategyInfo(
                        call["name"],
                        call["kind"],
                        call.get("options") or {},
                        module,
                        ast.get_docstring(tree) or "",
                    )
    return dict(sorted(out.items()))


def info(name: str) -> StrategyInfo:
    """A strategy's declaration (kind, options, docs) without importing it."""
    strategies = declared()
    if name not in strategies:
        raise ValueError(f"unknown strategy {name!r}; allowed: {', '.join(strategies)}")
    return strategies[name]


def lookup(name: str) -> StrategySpec:
    """A strategy with its function: imports its module (and whatever that loads)."""
    if name not in STRATEGIES:
        importlib.import_module(info(name).module)
    return STRATEGIES[name]


def discover() -> None:
    """Import every strategy module (each registers its strategies)."""
    for module, _ in _modules():
        importlib.import_module(module)


def config_schema() -> tuple[list[str], list[dict]]:
    """The strategies a config may name, and one if/then branch per strategy giving the
    schema of its ``options``."""
    strategies = declared()
    branches = [
        {
            "if": {"properties": {"strategy": {"const": name}}, "required": ["strategy"]},
            "then": {
                "properties": {
                    "options": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": spec.options,
                    }
                }
            },
        }
        for name, spec in strategies.items()
    ]
    return list(strategies), branches


def pool_candidates(pool, budget: int) -> np.ndarray:
    """The ids of the pool split, checked to hold at least ``budget`` images."""
    candidates = pool.ids("pool")
    if budget > len(candidates):
        raise ValueError(
            f"budget {budget} exceeds the {len(candidates)} images of the pool split of "
            f"'{pool.name}'; lower the budget or enlarge the pool"
        )
    return candidates


def query_in_batches(api, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The API's answers for ``images``, asked batch by batch (in order)."""
    batches = [api(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate(batches)
