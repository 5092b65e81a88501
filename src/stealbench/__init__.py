"""stealbench: a benchmark of model-extraction attacks and defenses on image classifiers.

The package holds the science (datasets, models, the victim's API, attacks, training,
metrics, reports); the Snakemake rules under ``rules/`` only wire it into a DAG.

From Python (a notebook), :mod:`stealbench.notebook` runs one attack in a dozen lines; its
functions are importable from here (``import stealbench as sb; sb.train_victim(...)``) and
load on first use, so ``import stealbench`` stays cheap (no torch).
"""

__version__ = "0.1.0"

# The notebook API (stealbench.notebook), imported on first access.
_NOTEBOOK = (
    "Victim",
    "run_attack",
    "available",
    "dataset",
    "fit_surrogate",
    "load_config",
    "load_victim",
    "prediction_api",
    "score",
    "train_victim",
    "victim_from_model",
)


def __getattr__(name: str):
    if name in _NOTEBOOK:
        from . import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'stealbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_NOTEBOOK])
