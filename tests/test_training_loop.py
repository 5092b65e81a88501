"""fit's batch production (models/loader.py) and step (precision, channels-last): on a CPU at
fp32 the arithmetic is the loop's before background loading, bit for bit."""

import threading

import numpy as np
import pytest
import torch
import yaml
from training_scenarios import SCENARIOS, lazy_noise, run, toy

from stealbench import config
from stealbench.io import state_dict_checksum
from stealbench.models import loader as loader_module
from stealbench.models import training
from stealbench.models.architectures import create_model
from stealbench.models.loader import BatchLoader, OutlierStream
from stealbench.models.training import TrainConfig, fit, soft_cross_entropy, to_tensor

# Weights after each scenario of tests/training_scenarios.py, one torch thread (conftest),
# computed with the package of commit 0f45aa1, the loop before background loading, mixed
# precision and channels-last (PYTHONPATH=<that checkout>/src python
# tests/training_scenarios.py 1). Another CPU may round differently (README, Reproducibility);
# test_fit_equals_a_bare_loop checks the same property without recorded numbers.
BEFORE = {
    "lenet-adam-val": "bdecfbfd0ec9e1a9bd25601f74ffd35ce631b1db863200f0ec9b088538c5bd79",
    "resnet8-sgd-steps": "3fe83cd37aa05619e3a97bd9cdf06c5c52f77a9a70fc66e369f91bdc9c770477",
    "lenet-lazy-store": "1b9b09f26e9123232fab3d9110b2a063d5ac6836b100d4f5d6abda057f199136",
    "lenet-outliers": "5787132d644d86089c173868f7901a3698c1f0342b5feba72439a783cade2288",
    "lenet-lazy-outliers": "f3e784742556e20ad36cbe6407d1ec139fd0a0fdee64eb35e8074820825dcedb",
}


@pytest.mark.parametrize("background", [None, True], ids=["cpu-default", "background-thread"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fp32_on_cpu_gives_the_weights_of_the_loop_before(
    scenario, background, tmp_path_factory, monkeypatch
):
    """The default (synchronous on a CPU) and the background producer a GPU uses: both the
    weights the loop had before batches were produced by the loader, including the lazy
    store's block order and the outliers' order."""
    monkeypatch.setattr(loader_module, "BACKGROUND", background)
    model, _ = run(scenario, tmp_path_factory.getbasetemp())
    assert state_dict_checksum(model.state_dict()) == BEFORE[scenario]


def bare_fit(model, images, targets, cfg, seed, outliers=None, weight=1.0):
    """The loop as it was, in a few lines: a seeded permutation (or the lazy store's block
    order) per epoch, each batch converted by to_tensor, soft cross-entropy, the optimiser;
    with outliers, the next batch_size of a seeded order of them, reshuffled at each pass, in
    the same forward pass."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = training.Optimizer(model.parameters(), cfg)
    targets = torch.as_tensor(targets, dtype=torch.float32)
    rng, pending = np.random.default_rng([seed, 0x0E]), []
    model.train()
    for _ in range(cfg.epochs):
        if hasattr(images, "epoch_order"):
            order = torch.from_numpy(images.epoch_order(generator))
        else:
            order = torch.randperm(len(images), generator=generator)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            x = to_tensor(images[idx.numpy()])
            if outliers is None:
                loss = soft_cross_entropy(model(x), targets[idx])
            else:
                while len(pending) < cfg.batch_size:
                    pending += rng.permutation(len(outliers)).tolist()
                take, pending = pending[: cfg.batch_size], pending[cfg.batch_size :]
                logits = model(torch.cat([x, to_tensor(outliers[np.array(take)])]))
                loss = soft_cross_entropy(logits[: len(idx)], targets[idx])
                loss = loss + weight * training.uniform_cross_entropy(logits[len(idx) :])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model


@pytest.mark.parametrize("data", ["array", "lazy-store", "outliers"])
@pytest.mark.parametrize("background", [None, True], ids=["cpu-default", "background-thread"])
def test_fit_equals_a_bare_loop(data, background, tmp_path, monkeypatch):
    monkeypatch.setattr(loader_module, "BACKGROUND", background)
    x, y = toy(100)
    targets = np.eye(2, dtype=np.float32)[y]
    outliers, weight = (toy(30, seed=3)[0], 0.7) if data == "outliers" else (None, 1.0)
    if data == "lazy-store":
        x = lazy_noise(tmp_path).images
        targets = np.random.default_rng(0).dirichlet(np.ones(2), len(x)).astype(np.float32)
    cfg = TrainConfig(epochs=2, batch_size=24, lr=3e-3)
    ours = create_model("lenet", 2, seed=4)
    fit(ours, x, targets, None, None, cfg, 11, outliers=outliers, outlier_weight=weight)
    bare = bare_fit(create_model("lenet", 2, seed=4), x, targets, cfg, 11, outliers, weight)
    for (name, a), b in zip(ours.state_dict().items(), bare.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# ------------------------------------------------------------------ the loader


def _loader(images, batch_size=7, outliers=None, drawn=0, **options):
    targets = torch.arange(len(images) * 2, dtype=torch.float32).view(-1, 2)
    stream = None if outliers is None else OutlierStream(len(outliers), batch_size, 5, drawn)
    return BatchLoader(images, targets, batch_size, "cpu", outliers, stream, **options)


@pytest.mark.parametrize("background", [False, True])
def test_batches_resume_at_a_step_as_an_uninterrupted_epoch_goes_on(background):
    """A resumed job asks for the epoch from step ``start`` (and the outlier stream from the
    outliers drawn so far): the same batches as the rest of an uninterrupted epoch."""
    images, outliers = toy(50)[0], toy(11, seed=1)[0]
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    full = list(_loader(images, outliers=outliers, background=background).batches(order))
    assert len(full) == 8 and [b.step for b in full] == list(range(8))
    assert torch.equal(torch.cat([b.idx for b in full]), order)
    assert full[-1].images.shape == (1, 1, 28, 28)  # the short last batch
    resumed = _loader(images, outliers=outliers, drawn=full[2].outliers_drawn)
    rest = list(resumed.batches(order, start=3))
    assert [b.step for b in rest] == list(range(3, 8))
    for a, b in zip(full[3:], rest, strict=True):
        for field in ("idx", "images", "targets", "outliers"):
            assert torch.equal(getattr(a, field), getattr(b, field)), (a.step, field)
        assert a.outliers_drawn == b.outliers_drawn
    assert list(_loader(images).batches(order, start=8)) == []
    with pytest.raises(ValueError, match="start step 9 outside the epoch's 8 steps"):
        next(_loader(images).batches(order, start=9))


def test_a_batch_is_to_tensor_of_its_rows_with_its_targets():
    images = toy(20)[0]
    order = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    for batch in _loader(images, batch_size=6).batches(order):
        expected = to_tensor(images[batch.idx.numpy()])
        assert torch.equal(batch.images, expected) and batch.images.stride() == expected.stride()
        assert torch.equal(batch.targets[:, 0], batch.idx.float() * 2)


def test_outlier_stream_cycles_reshuffled_passes():
    stream = OutlierStream(5, 3, seed=0)
    drawn = np.concatenate([stream.next() for _ in range(10)])
    assert stream.drawn == 30
    for start in range(0, 30, 5):  # every pass is a permutation of the 5 outliers
        assert sorted(drawn[start : start + 5]) == list(range(5))
    assert len({tuple(drawn[s : s + 5]) for s in range(0, 30, 5)}) > 1  # reshuffled
    with pytest.raises(ValueError, match="at least one outlier"):
        OutlierStream(0, 3, seed=0)


def _threads():
    return [t for t in threading.enumerate() if t.name == "stealbench-batches"]


class _Failing:
    """Images whose fourth batch cannot be read (a corrupt row group)."""

    def __init__(self, images):
        self.images, self.calls = images, 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, idx):
        self.calls += 1
        if self.calls == 4:
            raise OSError("corrupt row group")
        return self.images[idx]


def test_the_background_thread_hands_over_its_error_and_ends():
    images = _Failing(toy(50)[0])
    order = torch.arange(50)
    seen = []
    with pytest.raises(OSError, match="corrupt row group"):
        for batch in _loader(images, background=True).batches(order):
            seen.append(batch.step)
    assert seen == [0, 1, 2] and not _threads()


def test_the_background_thread_ends_when_the_step_loop_stops_early():
    batches = _loader(toy(50)[0], batch_size=2, background=True, prefetch=2).batches(
        torch.arange(50)
    )
    next(batches)
    assert _threads()  # producing ahead, blocked on the full queue
    batches.close()  # what a break or an exception in the step loop does
    assert not _threads()


# ------------------------------------------------------------------ precision, channels-last


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_changes_the_arithmetic(precision):
    x, y = toy(260)
    targets = np.eye(2, dtype=np.float32)[y]
    weights = {}
    for p in ("fp32", precision):
        model = create_model("lenet", 2, seed=0)
        cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3, precision=p)
        result = fit(model, x[:200], targets[:200], x[200:], y[200:], cfg, 1)
        assert result.best_val_acc > 0.9, p
        assert all(v.dtype == torch.float32 for v in model.state_dict().values())  # fp32 master
        weights[p] = state_dict_checksum(model.state_dict())
    assert weights[precision] != weights["fp32"]  # autocast ran


def test_fp16_skips_a_step_whose_gradients_overflow():
    """The GradScaler is in the loop: a non-finite gradient skips the update (and halves the
    scale) where fp32 would write NaN into the weights."""
    x = to_tensor(toy(8)[0])
    bad = torch.full((8, 2), float("nan"))
    for precision in ("fp32", "fp16"):
        model = create_model("lenet", 2, seed=0)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        cfg = TrainConfig(precision=precision)
        step = training.Step(model, training.make_optimizer(model, cfg), cfg, torch.device("cpu"))
        batch = loader_module.Batch(0, torch.arange(8), x, bad, None, 0)
        step(batch)
        finite = all(torch.isfinite(v).all() for v in model.state_dict().values())
        if precision == "fp32":
            assert step.scaler is None and not finite
        else:
            unchanged = all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
            assert finite and unchanged and step.scaler.get_scale() == 2.0**15


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("precision", "fp8", "unknown precision 'fp8'; allowed: fp32, bf16, fp16"),
        ("channels_last", "yes", "unknown channels_last 'yes'; allowed: auto, true, false"),
    ],
)
def test_unknown_options_are_refused_with_the_allowed_values(field, value, message):
    x, y = toy(16)
    cfg = TrainConfig(epochs=1, **{field: value})
    with pytest.raises(ValueError, match=message):
        fit(create_model("lenet", 2), x, np.eye(2, dtype=np.float32)[y], None, None, cfg, 0)


def test_channels_last_auto_is_off_on_a_cpu_and_for_models_without_convolutions():
    lenet, cpu = create_model("lenet", 2), torch.device("cpu")
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 2))
    assert not training.uses_channels_last(lenet, TrainConfig(), cpu)
    assert training.uses_channels_last(lenet, TrainConfig(channels_last=True), cpu)
    assert not training.uses_channels_last(mlp, TrainConfig(channels_last=True), cpu)
    assert training.uses_channels_last(lenet, TrainConfig(), torch.device("cuda"))
    assert not training.uses_channels_last(lenet, TrainConfig(channels_last=False), cpu)


def test_channels_last_trains_in_that_layout_and_hands_the_model_back_contiguous():
    x, y = toy(64, shape=(32, 32, 3))
    model = create_model("cnn5", 2, seed=0)
    seen = []
    conv = model.net[0]
    conv.register_forward_pre_hook(
        lambda module, args: seen.append(
            module.weight.is_contiguous(memory_format=torch.channels_last)
            and args[0].is_contiguous(memory_format=torch.channels_last)
        )
    )
    cfg = TrainConfig(epochs=1, batch_size=16, channels_last=True)
    fit(model, x, np.eye(2, dtype=np.float32)[y], None, None, cfg, 0)
    assert seen and all(seen)
    assert all(p.is_contiguous() for p in model.parameters())


def test_training_options_come_from_the_config_and_default_to_todays_loop(root):
    """Left out, precision and channels_last are absent from the validated training blocks (so
    existing jobs' parameters, and results, are unchanged) and TrainConfig's defaults apply;
    given, they reach TrainConfig."""
    raw = yaml.safe_load((root / "configs" / "smoke.yaml").read_text())
    plain = config.validate(raw)
    blocks = [plain["victim_training"], plain["surrogates"]["training"]]
    blocks += [v["training"] for v in plain["victims"].values() if "training" in v]
    for block in blocks:
        assert "precision" not in block and "channels_last" not in block
        cfg = TrainConfig.from_dict(block)
        assert (cfg.precision, cfg.channels_last) == ("fp32", "auto")
    raw["surrogates"].setdefault("training", {}).update(precision="bf16", channels_last=False)
    cfg = TrainConfig.from_dict(config.validate(raw)["surrogates"]["training"])
    assert (cfg.precision, cfg.channels_last) == ("bf16", False)
