"""Scoring a surrogate and training it on its transfer set: the numbers against values worked
out by hand, and model selection that never looks at the victim's test labels."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from toys import labelled_pool

from stealbench.attack import surrogates
from stealbench.attack.cache import QueryCache
from stealbench.attack.surrogates import (
    SurrogateSpec,
    VictimTestSet,
    score,
    split_transfer_set,
    train_surrogate,
)
from stealbench.models.training import TrainConfig, predict_proba

# Four 2x2 grey images, image k lit (255, i.e. 1.0) at pixel k only: a linear surrogate
# without bias then answers softmax(column k of its weights) on image k.
ONE_HOT_IMAGES = (np.eye(4) * 255).astype(np.uint8).reshape(4, 2, 2, 1)
# What the surrogate answers on each image (its top-1: 0, 1, 0, 2)
SURROGATE_PROBS = [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.3, 0.6]]
# The victim's posteriors (its top-1: 0, 1, 0, 1); zeros in the first two
VICTIM_PROBS = [[0.8, 0.2, 0.0], [0.1, 0.9, 0.0], [0.5, 0.25, 0.25], [0.25, 0.5, 0.25]]
# The true labels; no test image of class 2
LABELS = [0, 1, 1, 1]


def _known_surrogate() -> nn.Module:
    """A linear model whose softmax on image k is SURROGATE_PROBS[k] by construction: its
    logits there are ln(SURROGATE_PROBS[k]), and softmax(ln q) = q for q summing to 1."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(np.log(SURROGATE_PROBS).T, dtype=torch.float32))
    return model.eval()


def _test_set() -> VictimTestSet:
    return VictimTestSet(ONE_HOT_IMAGES, np.array(LABELS), np.array(VICTIM_PROBS))


def test_the_known_surrogate_answers_what_it_was_built_to():
    np.testing.assert_allclose(
        predict_proba(_known_surrogate(), ONE_HOT_IMAGES), SURROGATE_PROBS, rtol=1e-6
    )


def test_score_against_hand_computed_values():
    metrics = score(_known_surrogate(), _test_set())
    # surrogate 0, 1, 0, 2 vs labels 0, 1, 1, 1: images 0 and 1 right
    assert metrics["test_acc"] == 2 / 4
    # surrogate 0, 1, 0, 2 vs victim 0, 1, 0, 1: the first three agree
    assert metrics["agreement"] == 3 / 4
    # victim 0, 1, 0, 1 vs labels 0, 1, 1, 1: images 0, 1 and 3 right
    assert metrics["victim_acc"] == 3 / 4
    assert metrics["recovery"] == 2 / 3  # (2/4) / (3/4)
    # class 0 (image 0): 1 of 1; class 1 (images 1-3): surrogate 1 of 3, victim 2 of 3
    assert metrics["class_acc"][:2] == [1.0, 1 / 3]
    assert metrics["victim_class_acc"][:2] == [1.0, 2 / 3]
    assert math.isnan(metrics["class_acc"][2]) and math.isnan(metrics["victim_class_acc"][2])
    # KL(victim || surrogate) per image, in nats; the victim's zeros add nothing
    kl = [
        0.8 * math.log(0.8 / 0.7) + 0.2 * math.log(0.2 / 0.2),
        0.1 * math.log(0.1 / 0.2) + 0.9 * math.log(0.9 / 0.5),
        0.5 * math.log(0.5 / 0.6) + 0.25 * math.log(0.25 / 0.3) + 0.25 * math.log(0.25 / 0.1),
        0.25 * math.log(0.25 / 0.1) + 0.5 * math.log(0.5 / 0.3) + 0.25 * math.log(0.25 / 0.6),
    ]
    # the surrogate's posteriors are float32: a few float32 epsilons of slack
    assert metrics["kl_divergence"] == pytest.approx(sum(kl) / 4, abs=1e-6)


@pytest.mark.parametrize(
    "n, fraction, train_size",
    [
        (10, 0.1, 9),  # ceil(1.0) = 1 held out
        (11, 0.1, 9),  # ceil(1.1) = 2: rounded up, not down
        (30, 0.25, 22),  # ceil(7.5) = 8
        (5, 0.01, 4),  # ceil(0.05) = 1: a small fraction still holds one out
    ],
)
def test_transfer_val_holds_out_the_last_queries(n, fraction, train_size):
    train, val = split_transfer_set(n, "transfer-val", fraction)
    assert (train.start, train.stop) == (0, train_size)
    assert (val.start, val.stop) == (train_size, n)


def test_no_selection_trains_on_every_query():
    train, val = split_transfer_set(30, "none", 0.25)
    assert (train.start, train.stop) == (0, 30)
    assert val.stop - val.start == 0


def test_unknown_selection_names_the_allowed_values():
    with pytest.raises(ValueError, match=r"unknown selection 'best'; allowed: none, transfer-val"):
        split_transfer_set(30, "best", 0.1)


class LabelSpy(VictimTestSet):
    """The victim's test split, recording each read of its labels and whether a surrogate
    was training then (``training`` is set by the test)."""

    training = False

    @property
    def labels(self):
        self.reads.append("training" if self.training else "after")
        return self._labels

    @labels.setter
    def labels(self, value):
        self.reads = []
        self._labels = value


BUDGET = 30


def _attack(victim_top1):
    """A transfer set of BUDGET pool images answered by a victim whose top-1 on query i is
    victim_top1[i], and the victim's test split (a spy on its labels)."""
    pool = labelled_pool(n=60, classes=4)
    probs = np.full((BUDGET, 4), 0.1, np.float32)
    probs[np.arange(BUDGET), victim_top1] = 0.7
    cache = QueryCache(sample_ids=np.arange(BUDGET), probs=probs, meta={})
    test_images = pool.images[40:60]
    test_labels = pool.labels[40:60]
    test = LabelSpy(test_images, test_labels, np.eye(4, dtype=np.float32)[test_labels])
    return pool, cache, test


def _spy_on_fit(monkeypatch, test):
    """Record what train_surrogate hands to fit, with the test split's spy armed meanwhile."""
    calls = []
    real_fit = surrogates.fit

    def spying_fit(model, images, targets, val_images, val_labels, *args, **kwargs):
        calls.append({"images": images, "val_images": val_images, "val_labels": val_labels})
        test.training = True
        try:
            return real_fit(model, images, targets, val_images, val_labels, *args, **kwargs)
        finally:
            test.training = False

    monkeypatch.setattr(surrogates, "fit", spying_fit)
    return calls


def test_transfer_val_selects_on_the_last_queries_never_on_test_labels(monkeypatch):
    # the victim disagrees with the pool's labels on every third query, so the held-out
    # slice's labels can only be the victim's answers
    pool_labels = labelled_pool(n=60, classes=4).labels[:BUDGET]
    victim_top1 = np.where(np.arange(BUDGET) % 3 == 0, (pool_labels + 1) % 4, pool_labels)
    pool, cache, test = _attack(victim_top1)
    calls = _spy_on_fit(monkeypatch, test)
    spec = SurrogateSpec(
        "lenet", TrainConfig(epochs=2, batch_size=8), selection="transfer-val", val_fraction=0.25
    )
    model, metrics = train_surrogate(cache, pool, test, "probs", BUDGET, spec, model_seed=0)
    assert "training" not in test.reads  # selecting the epoch never looked at test labels
    assert "after" in test.reads  # scoring did (so the spy sees the reads)
    # ceil(30 x 0.25) = 8 queries held out: the last ones, labelled by the victim's answers
    (call,) = calls
    assert metrics["train_images"] == 22 and len(call["images"]) == 22
    np.testing.assert_array_equal(call["images"], pool.images[:22])
    np.testing.assert_array_equal(call["val_images"], pool.images[22:30])
    np.testing.assert_array_equal(call["val_labels"], victim_top1[22:30])
    # the kept model's accuracy on that slice against the victim's answers
    held_out = predict_proba(model, pool.images[22:30]).argmax(1)
    assert metrics["transfer_val_acc"] == np.mean(held_out == victim_top1[22:30])
    assert 1 <= metrics["best_epoch"] <= metrics["epochs"] == 2


def test_no_selection_trains_on_all_answers_and_keeps_the_last_epoch(monkeypatch):
    pool, cache, test = _attack(labelled_pool(n=60, classes=4).labels[:BUDGET])
    calls = _spy_on_fit(monkeypatch, test)
    spec = SurrogateSpec("lenet", TrainConfig(epochs=2, batch_size=8), selection="none")
    _, metrics = train_surrogate(cache, pool, test, "probs", BUDGET, spec, model_seed=0)
    (call,) = calls
    assert metrics["train_images"] == BUDGET == len(call["images"])
    np.testing.assert_array_equal(call["images"], pool.images[:BUDGET])
    assert call["val_images"] is None
    assert math.isnan(metrics["transfer_val_acc"])
    assert metrics["best_epoch"] == metrics["epochs"] == 2
    assert "training" not in test.reads
