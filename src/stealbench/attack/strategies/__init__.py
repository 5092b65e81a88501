"""Attack strategies, one file each, registered by name (see :mod:`.registry`).

Importing this package registers every strategy; the files load torch only where they train
a model of their own."""

from . import activethief, adaptive, dfme, jbda, random_sampling  # noqa: F401 (registers them)
from .registry import STRATEGIES, Draw, StrategySpec, lookup, register  # noqa: F401
