"""What every column of every result table means, and in which unit: the one source of truth.

:func:`stealbench.report.tables.write_table` writes these descriptions into each Parquet
field's metadata (``description``, ``unit``) and refuses a column documented nowhere here, so
the documentation cannot fall behind the code; ``docs/outputs.md`` is generated from this
module (``python -m stealbench.report.columns > docs/outputs.md``) and a test keeps it in sync.

A column means the same in every table it appears in unless a table overrides it: shared
meanings are written once in :data:`SHARED` and picked by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    meaning: str
    unit: str


def _monitor_thresholds() -> str:
    """The threshold columns of the stream monitors other than PRADA (each monitor's curve
    is swept over the parameter its ``sweep`` names): built-in and plug-in monitors alike."""
    from ..defense.monitor import MONITORS

    names = sorted({cls.sweep for cls in MONITORS.values()} - {"delta"})
    return "|".join(re.escape(n) for n in names) or "(?!)"


@dataclass(frozen=True)
class Pattern:
    """A family of columns whose names depend on the config (e.g. one per granularity)."""

    regex: str  # matched against the whole column name
    shown_as: str  # how the docs page names the family
    column: Column


@dataclass(frozen=True)
class Table:
    row: str  # what one row is
    columns: dict[str, Column]
    patterns: tuple[Pattern, ...] = field(default=())


class UndocumentedColumn(KeyError):
    """A table about to be written has a column this module does not describe."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return self.args[0]


# Units, named once so that the same quantity reads the same everywhere.
NAME = "name"
COUNT = "count"
BOOL = "true/false"
QUERIES = "queries (images sent to the victim's API)"
TEST_SHARE = "fraction of the victim's test images"
CLASS_SHARE = "fraction of the victim's test images of that class"
RATIO = "ratio (surrogate / victim accuracy; 1 = the victim's accuracy)"
NATS = "nats"
SECONDS = "seconds"
EPOCHS = "epochs"
IMAGES = "images"
PROB_L1 = "L1 distance between probability vectors (0 to 2)"

SHARED: dict[str, Column] = {
    # The axes of a cell.
    "victim": Column("the victim's name (a key of `victims:` in the config)", NAME),
    "victim_arch": Column(
        "the victim's architecture (an external victim's: the checkpoint's architecture, the "
        "torchvision model's name, `torchscript` or `remote`)",
        NAME,
    ),
    "victim_init": Column(
        "where the victim's weights started: `scratch` or a pretrained backbone's name; for a "
        "victim the workflow did not train, its source (`checkpoint`, `torchscript`, "
        "`torchvision`, `remote`)",
        NAME,
    ),
    "dataset": Column("the victim's dataset (its task, and the test split it is scored on)", NAME),
    "attack": Column("the attack (a key of `attacks:`): a strategy querying a pool", NAME),
    "strategy": Column(
        "how the attacker chooses its queries (`random`, `adaptive`, `activethief`, `jbda`, "
        "`dfme`, ...)",
        NAME,
    ),
    "pool": Column(
        "the dataset the attacker draws its queries from (for a data-free attack only the "
        "image shape)",
        NAME,
    ),
    "adversary": Column(
        "`realistic` when the pool is of the victim's own task, else `out-of-distribution`", NAME
    ),
    "granularity": Column(
        "what the API answers: `probs` (full vector), `top{k}`, `round{d}` or `label` (top-1)",
        NAME,
    ),
    "budget": Column("the attacker's first queries the surrogate is trained on", QUERIES),
    "surrogate_arch": Column("the surrogate's architecture", NAME),
    "surrogate_init": Column(
        "where the surrogate's weights started: `scratch`, a backbone's name or `imagenet`", NAME
    ),
    "seed": Column(
        "the seed of the cell: it redraws the attacker's sample or choices and the "
        "surrogate's initial weights",
        "integer",
    ),
    "seeds": Column("seeds the row's means and intervals are over", COUNT),
    # What a cell measures, on the victim's test split.
    "victim_acc": Column("the victim's top-1 accuracy on its test split", TEST_SHARE),
    "test_acc": Column("the surrogate's top-1 accuracy on the victim's test split", TEST_SHARE),
    "agreement": Column(
        "fidelity: share of the victim's test images on which surrogate and victim give the "
        "same top-1",
        TEST_SHARE,
    ),
    "recovery": Column("performance recovery (Atli et al.): test_acc / victim_acc", RATIO),
    "kl_divergence": Column(
        "mean KL(victim ‖ surrogate) of the posteriors over the victim's test images", NATS
    ),
    # How a surrogate was trained.
    "transfer_val_acc": Column(
        "the surrogate's best accuracy on the held-out part of its transfer set (agreement "
        "with the answers it received; model selection)",
        "fraction of the held-out transfer set",
    ),
    "best_epoch": Column("the epoch whose weights were kept (best validation accuracy)", EPOCHS),
    "epochs": Column("epochs trained", EPOCHS),
    "train_images": Column(
        "transfer-set images the surrogate trained on (the budget less the validation part "
        "and dropped answers)",
        IMAGES,
    ),
    "dropped_answers": Column(
        "answers dropped from training because they carried no probability mass (rounded to "
        "nothing)",
        QUERIES,
    ),
    "images_seen": Column("images passed through the surrogate in training, all epochs", IMAGES),
    "train_seconds": Column("wall time of training (measures the machine)", SECONDS),
    # Beside the paper.
    "paper_victim_acc": Column(
        "the paper's victim accuracy for the configuration the victim names (`paper:`); "
        "empty otherwise",
        "fraction of the paper's test images",
    ),
    # Defenses.
    "defense": Column("the defense in the victim's API (`none`: undefended)", NAME),
    "strength": Column(
        "the parameter the defense's strength sweep varies (e.g. `epsilon` for MAD)", NAME
    ),
    "strength_value": Column(
        "the value of that parameter (empty where the defense has none or learns it)",
        "the parameter's own unit",
    ),
    "defense_id": Column("the defense at its strength, e.g. `mad@0.5`", NAME),
    "benign_utility": Column(
        "top-1 accuracy of the defended API's answers for benign users (the victim's test split)",
        TEST_SHARE,
    ),
    "benign_l1": Column(
        "mean L1 distance between true and defended answers on the victim's test split", PROB_L1
    ),
    "benign_kl": Column("mean KL(true ‖ defended) of the answers on the victim's test split", NATS),
    "benign_top1_changed": Column(
        "share of benign answers (the victim's test split) whose top-1 the defense changed",
        TEST_SHARE,
    ),
    "queries": Column("queries in the stream or source", QUERIES),
    "kind": Column("`attacker` or `benign` stream", NAME),
}


def _shared(*names: str) -> dict[str, Column]:
    return {name: SHARED[name] for name in names}


def _over_seeds(*metrics: str) -> dict[str, Column]:
    """``<metric>_mean`` and ``<metric>_ci95`` of shared metrics, as :func:`summarise` writes."""
    out = {}
    for metric in metrics:
        column = SHARED[metric]
        out[f"{metric}_mean"] = Column(f"mean over seeds of {column.meaning}", column.unit)
        out[f"{metric}_ci95"] = Column(
            f"half-width of the 95% confidence interval (Student t) of {metric}_mean; empty "
            "for one seed",
            column.unit,
        )
    return out


#: The axes of a cell, in the order the tables put them (stealbench.report.tables groups by
#: them): one list for the tables and their docs.
AXES = [
    "victim",
    "victim_arch",
    "victim_init",
    "dataset",
    "attack",
    "strategy",
    "pool",
    "adversary",
    "granularity",
    "budget",
    "surrogate_arch",
    "surrogate_init",
    "seed",
]
METRICS = ["victim_acc", "test_acc", "agreement", "recovery", "kl_divergence"]
#: What identifies a defended cell: a cell's axes up to the adversary, the defense instance,
#: then the granularity, budget and surrogate (defended surrogates train from scratch).
DEFENSE_AXES = ["defense", "strength", "strength_value", "defense_id"]
DEFENDED_KEYS = [*AXES[:8], *DEFENSE_AXES, "granularity", "budget", "surrogate_arch", "seed"]
#: The setting of one trade-off curve in the matched-cost table (its defenses are compared
#: within it).
MATCHED_AXES = ["victim", "attack", "adversary", "granularity", "budget", "surrogate_arch"]
AXIS_DOCS = _shared(*AXES[:-1])  # seed: placed by each table
METRIC_DOCS = _shared(*METRICS)
TRAINING = _shared(
    "transfer_val_acc",
    "best_epoch",
    "epochs",
    "train_images",
    "dropped_answers",
    "images_seen",
    "train_seconds",
)
#: The attacker's own online model (DFME's student) at the cell's budget, scored on the
#: victim's test split (evaluation only), beside the surrogate trained offline on its queries.
ONLINE = {
    "online_acc": Column(
        "top-1 accuracy of the attacker's own online model (DFME's student, as it was when the "
        "attacker had spent the budget) on the victim's test split; empty for attacks without "
        "one",
        TEST_SHARE,
    ),
    "online_agreement": Column(
        "share of the victim's test images on which that online model and the victim give the "
        "same top-1; empty for attacks without one",
        TEST_SHARE,
    ),
}
SUMMARY_METRICS = _over_seeds("test_acc", "agreement", "recovery", "kl_divergence")
GRANULARITY_NAME = r"(?:probs|label|top\d+|round\d+)"
DAWN = {
    "dawn_watermarks": Column(
        "queries among the budget DAWN answered with a wrong (watermark) label", QUERIES
    ),
    "dawn_reproduced": Column(
        "watermarks on which the surrogate gives the wrong label it was served", QUERIES
    ),
    "dawn_acc": Column(
        "dawn_reproduced / dawn_watermarks (the owner's evidence)", "fraction of the watermarks"
    ),
    "dawn_p_value": Column(
        "binomial probability of reproducing that many watermarks by chance", "probability"
    ),
    "dawn_claim_bound": Column(
        "the verification's false-claim bound with dawn_watermarks watermarks: the chance that "
        "a model which never saw the answers reproduces the threshold's share (the paper asks "
        "for 2^-64)",
        "probability",
    ),
    "dawn_caught": Column("whether the owner's claim succeeds (dawn_acc ≥ the threshold)", BOOL),
    "dawn_independent": Column(
        "independent models of the victim's task (same architecture) checked for false claims",
        COUNT,
    ),
    "dawn_false_claims": Column("independent models the owner would wrongly claim", COUNT),
}

TABLES: dict[str, Table] = {
    "victims": Table(
        "one victim",
        {
            "victim": SHARED["victim"],
            "arch": SHARED["victim_arch"],
            "init": SHARED["victim_init"],
            "dataset": SHARED["dataset"],
            "num_classes": Column("classes of the victim's task", COUNT),
            "test_acc": SHARED["victim_acc"],
            "val_acc": Column(
                "the victim's accuracy on its validation split (model selection)",
                "fraction of the validation images",
            ),
            "best_epoch": SHARED["best_epoch"],
            "epochs": SHARED["epochs"],
            "train_seconds": SHARED["train_seconds"],
            "dataset_checksum": Column("SHA-256 of the victim's dataset", "hex digest"),
            "weights_checksum": Column(
                "SHA-256 of the victim's weights (names, dtypes, shapes, values)", "hex digest"
            ),
            "oe_weight": Column(
                "the weight of Outlier Exposure's loss in the victim's training (empty: trained "
                "without it)",
                "weight (lambda)",
            ),
            "oe_data": Column(
                "the datasets whose train splits were the victim's Outlier Exposure data, "
                "comma-separated (empty: none)",
                "names",
            ),
        },
    ),
    "cells": Table(
        "one cell: victim × attack × granularity × budget × surrogate architecture × "
        "surrogate start × seed",
        {**AXIS_DOCS, **_shared("seed"), **METRIC_DOCS, **TRAINING, **ONLINE},
    ),
    "summary": Table(
        "one cell without its seed (means over seeds)",
        {**AXIS_DOCS, **_shared("seeds", "victim_acc"), **SUMMARY_METRICS},
    ),
    "per_class": Table(
        "one class of one cell without its seed (means over seeds)",
        {
            **AXIS_DOCS,
            "class": Column("the class index", "integer"),
            "class_name": Column("the class's name in the victim's dataset", NAME),
            "victim_class_acc": Column("the victim's accuracy on the class", CLASS_SHARE),
            "surrogate_class_acc": Column(
                "the surrogate's accuracy on the class, mean over seeds", CLASS_SHARE
            ),
            "drop": Column("victim_class_acc − surrogate_class_acc", CLASS_SHARE),
        },
    ),
    "queries": Table(
        "one (victim, attack): the queries its attackers sent and what answering them cost",
        {
            **_shared("victim", "attack", "strategy", "pool"),
            "attackers": Column("attacker runs (seeds, times defenses faced)", COUNT),
            "largest_budget": Column("the largest budget any of them served", QUERIES),
            "queries_sent": Column(
                "queries its attackers sent (seed sets, augmented copies and "
                "gradient-estimation queries all count)",
                QUERIES,
            ),
            "victim_passes": Column(
                "posteriors the victim computed for them (an image several seeds drew is "
                "answered once)",
                "images (victim forward passes)",
            ),
            "cells": Column("cells trained on these queries", COUNT),
            "passes_without_cache": Column(
                "victim passes a pipeline querying afresh for every cell would make (the sum "
                "of the cells' budgets)",
                "images (victim forward passes)",
            ),
            "cache_saving": Column("passes_without_cache / victim_passes", "ratio"),
        },
    ),
    "reproduction": Table(
        "one (victim, out-of-distribution attack, surrogate) with full probabilities at the "
        "attack's largest budget (claim 1)",
        {
            **_shared(
                "victim",
                "victim_arch",
                "victim_init",
                "dataset",
                "attack",
                "strategy",
                "surrogate_arch",
                "surrogate_init",
                "budget",
                "seeds",
                "victim_acc",
            ),
            **_over_seeds("test_acc", "recovery"),
            "reaches_target": Column("whether recovery_mean reaches 0.9", BOOL),
            "paper_victim_acc": SHARED["paper_victim_acc"],
            "paper_surrogate_acc": Column(
                "the paper's surrogate accuracy with full probabilities",
                "fraction of the paper's test images",
            ),
            "paper_recovery": Column("paper_surrogate_acc / paper_victim_acc", RATIO),
        },
    ),
    "budget": Table(
        "one (victim, attack, granularity, surrogate): recovery along the budgets (claim 1)",
        {
            **_shared(
                "victim",
                "victim_init",
                "attack",
                "adversary",
                "granularity",
                "surrogate_arch",
                "surrogate_init",
            ),
            "budgets": Column("every budget of the grid, ascending", "list of queries"),
            "recovery_by_budget": Column(
                "recovery_mean at each of those budgets (rounded to 4 decimals)", "list of ratios"
            ),
            "smallest_budget_to_target": Column(
                "the smallest budget whose mean recovery reaches 0.9; empty if none in the grid",
                QUERIES,
            ),
            "largest_budget": Column("the largest budget of the grid", QUERIES),
            "recovery_at_largest": Column("mean recovery over seeds at that budget", RATIO),
            "recovery_ci95_at_largest": Column(
                "half-width of its 95% confidence interval (Student t)", RATIO
            ),
            "recovery_ci95_by_budget": Column(
                "recovery_ci95 at each of those budgets (rounded to 4 decimals; empty where a "
                "budget has one seed)",
                "list of ratios",
            ),
            "seeds": Column(
                "the fewest seeds behind any of those budgets' means (the findings call fewer "
                "than 3 too few to decide a comparison inside the intervals)",
                COUNT,
            ),
        },
    ),
    "published": Table(
        "one published point of recovery against budget (stealbench.paper), in our units",
        {
            "source": Column("the paper or code the point comes from", "text"),
            "setting": Column("what was attacked, with what, for how long", "text"),
            "budget": Column(
                "queries the published surrogate trained on; empty if unknown", QUERIES
            ),
            "granularity": SHARED["granularity"],
            "victim_acc": Column(
                "the published victim's accuracy; empty if not published",
                "fraction of the source's test images",
            ),
            "surrogate_acc": Column(
                "the published surrogate's accuracy", "fraction of the source's test images"
            ),
            "recovery": Column("surrogate_acc / victim_acc (a lower bound where noted)", RATIO),
            "pretrained": Column(
                "whether victim and attacker start from pretrained (ImageNet) weights", BOOL
            ),
            "note": Column("how the point differs from ours", "text"),
        },
    ),
    "pretraining": Table(
        "one (victim start, surrogate start) combination of one task, attack, granularity, "
        "surrogate architecture and budget, where a start varies",
        {
            **_shared(
                "dataset",
                "victim_arch",
                "attack",
                "victim",
                "victim_init",
                "victim_acc",
                "granularity",
                "surrogate_arch",
                "budget",
                "surrogate_init",
                "seeds",
            ),
            **_over_seeds("test_acc", "recovery"),
        },
    ),
    "granularity": Table(
        "one (victim, attack, surrogate) at its largest budget, every granularity side by "
        "side (claim 2a)",
        {
            **_shared("victim", "attack", "surrogate_arch", "surrogate_init", "budget"),
            "paper_probs": Column(
                "the paper's surrogate accuracy with full probabilities",
                "fraction of the paper's test images",
            ),
            "paper_label": Column(
                "the paper's surrogate accuracy with top-1 labels",
                "fraction of the paper's test images",
            ),
        },
        (
            Pattern(
                rf"{GRANULARITY_NAME}_acc",
                "<granularity>_acc",
                Column("test_acc_mean at that granularity (e.g. `probs_acc`)", TEST_SHARE),
            ),
            Pattern(
                rf"{GRANULARITY_NAME}_ci95",
                "<granularity>_ci95",
                Column("test_acc_ci95 at that granularity", TEST_SHARE),
            ),
        ),
    ),
    "architecture": Table(
        "one (victim, attack, surrogate architecture): full probabilities, largest budget, "
        "surrogates from scratch (claim 2b)",
        {
            **_shared("victim", "victim_arch", "attack", "surrogate_arch"),
            "matches_victim": Column("whether the surrogate's architecture is the victim's", BOOL),
            **_shared("budget", "seeds", "victim_acc"),
            **_over_seeds("test_acc"),
            "agreement_mean": _over_seeds("agreement")["agreement_mean"],
            "paper_resnet34": Column(
                "the paper's ResNet-34 surrogate accuracy", "fraction of the paper's test images"
            ),
            "paper_vgg16": Column(
                "the paper's VGG-16 surrogate accuracy", "fraction of the paper's test images"
            ),
        },
    ),
    "strategies": Table(
        "one attack at one granularity, budget and surrogate architecture, against a victim "
        "facing more than one strategy (surrogates from scratch)",
        {
            **_shared(
                "victim", "granularity", "budget", "surrogate_arch", "pool", "strategy", "attack"
            ),
            "seeds": SHARED["seeds"],
            **_over_seeds("test_acc"),
            "recovery_mean": _over_seeds("recovery")["recovery_mean"],
            "agreement_mean": _over_seeds("agreement")["agreement_mean"],
            "vs_random": Column(
                "test_acc_mean − that of random sampling of the same pool at the same budget; "
                "empty where random does not sample that pool",
                TEST_SHARE,
            ),
        },
    ),
    "detection": Table(
        "one (victim, query source): the out-of-distribution pre-classifier on it",
        {
            "victim": SHARED["victim"],
            "detector_out": Column(
                "the datasets the detector was trained on as out-of-distribution, comma-separated",
                NAME,
            ),
            "queries_from": Column(
                "`test` (the victim's test split), `pool` (a dataset's pool split) or "
                "`attack` (an attacker's queries, all seeds)",
                NAME,
            ),
            "source": Column("the dataset or attack the queries come from", NAME),
            "seen": Column(
                "`in-distribution` (the victim's task), `seen kind` (a kind the detector saw "
                "as out-of-distribution in training) or `unseen kind`",
                NAME,
            ),
            "in_distribution": Column("whether the source is of the victim's task", BOOL),
            "queries": SHARED["queries"],
            "flagged_share": Column(
                "share of the queries flagged out-of-distribution", "fraction of the queries"
            ),
            "tpr_in": Column(
                "in-distribution sources: share accepted (the paper's TPR); empty otherwise",
                "fraction of the queries",
            ),
            "tnr_out": Column(
                "other sources: share flagged (the paper's TNR); empty otherwise",
                "fraction of the queries",
            ),
            "strategy": Column("the attack's strategy; empty for test and pool rows", NAME),
        },
    ),
    "prada": Table(
        "one client stream (an attacker's queries, or a benign client's) replayed through PRADA",
        {
            **_shared("victim", "kind"),
            "stream": Column("the stream: `<attack>-s<seed>` or `benign-<source>-<i>`", NAME),
            "attack": Column("the attack; empty for a benign stream", NAME),
            "strategy": Column("the attack's strategy; empty for a benign stream", NAME),
            "seed": Column("the attacker's seed; empty for a benign stream", "integer"),
            "monitor": Column(
                "the stream monitor that replayed it (`prada`, `query-count`, a plug-in's)", NAME
            ),
            "queries": Column("queries replayed (at most the monitor's max_queries)", QUERIES),
            "flagged": Column(
                "whether the monitor flagged the stream at its configured threshold (PRADA: delta)",
                BOOL,
            ),
            "flagged_at": Column(
                "the query (1-based) at which the monitor first flagged the stream (PRADA: its "
                "test first gave W < delta); empty if never",
                "query index",
            ),
            "min_w": Column(
                "PRADA's smallest Shapiro-Wilk W over the stream's tests; empty if none ran or "
                "for another monitor",
                "W statistic (0 to 1)",
            ),
            "delta": Column(
                "the delta PRADA flagged at: the configured number, or the one `delta: "
                "calibrate` chose for the victim (the largest that flags none of its held-out "
                "calibration streams, less the margin); empty for another monitor",
                "W statistic (0 to 1)",
            ),
        },
    ),
    "prada_curve": Table(
        "one (victim, strategy, monitor, threshold): a stream monitor's detection against false "
        "positives (PRADA over delta; others over their own threshold)",
        {
            **_shared("victim", "strategy"),
            "delta": Column(
                "PRADA's threshold on W; empty for another monitor", "W statistic (0 to 1)"
            ),
            "monitor": Column("the stream monitor (`prada`, `query-count`, a plug-in's)", NAME),
            "detection_rate": Column(
                "share of the strategy's attacker streams flagged", "fraction of the streams"
            ),
            "false_positive_rate": Column(
                "share of the victim's benign streams flagged", "fraction of the streams"
            ),
            "mean_queries_to_detection": Column(
                "mean query index of detection over the flagged attacker streams; empty if none",
                QUERIES,
            ),
            "attacker_streams": Column("attacker streams of the strategy", COUNT),
            "benign_streams": Column("benign streams of the victim", COUNT),
        },
        (
            Pattern(
                _monitor_thresholds(),
                "<the monitor's threshold parameter>",
                Column(
                    "another monitor's threshold, the column named by its `sweep` parameter "
                    "(query-count: `limit`); empty for the other monitors' rows",
                    "the monitor's score (query-count: queries)",
                ),
            ),
        ),
    ),
    "defended": Table(
        "one defended cell: a surrogate trained on the answers of a defended API (victim × "
        "attack × defense at a strength × granularity × budget × surrogate architecture × seed)",
        {
            **_shared(*DEFENDED_KEYS),
            **METRIC_DOCS,
            **TRAINING,
            **_shared("benign_utility", "benign_l1", "benign_kl", "benign_top1_changed"),
            "attack_l1": Column(
                "mean L1 distance between true and defended answers over the attacker's "
                "budget queries",
                PROB_L1,
            ),
            "attack_kl": Column(
                "mean KL(true ‖ defended) over the attacker's budget queries", NATS
            ),
            "attack_top1_changed": Column(
                "share of the attacker's budget queries whose top-1 the defense changed",
                "fraction of the queries",
            ),
            "proxy_mode_share": Column(
                "MAD's diagnostic: share of the attacker's budget queries on which its proxy "
                "predicts its most frequent class (empty for other defenses)",
                "fraction of the queries",
            ),
            **DAWN,
            "paper_defended": Column(
                "the paper's defended surrogate accuracy for the victim's paper configuration",
                "fraction of the paper's test images",
            ),
        },
    ),
    "matched_cost": Table(
        "one (victim, attack, granularity, budget, surrogate architecture, defense, matched "
        "cost): the attacker's accuracy where the defense's curve over its strengths costs "
        "benign users `cost` of top-1 accuracy (stealbench.report.tables.matched_cost_table)",
        {
            **_shared(*MATCHED_AXES, "defense", "strength"),
            "cost": Column(
                "the matched benign cost: undefended less defended benign utility (0.01 = one "
                "point of the victim's test accuracy)",
                TEST_SHARE,
            ),
            "reached": Column(
                "whether every seed's curve (from the undefended point at cost 0, through the "
                "strengths from the weakest to the strongest) reaches `cost`; false: the row "
                "is the strongest tested strength, never an extrapolation",
                BOOL,
            ),
            "seeds": SHARED["seeds"],
            "seeds_reached": Column("seeds whose curve reaches `cost`", COUNT),
            "attacker_acc_mean": Column(
                "mean over seeds of the attacker's surrogate test accuracy at `cost` (linearly "
                "interpolated between the two strengths that first bracket it); where not "
                "reached, at the strongest tested strength",
                TEST_SHARE,
            ),
            "attacker_acc_ci95": Column(
                "half-width of the 95% confidence interval (Student t) of attacker_acc_mean; "
                "empty for one seed",
                TEST_SHARE,
            ),
            "benign_cost_mean": Column(
                "mean over seeds of the benign cost of the point read: `cost` where reached, "
                "else the strongest tested strength's (below `cost`)",
                TEST_SHARE,
            ),
            "strength_value_mean": Column(
                "mean over seeds of the strength at that point (interpolated; the undefended "
                "start counts as strength 0); empty for a strength the defense learns",
                "the parameter's own unit",
            ),
            "lower_id": Column(
                "the defense_id of the point before the crossing (`none`: the undefended "
                "start), or of the strongest tested strength where not reached; several "
                "joined by `|` where seeds differ",
                NAME,
            ),
            "upper_id": Column(
                "the defense_id of the first point at or past `cost`; empty where not reached",
                NAME,
            ),
            "victim_acc": SHARED["victim_acc"],
            "undefended_acc_mean": Column(
                "mean over the same seeds of the attacker's accuracy against the undefended "
                "API (same setting)",
                TEST_SHARE,
            ),
            "undefended_acc_ci95": Column(
                "half-width of the 95% confidence interval (Student t) of "
                "undefended_acc_mean; empty for one seed",
                TEST_SHARE,
            ),
            "drop_mean": Column(
                "mean over seeds of undefended less defended attacker accuracy (paired by seed)",
                TEST_SHARE,
            ),
            "drop_ci95": Column(
                "half-width of the 95% confidence interval (Student t) of drop_mean; empty "
                "for one seed",
                TEST_SHARE,
            ),
            "recovery_mean": Column("attacker_acc_mean / victim_acc", RATIO),
            "undefended_recovery_mean": Column("undefended_acc_mean / victim_acc", RATIO),
        },
    ),
    "dawn": Table(
        "one defended cell of DAWN: the watermarks served, reproduced and claimed",
        {
            **_shared("victim", "attack", "adversary"),
            "share": Column(
                "DAWN's share of queries answered with a watermark", "fraction of the queries"
            ),
            **_shared(
                "budget",
                "surrogate_arch",
                "seed",
                "test_acc",
                "benign_utility",
                "benign_top1_changed",
            ),
            **DAWN,
        },
    ),
}


def describe(table: str, column: str) -> Column:
    """The documentation of one column; :class:`UndocumentedColumn` if there is none."""
    if table not in TABLES:
        raise UndocumentedColumn(
            f"table '{table}' is not documented: add it to TABLES in {__name__}"
        )
    spec = TABLES[table]
    if column in spec.columns:
        return spec.columns[column]
    for pattern in spec.patterns:
        if re.fullmatch(pattern.regex, column):
            return pattern.column
    raise UndocumentedColumn(
        f"table '{table}': column '{column}' is not documented; add its meaning and unit to "
        f"TABLES['{table}'] in {__name__} (then regenerate docs/outputs.md)"
    )


def field_metadata(table: str, columns) -> dict[str, dict[str, str]]:
    """Parquet field metadata (description, unit) for every column of ``table``."""
    return {
        c: {"description": (col := describe(table, c)).meaning, "unit": col.unit} for c in columns
    }


def markdown() -> str:
    """docs/outputs.md: every table, its file, what a row is, its columns."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "# Output tables",
        "",
        "<!-- Generated by `python -m stealbench.report.columns > docs/outputs.md` from",
        "     src/stealbench/report/columns.py; edit that module, not this file. -->",
        "",
        "Every table lands in `results/tables/` as Parquet (with a CSV twin of the same",
        "columns). Each Parquet field carries its meaning and unit in its metadata",
        "(`description`, `unit`), and the schema's `stealbench` metadata records what the",
        "table was built from. Fractions are in [0, 1]; an empty cell is a null (NaN) value.",
        "",
        "```python",
        "import pyarrow.parquet as pq",
        'schema = pq.read_schema("results/tables/cells.parquet")',
        'schema.field("recovery").metadata  # {b"description": ..., b"unit": ...}',
        "```",
        "",
    ]
    for name, spec in TABLES.items():
        lines += [
            f"## `{name}`",
            "",
            f"`results/tables/{name}.parquet` (and `.csv`). A row: {spec.row}.",
            "",
            "| column | meaning | unit |",
            "|---|---|---|",
        ]
        lines += [
            f"| `{c}` | {cell(col.meaning)} | {cell(col.unit)} |" for c, col in spec.columns.items()
        ]
        lines += [
            f"| `{p.shown_as}` | {cell(p.column.meaning)} | {cell(p.column.unit)} |"
            for p in spec.patterns
        ]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
