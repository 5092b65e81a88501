"""ActiveThief (Pal et al., "ActiveThief: Model Extraction Using Active Learning and
Unannotated Public Data", AAAI 2020): pool-based active learning against the victim.

The attacker queries a random seed set, then repeats: train a substitute from scratch on every
answer so far, score the unused pool images with the substitute, and query the best-scoring
round. Selection rules, on the substitute's softmax outputs:

    uncertainty     largest entropy first;
    k-center        greedy core-set: repeatedly the candidate farthest (Euclidean) from its
                    nearest labelled point or earlier pick;
    dfal            smallest DeepFool perturbation on the substitute (nearest the boundary);
    k-center+dfal   a DFAL shortlist, then k-center among it.

**Published setting** (the authors' code, github.com/shukla-aditya-csa/activethief: README.md,
cfg.py, utils/model.py ``train_copynet_iter``), the defaults here:

    seed set        ``--initial_seed 200`` (the README's sample command; a flag, no default);
    step size k     ``--k 100`` (the same command), fixed in every round (``round_growth`` 1);
    rounds          ``--num_iter 10`` (the same command): the budget is
                    ``initial_seed + val_size + num_iter * k`` = 2,200 there;
    validation      ``val_size`` 1000 (cfg.py), labelled by the victim, counted in the budget;
    substitute      up to ``copy_num_epochs`` 1000 epochs, evaluated every epoch, early stop
                    after ``early_stop_tolerance`` 20 evaluations without a strict improvement
                    of the macro-F1 (sklearn ``f1_score(average="macro")``) against the
                    victim's top-1 on the validation set; the first best epoch is restored;
                    batch size 50, Adam at TensorFlow's default rate 0.001 (cfg.py);
    candidates      every unlabelled pool image, every round (the whole unmarked pool is
                    scored in ``train_copynet_iter``).

Not found, so not claimed: the paper's own seed/validation shares of each budget (the text
was not available here; the code's numbers above are what the defaults follow). Departures
from that code: the validation images come from the same pool as the queries (the code
draws them from the public data's separate validation split), and never enter selection or
the substitute's training either way; the code keeps training past the patience while the
epoch's mean training loss is above 1.5, which is not reproduced; no dropout or L2 term in
the substitute (the architecture is the benchmark's); soft targets where the answers are
probabilities.
The paper's headline (abstract, arXiv 1905.09165): with top-1 answers it "improves
performance on an average over a uniform noise baseline by 4.70x" on image tasks, with
30,000 queries;
configs/reproduce/activethief.yaml runs the offline analogue.

**Schedule (budgets are prefixes of one run).** The queries are, in order: ``seed_size``
random pool images, ``val_size`` further random pool images (the victim-labelled validation
set), then rounds of sizes ``round(round_size * round_growth**r)`` for r = 0, 1, ... until
the budget is spent; the last round is truncated. Nothing depends on the budget: a run with
budget B sends exactly the first B queries of a run with a larger budget, because every
selection rule returns a ranking whose first n entries are its choice of n (greedy k-center
picks in order; entropy and DeepFool sort). The reference code instead fixes the number of
rounds and derives the step from the budget (``k = (budget - seed - val) / iterations``) and
sizes the DFAL shortlist by the budget; both would make runs with different budgets diverge
from the first round on, so neither is offered. Here the step is an option and the number of
rounds follows from the budget: ``ceil((B - seed_size - val_size) / round_size)`` rounds, so
the authors' run of 10 iterations at budget B is the one with ``round_size`` set to
``(B - seed_size - val_size) / 10`` (config.yaml sets it so for its budget), and every
smaller budget is a prefix of it (with fewer, and a truncated last, round). ``round_growth >
1`` keeps the number of substitute trainings logarithmic in the budget (1.0 is the paper's
fixed k).

**Substitute.** Trained from scratch each round (new seed, new optimiser) on all labelled
answers, as soft targets (:func:`response_to_targets`; rows with no mass are dropped), with
:func:`stealbench.models.training.fit`: up to ``epochs`` epochs, stopping after ``patience``
epochs without a strict improvement of ``val_metric`` (macro-F1 by default) against the
victim's top-1 on the validation set, keeping the best epoch. ``patience`` null runs every
epoch and keeps the best; with no validation set (``val_size`` 0) the final epoch is kept
and ``patience`` must be null. The validation images count as queries and are never
selected or trained on. The substitute is not trained after the last round: the benchmark
trains its own surrogate on the transfer set (validation images included).

**Candidates.** The unused pool images, all of them by default, as the paper. With
``candidates`` set, each round scores a random subset of that many of them (drawn with
``rng``; at least the round's size), which bounds the cost on large pools.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ...models.architectures import create_model
from ...models.training import TrainConfig, fit, model_device, predict_proba, to_tensor
from ..api import response_to_targets
from .registry import pool_candidates, query_in_batches, register

log = logging.getLogger(__name__)

SELECTIONS = ("uncertainty", "k-center", "dfal", "k-center+dfal")


# ------------------------------------------------------------------- selection rules


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of (N, C) probabilities; 0 log 0 = 0."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=1)


def select_uncertainty(probs: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` rows of largest entropy, most uncertain first (ties: lower
    position first, so the first n of k are the choice of n)."""
    return np.argsort(-entropy(probs), kind="stable")[:k]


def select_k_center(
    candidate_outputs: np.ndarray, labelled_outputs: np.ndarray, k: int, chunk: int = 1024
) -> np.ndarray:
    """Greedy core-set (Sener & Savarese 2018) in output space, Euclidean.

    Each pick is the candidate farthest from its nearest centre; the centres are the labelled
    points' outputs plus the earlier picks. Returns ``k`` distinct positions in pick order
    (the reference code may pick a point twice and de-duplicate; here a picked point is out).
    """
    cand = torch.as_tensor(np.asarray(candidate_outputs, dtype=np.float64))
    k = min(k, len(cand))
    if len(labelled_outputs):
        centres = torch.as_tensor(np.asarray(labelled_outputs, dtype=np.float64))
        nearest = torch.cat(
            [
                torch.cdist(
                    cand[i : i + chunk], centres, compute_mode="donot_use_mm_for_euclid_dist"
                )
                .min(dim=1)
                .values
                for i in range(0, len(cand), chunk)
            ]
        )
    else:
        nearest = torch.full((len(cand),), float("inf"), dtype=torch.float64)
    picks = []
    for _ in range(k):
        j = int(torch.argmax(nearest))  # first maximum on ties
        picks.append(j)
        nearest = torch.minimum(nearest, (cand - cand[j]).norm(dim=1))
        nearest[j] = -1.0  # never again
    return np.asarray(picks, dtype=np.int64)


def deepfool_distances(
    model: torch.nn.Module,
    images,
    max_iter: int = 20,
    overshoot: float = 0.02,
    batch_size: int = 256,
    classes: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-class DeepFool (Moosavi-Dezfooli et al., CVPR 2016) on ``model``'s logits.

    For uint8 images (N, H, W, C) (or anything sliceable into such batches) returns
    (norm, flipped): the L2 norm, in [0, 1] pixel units, of the perturbation
    ``(1 + overshoot) * r`` that DeepFool accumulates, and whether it changed the predicted
    class within ``max_iter`` steps. Each step, against the original class k0, takes
    ``l = argmin_j |f_j - f_k0| / ||grad f_j - grad f_k0||`` and adds
    ``(|f_l - f_k0| + 1e-4) / ||w_l||^2 * w_l``; a sample stops once its class changes.
    Only the ``classes`` classes with the largest logits at the image are candidates for l
    (as in DeepFool's reference code), which bounds the cost for victims with many classes.
    For a linear model the first step lands on the nearest boundary, so the norm is
    ``(1 + overshoot)`` times the analytic distance.

    Differences from ActiveThief's code: logits, not softmax probabilities; the standard
    ``||w||^2`` denominator, not ``||w||``; per-sample early stopping instead of exactly 20
    iterations; no clipping to [0, 1] (the norm measures the distance, not an image).
    """
    model.eval()
    device = model_device(model)
    norms, flipped = [], []
    for i in range(0, len(images), batch_size):
        x0 = to_tensor(np.asarray(images[i : i + batch_size])).to(device)
        with torch.no_grad():
            logits0 = model(x0)
        # Candidate classes per image, its own class k0 first (argsort ties like argmax).
        top = torch.argsort(-logits0, dim=1, stable=True)[:, : max(2, classes)]
        r = torch.zeros_like(x0)
        done = torch.zeros(len(x0), dtype=torch.bool, device=device)
        for step in range(max_iter + 1):
            active = (~done).nonzero().squeeze(1)
            if len(active) == 0:
                break
            x = (x0[active] + (1 + overshoot) * r[active]).requires_grad_(True)
            logits = model(x)
            crossed = logits.argmax(1) != top[active, 0]
            done[active[crossed]] = True
            if step == max_iter or bool(crossed.all()):
                break
            f_top = logits.gather(1, top[active])  # (n, K), column 0 is k0
            grads = torch.stack(
                [
                    torch.autograd.grad(f_top[:, j].sum(), x, retain_graph=True)[0]
                    for j in range(f_top.shape[1])
                ],
                dim=1,
            ).flatten(2)  # (n, K, D)
            f = (f_top - f_top[:, :1]).detach()
            w = grads - grads[:, :1]
            w_norm = w.norm(dim=2)
            ratio = f.abs() / (w_norm + 1e-12)
            ratio[:, 0] = float("inf")
            nearest = ratio.argmin(1)
            rows = torch.arange(len(x), device=device)
            scale = (f[rows, nearest].abs() + 1e-4) / (w_norm[rows, nearest] ** 2 + 1e-12)
            step_r = (scale[:, None] * w[rows, nearest]).view_as(x)
            keep = ~crossed
            r[active[keep]] += step_r[keep]
        norms.append(((1 + overshoot) * r).flatten(1).norm(dim=1).cpu())
        flipped.append(done.cpu())
    return torch.cat(norms).numpy().astype(np.float64), torch.cat(flipped).numpy()


def select_dfal(model: torch.nn.Module, images, k: int, **deepfool) -> np.ndarray:
    """Positions of the ``k`` images nearest the substitute's boundary, nearest first:
    samples DeepFool flipped by their perturbation norm, then the ones it did not flip.
    ``deepfool``: options of :func:`deepfool_distances`."""
    norm, flipped = deepfool_distances(model, images, **deepfool)
    return np.lexsort((norm, ~flipped))[:k]


def select_dfal_k_center(
    model: torch.nn.Module,
    images,
    candidate_outputs: np.ndarray,
    labelled_outputs: np.ndarray,
    k: int,
    shortlist: int,
    **deepfool,
) -> np.ndarray:
    """DFAL keeps the ``shortlist`` candidates nearest the boundary, k-center picks ``k``
    of them (positions into ``images``, in pick order)."""
    short = np.sort(select_dfal(model, images, max(shortlist, k), **deepfool))
    picks = select_k_center(candidate_outputs[short], labelled_outputs, k)
    return short[picks]


def round_size_at(r: int, round_size: int, round_growth: float) -> int:
    """Size of selection round r (0-based): a function of the options alone."""
    return max(1, int(round(round_size * round_growth**r)))


class _Rows:
    """Pool images at ``ids``, read slice by slice (a lazy pool is never read whole)."""

    def __init__(self, images, ids: np.ndarray):
        self.images, self.ids = images, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.images[self.ids[key]])


def _outputs(model, images, ids: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    rows = _Rows(images, ids)
    parts = [
        predict_proba(model, rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


# ---------------------------------------------------------------------------- attack


@register(
    "activethief",
    kind="sequential",
    options={
        "selection": {
            "type": "string",
            "enum": ["uncertainty", "k-center", "dfal", "k-center+dfal"],
        },
        "seed_size": {"type": "integer", "minimum": 1},
        "val_size": {
            "type": "integer",
            "minimum": 0,
            "description": "a victim-labelled validation set (counts as queries)",
        },
        "round_size": {"type": "integer", "minimum": 1},
        "round_growth": {"type": "number", "minimum": 1},
        "candidates": {
            "description": "unused pool images scored per round (null - all of them)",
            "type": ["integer", "null"],
            "minimum": 1,
        },
        "substitute": {"$ref": "#/definitions/arch"},
        "epochs": {"type": "integer", "minimum": 1},
        "patience": {
            "description": "early stop after this many epochs without improvement (null - none)",
            "type": ["integer", "null"],
            "minimum": 1,
        },
        "val_metric": {"type": "string", "enum": ["macro-f1", "accuracy"]},
        "batch_size": {"type": "integer", "minimum": 1},
        "lr": {"type": "number", "exclusiveMinimum": 0},
        "min_steps": {"type": "integer", "minimum": 0},
        "dfal_iter": {"type": "integer", "minimum": 1},
        "dfal_overshoot": {"type": "number", "minimum": 0},
        "dfal_classes": {"type": "integer", "minimum": 2},
        "dfal_shortlist": {"type": "number", "minimum": 1},
    },
)
def run_activethief(
    api,
    pool,
    budget: int,
    rng: np.random.Generator,
    selection: str = "k-center",
    seed_size: int = 200,
    val_size: int = 1000,
    round_size: int = 100,
    round_growth: float = 1.0,
    candidates: int | None = None,
    substitute: str = "lenet",
    epochs: int = 1000,
    patience: int | None = 20,
    val_metric: str = "macro-f1",
    batch_size: int = 50,
    lr: float = 1e-3,
    min_steps: int = 0,
    dfal_iter: int = 20,
    dfal_overshoot: float = 0.02,
    dfal_classes: int = 10,
    dfal_shortlist: float = 4.0,
    device: str = "cpu",
) -> np.ndarray:
    """Seed, optional validation set, then selection rounds; return the pool id of every
    query in the order sent (see the module docstring for the schedule).

    ``dfal_iter``, ``dfal_overshoot`` and ``dfal_classes`` set :func:`deepfool_distances`;
    ``dfal_shortlist`` is the k-center+dfal shortlist as a multiple of the round's size.
    """
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; allowed: {', '.join(SELECTIONS)}")
    for name, value, low in (
        ("seed_size", seed_size, 1),
        ("val_size", val_size, 0),
        ("round_size", round_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(
                f"{name} must be an integer >= {low} (a count of queries, not a share of the "
                f"budget: a share would make runs with different budgets differ), got {value!r}"
            )
    if round_growth < 1.0:
        raise ValueError(f"round_growth must be >= 1, got {round_growth}")
    if patience is not None and val_size == 0:
        raise ValueError(
            "patience needs a validation set: set val_size >= 1, or patience: null to train "
            "every epoch"
        )
    ids = pool_candidates(pool, budget)
    order = rng.permutation(ids).astype(np.int64)
    used = np.zeros(int(ids.max()) + 1, dtype=bool)
    sent: list[np.ndarray] = []
    spent = 0

    def ask(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Query the first of ``chosen`` that the budget still allows."""
        nonlocal spent
        chosen = np.asarray(chosen, dtype=np.int64)[: budget - spent]
        used[chosen] = True
        sent.append(chosen)
        spent += len(chosen)
        if len(chosen) == 0:
            return chosen, np.zeros((0, 0), np.float32)
        return chosen, query_in_batches(api, _Rows(pool.images, chosen))

    labelled_ids, labelled_answers = ask(order[:seed_size])
    val_ids, val_answers = ask(order[seed_size : seed_size + val_size])
    val_images = val_labels = None
    if len(val_ids):
        _, kept = response_to_targets(val_answers)
        val_images = np.asarray(pool.images[val_ids[kept]])
        val_labels = val_answers[kept].argmax(1)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        min_steps=min_steps,
        patience=patience if val_images is not None else None,
        val_metric=val_metric,
    )
    r = 0
    while spent < budget:
        k = round_size_at(r, round_size, round_growth)
        seed = int(rng.integers(2**31))
        model = create_model(substitute, labelled_answers.shape[1], device, seed=seed)
        targets, kept = response_to_targets(labelled_answers)
        if kept.any():
            fit(
                model,
                np.asarray(pool.images[labelled_ids[kept]]),
                targets,
                val_images,
                val_labels,
                cfg,
                seed=seed,
                desc=f"activethief substitute r{r}",
            )
        model.eval()
        unused = ids[~used[ids]]
        size = len(unused) if candidates is None else max(candidates, k)
        pick_from = (
            np.sort(rng.choice(unused, size, replace=False)) if size < len(unused) else unused
        )
        n = min(k, budget - spent)
        positions = _select(
            selection,
            model,
            pool,
            pick_from,
            labelled_ids,
            n,
            shortlist=int(round(dfal_shortlist * k)),
            deepfool={"max_iter": dfal_iter, "overshoot": dfal_overshoot, "classes": dfal_classes},
        )
        new_ids, new_answers = ask(pick_from[positions])
        labelled_ids = np.concatenate([labelled_ids, new_ids])
        labelled_answers = np.concatenate([labelled_answers, new_answers])
        log.info(
            "activethief %s round %d: %d of %d queries (%d candidates scored)",
            selection,
            r,
            spent,
            budget,
            len(pick_from),
        )
        r += 1
    return np.concatenate(sent)


def _select(
    selection: str,
    model,
    pool,
    candidate_ids: np.ndarray,
    labelled_ids: np.ndarray,
    n: int,
    shortlist: int,
    deepfool: dict,
) -> np.ndarray:
    """Positions into ``candidate_ids`` of the ``n`` queries of this round, in rank order."""
    rows = _Rows(pool.images, candidate_ids)
    if selection == "dfal":
        return select_dfal(model, rows, n, **deepfool)
    outputs = _outputs(model, pool.images, candidate_ids)
    if selection == "uncertainty":
        return select_uncertainty(outputs, n)
    labelled = _outputs(model, pool.images, labelled_ids)
    if selection == "k-center":
        return select_k_center(outputs, labelled, n)
    return select_dfal_k_center(model, rows, outputs, labelled, n, shortlist, **deepfool)
