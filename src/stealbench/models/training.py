"""Short, readable training loops on in-memory tensors (pytorch/examples style).

Images stay uint8 in memory and are converted per batch, so a transfer set costs 1 byte per
pixel. Batches are drawn with a seeded generator: the same seed gives the same model on CPU.
``images`` may also be a lazy :class:`stealbench.datasets.ImageStore` (anything indexable by
an integer array that returns uint8 (k, H, W, C)); :func:`fit` then follows its block order.
:class:`~stealbench.models.loader.BatchLoader` produces the batches (ahead of the step, in a
background thread, on a GPU); :class:`Step` runs one, at ``TrainConfig.precision`` and in the
channels-last layout where ``TrainConfig.channels_last`` asks for it. On a CPU at fp32 the
arithmetic is that of the loop before either existed, bit for bit (tests/test_training_loop.py).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.adam import adam
from torch.optim.sgd import sgd

from ..metrics import accuracy
from . import checkpoint as ckpt
from .checkpoint import Checkpointer
from .loader import BatchLoader, OutlierStream
from .schedule import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    best_epoch: int
    best_val_acc: float
    epochs: int
    images_seen: int
    seconds: float
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def to_tensor(images: np.ndarray, device=None) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1], on ``device`` (default: CPU).

    The bytes travel to the device first and are converted there: a quarter of the data to
    copy to a GPU, and no float conversion on the host's cores."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if device is not None:
        x = x.to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a target distribution (Knockoff nets' training loss)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


class Optimizer:
    """Adam, or SGD with momentum, through torch.optim's functional kernels.

    The arithmetic is torch.optim.Adam's and torch.optim.SGD's (``torch.optim.adam.adam`` and
    ``torch.optim.sgd.sgd``, the same defaults for fused and foreach kernels; a test checks
    the weights are bit-identical). What it leaves out is their ``step`` wrapper, whose first
    call imports ``torch._dynamo``: about 1.5 s in every training job, for a graph break that
    only matters under ``torch.compile``, which stealbench does not use. ``param_groups``
    holds the one group's hyper-parameters, as torch's do (the learning-rate schedule writes
    its ``lr``).
    """

    def __init__(self, params, cfg: TrainConfig):
        if cfg.optimizer not in ("adam", "sgd"):
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}; allowed: adam, sgd")
        self.params = [p for p in params if p.requires_grad]
        self.kind = cfg.optimizer
        group = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
        if self.kind == "sgd":
            group["momentum"] = cfg.momentum
            self.buffers: list[torch.Tensor | None] = [None] * len(self.params)
        else:
            group.update(betas=(0.9, 0.999), eps=1e-8)
            self.exp_avgs = [torch.zeros_like(p) for p in self.params]
            self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]
            self.steps = [torch.tensor(0.0) for _ in self.params]
        self.param_groups = [group]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        if self.kind == "sgd":
            buffers = [self.buffers[i] for i in live]
            sgd(
                params,
                grads,
                buffers,
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                lr=group["lr"],
                dampening=0.0,
                nesterov=False,
                maximize=False,
            )
            for i, buffer in zip(live, buffers, strict=True):
                self.buffers[i] = buffer
            return
        adam(
            params,
            grads,
            [self.exp_avgs[i] for i in live],
            [self.exp_avg_sqs[i] for i in live],
            [],
            [self.steps[i] for i in live],
            amsgrad=False,
            beta1=group["betas"][0],
            beta2=group["betas"][1],
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )

    def state_dict(self) -> dict:
        """The state a resumed run needs (tensors, lists, primitives: loadable with
        ``torch.load(weights_only=True)``): the group's hyper-parameters (its scheduled
        ``lr``) and Adam's moments and step counts, or SGD's momentum buffers."""
        state = {"kind": self.kind, "param_groups": copy.deepcopy(self.param_groups)}
        if self.kind == "sgd":
            state["buffers"] = [None if b is None else b.detach().cpu() for b in self.buffers]
        else:
            state["exp_avgs"] = [t.detach().cpu() for t in self.exp_avgs]
            state["exp_avg_sqs"] = [t.detach().cpu() for t in self.exp_avg_sqs]
            state["steps"] = [t.detach().cpu() for t in self.steps]
        return state

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        if state["kind"] != self.kind:
            raise ValueError(f"optimizer state of {state['kind']!r}, expected {self.kind!r}")
        self.param_groups[0].update(state["param_groups"][0])
        if self.kind == "sgd":
            # empty_like keeps each parameter's memory format, as sgd's clone of its grad does
            self.buffers = [
                None if b is None else torch.empty_like(p).copy_(b)
                for p, b in zip(self.params, state["buffers"], strict=True)
            ]
            return
        for name in ("exp_avgs", "exp_avg_sqs", "steps"):
            for mine, saved in zip(getattr(self, name), state[name], strict=True):
                mine.copy_(saved)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> Optimizer:
    return Optimizer(model.parameters(), cfg)


def schedule_lr(optimizer: Optimizer, cfg: TrainConfig, epochs_done: int) -> None:
    """The step schedule: after ``epochs_done`` epochs the rate is lr x lr_gamma^(epochs_done
    // lr_step), as torch's StepLR stepped once per epoch; a constant rate without lr_step."""
    if cfg.lr_step:
        optimizer.param_groups[0]["lr"] = cfg.lr * cfg.lr_gamma ** (epochs_done // cfg.lr_step)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_proba(
    model: nn.Module, images: np.ndarray, batch_size: int = 1000, pad: bool = False
) -> np.ndarray:
    """Posterior probabilities (float32) for uint8 images, in batches.

    With ``pad``, every batch holds exactly ``batch_size`` rows (the last one padded with
    zeros), in the contiguous (N, C, H, W) layout: a CPU's kernels round differently with a
    batch's size (batches under 16 rows, or of 333, differ from batches of 1000 in the last
    bit of a posterior) and with its memory layout (the permuted view of NHWC bytes and the
    same values in NCHW order differ too), so equal shapes and layouts make each row's result
    a function of that row alone, however the images were cut into calls and whoever sent
    them (a client sends contiguous NCHW floats).
    """
    model.eval()
    device = model_device(model)
    out = []
    for i in range(0, len(images), batch_size):
        batch = np.asarray(images[i : i + batch_size])
        rows = len(batch)
        if pad and rows < batch_size:
            padding = np.zeros((batch_size - rows, *batch.shape[1:]), batch.dtype)
            batch = np.concatenate([batch, padding])
        x = to_tensor(batch, device)
        if pad:  # NCHW strides, as a client's tensor has: to_tensor's permuted view rounds
            # otherwise (for one channel it counts as contiguous, so .contiguous() keeps it)
            x = x.clone(memory_format=torch.contiguous_format)
        out.append(F.softmax(model(x), dim=1)[:rows].cpu())
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, 0), np.float32)


def fit(
    model: nn.Module,
    images: np.ndarray,
    targets: np.ndarray,
    val_images: np.ndarray | None,
    val_labels: np.ndarray | None,
    cfg: TrainConfig,
    seed: int,
    desc: str = "train",
    outliers: np.ndarray | None = None,
    outlier_weight: float = 1.0,
    checkpoint: Checkpointer | None = None,
) -> FitResult:
    """Train ``model`` on (images, soft targets) on a fixed schedule.

    With validation data, keep the epoch with the best ``cfg.val_metric`` (accuracy unless
    set; ``val_labels`` are whatever the trainer may know: true labels for the victim, the
    victim's answers on a held-out slice of the transfer set for a surrogate that asks for
    selection); without (None or empty), keep the final model. With ``cfg.patience`` and
    validation data, stop early: after ``patience`` epochs in a row without a strict
    improvement, restoring the first best epoch. ``FitResult.best_val_acc`` and each
    history row's ``val_acc`` hold the chosen metric's value.

    With ``outliers`` (uint8 images), Outlier Exposure (Hendrycks et al. 2019), as Adaptive
    Misinformation's authors train their defended victim (sanjaykariyappa/
    adaptive_misinformation, ``--oe_lamb 1``): each step pairs the batch of training images
    with the next ``batch_size`` outliers and minimises the batch's loss plus
    ``outlier_weight`` x the outliers' mean cross-entropy to the uniform distribution
    (:func:`uniform_cross_entropy`). Like the authors' loop, the two go through one forward
    pass when they have one shape (it matters to batch-norm statistics) and an epoch is one
    pass over the training images. Departures from their code: the outliers come in a seeded
    random order, reshuffled at each pass over them and cycled across epochs (theirs: a fixed
    order restarted every epoch); the epoch is selected on validation accuracy (theirs: on
    test accuracy). The outliers' order has a generator of its own, so the training images
    are drawn exactly as without outliers; without them the arithmetic is unchanged.

    With ``checkpoint`` (a :class:`~stealbench.models.checkpoint.Checkpointer`), the whole
    state is saved at step and epoch boundaries when the checkpointer says one is due, and a
    run that finds a checkpoint of the same training (config, seed, data, initial weights)
    resumes from it, to the same final weights bit for bit on CPU; a checkpoint of another
    training is refused. fit never deletes it: the job does, once its outputs are written.
    """
    check_options(cfg)
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    device = model_device(model)
    channels_last = uses_channels_last(model, cfg, device)
    if channels_last:  # before the optimiser, whose state takes the weights' layout
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    run_step = Step(model, optimizer, cfg, device, outlier_weight)
    validate = val_images is not None and len(val_images) > 0
    targets_t = torch.as_tensor(targets, dtype=torch.float32)
    n, epochs = len(images), cfg.epochs_for(len(images))
    best_state, best_acc, best_epoch, history = None, -1.0, 0, []
    stale = 0  # epochs since the last strict improvement (early stopping)
    start = time.perf_counter()
    saved = resumed = None  # a checkpoint's state; then the epoch it resumes mid-way
    if checkpoint is not None:
        key = ckpt.fingerprint(
            model, n, targets, val_labels, cfg, seed, desc, outliers, outlier_weight
        )
        saved = checkpoint.load(key)

        def save(epoch, step, order, total):
            loop = dict(epoch=epoch, step=step, order=order, total=total, history=history)
            loop |= dict(best_state=best_state, best_acc=best_acc, best_epoch=best_epoch)
            loop |= dict(stale=stale, outliers_drawn=drawn)
            checkpoint.save(ckpt.capture(model, optimizer, run_step, generator, key, start, loop))

    if saved is not None:
        ckpt.restore(saved, model, optimizer, run_step, generator)
        best_state, best_acc, best_epoch, stale, history = (
            saved[k] for k in ("best_state", "best_acc", "best_epoch", "stale", "history")
        )
        start -= saved["seconds"]
        resumed = saved["epoch"] if saved["order"] is not None else None
    drawn = saved["outliers_drawn"] if saved else 0  # outliers handed out so far
    loader = BatchLoader(
        images,
        targets_t,
        cfg.batch_size,
        device,
        outliers,
        None if outliers is None else OutlierStream(len(outliers), cfg.batch_size, seed, drawn),
    )
    progress = _progress(epochs, desc)
    for epoch in range(saved["epoch"] if saved else 1, epochs + 1):
        model.train()
        first = 0
        if epoch == resumed:  # mid-epoch: its order and loss so far
            order, first = saved["order"], saved["step"]
            total = saved["total"].to(device)
        # A lazy ImageStore gives a block-shuffled order that reads each row group ~once.
        elif hasattr(images, "epoch_order"):
            order = torch.from_numpy(images.epoch_order(generator))
        else:
            order = torch.randperm(n, generator=generator)
        # The epoch's loss is summed on the device and read once per epoch: reading it every
        # step would make a GPU wait for each step to finish.
        if epoch != resumed:
            total = torch.zeros((), device=device)
        for batch in loader.batches(order, first):
            total += run_step(batch).detach() * len(batch.idx)
            drawn = batch.outliers_drawn
            if checkpoint is not None and checkpoint.due():
                save(epoch, batch.step + 1, order, total)
        total = float(total)
        if not math.isfinite(total):
            raise FloatingPointError(
                f"{desc}: the loss became {total} in epoch {epoch}; lower the learning rate "
                f"(lr={cfg.lr}) or check the inputs for NaN"
            )
        schedule_lr(optimizer, cfg, epoch)
        val_acc = (
            _score(cfg.val_metric, predict_proba(model, val_images).argmax(1), val_labels)
            if validate
            else float("nan")
        )
        history.append({"epoch": epoch, "loss": total / n, "val_acc": val_acc})
        log.info("%s epoch %d/%d loss %.4f val_acc %.4f", desc, epoch, epochs, total / n, val_acc)
        if progress is not None:
            progress.set_postfix(loss=f"{total / n:.3f}", val_acc=f"{val_acc:.3f}")
            progress.update()
        if validate and cfg.patience is not None:
            # As ActiveThief's code: only a strict improvement counts (and is kept).
            if val_acc > best_acc:
                best_state, best_acc, best_epoch = copy.deepcopy(model.state_dict()), val_acc, epoch
                stale = 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    log.info("%s: no improvement in %d epochs, stopping", desc, stale)
                    break
        # >= keeps the later epoch on ties; with no validation data, the last epoch wins.
        elif validate and not (val_acc < best_acc):
            best_state, best_acc, best_epoch = copy.deepcopy(model.state_dict()), val_acc, epoch
        if checkpoint is not None and checkpoint.due():  # the next epoch's start
            save(epoch + 1, 0, None, None)
    if progress is not None:
        progress.close()
    if channels_last:  # inference (predict_proba) sees the model in the layout it came in
        model.to(memory_format=torch.contiguous_format)
    run = len(history)  # epochs actually trained (fewer than ``epochs`` after an early stop)
    if validate:
        model.load_state_dict(best_state)
    else:
        best_acc, best_epoch = float("nan"), epochs
    model.eval()
    return FitResult(best_epoch, best_acc, run, run * n, time.perf_counter() - start, history)


VAL_METRICS = ("accuracy", "macro-f1")
# training.precision: the autocast dtype of each (None: none, plain fp32).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_options(cfg: TrainConfig) -> None:
    """Fail on a TrainConfig value fit cannot run, naming the allowed values."""
    if cfg.val_metric not in VAL_METRICS:
        raise ValueError(
            f"unknown val_metric {cfg.val_metric!r}; allowed: {', '.join(VAL_METRICS)}"
        )
    if cfg.patience is not None and cfg.patience < 1:
        raise ValueError(f"patience must be an integer >= 1 or None, got {cfg.patience!r}")
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {cfg.precision!r}; allowed: {', '.join(PRECISIONS)}")
    if not (cfg.channels_last == "auto" or isinstance(cfg.channels_last, bool)):
        raise ValueError(f"unknown channels_last {cfg.channels_last!r}; allowed: auto, true, false")


def uses_channels_last(model: nn.Module, cfg: TrainConfig, device: torch.device) -> bool:
    """Whether fit trains ``model`` in the channels-last layout: for convolutional models,
    with ``channels_last`` True, or "auto" on a CUDA device (tensor cores read NHWC; a CPU
    keeps the layouts, and so the arithmetic, that fit has always had)."""
    if cfg.channels_last is False or not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False
    return cfg.channels_last is True or device.type == "cuda"


class Step:
    """One optimisation step on a :class:`~stealbench.models.loader.Batch`, returning the
    batch's loss: forward (under torch.autocast for bf16 and fp16), backward, the optimiser.

    fp16 scales the loss with a GradScaler (torch's defaults: start at 2^16, halve and skip
    the step on an inf or NaN gradient, double after 2000 clean steps); its ``scaler`` is
    None otherwise. fp32 runs exactly the arithmetic of fit before mixed precision existed.
    The channels-last layout (``cfg.channels_last``, :func:`uses_channels_last`) applies to
    the inputs here; ``channels_last=False`` makes them contiguous NCHW (otherwise a batch
    is the permuted view of the NHWC bytes, which is channels-last for RGB images)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        cfg: TrainConfig,
        device: torch.device,
        outlier_weight: float = 1.0,
    ):
        self.model, self.optimizer, self.outlier_weight = model, optimizer, outlier_weight
        self.device, self.dtype = device, PRECISIONS[cfg.precision]
        if cfg.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(
                f"precision bf16 needs a GPU with bfloat16 support (compute capability 8.0 or "
                f"newer); {torch.cuda.get_device_name(device)} has none: use fp16 or fp32"
            )
        self.scaler = torch.amp.GradScaler(device.type) if cfg.precision == "fp16" else None
        if uses_channels_last(model, cfg, device):
            self.layout = torch.channels_last
        else:
            self.layout = torch.contiguous_format if cfg.channels_last is False else None
        # GradScaler reads torch's param_groups layout (a "params" list per group); a view
        # keeps those tensors out of the optimiser's own param_groups (hyper-parameters only)
        self._scaled = _ScalerView(optimizer)

    def __call__(self, batch) -> torch.Tensor:
        images, outliers = batch.images, batch.outliers
        if self.layout is not None:
            images = images.contiguous(memory_format=self.layout)
            if outliers is not None:
                outliers = outliers.contiguous(memory_format=self.layout)
        with (
            torch.autocast(self.device.type, self.dtype)
            if self.dtype is not None
            else contextlib.nullcontext()
        ):
            if outliers is None:
                loss = soft_cross_entropy(self.model(images), batch.targets)
            else:
                loss = _outlier_exposure_loss(
                    self.model, images, batch.targets, outliers, self.outlier_weight
                )
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self._scaled)
            self.scaler.update()
        return loss


class _ScalerView:
    """What GradScaler needs of an optimiser: torch's param_groups and step."""

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.param_groups = [{"params": optimizer.params}]

    def step(self) -> None:
        self.optimizer.step()


def _score(metric: str, predicted: np.ndarray, labels: np.ndarray) -> float:
    """``metric`` of top-1 predictions against labels."""
    if metric == "macro-f1":
        from sklearn.metrics import f1_score  # only the runs that ask for it pay the import

        # Macro over the classes present in either the labels or the predictions, as the
        # reference code's f1_score call; zero_division=0 scores a class never predicted 0.
        return float(f1_score(labels, predicted, average="macro", zero_division=0))
    return accuracy(predicted, labels)


def uniform_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from the uniform distribution to softmax(logits), averaged over rows:
    -mean_k log softmax_k (Outlier Exposure's loss on outliers; the authors' ``CXE_unif``)."""
    return -(logits.mean(dim=1) - torch.logsumexp(logits, dim=1)).mean()


def _outlier_exposure_loss(
    model: nn.Module,
    batch: torch.Tensor,
    targets: torch.Tensor,
    extra: torch.Tensor,
    weight: float,
) -> torch.Tensor:
    """The batch's soft cross-entropy plus ``weight`` x the outliers' (``extra``, float
    images) cross-entropy to the uniform distribution; one forward pass when the outliers
    have the batch's shape."""
    if extra.shape[1:] == batch.shape[1:]:
        logits = model(torch.cat([batch, extra]))
        inside, outside = logits[: len(batch)], logits[len(batch) :]
    else:  # another shape (the model adapts its input): a forward pass of its own
        inside, outside = model(batch), model(extra)
    return soft_cross_entropy(inside, targets) + weight * uniform_cross_entropy(outside)


def _progress(total: int, desc: str):
    """A tqdm bar when a person is watching a terminal; the log file gets the numbers anyway."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", leave=False)
