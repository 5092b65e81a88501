"""Defenses, one file each, registered by name (see :mod:`.registry`).

Importing this package imports every module in it, which registers each defense: a new
defense is one new file. Their files load torch only when a defense that needs a model runs.
The OOD pre-classifier (:mod:`.detector`), PRADA (:mod:`.prada`) and their evaluation
(:mod:`.evaluation`) hold no defense of the registry.
"""

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
