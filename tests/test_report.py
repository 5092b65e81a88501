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


def test_ci95_is_student_t_half_width():
    values = [0.5, 0.6, 0.7]
    # t(0.975, 2) = 4.302653; sd = 0.1; n = 3
    assert np.isclose(report.ci95(values), 4.302653 * 0.1 / np.sqrt(3), rtol=1e-6)
    assert np.isnan(report.ci95([0.4]))


def test_summarise_groups_over_seeds_only():
    cells = _cells().assign(kl_divergence=0.1)
    summary = report.summarise(cells)
    assert len(summary) == len(cells) / 2 and (summary["seeds"] == 2).all()
    first = summary.iloc[0]
    same = cells[
        (cells["attack"] == first["attack"])
        & (cells["granularity"] == first["granularity"])
        & (cells["budget"] == first["budget"])
    ]
    assert np.isclose(first["test_acc_mean"], same["test_acc"].mean())


def test_per_class_table_explodes_and_names_classes():
    cells = _cells().head(4).assign(class_acc=[[1.0, 0.5]] * 4, victim_class_acc=[[1.0, 1.0]] * 4)
    table = report.per_class_table(cells, {"d": ["zero", "one"]})
    assert list(table["class_name"].unique()) == ["zero", "one"]
    assert np.allclose(table.loc[table["class"] == 1, "drop"], 0.5)


def test_claim_tables_put_the_paper_beside_matching_victims():
    summary = report.summarise(_cells().assign(kl_divergence=0.1))
    table = report.reproduction_table(summary, {"v": "cifar10-rn34"})
    assert (table["paper_victim_acc"] == 94.6).all()
    assert np.allclose(table["paper_recovery"], 88.2 / 94.6)
    assert (table["budget"] == 1000).all() and set(table["adversary"]) == {
        "realistic",
        "out-of-distribution",
    }
    unmatched = report.reproduction_table(summary, {})
    assert unmatched["paper_victim_acc"].isna().all()
    wide = report.granularity_table(summary, {"v": "cifar10-rn34"})
    assert list(wide.columns[4:8]) == ["probs_acc", "probs_ci95", "label_acc", "label_ci95"]
    assert (wide["paper_label"] == 84.4).all()
