"""stealbench: a benchmark of model-extraction attacks and defenses on image classifiers.

The package holds the science (datasets, models, the victim's API, attacks, training,
metrics, reports); the Snakemake rules under ``rules/`` only wire it into a DAG.
"""

__version__ = "0.1.0"
