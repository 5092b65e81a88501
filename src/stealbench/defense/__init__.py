"""Defenses, one file each, registered by name (see :mod:`.registry`).

Importing this package registers every perturbation defense; their files load torch only
when a defense that needs a model runs. The OOD pre-classifier (:mod:`.detector`), PRADA
(:mod:`.prada`) and their evaluation (:mod:`.evaluation`) are imported on their own.
"""

from . import (  # noqa: F401
    dawn,
    gaussian_noise,
    mad,
    misinformation,
    none,
    ood_shuffle,
    reverse_sigmoid,
    rounding,
    top_k,
)
from .registry import (  # noqa: F401
    DEFENSES,
    AuditContext,
    Defense,
    DefenseContext,
    create,
    defense_parameters,
)
