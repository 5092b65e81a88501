"""Config validation and the grid it defines.

Kept free of torch so that Snakemake can plan (and reject a bad config) before any job
starts, in a few milliseconds. One job per module:

- :mod:`.schema`: the JSON schema (its method sections generated from the strategies' and
  defenses' files) and strict loading: structure, types, allowed values, defaults;
- :mod:`.checks`: cross-references the schema cannot express (a victim's dataset must exist,
  a budget must fit its pool, ...); the dataset sizes they use are the sources' own
  (:mod:`stealbench.data.sizes`);
- :mod:`.load`: :func:`validate`, the two in turn;
- :mod:`.grid`: the cells, runs and jobs of a validated config.

Every message names the key, the problem and the allowed values. The names below are the
package's interface (``from stealbench import config; config.validate(...)``).
"""

from ..data.sizes import has_test_part, split_sizes  # noqa: F401
from .checks import PRETRAINED_ARCHS  # noqa: F401
from .grid import (  # noqa: F401
    AXES,
    Cell,
    DefenseInstance,
    attack_defenses,
    attack_spec,
    axes,
    cells,
    defendable_victims,
    defended_jobs,
    defended_override,
    defended_pairs,
    defense_instances,
    defense_models,
    defense_strength,
    defense_victims,
    detector_out,
    is_realistic,
    is_sequential,
    outlier_exposure_data,
    part_cells,
    query_budget,
    query_budgets,
    query_runs,
    query_seeds,
    run_granularities,
    strategy_kind,
    surrogate_jobs,
    surrogate_parts,
    training_spec,
    victim_attacks,
    victim_source,
    victim_spec,
    victims_of,
)
from .load import validate  # noqa: F401
from .schema import (  # noqa: F401
    SCHEMA_PATH,
    ConfigError,
    canonical,
    check_duplicate_keys,
    load_schema,
    source_options,
)
