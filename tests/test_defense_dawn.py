"""DAWN: keyed selection, wrong labels, served vectors and ownership verification."""

import hashlib
import hmac
import math
from fractions import Fraction

import numpy as np
import pytest

from stealbench.defense import DEFENSES, AuditContext, Defense, DefenseContext, create
from stealbench.defense.dawn import (
    false_claim_bound,
    min_watermarks,
    verify,
    watermark_labels,
    watermark_mask,
)
from stealbench.models.architectures import create_model
from stealbench.models.training import TrainConfig, fit, predict_proba

KEY = b"owner-secret"


def _random_images(n: int, seed: int, size: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 1), dtype=np.uint8)


def _probs(n: int, k: int, seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(0, 2, size=(n, k))
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_selection_and_labels_follow_the_keyed_hash_of_the_pixels():
    """Bytes 0..7 of HMAC-SHA256(key + b"dawn", pixels) pick; bytes 8..15 give the offset."""
    images, probs, share = _random_images(300, 0), _probs(300, 7, 1), 0.3
    digests = [hmac.new(KEY + b"dawn", im.tobytes(), hashlib.sha256).digest() for im in images]
    picked = [int.from_bytes(d[:8], "big") < share * 2**64 for d in digests]
    offsets = [1 + int.from_bytes(d[8:16], "big") % 6 for d in digests]
    np.testing.assert_array_equal(watermark_mask(images, KEY, share), picked)
    np.testing.assert_array_equal(
        watermark_labels(images, probs, KEY), (probs.argmax(axis=1) + offsets) % 7
    )


def test_selection_depends_on_the_key_and_the_query_alone():
    images = _random_images(2000, 2)
    mask = watermark_mask(images, KEY, 0.5)
    order = np.random.default_rng(3).permutation(len(images))
    np.testing.assert_array_equal(watermark_mask(images[order], KEY, 0.5), mask[order])
    alone = np.concatenate([watermark_mask(images[i : i + 1], KEY, 0.5) for i in range(50)])
    np.testing.assert_array_equal(alone, mask[:50])
    other = watermark_mask(images, b"another-owner", 0.5)
    assert 0.4 < np.mean(other != mask) < 0.6  # independent selections disagree half the time


def test_the_watermarked_share_is_r():
    images = _random_images(20000, 4)
    for share in (0.005, 0.05, 0.3):
        sd = math.sqrt(share * (1 - share) / len(images))
        assert abs(watermark_mask(images, KEY, share).mean() - share) < 4 * sd


def test_wrong_labels_avoid_the_top1_and_spread_over_the_other_classes():
    k, n = 5, 20000
    images, probs = _random_images(n, 5), _probs(n, k, 6)
    offsets = (watermark_labels(images, probs, KEY) - probs.argmax(axis=1)) % k
    counts = np.bincount(offsets, minlength=k)
    assert counts[0] == 0
    expected, sd = n / (k - 1), math.sqrt(n * (1 / (k - 1)) * (1 - 1 / (k - 1)))
    assert np.all(np.abs(counts[1:] - expected) < 4 * sd)


def test_served_vectors_swap_the_top1_with_the_wrong_label_on_watermarked_queries_only():
    k, share = 6, 0.3
    images, probs = _random_images(500, 7), _probs(500, k, 8)
    answers = create("dawn", DefenseContext(key=KEY), share=share)(probs, images)
    mask = watermark_mask(images, KEY, share)
    labels = watermark_labels(images, probs, KEY)
    assert 100 < mask.sum() < 200
    np.testing.assert_array_equal(answers[~mask], probs[~mask].astype(np.float32))
    np.testing.assert_array_equal(answers[mask].argmax(axis=1), labels[mask])
    np.testing.assert_allclose(np.sort(answers, axis=1), np.sort(probs, axis=1), rtol=1e-6)
    untouched = np.ones_like(probs, dtype=bool)
    rows = np.flatnonzero(mask)
    untouched[rows, probs[rows].argmax(axis=1)] = False
    untouched[rows, labels[rows]] = False
    np.testing.assert_allclose(answers[untouched], probs[untouched], rtol=1e-6)


def _quadrant_task(n: int, seed: int, k: int = 4):
    """Class c brightens quadrant c of noisy 8x8 images (noise makes each image unique)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    images = rng.integers(0, 200, size=(n, 8, 8, 1)).astype(np.uint8)
    for c in range(k):
        rows, cols = divmod(c, 2)
        images[labels == c, 4 * rows : 4 * rows + 4, 4 * cols : 4 * cols + 4] += 55
    probs = np.full((n, k), 0.1)
    probs[np.arange(n), labels] = 0.7
    return images, labels, probs


@pytest.fixture(scope="module")
def suspects():
    """The quadrant task served through DAWN, a model trained on those answers and an
    independent one trained on the true labels (no answer seen)."""
    k, share = 4, 0.25
    images, labels, probs = _quadrant_task(96, seed=0, k=k)
    dawn = create("dawn", DefenseContext(key=KEY), share=share)
    answers = dawn(probs, images)

    def train(targets, epochs):
        model = create_model("lenet", k, seed=1)
        fit(model, images, targets, None, None, TrainConfig(epochs=epochs, batch_size=16,
            lr=3e-3), seed=0)  # fmt: skip
        return model.eval()

    return {
        "dawn": dawn,
        "images": images,
        "probs": probs,
        "stolen": train(answers, epochs=20),
        "honest": train(np.eye(k)[labels], epochs=8),
    }


def test_a_model_trained_on_the_answers_is_caught_and_an_independent_one_is_not(suspects):
    images, probs, k = suspects["images"], suspects["probs"], 4
    mask = watermark_mask(images, KEY, suspects["dawn"].share)
    wrong = watermark_labels(images, probs, KEY)[mask]
    assert mask.sum() >= 10

    def predictions(model):
        return predict_proba(model, images[mask]).argmax(axis=1)

    stolen = verify(predictions(suspects["stolen"]), wrong, num_classes=k)
    assert stolen["stolen"] and stolen["watermarks"] == mask.sum()
    assert stolen["p_value"] < 1e-6
    honest = verify(predictions(suspects["honest"]), wrong, num_classes=k)
    assert not honest["stolen"] and honest["p_value"] > 0.01


def test_the_audit_hook_catches_the_stolen_model_and_clears_the_independent_one(suspects):
    """The owner keeps only the queries and the victim's posteriors; the hook recomputes the
    watermarks from its key and gives the verification's verdict."""
    dawn, images, probs = suspects["dawn"], suspects["images"], suspects["probs"]
    kept = AuditContext(images, probs, {"threshold": 0.5})
    mask = watermark_mask(images, KEY, dawn.share)
    wrong = watermark_labels(images, probs, KEY)[mask]

    caught = dawn.audit(suspects["stolen"], kept)
    expected = verify(
        predict_proba(suspects["stolen"], images[mask]).argmax(1), wrong, num_classes=4
    )
    assert caught == {
        "watermarks": expected["watermarks"],
        "reproduced": expected["reproduced"],
        "acc": expected["watermark_acc"],
        "p_value": expected["p_value"],
        "claim_bound": false_claim_bound(expected["watermarks"], 0.5, num_classes=4),
        "caught": True,
    }
    assert caught["watermarks"] == mask.sum() and caught["p_value"] < 1e-6
    cleared = dawn.audit(suspects["honest"], kept)
    assert cleared["caught"] is False and cleared["p_value"] > 0.01
    assert cleared["watermarks"] == caught["watermarks"]

    # The threshold comes from the settings (default 0.5): asking for one more reproduced
    # watermark than the model has, the same evidence no longer convicts.
    strict = AuditContext(
        images, probs, {"threshold": (caught["reproduced"] + 1) / caught["watermarks"]}
    )
    assert dawn.audit(suspects["stolen"], strict)["caught"] is False
    assert dawn.audit(suspects["stolen"], AuditContext(images, probs)) == caught
    # Another owner's key marks other queries: it cannot claim the model.
    other = create("dawn", DefenseContext(key=b"another-owner"), share=dawn.share)
    assert other.audit(suspects["stolen"], kept)["caught"] is False


def test_only_dawn_implements_the_audit_hook(suspects):
    audited = {name for name, cls in DEFENSES.items() if cls.audit is not Defense.audit}
    assert audited == {"dawn"}
    kept = AuditContext(suspects["images"], suspects["probs"])
    assert create("top-k", DefenseContext(), k=1).audit(suspects["stolen"], kept) is None


def test_verify_counts_and_its_binomial_tail():
    labels = np.array([1, 2, 3, 0, 1, 2, 3, 0, 1, 2])
    predictions = labels.copy()
    predictions[:4] = (labels[:4] + 1) % 4  # 6 of 10 reproduced
    result = verify(predictions, labels, num_classes=4)
    tail = sum(math.comb(10, i) * (1 / 3) ** i * (2 / 3) ** (10 - i) for i in range(6, 11))
    assert result["watermarks"] == 10 and result["reproduced"] == 6
    assert result["watermark_acc"] == pytest.approx(0.6)
    assert result["stolen"] and result["p_value"] == pytest.approx(tail, rel=1e-9)
    assert not verify(predictions, labels, threshold=0.7, num_classes=4)["stolen"]
    empty = verify(np.array([], int), np.array([], int), num_classes=4)
    assert empty["watermarks"] == 0 and not empty["stolen"] and empty["p_value"] == 1.0


def _exact_bound(n: int, threshold: float = 0.5, k: int = 10) -> Fraction:
    """By hand, in exact fractions: P[Binomial(n, 1/(k-1)) >= ceil(threshold n)]."""
    p = Fraction(1, k - 1)
    least = math.ceil(Fraction(threshold) * n)
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(least, n + 1))


def test_false_claim_bound_is_the_binomial_tail_at_the_thresholds_share():
    for n in (1, 10, 50, 89, 90):
        assert false_claim_bound(n, num_classes=10) == pytest.approx(
            float(_exact_bound(n)), rel=1e-9
        )
    assert false_claim_bound(0, num_classes=10) == 1.0
    # verify reports the same bound for its count, whatever was reproduced
    labels = np.arange(20) % 10
    assert verify(labels, labels, num_classes=10)["claim_bound"] == false_claim_bound(
        20, num_classes=10
    )


def test_min_watermarks_for_the_papers_bound_matches_a_hand_computation():
    target = Fraction(1, 2**64)
    # By hand: 88 watermarks (44 hits needed) fall short, 89 (45) reach 2^-64, 90 (still 45)
    # falls short again, and 91 on reach it.
    reached = {n: _exact_bound(n) <= target for n in range(80, 200)}
    assert [n for n in range(80, 200) if not reached[n]][-1] == 90
    assert not reached[88] and reached[89] and not reached[90] and reached[91]
    assert min_watermarks(2.0**-64, 0.5, num_classes=10, every_larger=False) == 89
    assert min_watermarks(2.0**-64, 0.5, num_classes=10) == 91
    # A looser target needs fewer; an unreachable threshold (at chance, 1/9) is refused.
    assert min_watermarks(1e-3, 0.5, num_classes=10) < 89
    with pytest.raises(ValueError, match="no count of watermarks"):
        min_watermarks(2.0**-64, 0.1, num_classes=10, limit=500)


@pytest.mark.parametrize("share", [0.0, 1.0, -0.2, 1.5, float("nan"), "a lot"])
def test_a_share_outside_the_open_unit_interval_is_refused_by_name(share):
    with pytest.raises(ValueError, match="share"):
        create("dawn", DefenseContext(key=KEY), share=share)
    with pytest.raises(ValueError, match="share"):
        watermark_mask(_random_images(2, 0), KEY, share)
