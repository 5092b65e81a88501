import numpy as np
import pandas as pd

from stealbench import report


def _cells(probs_bonus=0.1, budget_slope=0.1, realistic_bonus=0.2):
    rows = []
    for attack, adversary in [("a-real", "realistic"), ("a-ood", "out-of-distribution")]:
        for granularity in ("probs", "label"):
            for i, budget in enumerate((10, 100, 1000)):
                for seed in (0, 1):
                    acc = 0.3 + budget_slope * i + (probs_bonus if granularity == "probs" else 0)
                    acc += realistic_bonus if adversary == "realistic" else 0
                    rows.append(
                        {
                            "victim": "v",
                            "victim_arch": "lenet",
                            "dataset": "d",
                            "attack": attack,
                            "strategy": "random",
                            "pool": attack,
                            "adversary": adversary,
                            "granularity": granularity,
                            "budget": budget,
                            "surrogate_arch": "lenet",
                            "seed": seed,
                            "victim_acc": 0.9,
                            "test_acc": acc + 0.001 * seed,
                            "agreement": acc,
                            "recovery": acc / 0.9,
                        }
                    )
    return pd.DataFrame(rows)


def test_findings_follow_the_data():
    assert report.granularity_finding(_cells(probs_bonus=0.1))[1]["verdict"] == "Yes"
    assert report.granularity_finding(_cells(probs_bonus=-0.1))[1]["verdict"] == "No"
    assert report.budget_finding(_cells(budget_slope=0.1))[1]["verdict"] == "Yes"
    assert report.budget_finding(_cells(budget_slope=-0.1))[1]["verdict"] == "No"
    assert report.adversary_finding(_cells(realistic_bonus=0.2))[1]["verdict"] == "Yes"
    assert report.adversary_finding(_cells(realistic_bonus=-0.2))[1]["verdict"] == "No"


def test_finding_numbers_are_computed():
    text, stats = report.granularity_finding(_cells(probs_bonus=0.1))
    assert np.isclose(stats["mean_difference"], 0.1)
    assert stats["pairs"] == 12 and stats["wins"] == 12
    assert "+0.100" in text


def test_query_accounting():
    cells = _cells()
    metas = [
        {
            "victim": "v",
            "attack": a,
            "strategy": "random",
            "pool": a,
            "budget": 1000,
            "victim_forward_passes": 1000,
        }
        for a in ("a-real", "a-ood")
    ]
    table = report.query_accounting(metas, cells)
    assert (table["cells"] == 12).all()
    assert (table["passes_without_cache"] == 2 * 2 * (10 + 100 + 1000)).all()
    assert np.allclose(table["cache_saving"], 4.44)
