"""Data-free model extraction (DFME; Truong et al., CVPR 2021), with MAZE-like zeroth-order
gradients (Kariyappa et al., CVPR 2021): no pool image is ever sent.

A generator G(z) proposes images; a student S imitates the victim V on them. Each iteration:

- ``g_iter`` generator steps: G maximises the disagreement ``mean_k |S_k(x) - T_k(x)|`` with
  ``T`` the victim's logits recovered from its answers. V is a black box, so the gradient of
  the disagreement with respect to the image is estimated by forward differences along
  ``grad_m`` random unit directions (:func:`zo_gradient`), then back-propagated through G;
- ``d_iter`` student steps, each on a fresh batch from G: l1 between S's logits and T.

**Queries.** Every image sent to the API counts: a generator step sends its batch plus
``grad_m`` perturbed copies, a student step its batch, so an iteration costs
``batch_size * (g_iter * (grad_m + 1) + d_iter)`` (:func:`queries_per_iteration`). The run
stops exactly at the budget: the call that would exceed it is cut to what is left and
nothing more is computed. The learning-rate schedule depends on the options only, never on
the budget (below), so a run with budget B sends exactly the first B queries of a run with a
larger budget, and its student is that run's student at B. Sample ids are all -1.

**Images.** G is DCGAN-like (DFME's GeneratorA) for the pool's image shape (H, W, C), which is
all the pool is used for: a linear layer to 2·ngf channels at (H//4, W//4), two nearest x2
upsamplings (the second to exactly (H, W)) with 3x3 convolutions, batch norms and leaky
ReLUs, and a final batch norm without affine parameters. Its tanh output is mapped to [0, 1]
and quantised to uint8, because the API takes uint8 images; the gradient passes the rounding
unchanged (straight-through).

**Zeroth-order estimate through the quantised API.** DFME perturbs the pre-tanh output by
1e-3 along a unit direction: spread over H·W·C pixels, that is ~1e-4 grey levels per pixel,
and the quantisation erases it. Here the perturbation is taken in pixel space, of RMS size
``grad_epsilon`` grey levels per pixel (default 2), around the quantised image, and the
perturbed image is itself quantised (and clipped to [0, 255]). The estimate uses the
displacement actually realised, ``D = q(x + e·u) - x``:
``g = d / m · Σ_j (L(x + D_j) - L(x)) · D_j / ||D_j||²``, an estimate of the gradient along
what the victim saw; rounding is symmetric, so the realised directions stay isotropic up to
clipping at black and white.

**Victim logits.** ``T = log(max(p, 1e-8)) - mean_k log(max(p, 1e-8))`` for the answer
renormalised to sum to one, i.e. the logits up to a constant when the API returns full
probabilities (DFME's mean correction). Answers with no mass (everything rounded away) carry
nothing: they are left out of the student's loss and of the gradient estimate.

**Optimisers.** Student SGD (momentum 0.9, weight decay 5e-4) at ``lr_S``; generator Adam
at ``lr_G``; DFME's defaults (``dfme/train.py`` of github.com/cake-lab/datafree-model-extraction:
``--lr_S 0.1``, ``--lr_G 1e-4``, ``--weight_decay 5e-4``, ``momentum=0.9``,
``optim.Adam(generator.parameters(), lr=args.lr_G)``; student loss ``--loss l1`` on the
mean-corrected log-probabilities, ``--logit_correction mean``).

**Schedule.** The authors decay both learning rates with ``MultiStepLR`` (``--scheduler
multistep --steps 0.1 0.3 0.5 --scale 0.3``) at 10%, 30% and 50% of the run, the same
milestones for ``scheduler_S`` and ``scheduler_G``; their run is counted in "epochs" of
``--epoch_itrs 50`` iterations, ``number_epochs = query_budget // (cost_per_iteration * 50) +
1``, milestones ``int(step * number_epochs)``, and the schedulers step at the start of each
epoch (before it trains), so the lr drops at the start of epoch ``int(step * number_epochs)``
(1-based). These are ``train.py``'s defaults; the authors' run scripts override some of them:
``run_cifar_dfme.sh`` (20M queries) ``--lr_G 5e-4``, ``run_svhn_dfme.sh`` (2M queries) ``--lr_G
5e-5 --steps 0.5 0.8``, both ``--grad_m 1 --loss l1 --student_model resnet18_8x``. The authors
report the best test accuracy over epochs (``best_acc``), which selects on the test labels;
here the student is scored at each budget and never selected. Tying the milestones to the
budget would make every budget of a cell a different run; here they are tied to
``schedule_queries``, an option that does not depend on the cell's budget: both rates are
multiplied by ``lr_scale`` for each share ``s`` of ``lr_steps`` with ``spent >= round(s *
schedule_queries)`` at the start of an iteration (the check is per iteration, not per
50-iteration epoch; set ``schedule_queries`` to the largest budget to match the authors' run at
that budget to within an epoch). ``schedule_queries: null`` keeps both rates constant
(bit-identical to the strategy before the schedule existed).

**Online student.** DFME's own metric is the student's accuracy, not a surrogate retrained
on the queries. The student is registered with the API (``api.track``) when it exists, so the
query job can evaluate the API's snapshot of it at each budget
(:meth:`stealbench.attack.api.PredictionAPI.track`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...models.architectures import create_model
from ..api import response_to_targets
from .registry import register

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------ generator


class Generator(nn.Module):
    """DCGAN-like generator for (H, W, C) images; ``forward`` returns the pre-activation,
    :meth:`image` the image in [0, 1] (N, C, H, W)."""

    def __init__(self, shape: tuple[int, int, int], nz: int = 256, ngf: int = 64):
        super().__init__()
        h, w, c = shape
        self.nz, self.h0, self.w0, self.width = nz, max(1, h // 4), max(1, w // 4), 2 * ngf
        self.project = nn.Linear(nz, self.width * self.h0 * self.w0)
        self.body = nn.Sequential(
            nn.BatchNorm2d(self.width),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(self.width, self.width, 3, padding=1),
            nn.BatchNorm2d(self.width),
            nn.LeakyReLU(0.2),
            nn.Upsample(size=(h, w), mode="nearest"),
            nn.Conv2d(self.width, ngf, 3, padding=1),
            nn.BatchNorm2d(ngf),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ngf, c, 3, padding=1),
            nn.BatchNorm2d(c, affine=False),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z).view(len(z), self.width, self.h0, self.w0))

    def image(self, z: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(self(z)) + 1) / 2


def quantise(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats onto the uint8 grid (still floats in [0, 1]): what the API will see."""
    return (x.clamp(0, 1) * 255).round() / 255


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Quantised (N, C, H, W) floats -> uint8 (N, H, W, C) images for the API."""
    return (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# -------------------------------------------------------------- zeroth-order estimate


def perturb(
    x: torch.Tensor, m: int, epsilon: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``m`` quantised perturbations of quantised images ``x`` (N, C, H, W) in [0, 1].

    Each is ``q(x + e·u)`` for a uniform random unit direction u (normalised Gaussian, one per
    image) and ``e = epsilon / 255 · sqrt(d)``, i.e. an RMS step of ``epsilon`` grey levels per
    pixel. Returns (perturbed (m, N, C, H, W), realised displacement, same shape).
    """
    if epsilon < 0.5:
        raise ValueError(
            f"grad_epsilon={epsilon} grey levels: steps under half a grey level vanish when the "
            f"image is quantised to uint8; use >= 0.5 (default 2)"
        )
    d = x[0].numel()
    u = torch.randn((m, *x.shape), generator=generator).to(x.device)
    u = u / u.flatten(2).norm(dim=2)[..., None, None, None]
    moved = quantise(x[None] + (epsilon / 255 * math.sqrt(d)) * u)
    return moved, moved - x[None]


def zo_gradient(
    loss_base: torch.Tensor, loss_moved: torch.Tensor, displacement: torch.Tensor
) -> torch.Tensor:
    """Forward-difference gradient estimate per image (N, C, H, W).

    ``loss_base`` (N,) is L at the images, ``loss_moved`` (m, N) at the perturbed images,
    ``displacement`` (m, N, C, H, W) the realised perturbations:
    ``g = d · mean_j (L_j - L_0) · D_j / ||D_j||²``. A direction whose displacement vanished
    or whose loss is not finite (an answer with no mass) is left out of the mean.
    """
    d = displacement[0, 0].numel()
    norm2 = displacement.flatten(2).pow(2).sum(2)  # (m, N)
    valid = (norm2 > 0) & torch.isfinite(loss_moved) & torch.isfinite(loss_base)[None]
    coef = torch.where(valid, (loss_moved - loss_base[None]) / norm2.clamp_min(1e-30), 0.0)
    total = (coef[..., None, None, None] * displacement).sum(0)
    return d * total / valid.sum(0).clamp_min(1)[:, None, None, None]


def victim_logits(answers: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, kept): centred log-probabilities of the answers (N, C), and which rows had mass
    (rows without are zeros in T and must be ignored)."""
    targets, kept = response_to_targets(answers)
    out = torch.zeros(answers.shape, dtype=torch.float32)
    log_p = torch.log(torch.as_tensor(targets).clamp_min(1e-8))
    out[torch.as_tensor(kept)] = log_p - log_p.mean(dim=1, keepdim=True)
    return out, torch.as_tensor(kept)


def queries_per_iteration(batch_size: int, g_iter: int, grad_m: int, d_iter: int) -> int:
    return batch_size * (g_iter * (grad_m + 1) + d_iter)


# ---------------------------------------------------------------------------- attack


class _BudgetSpent(Exception):
    """The budget ran out in the middle of an iteration."""


@dataclass
class DFMEResult:
    sample_ids: np.ndarray  # int64 (budget,), all -1
    student: nn.Module | None
    generator: Generator
    iterations: int  # complete iterations
    # (queries spent, student lr, generator lr) at the start of each iteration whose rates
    # differ from the previous one's, read from the optimisers
    schedule: list[tuple[int, float, float]]


def lr_factor(spent: int, schedule_queries: int | None, lr_steps, lr_scale: float) -> float:
    """The multiplier of both learning rates once ``spent`` queries are spent: ``lr_scale``
    to the number of milestones ``round(s * schedule_queries)`` reached (1 without a schedule).
    """
    if schedule_queries is None:
        return 1.0
    return lr_scale ** sum(spent >= round(s * schedule_queries) for s in lr_steps)


def extract(
    api,
    image_shape: tuple[int, int, int],
    budget: int,
    rng: np.random.Generator,
    batch_size: int = 256,
    grad_m: int = 1,
    grad_epsilon: float = 2.0,
    g_iter: int = 1,
    d_iter: int = 5,
    lr_S: float = 0.1,
    lr_G: float = 1e-4,
    student: str = "lenet",
    nz: int = 256,
    ngf: int = 64,
    device: str = "cpu",
    on_iteration: Callable[[int, nn.Module], None] | None = None,
    schedule_queries: int | None = None,
    lr_steps: tuple[float, ...] = (0.1, 0.3, 0.5),
    lr_scale: float = 0.3,
) -> DFMEResult:
    """Run DFME against ``api`` for exactly ``budget`` queries; return the student too."""
    for name, value in (("batch_size", batch_size), ("grad_m", grad_m), ("g_iter", g_iter)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if d_iter < 0:
        raise ValueError(f"d_iter must be >= 0, got {d_iter}")
    if schedule_queries is not None and schedule_queries < 1:
        raise ValueError(f"schedule_queries must be >= 1 or null, got {schedule_queries}")
    h, w, c = (int(v) for v in image_shape)
    gen_seed, student_seed, noise_seed = (int(s) for s in rng.integers(2**31, size=3))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(gen_seed)
        generator = Generator((h, w, c), nz, ngf).to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr_G)
    noise = torch.Generator().manual_seed(noise_seed)
    state = {"spent": 0, "student": None, "opt_s": None}
    schedule: list[tuple[int, float, float]] = []

    def rates() -> float:
        """Set both rates for the queries spent; the factor they were set with."""
        factor = lr_factor(state["spent"], schedule_queries, lr_steps, lr_scale)
        if schedule_queries is not None:  # else the optimisers' rates are never touched
            for opt, lr in ((opt_g, lr_G), (state["opt_s"], lr_S)):
                for group in opt.param_groups if opt is not None else ():
                    group["lr"] = lr * factor
        return factor

    def ask(x: torch.Tensor) -> np.ndarray:
        """The answers for quantised images ``x``; sends only what the budget allows."""
        n = min(len(x), budget - state["spent"])
        if n > 0:
            answers = api(to_uint8(x[:n]))
            state["spent"] += n
        if n < len(x):
            raise _BudgetSpent
        if state["student"] is None:  # the first answer tells the number of classes
            state["student"] = create_model(student, answers.shape[1], device, seed=student_seed)
            state["opt_s"] = torch.optim.SGD(
                state["student"].parameters(), lr=lr_S, momentum=0.9, weight_decay=5e-4
            )
            rates()
            if hasattr(api, "track"):  # the API snapshots the online student at each budget
                api.track(state["student"])
        return answers

    def z() -> torch.Tensor:
        return torch.randn(batch_size, nz, generator=noise).to(device)

    iterations = 0
    try:
        while state["spent"] < budget:
            rates()
            now = (
                state["spent"],
                state["opt_s"].param_groups[0]["lr"] if state["opt_s"] is not None else lr_S,
                opt_g.param_groups[0]["lr"],
            )
            if not schedule or schedule[-1][1:] != now[1:]:
                schedule.append(now)
            generator.train()
            for _ in range(g_iter):
                x = generator.image(z())
                base = quantise(x.detach())
                moved, displacement = perturb(base, grad_m, grad_epsilon, noise)
                queries = torch.cat([base, moved.flatten(0, 1)])
                t, kept = victim_logits(ask(queries))
                model = state["student"]
                model.eval()
                with torch.no_grad():
                    s = model(queries)
                disagreement = (s - t.to(device)).abs().mean(dim=1)
                loss = torch.where(kept.to(device), -disagreement, float("nan"))
                g = zo_gradient(
                    loss[:batch_size], loss[batch_size:].view(grad_m, batch_size), displacement
                )
                opt_g.zero_grad(set_to_none=True)
                x.backward(g / batch_size)  # straight-through the quantisation
                opt_g.step()
            for _ in range(d_iter):
                with torch.no_grad():
                    x = quantise(generator.image(z()))
                t, kept = victim_logits(ask(x))
                if not kept.any():
                    continue
                model, opt_s = state["student"], state["opt_s"]
                model.train()
                kept = kept.to(device)
                loss = (model(x[kept]) - t.to(device)[kept]).abs().mean()
                opt_s.zero_grad(set_to_none=True)
                loss.backward()
                opt_s.step()
            iterations += 1
            if on_iteration is not None:
                on_iteration(iterations, state["student"])
            if iterations % 50 == 0:
                log.info(
                    "dfme: %d iterations, %d of %d queries", iterations, state["spent"], budget
                )
    except _BudgetSpent:
        pass
    student_model = state["student"]
    if student_model is not None:
        student_model.eval()
    log.info("dfme: %d queries in %d full iterations", state["spent"], iterations)
    return DFMEResult(
        np.full(state["spent"], -1, dtype=np.int64), student_model, generator, iterations, schedule
    )


@register(
    "dfme",
    kind="data-free",
    options={
        "batch_size": {"type": "integer", "minimum": 1},
        "grad_m": {
            "type": "integer",
            "minimum": 1,
            "description": "random directions per gradient estimate",
        },
        "grad_epsilon": {
            "type": "number",
            "minimum": 0.5,
            "description": "RMS size of a direction in grey levels",
        },
        "g_iter": {"type": "integer", "minimum": 1},
        "d_iter": {"type": "integer", "minimum": 1},
        "lr_S": {"type": "number", "exclusiveMinimum": 0},
        "lr_G": {"type": "number", "exclusiveMinimum": 0},
        "student": {"$ref": "#/definitions/arch"},
        "nz": {"type": "integer", "minimum": 1},
        "ngf": {"type": "integer", "minimum": 1},
        "schedule_queries": {
            "type": ["integer", "null"],
            "minimum": 1,
            "description": "queries the lr milestones are shares of (null: constant rates)",
        },
        "lr_steps": {
            "type": "array",
            "items": {"type": "number", "exclusiveMinimum": 0},
            "description": "milestones as shares of schedule_queries",
        },
        "lr_scale": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "factor of both lrs at each milestone",
        },
    },
)
def run_dfme(
    api,
    pool,
    budget: int,
    rng: np.random.Generator,
    batch_size: int = 256,
    grad_m: int = 1,
    grad_epsilon: float = 2.0,
    g_iter: int = 1,
    d_iter: int = 5,
    lr_S: float = 0.1,
    lr_G: float = 1e-4,
    student: str = "lenet",
    nz: int = 256,
    ngf: int = 64,
    schedule_queries: int | None = None,
    lr_steps: tuple[float, ...] = (0.1, 0.3, 0.5),
    lr_scale: float = 0.3,
    device: str = "cpu",
) -> np.ndarray:
    """DFME for ``budget`` queries of generated images (ids -1); the pool gives the shape."""
    return extract(
        api,
        tuple(pool.images.shape[1:]),
        budget,
        rng,
        batch_size=batch_size,
        grad_m=grad_m,
        grad_epsilon=grad_epsilon,
        g_iter=g_iter,
        d_iter=d_iter,
        lr_S=lr_S,
        lr_G=lr_G,
        student=student,
        nz=nz,
        ngf=ngf,
        device=device,
        schedule_queries=schedule_queries,
        lr_steps=tuple(lr_steps),
        lr_scale=lr_scale,
    ).sample_ids
