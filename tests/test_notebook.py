"""The notebook API (stealbench.notebook): thin wrappers that must give what the workflow's
own functions give, and a package import that stays cheap."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from toys import labelled_pool

import stealbench
from stealbench import io
from stealbench import notebook as sb
from stealbench.attack.api import serve
from stealbench.attack.cache import QueryCache
from stealbench.attack.query import run_sequential, sample_pool
from stealbench.attack.surrogates import SurrogateSpec, train_surrogate
from stealbench.data import sources
from stealbench.defense import DefenseContext, create
from stealbench.defense.context import build_context
from stealbench.models.architectures import create_model
from stealbench.models.training import TrainConfig
from stealbench.models.victims import train_victim
from stealbench.runtime import derive_seed

SRC = Path(sb.__file__).parents[1]


@pytest.fixture(scope="module")
def victim():
    test = labelled_pool(n=40, seed=1)
    model = create_model("lenet", 4, seed=0)
    return sb.victim_from_model(model, test.images, test.labels, arch="lenet")


@pytest.fixture(scope="module")
def pool():
    return labelled_pool(n=120)


def test_importing_stealbench_loads_neither_torch_nor_the_api():
    probe = (
        "import sys, stealbench; print('torch' in sys.modules, "
        "'stealbench.notebook' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert run.stdout.split() == ["False", "False"], run.stderr
    # ... and the API's names resolve on first use
    assert stealbench.run_attack is sb.run_attack and stealbench.Victim is sb.Victim
    assert set(sb.__all__) <= set(dir(stealbench))
    # the package's lazy list (it cannot import the module to read it) names the same
    assert set(sb.__all__) == set(stealbench._NOTEBOOK)
    with pytest.raises(AttributeError, match="no attribute 'steal'"):
        stealbench.steal  # noqa: B018


def test_run_attack_with_a_sampling_strategy_answers_as_the_workflow(victim, pool):
    """The workflow samples, keeps the posteriors and serves them later (sample_pool, then
    the cache's answers); the notebook sends the sample through the API. Same answers."""
    api = sb.prediction_api(victim, "top2", defense="gaussian-noise", scale=0.2)
    queries = sb.run_attack(api, "random", pool, budget=50, seed=3)
    assert api.queries == 50 and len(queries) == 50
    log = sample_pool("random", victim.model, pool, 50, seed=0, rng_seed=3)
    np.testing.assert_array_equal(queries.sample_ids, log.sample_ids)
    np.testing.assert_allclose(queries.probs, log.probs, rtol=1e-5, atol=1e-6)
    images = pool.images[log.sample_ids]
    np.testing.assert_array_equal(queries.images, images)
    # the workflow's defense: keyed by the owner's key of this victim (seed 0)
    context = build_context(["gaussian-noise"], 0, "custom", victim.meta)
    noise = create("gaussian-noise", context, scale=0.2)
    expected = serve(log.probs, images, "top2", noise)
    np.testing.assert_allclose(queries.stored_answers, expected, atol=1e-6)
    assert not np.allclose(expected, serve(log.probs, images, "top2"))  # the defense acted
    assert ((queries.stored_answers > 0).sum(1) == 2).all()  # the granularity acted
    assert queries.meta["granularity"] == "top2"
    assert queries.meta["defense_id"] == "gaussian-noise"


def test_run_attack_with_a_sequential_strategy_is_run_sequential(victim, pool):
    api = sb.prediction_api(victim, "label")
    api(pool.images[:7])  # earlier queries of the same API are not this attack's
    queries = sb.run_attack(api, "adaptive", pool, 20, seed=5, batch_size=10, train_steps=1)
    assert api.queries == 27 and len(queries) == 20
    log = run_sequential(
        "adaptive", victim.model, pool, 20, 0, 5, "label", batch_size=10, train_steps=1
    )
    np.testing.assert_array_equal(queries.sample_ids, log.sample_ids)
    np.testing.assert_array_equal(queries.stored_answers, log.answers)


def test_a_strategy_that_miscounts_is_an_error(victim, pool, monkeypatch):
    from stealbench.attack.strategies import STRATEGIES, StrategySpec

    def overspends(api, pool, budget, rng, device="cpu"):
        api(pool.images[: budget + 1])
        return np.arange(budget)

    monkeypatch.setitem(
        STRATEGIES, "overspends", StrategySpec("overspends", "sequential", fn=overspends)
    )
    with pytest.raises(RuntimeError, match="sent 11 queries .* expected 10"):
        sb.run_attack(sb.prediction_api(victim), "overspends", pool, 10)


def test_fit_surrogate_is_the_workflows_train_surrogate(victim, pool):
    api = sb.prediction_api(victim, "top3", defense="reverse-sigmoid", beta=0.5)
    queries = sb.run_attack(api, "random", pool, budget=60, seed=1)
    assert not np.allclose(queries.stored_answers, serve(queries.probs, queries.images, "top3"))
    model, metrics = sb.fit_surrogate(queries, victim, "lenet", budget=40, seed=7, epochs=2)
    # the workflow: a cache of posteriors, served at the granularity through the defense
    log = sample_pool("random", victim.model, pool, 60, seed=0, rng_seed=1)
    cache = QueryCache(log.sample_ids, log.probs, {})
    spec = SurrogateSpec("lenet", TrainConfig(epochs=2))
    defense = create("reverse-sigmoid", DefenseContext(), beta=0.5)
    _, expected = train_surrogate(cache, pool, victim.test, "top3", 40, spec, 7, defense)
    for key in ("test_acc", "agreement", "recovery", "train_images", "dropped_answers"):
        assert metrics[key] == expected[key], key
    assert metrics["kl_divergence"] == pytest.approx(expected["kl_divergence"], rel=1e-5)
    assert metrics["train_images"] + metrics["dropped_answers"] == 40
    assert 0 <= metrics["agreement"] <= 1 and metrics["victim_acc"] == victim.test_acc
    scores = sb.score(model, victim)
    assert scores["test_acc"] == metrics["test_acc"]
    with pytest.raises(ValueError, match="unknown training option"):
        sb.fit_surrogate(queries, victim, epoch=2)


def test_prediction_api_defense_by_name_or_object(victim):
    api = sb.prediction_api(victim, "probs", defense="top-k", k=1)
    assert api.defense.name == "top-k" and api.granularity == "probs"
    with pytest.raises(ValueError, match="need a defense name"):
        sb.prediction_api(victim, beta=0.5)
    with pytest.raises(ValueError, match="has no parameter"):
        sb.prediction_api(victim, defense="reverse-sigmoid", scale=0.5)
    with pytest.raises(ValueError, match="unknown granularity"):
        sb.prediction_api(victim, "top-2")
    assert api.defense is sb.prediction_api(victim, defense=api.defense).defense
    mad = sb.prediction_api(victim, defense="mad", epsilon=0.1)
    assert mad.defense.name == "mad"
    with pytest.raises(ValueError, match="give the victim an arch"):
        sb.prediction_api(sb.Victim("x", victim.model, victim.test), defense="mad")
    with pytest.raises(ValueError, match="needs a trained detector model"):
        sb.prediction_api(victim, defense="ood-shuffle")


def test_available_names_what_the_registries_hold():
    names = sb.available()
    assert {"random", "adaptive", "activethief", "jbda", "dfme"} <= set(names["strategies"])
    assert {"none", "reverse-sigmoid", "mad", "dawn"} <= set(names["defenses"])
    assert "lenet" in names["architectures"]


TINY = {
    "datasets": {
        "digits": {
            "source": "uci-digits",
            "splits": {"train": 150, "val": 50, "test": 80, "pool": 20},
        }
    },
    "victims": {"tiny": {"dataset": "digits", "arch": "lenet", "attacks": ["a"]}},
    "attacks": {"a": {"strategy": "random", "pool": "digits", "budgets": [10]}},
    "victim_training": {"epochs": 1},
}


def test_train_victim_then_load_it_from_a_results_folder(tmp_path):
    config = sb.load_config(TINY)
    victim = sb.train_victim(config, "tiny")
    data = sb.dataset(config, "digits")
    assert victim.test.images.shape == (80, 28, 28, 1) and victim.num_classes == 10
    # the workflow's training: same data, seed and weights
    seed = derive_seed(config["seed"], "victim", "tiny")
    model, *_ = train_victim(data, "lenet", TrainConfig(epochs=1), seed)
    assert victim.meta["weights_checksum"] == io.state_dict_checksum(model.state_dict())
    assert victim.meta["test_acc"] == victim.test_acc

    # the files the workflow's train_victim job writes (workflow/scripts/train_victim.py)
    folder = tmp_path / "victims" / "tiny"
    folder.mkdir(parents=True)
    sources.materialise_to("digits", config["datasets"]["digits"], 0, tmp_path / "data.pq")
    (tmp_path / "data").mkdir()
    (tmp_path / "data.pq").rename(tmp_path / "data" / "digits.parquet")
    io.save_state_dict(victim.model.state_dict(), folder / "model.pt")
    io.write_json(victim.meta, folder / "metrics.json")
    ids, probs = data.ids("test"), victim.test.victim_probs
    io.write_parquet(
        pa.table(
            {
                "id": ids,
                "label": data.labels[ids].astype(np.int16),
                "probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.ravel()), 10),
            }
        ),
        folder / "test_outputs.parquet",
        {"kind": "victim_test_outputs", "dataset_checksum": data.checksum},
    )
    loaded = sb.load_victim(tmp_path, "tiny")
    np.testing.assert_array_equal(loaded.test.images, victim.test.images)
    np.testing.assert_array_equal(loaded.test.victim_probs, victim.test.victim_probs)
    assert loaded.test_acc == victim.test_acc and loaded.meta == victim.meta
    assert sb.dataset(config, "digits", results=tmp_path).checksum == data.checksum

    # other weights than the metrics record are refused; a victim never trained is named
    io.save_state_dict(create_model("lenet", 10, seed=99).state_dict(), folder / "model.pt")
    with pytest.raises(io.ArtefactError, match="does not match the victim's metrics.json"):
        sb.load_victim(tmp_path, "tiny")
    with pytest.raises(FileNotFoundError, match="train_victim job for 'other'"):
        sb.load_victim(tmp_path, "other")
    with pytest.raises(ValueError, match="no victim 'other'"):
        sb.train_victim(config, "other")


@pytest.mark.workflow
def test_the_workflows_victim_loads_and_trains_again_to_the_same_weights(root, tmp_path):
    """The workflow's train_victim job (configs/smoke.yaml, only that victim): load_victim
    reads what it wrote, and train_victim in this process trains the same weights."""
    from conftest import SMOKE, run_snakemake

    target = "results/victims/digits-lenet/metrics.json"
    run = run_snakemake(tmp_path, "--cores", "1", target, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = tmp_path / "results"
    metrics = io.read_json(results / "victims" / "digits-lenet" / "metrics.json")
    loaded = sb.load_victim(results, "digits-lenet")
    assert loaded.meta == metrics and loaded.test_acc == pytest.approx(metrics["test_acc"])
    config = sb.load_config(SMOKE)
    for source in (None, results):  # datasets built here, or read from results/data
        trained = sb.train_victim(config, "digits-lenet", results=source)
        assert trained.meta["weights_checksum"] == metrics["weights_checksum"]
        np.testing.assert_allclose(
            trained.test.victim_probs, loaded.test.victim_probs, rtol=1e-5, atol=1e-6
        )
