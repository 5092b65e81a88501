import numpy as np
import pytest
import torch
from torch import nn

from stealbench.defense import detector as detector_module
from stealbench.defense.detector import (
    OodDetector,
    choose_threshold,
    detection_rates,
    load_detector,
    rates_from_flags,
    save_detector,
    train_ood_detector,
)
from stealbench.io import ArtefactError, save_state_dict
from stealbench.models.training import TrainConfig


def _bright_half(n: int, left: bool, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(n, 28, 28, 1)).astype(np.uint8)
    images[:, :, (0 if left else 14) : (14 if left else 28)] += 150
    return images


class _BrightnessScore(nn.Module):
    """Logits (0, 20 * (mean - 0.5)): P(out) grows with the mean brightness."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # predict_proba needs a device to read

    def forward(self, x):
        score = 20 * (x.mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([torch.zeros_like(score), score], dim=1)


def _flat(values) -> np.ndarray:
    return np.stack([np.full((4, 4, 1), v, np.uint8) for v in values])


@pytest.fixture(scope="module")
def toy_detector():
    torch.manual_seed(0)
    in_images, out_images = _bright_half(200, True, 0), _bright_half(200, False, 1)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=3e-3)
    return train_ood_detector(in_images, out_images, "lenet", cfg, seed=0, val_fraction=0.25)


def test_detector_separates_a_toy_problem(toy_detector):
    rates = detection_rates(toy_detector, _bright_half(100, True, 2), _bright_half(100, False, 3))
    assert rates["tpr_in"] > 0.95 and rates["tnr_out"] > 0.95
    info = toy_detector.metadata()
    assert (info["train_in"], info["val_in"], info["train_out"], info["val_out"]) == (
        150,
        50,
        150,
        50,
    )
    assert info["rule"] == "balanced" and 0.0 < info["threshold"] < 1.0


def test_rates_on_a_hand_made_example():
    assert rates_from_flags([False, False, True, False], [True, False]) == {
        "tpr_in": 0.75,
        "tnr_out": 0.5,
    }
    # Brightness 0.2, 0.4, 0.55 in; 0.45, 0.6, 0.8 out; threshold 0.5 on P(out) = brightness 0.5.
    stub = OodDetector(_BrightnessScore(), threshold=0.5, arch="stub")
    in_images = _flat([51, 102, 140])
    out_images = _flat([115, 153, 204])
    np.testing.assert_array_equal(stub.flags(in_images), [False, False, True])
    rates = detection_rates(stub, in_images, out_images)
    assert rates == {"tpr_in": pytest.approx(2 / 3), "tnr_out": pytest.approx(2 / 3)}


def test_balanced_threshold_on_hand_made_scores():
    # in: 0.1 0.2 0.6; out: 0.4 0.7 0.9. Best balanced accuracy 5/6 at t in [0.2, 0.4)
    # (tpr 2/3, tnr 1) and at t in [0.6, 0.7) (tpr 1, tnr 2/3); the one nearer 0.5 wins.
    t = choose_threshold([0.1, 0.2, 0.6], [0.4, 0.7, 0.9])
    assert t == pytest.approx(0.65)
    assert choose_threshold([0.1, 0.2], [0.8, 0.9]) == pytest.approx(0.5)
    # target-tpr: the smallest threshold accepting 2 of 3 in-distribution scores.
    assert choose_threshold([0.1, 0.2, 0.6], [], "target-tpr", 0.6) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="allowed: balanced, target-tpr"):
        choose_threshold([0.1], [0.9], "youden")


def test_threshold_is_chosen_on_validation_images_only(monkeypatch):
    in_images, out_images = _bright_half(40, True, 4), _bright_half(30, False, 5)
    # Tag each image so the scored ones can be recognised: pixel (0, 0) holds its index.
    in_images[:, 0, 0, 0] = np.arange(40)
    out_images[:, 0, 0, 0] = 100 + np.arange(30)
    seen = {}

    def spy(p_in, p_out, rule, target_tpr):
        seen["sizes"] = (len(p_in), len(p_out))
        return 0.5

    scored = []
    original_p_out = OodDetector.p_out

    def recording_p_out(self, images):
        scored.append(images[:, 0, 0, 0].copy())
        return original_p_out(self, images)

    trained_on = {}
    original_fit = detector_module.fit

    def recording_fit(model, images, *args, **kwargs):
        trained_on["tags"] = set(images[:, 0, 0, 0].tolist())
        return original_fit(model, images, *args, **kwargs)

    monkeypatch.setattr(detector_module, "choose_threshold", spy)
    monkeypatch.setattr(OodDetector, "p_out", recording_p_out)
    monkeypatch.setattr(detector_module, "fit", recording_fit)
    cfg = TrainConfig(epochs=1, batch_size=16)
    det = train_ood_detector(in_images, out_images, "lenet", cfg, seed=1, val_fraction=0.25)
    assert seen["sizes"] == (10, 8) and det.threshold == 0.5
    validation = set(np.concatenate(scored).tolist())
    assert len(validation) == 18 and not validation & trained_on["tags"]
    assert len(trained_on["tags"]) == 30 + 22


def test_save_and_load_round_trip(toy_detector, tmp_path):
    path = tmp_path / "detector.pt"
    save_detector(toy_detector, path)
    loaded = load_detector(path)
    images = _bright_half(20, True, 6)
    assert loaded.threshold == toy_detector.threshold and loaded.arch == "lenet"
    np.testing.assert_array_equal(loaded.p_out(images), toy_detector.p_out(images))
    save_state_dict({"weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ArtefactError, match="not an OOD detector"):
        load_detector(tmp_path / "other.pt")


def test_bad_inputs_fail_clearly():
    cfg = TrainConfig(epochs=1)
    with pytest.raises(ValueError, match="share one shape"):
        train_ood_detector(_flat([1, 2, 3]), _bright_half(3, False, 0), "lenet", cfg, seed=0)
    with pytest.raises(ValueError, match="target_tpr"):
        train_ood_detector(
            _bright_half(4, True, 0), _bright_half(4, False, 0), "lenet", cfg, 0, target_tpr=1.5
        )
    with pytest.raises(ValueError, match="unknown architecture"):
        train_ood_detector(_bright_half(4, True, 0), _bright_half(4, False, 0), "vgg", cfg, 0)
