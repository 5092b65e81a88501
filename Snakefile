# stealbench: model-extraction attacks and defenses, as a Snakemake DAG.
# Stages live in rules/*.smk; the science lives in src/stealbench.
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# Plan without installing the package: config checks need only jsonschema and PyYAML.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
# envs/stealbench.yaml installs the package from here (pip expands ${STEALBENCH_ROOT}).
# (update(), not an item assignment, which `snakemake --lint` reads as an unasserted envvar)
os.environ.update(STEALBENCH_ROOT=str(workflow.basedir))


# The embedded default (found from any --directory), unless the command line names a config:
# Snakemake would otherwise merge the two, and a grid given with --configfile would inherit
# the default's victims.
if not workflow.overwrite_configfiles:

    configfile: str(Path(workflow.basedir) / "config.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/pretrain.smk"
include: "rules/victims.smk"
include: "rules/queries.smk"
include: "rules/surrogates.smk"
include: "rules/defenses.smk"
include: "rules/report.smk"


report: "report/workflow.rst"


rule all:
    default_target: True
    input:
        final_outputs(),
