"""The registry of perturbation defenses: each turns the victim's posteriors into answers.

A defense sits between the victim and the attacker, inside the prediction API
(:class:`stealbench.attack.api.PredictionAPI`): the API computes the victim's posteriors,
the defense perturbs them, and the API then returns them at its granularity. Every defense
is a class registered by name with :func:`register` (one file each in this package, as timm
registers models), constructed with a :class:`DefenseContext` and its own parameters.

Contract (tests check it for every registered defense):

- ``defense(probs, images)`` takes the victim's posteriors (N, C) and the queried images
  (N, H, W, C) and returns float32 answers on the probability simplex;
- it is deterministic *per query*: the answer to an image depends only on that image, its
  posterior, the parameters and the owner's secret key (randomness comes from
  :func:`stealbench.defense.keys.query_digests`), never on the other rows of the batch or on
  the order the queries came in, so a sequential attacker and a cached replay see the same;
- ``strength`` names the parameter a sweep varies (each value is one defended cell).

A defense's class is its single source of truth: ``name``, ``params`` (the JSON schema of
each parameter's value: type, range, description; defaults are ``__init__``'s), ``strength``,
``needs`` (what the defense stage builds for it) and its docstring. The config schema's
defense section (:func:`config_schema`), the workflow's defense models and README's table
are derived from them.

A defense may report diagnostics of the queries it answered (:meth:`Defense.diagnose`: MAD's
proxy's most frequent class), and it may implement a post-attack audit
(:meth:`Defense.audit`): given a model suspected to be derived from answers it served, what
does the owner conclude (DAWN's watermark verification)? The default has neither.
Stream monitors, which keep per-client state (PRADA), are another interface:
:mod:`stealbench.defense.monitor`.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class DefenseContext:
    """What a defense may use besides the posteriors: the owner's secret key and models.

    ``detector``: the OOD pre-classifier (:class:`stealbench.defense.detector.OodDetector`);
    ``misinformation``: Adaptive Misinformation's misinformation model; ``proxy``: MAD's
    proxy model; ``models``: any other trained model a defense reads, by its name in
    MODEL_LOADERS. Each is None (absent) unless a defense that ``needs`` it is configured.
    """

    key: bytes = b"stealbench"
    num_classes: int | None = None
    detector: Any = None
    misinformation: Any = None
    proxy: Any = None
    models: dict = field(default_factory=dict)

    def model(self, name: str) -> Any:
        """The model ``name``: a field of its own, else from ``models`` (None if absent)."""
        return getattr(self, name, None) if name in CONTEXT_MODELS else self.models.get(name)


@dataclass(frozen=True)
class AuditContext:
    """What the owner kept of a suspect's queries: ``images`` (N, H, W, C), the queries the API
    answered, in order; ``probs`` (N, C), the victim's posteriors for them (what the defense
    perturbed); ``settings``, the defense's audit settings (its config section, e.g. DAWN's
    ``threshold``)."""

    images: np.ndarray
    probs: np.ndarray
    settings: Mapping[str, Any] = field(default_factory=dict)


class Defense(ABC):
    """A perturbation of the victim's posteriors inside the API (see the module docstring)."""

    name: ClassVar[str]
    # Each keyword parameter of __init__ -> the JSON schema of one value (the config schema
    # is generated from it; the default is __init__'s).
    params: ClassVar[dict[str, dict]] = {}
    strength: ClassVar[str | None] = None  # the parameter a strength sweep varies
    # Which way the strength grows ("larger": a larger value perturbs more; "smaller": e.g.
    # top-k's k) and the value at which the defense changes no answer (None: none the
    # parameter can take, e.g. top-k's k depends on the classes). The matched-cost table
    # (stealbench.report.tables) walks each sweep from the undefended API, at ``strength_off``,
    # towards its strongest value.
    stronger: ClassVar[str] = "larger"
    strength_off: ClassVar[float | None] = 0.0
    # What the defense stage builds for it: DefenseContext fields (detector, misinformation,
    # proxy) and the per-victim models of DEFENSE_MODELS it is trained or verified with.
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, context: DefenseContext):
        missing = [
            need
            for need in self.needs
            if (need in CONTEXT_MODELS or need in MODEL_LOADERS) and context.model(need) is None
        ]
        if missing:
            raise ValueError(f"defense {self.name!r} needs {', '.join(missing)} in its context")
        self.context = context

    @abstractmethod
    def perturb(self, probs: np.ndarray, images: np.ndarray) -> np.ndarray:
        """Answers (N, C) for posteriors ``probs`` (float64, rows on the simplex)."""

    def diagnose(self, probs: np.ndarray, images: np.ndarray) -> dict[str, float]:
        """Numbers that say whether the defense could act on these queries (``probs``: the
        victim's posteriors for ``images``), as columns of the defended cell; none by default."""
        return {}

    def audit(self, suspect, context: AuditContext) -> dict | None:
        """A post-attack audit of ``suspect`` (a model), suspected to be trained on the answers
        this defense served for ``context.images``: the owner's conclusion as a flat dict with
        at least ``caught`` (bool), or None when the defense has no audit (the default)."""
        return None

    def __call__(self, probs: np.ndarray, images: np.ndarray) -> np.ndarray:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or not np.all(np.isfinite(probs)):
            raise ValueError(f"probs must be a finite (queries, classes) array, got {probs.shape}")
        if len(images) != len(probs):
            raise ValueError(f"{len(probs)} posteriors but {len(images)} images")
        if not len(probs):
            return probs.astype(np.float32)
        return np.asarray(self.perturb(probs, images), dtype=np.float32)


DEFENSES: dict[str, type[Defense]] = {}
# The models with a DefenseContext field of their own (built per API by .context.build_context).
CONTEXT_MODELS = ("detector", "misinformation", "proxy")
# Per-victim models the defense stage trains (results/defenses/{victim}/{model}.pt) for the
# defenses that need them, by name -> the function that trains and saves one
# (``build(job: ModelJob, path) -> {part: seconds}``), registered with :func:`register_model`
# beside the defense that needs it. The workflow's train_defense_models job runs the builder of
# every model the configured defenses need. The OOD pre-classifier has a rule of its own (its
# inputs are the defender's generic datasets); MAD's proxy is built from a seed, not trained.
DEFENSE_MODELS: dict[str, Callable | None] = {}
# The trained models a defended API reads (not only its verification), by name -> the
# function that loads one, ``load(path, device)``; build_context loads those a defense needs.
MODEL_LOADERS: dict[str, Callable] = {}


@dataclass
class ModelJob:
    """What a defense model's builder may use: the victim's name, data and model, the
    defense stage's config (``params``: the rule's params), the master seed and the device."""

    victim: str
    victim_data: Any  # stealbench.data.datasets.Dataset
    load_victim: Callable[[], Any]  # the victim's model, loaded on first call
    outlier: list  # uint8 image arrays of the defenses.misinformation.outlier datasets
    params: Any
    seed: int
    device: str = "cpu"
    log: Any = None


def register_model(name: str, load: Callable | None = None) -> Callable[[Callable], Callable]:
    """Function decorator: make ``fn(job, path) -> {part: seconds}`` the builder of the
    defense model ``name`` (a defense declares it in ``needs``; ``fn`` None: a rule of its
    own trains it); ``load(path, device)`` loads it into a defended API's context (none: the
    model is only for verification, as DAWN's independent models)."""

    def decorate(fn: Callable | None) -> Callable | None:
        DEFENSE_MODELS[name] = fn
        if load is not None:
            MODEL_LOADERS[name] = load
        return fn

    return decorate


def register(cls: type[Defense]) -> type[Defense]:
    """Class decorator: make a defense available by its ``name``."""
    given, declared = defense_parameters(cls), list(cls.params)
    if sorted(given) != sorted(declared):
        raise TypeError(
            f"{cls.__name__}.params declares {declared} but __init__ takes {given}; "
            f"declare the schema of every parameter"
        )
    if cls.strength is not None and cls.strength not in given:
        raise TypeError(f"{cls.__name__}.strength {cls.strength!r} is not a parameter")
    DEFENSES[cls.name] = cls
    return cls


def discover() -> None:
    """Import every module of this package that registers a defense or a defense model
    (``@register...``): a new defense is one new file. The others (the detector's training,
    PRADA, ...) load torch or pandas and stay unimported until used."""
    package = importlib.import_module(__name__.rpartition(".")[0])
    for module in pkgutil.iter_modules(package.__path__):
        source = Path(package.__path__[0], f"{module.name}.py")
        if source.is_file() and "\n@register" in source.read_text():
            importlib.import_module(f"{package.__name__}.{module.name}")


def lookup_in(registry: dict, kind: str, name: str):
    """``registry[name]``, or an error naming the ``kind`` and the allowed names."""
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; allowed: {', '.join(sorted(registry))}")
    return registry[name]


def check_parameters(kind: str, name: str, params, allowed: list[str]) -> None:
    """Fail on a parameter ``name`` (a ``kind`` of method) does not take, naming the allowed."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"{kind} {name!r} has no parameter(s) {unknown}; allowed: "
            f"{', '.join(allowed) if allowed else 'none'}"
        )


def lookup(name: str) -> type[Defense]:
    return lookup_in(DEFENSES, "defense", name)


def defense_parameters(defense: str | type[Defense]) -> list[str]:
    """The keyword parameters a defense takes besides its context."""
    cls = lookup(defense) if isinstance(defense, str) else defense
    return list(inspect.signature(cls.__init__).parameters)[2:]


def defaults(defense: str | type[Defense]) -> dict:
    """Each parameter's default (from ``__init__``; None where it has none)."""
    cls = lookup(defense) if isinstance(defense, str) else defense
    signature = inspect.signature(cls.__init__).parameters
    return {
        p: None if signature[p].default is inspect.Parameter.empty else signature[p].default
        for p in defense_parameters(cls)
    }


def needed(names) -> set[str]:
    """What the defense stage builds for the defenses ``names`` (the union of their needs)."""
    needs = {need for name in names for need in lookup(name).needs}
    unknown = needs - {*CONTEXT_MODELS, *DEFENSE_MODELS}
    if unknown:
        raise ValueError(
            f"defenses {sorted(names)} need {sorted(unknown)}: neither a DefenseContext field "
            f"nor a registered defense model ({', '.join(DEFENSE_MODELS)})"
        )
    return needs


def config_schema() -> dict:
    """The JSON schema of ``defenses.defended.defenses``' entries, one per defense: its
    parameters as declared, the strength as one value or a list of them (a sweep)."""
    out = {}
    for name, cls in sorted(DEFENSES.items()):
        properties = {}
        for param, value in cls.params.items():
            value = {k: v for k, v in value.items() if k != "description"}
            if param == cls.strength:
                sweep = {"type": "array", "minItems": 1, "uniqueItems": True, "items": value}
                value = {"oneOf": [value, sweep]}
            properties[param] = {**value, "description": cls.params[param].get("description", "")}
        out[name] = {"type": "object", "additionalProperties": False, "properties": properties}
    return out


def create(name: str, context: DefenseContext, **params) -> Defense:
    """A configured defense; unknown parameters are an error naming the allowed ones."""
    cls = lookup(name)
    check_parameters("defense", name, params, defense_parameters(cls))
    return cls(context, **params)


def renormalise(values: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1; a row with nothing left becomes uniform (it carries nothing)."""
    sums = values.sum(axis=1, keepdims=True)
    uniform = np.full_like(values, 1.0 / values.shape[1])
    return np.where(sums > 0, values / np.where(sums > 0, sums, 1.0), uniform)


def benign_utility(answers: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the defended API's top-1 on benign test queries (their true labels)."""
    answers = np.asarray(answers)
    if len(answers) != len(labels):
        raise ValueError(f"{len(answers)} answers but {len(labels)} labels")
    return float(np.mean(answers.argmax(axis=1) == np.asarray(labels))) if len(labels) else 0.0
