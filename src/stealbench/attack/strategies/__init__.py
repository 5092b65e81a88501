"""Attack strategies, one file each, registered by name (see :mod:`.registry`).

A new strategy is one new file. :func:`.registry.declared` reads what every file declares
without importing it (planning a workflow stays free of torch); :func:`lookup` imports the
one a job runs; :func:`discover` imports them all."""

from .registry import (  # noqa: F401
    STRATEGIES,
    Draw,
    StrategyInfo,
    StrategySpec,
    declared,
    discover,
    info,
    lookup,
    register,
)
