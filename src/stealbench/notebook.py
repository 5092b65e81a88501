"""The Python API for notebooks: one attack, from a victim to a scored surrogate.

A thin layer over the package the workflow runs (nothing here is a second implementation)::

    import stealbench as sb

    config = sb.load_config("config.yaml")
    victim = sb.train_victim(config, "mnist-lenet", epochs=2)  # or sb.load_victim("results", ...)
    pool = sb.dataset(config, "uci-digits")
    api = sb.prediction_api(victim, "top2", defense="reverse-sigmoid", beta=0.5)
    queries = sb.run_attack(api, "random", pool, budget=200, seed=0)
    surrogate, scores = sb.fit_surrogate(queries, victim, arch="lenet", epochs=5)

The steps:

- **a victim** is a :class:`Victim`: a model and its test split with the model's own
  posteriors on it, which scoring needs. Loaders make one: :func:`train_victim` (train a
  config's victim entry, as the workflow's ``train_victim`` job does), :func:`load_victim`
  (a victim the workflow already trained under ``results/``) and :func:`victim_from_model`
  (any classifier of your own). Another source of victims (a checkpoint file, a torchvision
  model, a remote API) is one more function that returns a :class:`Victim`;
- **the API** (:func:`prediction_api`) is the victim behind a response granularity and an
  optional defense (:class:`stealbench.attack.api.PredictionAPI`); it counts every image sent;
- **an attack** (:func:`run_attack`) spends a budget of queries against that API with a
  registered strategy (``random``, ``adaptive``, ``activethief``, ``jbda``, ``dfme``);
- **a surrogate** (:func:`fit_surrogate`) is trained on the answers and **scored**
  (:func:`score`) on the victim's test split: test accuracy, agreement with the victim,
  recovery (surrogate accuracy over victim accuracy) and the KL divergence from the victim's
  posteriors.

Seeds: datasets and victims take the workflow's seeds (the config's ``seed`` and the seed
derived from it, :func:`stealbench.runtime.derive_seed`), so :func:`train_victim` trains the
workflow's victim (the same weights with the same training block, on the same hardware). The
attack and the surrogate take the notebook's own ``seed``: the same procedure as the
workflow's cells, other draws.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import config as _config
from .attack.api import PredictionAPI
from .attack.cache import QueryCache
from .attack.strategies import lookup
from .attack.strategies.registry import query_in_batches
from .data import datasets as _datasets
from .data import sources as _sources

__all__ = [
    "Victim",
    "available",
    "dataset",
    "fit_surrogate",
    "load_config",
    "load_victim",
    "prediction_api",
    "run_attack",
    "score",
    "train_victim",
    "victim_from_model",
]


# ------------------------------------------------------------------ config and data


def load_config(source: str | Path | dict = "config.yaml") -> dict:
    """A validated config with its defaults filled in (:func:`stealbench.config.validate`),
    from a YAML file or a dict. Raises :class:`stealbench.config.ConfigError` if invalid."""
    if isinstance(source, dict):
        return _config.validate(source)
    import yaml

    _config.check_duplicate_keys(source)
    return _config.validate(yaml.safe_load(Path(source).read_text()))


def dataset(config: dict, name: str, results: str | Path | None = None) -> _datasets.Dataset:
    """Dataset ``name`` of ``config``: the workflow's file ``results/data/<name>.parquet``
    when ``results`` holds it, otherwise built from its config entry with the config's seed
    (the same images, splits and checksum as the workflow's ``materialise_dataset`` job).
    Returns a :class:`stealbench.data.datasets.Dataset` (images uint8 (N, H, W, C), labels,
    splits; ``dataset.split("test")`` gives images and labels of a split)."""
    if results is not None:
        path = Path(results) / "data" / f"{name}.parquet"
        if path.exists():
            return _datasets.load(path)
    if name not in config["datasets"]:
        raise ValueError(f"no dataset {name!r} in the config; it has {sorted(config['datasets'])}")
    with tempfile.TemporaryDirectory(prefix="stealbench-") as tmp:
        path = Path(tmp) / f"{name}.parquet"
        _sources.materialise_to(name, config["datasets"][name], config["seed"], path)
        return _datasets.load(path, lazy=False)


# ------------------------------------------------------------------ victims


@dataclass
class Victim:
    """A victim model, what it is (``meta``: at least ``arch``, ``num_classes`` and
    ``input_size`` when a defense needs a model like it) and its test split with its own
    posteriors (``test``, a :class:`stealbench.attack.surrogates.VictimTestSet`)."""

    name: str
    model: object  # a torch.nn.Module taking float images in [0, 1], shape (N, C, H, W)
    test: object  # VictimTestSet
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.test.num_classes

    @property
    def test_acc(self) -> float:
        """The victim's accuracy on its test split."""
        return self.test.victim_acc


def _test_set(model, images: np.ndarray, labels: np.ndarray):
    from .attack.surrogates import VictimTestSet
    from .models.victims import victim_posteriors

    images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    return VictimTestSet(images, labels, victim_posteriors(model, images))


def train_victim(
    config: dict,
    name: str,
    results: str | Path | None = None,
    device: str | None = None,
    **training,
) -> Victim:
    """Train victim ``name`` of ``config`` as the workflow does (its dataset, architecture and
    training, the seed derived from the config's), selecting the epoch on val.

    ``training`` overrides keys of the victim's training block (``epochs=2`` for a quick
    look). ``results``: where the workflow's datasets and pretrained backbones are, if it
    ran. A victim that starts from a pretrained backbone needs
    ``results/pretrain/<backbone>/model.pt``. Returns a :class:`Victim` whose ``meta`` holds
    the validation and test accuracy.
    """
    from . import io
    from .models.training import TrainConfig
    from .models.victims import train_victim as _train
    from .runtime import derive_seed

    if name not in config["victims"]:
        raise ValueError(f"no victim {name!r} in the config; it has {sorted(config['victims'])}")
    spec = _config.victim_spec(config, name)
    if spec.get("source", "train") != "train":
        raise ValueError(
            f"victim {name!r} is source {spec['source']}, not trained: run the workflow's "
            f"import_victim job and use load_victim(results, {name!r})"
        )
    spec = {**spec, "training": {**spec["training"], **training}}
    data = dataset(config, spec["dataset"], results)
    backbone = None
    if spec["init"] not in ("scratch", "imagenet"):
        path = Path(results or "results") / "pretrain" / spec["init"] / "model.pt"
        if not path.exists():
            raise FileNotFoundError(
                f"victim {name!r} starts from backbone {spec['init']!r}: {path} is missing "
                f"(run the workflow's pretrain job, or give results=)"
            )
        backbone = io.load_state_dict(path)
    seed = derive_seed(config["seed"], "victim", name)
    device = device or config["device"]
    oe = spec["training"].get("outlier_exposure")  # as the workflow's train_victim job
    outliers = (
        np.concatenate(
            [np.asarray(dataset(config, d, results).split("train")[0]) for d in oe["data"]]
        )
        if oe
        else None
    )
    model, fit, _, test_acc = _train(
        data,
        spec["arch"],
        TrainConfig.from_dict(spec["training"]),
        seed,
        device,
        spec["init"],
        backbone,
        spec["input_size"],
        outliers,
        oe["weight"] if oe else 1.0,
    )
    meta = {
        "victim": name,
        **{key: spec[key] for key in ("arch", "init", "input_size", "dataset", "training")},
        "num_classes": len(data.classes),
        "dataset_checksum": data.checksum,
        "test_acc": test_acc,
        "val_acc": fit.best_val_acc,
        "seed": seed,
        "weights_checksum": io.state_dict_checksum(model.state_dict()),
    }
    return Victim(name, model.eval(), _test_set(model, *data.split("test")), meta)


def load_victim(
    results: str | Path, name: str, config: dict | None = None, device: str = "cpu"
) -> Victim:
    """Victim ``name`` as the workflow trained it: ``results/victims/<name>/model.pt``,
    checked against its ``metrics.json``, with its test posteriors from
    ``test_outputs.parquet`` and the images of its dataset (``results/data``, or built from
    ``config`` when that file is gone). Returns a :class:`Victim` whose ``meta`` is its
    ``metrics.json``."""
    from . import io
    from .attack.surrogates import load_victim_test
    from .models.victims import load_victim as _load

    folder = Path(results) / "victims" / name
    if not (folder / "metrics.json").exists():
        raise FileNotFoundError(
            f"{folder / 'metrics.json'} is missing: run the workflow's train_victim job for "
            f"{name!r}, or train it here with train_victim(config, {name!r})"
        )
    meta = io.read_json(folder / "metrics.json")
    remote = meta.get("source") == "remote"  # no model file: its answers come from its ledger
    if remote:
        model = _load(None, meta, device, ledger_path=folder / "answers.sqlite")
    else:
        model = _load(folder / "model.pt", meta, device)
    data_file = Path(results) / "data" / f"{meta['dataset']}.parquet"
    if data_file.exists():
        data = _datasets.load(data_file)
    elif config is not None:
        data = dataset(config, meta["dataset"])
    else:
        raise FileNotFoundError(f"{data_file} is missing; pass the config to rebuild it")
    return Victim(name, model, load_victim_test(data, folder / "test_outputs.parquet"), meta)


def victim_from_model(
    model, test_images, test_labels, name: str = "custom", arch: str | None = None
) -> Victim:
    """Any classifier as a victim: ``model`` is a torch module taking float images in [0, 1]
    of shape (N, C, H, W) and returning logits; ``test_images`` (uint8 (N, H, W, C)) and
    ``test_labels`` are what surrogates are scored on. ``arch`` (a registered architecture
    name) is needed only by defenses that build a model like the victim's (MAD's proxy)."""
    test = _test_set(model.eval(), test_images, test_labels)
    meta = {"victim": name, "arch": arch, "num_classes": test.num_classes, "input_size": None}
    return Victim(name, model, test, meta)


# ------------------------------------------------------------------ the API and the attack


def prediction_api(
    victim: Victim,
    granularity: str = "probs",
    defense=None,
    seed: int = 0,
    **defense_params,
) -> PredictionAPI:
    """The victim behind an API that answers at ``granularity`` (``probs``, ``top<k>``,
    ``round<d>``, ``label``) through ``defense``: None, a registered defense's name (its
    parameters as keywords, e.g. ``defense="reverse-sigmoid", beta=0.5``; the owner's key
    and MAD's proxy are derived from ``seed`` as the workflow derives them from its master
    seed) or a :class:`stealbench.defense.Defense` already made (the way to use a defense
    that needs a trained model: ``ood-shuffle``, ``adaptive-misinformation``). Returns a
    :class:`stealbench.attack.api.PredictionAPI`: ``api(images)`` answers and counts
    ``api.queries``."""
    if isinstance(defense, str):
        from .defense import create
        from .defense.context import build_context
        from .defense.registry import lookup as defense_class

        needs = set(defense_class(defense).needs)
        trained = sorted(needs & {"detector", "misinformation"})
        if trained:
            raise ValueError(
                f"defense {defense!r} needs a trained {' and '.join(trained)} model: build its "
                f"stealbench.defense.DefenseContext and pass stealbench.defense.create(...)"
            )
        if "proxy" in needs and not victim.meta.get("arch"):
            raise ValueError(
                f"defense {defense!r} builds a proxy model of the victim's architecture: "
                f"give the victim an arch (victim_from_model(..., arch=...))"
            )
        context = build_context([defense], seed, victim.name, victim.meta)
        defense = create(defense, context, **defense_params)
    elif defense_params:
        raise ValueError(f"defense parameters {sorted(defense_params)} need a defense name")
    return PredictionAPI(victim.model, granularity, defense)


def run_attack(
    api: PredictionAPI,
    strategy: str,
    pool: _datasets.Dataset,
    budget: int,
    seed: int = 0,
    device: str = "cpu",
    **options,
) -> QueryCache:
    """Spend ``budget`` queries of ``api`` with strategy ``strategy`` on ``pool`` (its
    ``pool`` split), the strategy's random generator seeded with ``seed``; ``options`` are
    the strategy's (as in a config's ``options``).

    A sampling strategy draws its images and sends them; a sequential one chooses each
    query from the answers so far. Returns the transfer set as a
    :class:`stealbench.attack.cache.QueryCache`: per query in the order sent, ``sample_ids``
    (the pool image it is or descends from, -1 for none), ``images``, ``stored_answers``
    (what the attacker saw) and ``probs`` (the victim's true posteriors: the owner's view,
    for analysis only).
    """
    spec = lookup(strategy)
    rng = np.random.default_rng(seed)
    before = api.queries
    if spec.sequential:
        sample_ids = spec.fn(api, pool, budget, rng, device=device, **options)
    else:
        draw = spec.fn(pool, budget, rng, **options)
        sample_ids = draw.sample_ids
        images = draw.images if draw.images is not None else np.asarray(pool.images[sample_ids])
        query_in_batches(api, images)
    sample_ids = np.asarray(sample_ids, dtype=np.int64)
    if api.queries - before != budget or len(sample_ids) != budget:
        raise RuntimeError(
            f"strategy {strategy} sent {api.queries - before} queries and returned "
            f"{len(sample_ids)} sample ids; expected {budget}"
        )
    images, probs, answers = (part[before:] for part in api.record())
    meta = {
        "strategy": strategy,
        "options": options,
        "pool": pool.name,
        "budget": budget,
        "seed": seed,
        "granularity": api.granularity,
        "defense_id": getattr(api.defense, "name", None),
    }
    return QueryCache(sample_ids, probs, meta, images, answers)


# ------------------------------------------------------------------ the surrogate


def fit_surrogate(
    queries: QueryCache,
    victim: Victim,
    arch: str = "lenet",
    budget: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    selection: str = "none",
    **training,
):
    """Train a surrogate of architecture ``arch`` on the first ``budget`` (default: all)
    answers of ``queries``, its initial weights drawn from ``seed``, as the workflow's
    ``train_surrogates`` job does (answers with no mass dropped, truncated ones
    renormalised). ``training``: :class:`stealbench.models.training.TrainConfig` keys
    (``epochs``, ``batch_size``, ``lr``, ``optimizer``, ``min_steps``, ...).

    Returns ``(model, metrics)``: the trained torch model, and :func:`score`'s metrics plus
    how it trained (``epochs``, ``train_images``, ``dropped_answers``, ``train_seconds``).
    """
    from .attack.surrogates import SurrogateSpec, train_surrogate
    from .models.training import TrainConfig

    unknown = sorted(set(training) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(
            f"unknown training option(s) {unknown}; allowed: "
            f"{', '.join(TrainConfig.__dataclass_fields__)}"
        )
    spec = SurrogateSpec(arch, TrainConfig(**training), selection=selection, device=device)
    granularity = queries.meta["granularity"]
    return train_surrogate(
        queries, None, victim.test, granularity, budget or len(queries), spec, seed
    )


def score(model, victim: Victim) -> dict:
    """A model scored against the victim on its test split: ``test_acc``, ``agreement``
    (share of test images where it predicts the victim's label), ``victim_acc``,
    ``recovery`` (test_acc / victim_acc), ``kl_divergence`` (mean KL from the victim's
    posteriors) and per-class accuracies (``class_acc``, ``victim_class_acc``)."""
    from .attack.surrogates import score as _score

    return _score(model, victim.test)


def available() -> dict[str, list[str]]:
    """What the API offers by name: ``strategies`` (sampling and sequential), ``defenses``,
    ``architectures`` and the granularity forms."""
    from .attack.strategies.registry import declared
    from .defense import DEFENSES
    from .models.architectures import ARCHITECTURES

    return {
        "strategies": sorted(declared()),
        "defenses": sorted(DEFENSES),
        "architectures": sorted(ARCHITECTURES),
        "granularities": ["probs", "top<k>", "round<d>", "label"],
    }
