"""The contract of every registered defense (see stealbench.defense.registry): float32 answers
on the simplex, and an answer per query that does not depend on the batch it came in."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mad_reference import jacobian, objective

import stealbench.defense as defense_package
from stealbench.defense import DEFENSES, DefenseContext, create
from stealbench.models.architectures import create_model

K = 10
N = 48
# Parameters that make a defense change many rows of a small batch (defaults otherwise).
PARAMS = {"dawn": {"share": 0.4}, "mad": {"epsilon": 0.5}, "mad-argmax": {"epsilon": 0.5}}


class _BrightnessDetector:
    """Stands in for the OOD pre-classifier: P(out) is the mean brightness of the image."""

    threshold = 0.5

    def p_out(self, images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), -1).mean(axis=1) / 255.0


@pytest.fixture(scope="module")
def context() -> DefenseContext:
    return DefenseContext(
        key=b"contract",
        num_classes=K,
        detector=_BrightnessDetector(),
        misinformation=create_model("lenet", K, seed=1),
        proxy=create_model("lenet", K, seed=0),
    )


@pytest.fixture(scope="module")
def queries():
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 200, size=(N, 1, 1, 1))
    images = (levels + rng.integers(0, 56, size=(N, 28, 28, 1))).astype(np.uint8)
    logits = rng.normal(0, 3, size=(N, K))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs[0] = np.eye(K)[3]  # a one-hot posterior
    probs[1] = 1.0 / K  # a uniform one
    return images, probs


def test_importing_the_package_registers_every_defense_file():
    """A defense file that __init__ forgets to import would be missing from every sweep."""
    folder = Path(defense_package.__file__).parent
    files = [p.stem for p in folder.glob("*.py") if "\n@register\n" in p.read_text()]
    assert {"mad", "misinformation", "dawn", "none"} <= set(files)
    # A fresh interpreter: other test files import the defense modules themselves.
    probe = "import sys, stealbench.defense; print(' '.join(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(folder.parents[1])}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    loaded = set(run.stdout.split())
    assert [f for f in files if f"stealbench.defense.{f}" not in loaded] == [], run.stderr
    assert "torch" not in loaded  # defenses load torch only when one that needs a model runs
    assert {"mad", "mad-argmax", "adaptive-misinformation", "dawn"} <= set(DEFENSES)


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_answers_are_float32_distributions_of_the_input_shape(name, context, queries):
    images, probs = queries
    answers = create(name, context, **PARAMS.get(name, {}))(probs, images)
    assert answers.dtype == np.float32 and answers.shape == probs.shape
    assert np.all(answers >= 0)
    np.testing.assert_allclose(answers.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_each_answer_depends_on_its_query_alone(name, context, queries):
    images, probs = queries
    defense = create(name, context, **PARAMS.get(name, {}))
    answers = defense(probs, images)
    np.testing.assert_array_equal(defense(probs, images), answers)
    order = np.random.default_rng(1).permutation(N)
    np.testing.assert_array_equal(defense(probs[order], images[order]), answers[order])
    split = [defense(probs[s], images[s]) for s in (slice(0, 5), slice(5, 30), slice(30, N))]
    np.testing.assert_array_equal(np.concatenate(split), answers)
    for i in (0, 7, N - 1):
        np.testing.assert_array_equal(defense(probs[i : i + 1], images[i : i + 1])[0], answers[i])


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_no_queries_no_answers(name, context, queries):
    images, probs = queries
    answers = create(name, context, **PARAMS.get(name, {}))(probs[:0], images[:0])
    assert answers.shape == (0, K) and answers.dtype == np.float32


def test_the_strength_of_every_defense_is_one_of_its_parameters():
    for name, cls in DEFENSES.items():
        assert cls.strength is None or cls.strength in defense_package.defense_parameters(name)


@pytest.mark.parametrize("name", ["mad", "mad-argmax"])
def test_mad_answers_stay_in_the_epsilon_ball(name, context, queries):
    images, probs = queries
    eps = PARAMS[name]["epsilon"]
    answers = create(name, context, epsilon=eps)(probs, images).astype(np.float64)
    assert np.all(np.abs(answers - probs).sum(axis=1) <= eps + 1e-6)
    assert np.mean(np.abs(answers - probs).sum(axis=1) > eps - 1e-6) > 0.9  # and use it


def test_mad_turns_the_gradient_more_than_random_moves_of_the_same_length(context, queries):
    """MAD's served answer turns the proxy's last-layer gradient (explicit autograd Jacobian)
    at least as far as the best of several random moves of the same L1 length on the simplex.

    Not asked of MAD-argmax: with a random-init proxy (p near uniform) its best target is
    mostly the near-uniform vector over many classes, so close to p that p - y* points anywhere;
    the answer, a short move from y toward it, keeps p - y~ nearly parallel to p - y and barely
    turns the gradient. The authors' oracle scores targets, not the shortened answer."""
    images, probs = queries
    answers = create("mad", context, epsilon=0.5)(probs, images).astype(np.float64)
    distances = np.abs(answers - probs).sum(axis=1)
    rng = np.random.default_rng(2)
    wins = 0
    for image, y, served, dist in zip(images, probs, answers, distances, strict=True):
        g = jacobian(context.proxy, image)
        randoms = []
        while len(randoms) < 5:
            direction = rng.dirichlet(np.ones(K)) - y
            length = np.abs(direction).sum()
            if length >= dist:  # y + dist * direction / length is then on the simplex
                randoms.append(objective(g, y + dist * direction / length, y))
        wins += objective(g, served, y) >= max(randoms) - 1e-9
    assert wins >= 0.9 * N
