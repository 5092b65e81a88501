"""A peer benchmark: ART's KnockoffNets against stealbench on the same victims and queries.

For each (victim, attack) row below, both attackers take seed s's first B cached queries of
the default run (the same images; the victim answers them identically, as it is
deterministic), train the same surrogate architecture from the same initial weights for the
same number of epochs (the default schedule's for B, its minimum of steps included) with the
same optimiser, at full probabilities and at top-1 labels,
for 3 seeds; both are scored on the victim's test split. ART (adversary-robustness-toolbox,
a pinned bench-only extra) draws its own order of the B images and trains with
PyTorchClassifier.fit; stealbench trains with train_surrogate, its default recipe (all B
queries, a fixed schedule, the final model).

Target: in every row stealbench's mean is at least ART's minus one CI half-width, at no
more than ART's time per cell. Written to benchmarks/results.md between
``<!-- peer:start -->`` and ``<!-- peer:end -->``.

    .venv/bin/python benchmarks/peer.py          # after (or it runs) the default's targets
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sections import snakemake, write_section  # noqa: E402

WORKDIR = ROOT / "benchmarks" / "out" / "default"
# (victim, attack, budget): two victims of the default, the main out-of-distribution attack
# and the realistic adversary.
ROWS = [
    ("mnist-lenet", "random-letters", 1000),
    ("mnist-lenet-pt", "random-letters", 1000),
    ("mnist-resnet8", "random-mnist5k", 1000),
]
SEEDS = (0, 1, 2)
GRANULARITIES = ("probs", "label")


def ensure_targets(workdir: Path) -> None:
    """The victims and the query caches the rows read (reused when already there)."""
    targets = [f"results/queries/{v}/{a}/s{s}.parquet" for v, a, _ in ROWS for s in SEEDS]
    run = subprocess.run(snakemake(workdir, "--cores", "2", *targets), capture_output=True)
    if run.returncode:
        raise SystemExit(run.stderr.decode()[-3000:])


def load(workdir: Path, victim: str, attack: str):
    import yaml

    from stealbench import config
    from stealbench.attack import cache, surrogates
    from stealbench.models.training import TrainConfig

    cfg = config.validate(yaml.safe_load((ROOT / "config.yaml").read_text()))
    spec = cfg["victims"][victim]
    r = workdir / "results"
    paths = SimpleNamespace(
        pool=r / f"data/{cfg['attacks'][attack]['pool']}.parquet",
        victim_dataset=r / f"data/{spec['dataset']}.parquet",
        victim_test=r / f"victims/{victim}/test_outputs.parquet",
        victim_metrics=r / f"victims/{victim}/metrics.json",
    )
    inputs = surrogates.load_attack_inputs(paths)
    files = [r / f"queries/{victim}/{attack}/s{s}.parquet" for s in SEEDS]
    caches = {s: cache.load_cache(files[i], files[:i], inputs.expect) for i, s in enumerate(SEEDS)}
    return inputs, caches, TrainConfig.from_dict(cfg["surrogates"]["training"]), cfg


def art_cell(model, victim, images, test, cfg, granularity: str, seed: int):
    """ART's KnockoffNets (random) on the given transfer images; (test accuracy, seconds)."""
    import numpy as np
    import torch
    from art.attacks.extraction import KnockoffNets
    from art.estimators.classification import PyTorchClassifier

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # ART draws its order with numpy's global generator
    x = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    shape = x.shape[1:]

    class Softmax(torch.nn.Module):  # ART's victim must return probabilities (see notes)
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, inputs):
            return torch.softmax(self.net(inputs), dim=1)

    classes = test.num_classes
    art_victim = PyTorchClassifier(
        Softmax(victim), torch.nn.CrossEntropyLoss(), shape, classes, clip_values=(0.0, 1.0)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    thief = PyTorchClassifier(
        model,
        torch.nn.CrossEntropyLoss(),
        shape,
        classes,
        optimizer=optimizer,
        clip_values=(0.0, 1.0),
    )
    attack = KnockoffNets(
        art_victim,
        batch_size_fit=cfg.batch_size,
        batch_size_query=1000,
        nb_epochs=cfg.epochs_for(len(x)),  # the schedule's epochs for B (min_steps included)
        nb_stolen=len(x),
        sampling_strategy="random",
        use_probability=granularity == "probs",
        verbose=False,
    )
    start = time.perf_counter()
    stolen = attack.extract(x, thieved_classifier=thief)
    seconds = time.perf_counter() - start
    xt = test.images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    accuracy = float((stolen.predict(xt, batch_size=1000).argmax(1) == test.labels).mean())
    return accuracy, seconds


def run(workdir: Path) -> list[dict]:
    import numpy as np

    from stealbench.attack import surrogates
    from stealbench.io import read_json
    from stealbench.models.victims import load_victim

    rows = []
    for victim_name, attack, budget in ROWS:
        inputs, caches, training, cfg = load(workdir, victim_name, attack)
        victim = load_victim(
            workdir / f"results/victims/{victim_name}/model.pt",
            read_json(workdir / f"results/victims/{victim_name}/metrics.json"),
        )
        for granularity in GRANULARITIES:
            ours, art, ours_s, art_s = [], [], [], []
            for s in SEEDS:
                queries = caches[s]
                rows_b = queries.transfer_set(budget)
                images = np.asarray(queries.query_images(inputs.pool, rows_b))
                seed = surrogates.surrogate_seed(cfg["seed"], victim_name, attack, "lenet", s)
                spec = surrogates.SurrogateSpec("lenet", training)
                _, metrics = surrogates.train_surrogate(
                    queries, inputs.pool, inputs.test, granularity, budget, spec, seed
                )
                ours.append(metrics["test_acc"])
                ours_s.append(metrics["train_seconds"])
                model = surrogates.build_surrogate(spec, inputs.test.num_classes, seed)
                accuracy, seconds = art_cell(
                    model,
                    victim,
                    images,
                    inputs.test,
                    training,
                    granularity,
                    seed,
                )
                art.append(accuracy)
                art_s.append(seconds)
            rows.append(
                {
                    "victim": victim_name,
                    "attack": attack,
                    "budget": budget,
                    "granularity": granularity,
                    "ours": ours,
                    "art": art,
                    "ours_seconds": float(np.mean(ours_s)),
                    "art_seconds": float(np.mean(art_s)),
                }
            )
            print(rows[-1], flush=True)
    return rows


def report(rows: list[dict]) -> str:
    import numpy as np

    from stealbench.report.tables import ci95

    lines = [
        "| victim | attack | B | granularity | ART (mean ± CI) | stealbench (mean ± CI) | "
        "target met | ART s/cell | stealbench s/cell |",
        "|---|---|---:|---|---|---|---|---:|---:|",
    ]
    met_all = True
    for r in rows:
        art_mean, art_ci = float(np.mean(r["art"])), ci95(r["art"])
        ours_mean, ours_ci = float(np.mean(r["ours"])), ci95(r["ours"])
        met = ours_mean >= art_mean - art_ci and r["ours_seconds"] <= r["art_seconds"]
        met_all &= met
        lines.append(
            f"| {r['victim']} | {r['attack']} | {r['budget']} | {r['granularity']} | "
            f"{art_mean:.3f} ± {art_ci:.3f} | {ours_mean:.3f} ± {ours_ci:.3f} | "
            f"{'yes' if met else '**no**'} | {r['art_seconds']:.2f} | {r['ours_seconds']:.2f} |"
        )
    import art

    head = (
        f"## Peer benchmark: ART's KnockoffNets vs stealbench\n\n"
        f"`.venv/bin/python benchmarks/peer.py`, run {time.strftime('%Y-%m-%d %H:%M')} on "
        f"{platform.machine()}, ART {art.__version__}. Same victim, the same first B cached "
        f"queries of each seed, a lenet surrogate from the same initial weights, the default "
        f"recipe's optimiser (Adam), learning rate, batch size and epochs; 3 seeds; accuracy on "
        f"the victim's test split. Target (stealbench mean >= ART mean - CI, and no slower): "
        f"**{'met in every row' if met_all else 'not met in every row'}**.\n"
    )
    return head + "\n" + "\n".join(lines)


def parse_args(doc: str) -> argparse.Namespace:
    """The options of the benchmarks that train on the default run's caches (this one and
    convergence.py); training runs on one thread, as a pipeline job does."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    return args


def main() -> None:
    args = parse_args(__doc__)
    ensure_targets(args.workdir)
    text = report(run(args.workdir))
    print(text)
    if not args.no_write:
        write_section("peer", text)


if __name__ == "__main__":
    main()
