"""Defenses, one file each, registered by name (see :mod:`.registry`).

Importing this package imports every module in it, which registers each defense: a new
defense is one new file. Their files load torch only when a defense that needs a model runs.
The OOD pre-classifier (:mod:`.detector`), PRADA (:mod:`.prada`) and their evaluation
(:mod:`.evaluation`) hold no defense of the registry. Defenses and stream monitors of
plug-in packages (:mod:`stealbench.plugins`) are imported here too.
"""

from .. import plugins as _plugins
from . import monitor as _monitor
from .registry import (  # noqa: F401
    DEFENSE_MODELS,
    DEFENSES,
    AuditContext,
    Defense,
    DefenseContext,
    ModelJob,
    create,
    defense_parameters,
    discover,
    lookup,
)

discover()
_plugins.load("defenses", DEFENSES)
_plugins.load("monitors", _monitor.MONITORS)
