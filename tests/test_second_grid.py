"""The report stage on a second grid unlike the default (tests/second_grid.py: two victims of
different tasks and architectures, two seeds, budgets 200/1000/2000, probs/label/top3,
argmax-preserving defenses): per-victim verdicts where victims disagree, the pooled verdict
where they agree, and the few-seed notice and verdict where two seeds leave the rule's
comparison inside the intervals; and the whole report stage (the findings and the figures,
by the workflow's own scripts) run on one such grid."""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
from second_grid import ATTACKS, BUDGETS, DEFENSES, VICTIMS, WIDE, second_grid
from test_figures_grid import _assert_budget_ticks, _bands, _visible

from stealbench.report import figures
from stealbench.report import findings as f

MNIST, CIFAR = "mnist-lenet", "cifar-resnet"
THREE = (0, 1, 2)
NOTICE = "2 seeds: Student-t 95% intervals use t = 12.7, too wide to support a verdict"


def _found(**grid) -> dict[str, f.Finding]:
    return {x.id: x for x in f.findings(second_grid(**grid))}


def _answers(finding: f.Finding) -> set[str]:
    """Every verdict a finding gives: pooled, per key and per victim."""
    out = set()
    for value in (finding.verdict, *finding.by_victim.values()):
        out |= set(value.values()) if isinstance(value, dict) else {value}
    return out


def test_the_report_stage_runs_on_the_second_grid_and_its_json_carries_each_victims_verdict():
    grid = second_grid()
    assert set(grid["victims"]["victim"]) == set(VICTIMS)
    assert sorted(grid["cells"]["budget"].unique()) == [200, 1000, 2000]
    assert set(grid["cells"]["granularity"]) == {"probs", "label", "top3"}
    found = f.findings(grid)
    data = json.loads(json.dumps(f.findings_json(found), allow_nan=False))
    assert data["claim3"]["by_victim"] == {MNIST: "yes", CIFAR: "no"}
    assert set(data["claim1"]["by_victim"]) == set(VICTIMS)
    assert set(data["claim1"]["by_victim"][MNIST]) == {"probs", "label", "top3"}
    keys = {"id", "title", "verdict", "rule", "thresholds", "numbers", "by_victim"}
    assert all(set(finding) == keys for finding in data.values())
    markdown = f.findings_markdown(found, grid)
    assert markdown.count("\n## ") == len(found) + 2  # victims, query economy, findings


# ------------------------------------------------------------------- per-victim verdicts


def test_claim3_says_it_depends_on_the_victim_where_one_is_flagged_and_the_other_not():
    # The issue's grid: MNIST's realistic adversary flagged 0.001, CIFAR's 0.994; the pooled
    # mean (0.497) would say "No" for both.
    found = _found(realistic_flagged={MNIST: 0.001, CIFAR: 0.994})["claim3"]
    assert found.verdict == f.DEPENDS
    assert found.by_victim == {MNIST: "yes", CIFAR: "no"}
    assert f"**The realistic adversary evades it: {f.DEPENDS}.**" in found.text
    assert f"- **{MNIST}: Yes**, it flags 0.001." in found.text
    assert f"- **{CIFAR}: No**, it flags 0.994." in found.text
    assert "evades it: No.**" not in found.text


@pytest.mark.parametrize("flagged, verdict", [(0.001, "yes"), (0.994, "no")])
def test_claim3_gives_the_pooled_verdict_where_the_victims_agree(flagged, verdict):
    found = _found(realistic_flagged=flagged)["claim3"]
    assert found.verdict == verdict and found.by_victim == {MNIST: verdict, CIFAR: verdict}
    assert (
        f"**The realistic adversary evades it: {verdict.capitalize()}.** Rule: "
        f"{found.rule} It flags {flagged:.3f}." in found.text
    )
    assert f.DEPENDS not in found.text and f"- **{MNIST}" not in found.text


def test_claim3_prints_each_victims_seen_and_unseen_rates_where_they_differ():
    found = _found(seen_flagged={MNIST: 0.95, CIFAR: 0.30}, unseen_flagged=0.6)["claim3"]
    rates = found.numbers["by_victim"]
    assert (rates[MNIST]["seen_tnr"], rates[CIFAR]["seen_tnr"]) == (0.95, 0.30)
    assert found.numbers["seen_tnr"] == pytest.approx(0.625)  # the pooled mean, as before
    assert f"| {MNIST} | 0.970 | 0.950 | 0.600 | 0.001 |" in found.text
    assert f"| {CIFAR} | 0.970 | 0.300 | 0.600 | 0.994 |" in found.text
    same = _found(seen_flagged=0.9, unseen_flagged=0.6)["claim3"]
    assert "each victim's:" not in same.text and f"| {MNIST} | 0.970" not in same.text


# finding -> (an effect the victims disagree on, each victim's verdict, the same effect
# agreed), on three seeds so the intervals decide
DISAGREE = {
    "claim2a": ("probs_bonus", {MNIST: 0.05, CIFAR: -0.05}, 0.05),
    "claim2b": ("arch_bonus", {MNIST: 0.1, CIFAR: -0.1}, 0.1),
    "budget": ("budget_slope", {MNIST: 0.05, CIFAR: -0.05}, 0.05),
    "claim4": ("realistic_bonus", {MNIST: 0.2, CIFAR: -0.2}, 0.2),
    "defenses": ("defense_effect", {MNIST: 0.0, CIFAR: 0.1}, 0.15),
}


@pytest.mark.parametrize("name", DISAGREE)
def test_a_finding_says_it_depends_on_the_victim_and_lists_each(name):
    effect, split, _ = DISAGREE[name]
    found = _found(seeds=THREE, **{effect: split})[name]
    expected = {MNIST: "yes", CIFAR: "no"} if name != "defenses" else {MNIST: "no", CIFAR: "yes"}
    assert found.verdict == f.DEPENDS and found.by_victim == expected
    for victim, verdict in expected.items():
        assert f"- **{victim}: {verdict.capitalize()}**, " in found.text, victim
    if name != "defenses":
        assert found.text.startswith(f"**{f.DEPENDS.capitalize()}.**")


@pytest.mark.parametrize("name", DISAGREE)
def test_a_finding_gives_the_pooled_verdict_where_the_victims_agree(name):
    effect, _, agreed = DISAGREE[name]
    found = _found(seeds=THREE, **{effect: agreed})[name]
    assert found.verdict == "yes" and found.by_victim == {MNIST: "yes", CIFAR: "yes"}
    assert f.DEPENDS not in found.text and f"- **{MNIST}: Yes**" not in found.text


def test_prada_says_it_depends_on_the_victim_per_strategy():
    found = _found(prada_flagged={(MNIST, "random"): True})["prada"]
    assert found.verdict == {"adaptive": "yes", "random": f.DEPENDS}
    assert found.by_victim == {
        CIFAR: {"adaptive": "yes", "random": "no"},
        MNIST: {"adaptive": "yes", "random": "yes"},
    }
    assert (
        f"- **random: {f.DEPENDS.capitalize()}**, 4 of 8 attackers flagged ({CIFAR}: no, 0 of 4; "
        f"{MNIST}: yes, 4 of 4)" in found.text
    )
    agreed = _found()["prada"]
    assert agreed.verdict == {"adaptive": "yes", "random": "no"}
    assert "- **random: No**, 0 of 8 attackers flagged\n" in agreed.text


def test_dawn_says_it_depends_on_the_victim():
    grid = second_grid()
    dawn = grid["defended"].query("defense == 'top-k'").assign(defense="dawn")
    dawn = dawn.assign(
        dawn_watermarks=50,
        dawn_reproduced=40,
        dawn_acc=0.8,
        dawn_p_value=1e-9,
        dawn_claim_bound=1e-6,
        dawn_caught=dawn["victim"] == MNIST,
        dawn_independent=2,
        dawn_false_claims=0,
    )
    from stealbench.report.tables import dawn_table

    found = f.dawn_finding(dawn_table(dawn), None)
    assert found.verdict == f.DEPENDS and found.by_victim == {MNIST: "yes", CIFAR: "no"}
    assert f"- **{CIFAR}: No**, DAWN catches 0.000 of" in found.text
    found = f.dawn_finding(dawn_table(dawn.assign(dawn_caught=True)), None)
    assert found.verdict == "yes" and f.DEPENDS not in found.text


# ---------------------------------------------------------------------------- few seeds


# finding -> (effects whose comparison lies inside two seeds' intervals, effects clear of
# them); spread 0.01 a seed: two seeds' half-width 0.127, three seeds' 0.029
FEW = {
    "claim1": ({}, {"spread": 0.0002}),  # MNIST's best recovery 0.889 against the target 0.9
    "claim2b": ({"arch_bonus": 0.03}, {"arch_bonus": 0.5}),
    "claim4": ({"realistic_bonus": 0.1}, {"realistic_bonus": 0.6}),
    "strategies": ({"adaptive_bonus": 0.0}, {"adaptive_bonus": -0.4}),
    "defenses": ({}, {"spread": 0.0002}),  # MNIST's realistic attacker at recovery 0.505
}


@pytest.mark.parametrize("name", FEW)
def test_two_seeds_give_the_notice_and_not_enough_seeds_where_the_comparison_is_inside(name):
    inside, _ = FEW[name]
    found = _found(**inside)[name]
    assert f.FEW_SEEDS in _answers(found)
    assert NOTICE in found.text
    assert found.numbers  # the numbers are still given


@pytest.mark.parametrize("name", FEW)
def test_three_seeds_decide_the_same_comparison(name):
    inside, _ = FEW[name]
    found = _found(seeds=THREE, **inside)[name]
    assert f.FEW_SEEDS not in _answers(found) and "t = " not in found.text


@pytest.mark.parametrize("name", FEW)
def test_two_seeds_decide_a_comparison_clear_of_the_intervals(name):
    _, clear = FEW[name]
    found = _found(**clear)[name]
    assert f.FEW_SEEDS not in _answers(found) and "t = " not in found.text


def test_not_enough_seeds_is_a_victims_verdict_beside_the_others():
    # the architecture: MNIST's own-architecture bonus clear of two seeds' intervals, CIFAR's
    # inside them
    found = _found(arch_bonus={MNIST: 0.5, CIFAR: 0.03})["claim2b"]
    assert found.by_victim == {MNIST: "yes", CIFAR: f.FEW_SEEDS}
    assert found.verdict == f.DEPENDS
    assert f"- **{CIFAR}: Not enough seeds**, " in found.text and NOTICE in found.text


def test_claim1_a_target_reached_inside_two_seeds_intervals_is_not_enough_seeds():
    # MNIST with full probabilities reaches recovery 0.909 at 2000 queries: 0.009 past the
    # target, inside two seeds' half-width (0.128), clear of three seeds' or a tiny spread's
    key = f"{MNIST}/probs"
    found = _found(budget_slope=0.06)["claim1"]
    assert found.numbers[key]["stolen"] and found.numbers[key]["budget"] == 2000
    assert found.verdict[key] == f.FEW_SEEDS == found.by_victim[MNIST]["probs"]
    assert f"not enough seeds to tell: {MNIST}" in found.text and NOTICE in found.text
    assert _found(seeds=THREE, budget_slope=0.06)["claim1"].verdict[key] == "yes"
    assert _found(budget_slope=0.06, spread=0.0002)["claim1"].verdict[key] == "yes"


# ------------------------------------------------------------------- the report stage


class _Named(dict):
    """Snakemake's named lists as a script reads them: by name, by attribute, by index."""

    def __getattr__(self, name):
        return self[name]


SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


def _run_script(name, inputs, outputs, tmp_path):
    sm = _Named(input=_Named(inputs), output=_Named(outputs), log=[str(tmp_path / "log")])
    sm.update(rule=name, wildcards={}, threads=1, params=_Named())
    runpy.run_path(str(SCRIPTS / f"{name}.py"), init_globals={"snakemake": sm})


def _figures(out, stems):
    """A figure job's outputs: {output name: file}, a PNG and an SVG per figure of ``stems``
    ({the rule's name for it: its file's stem})."""
    return {f"{n}_{e}": out / f"{stem}.{e}" for n, stem in stems.items() for e in ("png", "svg")}


def test_the_report_stage_on_the_second_grid_gives_every_point_of_the_issue(tmp_path, monkeypatch):
    """The tables of one grid (WIDE: two seeds far apart, a victim its surrogates beat) written
    as results/tables/ holds them, then the report jobs' scripts on them: the findings (each
    victim's verdict, the few-seed notice) and the figures (axes inside the feasible range with
    their bands clipped, the grid's budgets as ticks, the trade-off against each defense's
    strength), all from the same run."""
    from stealbench import runtime

    monkeypatch.setattr(runtime, "setup", lambda *args, **kwargs: None)  # no global logging
    drawn, save = {}, figures.save_figure

    def keep(figure, paths):  # write the files, and keep the figure to read its Axes
        drawn[Path(paths[0]).stem] = figure
        save(figure, paths)

    monkeypatch.setattr(figures, "save_figure", keep)
    try:
        (tmp_path / "tables").mkdir()
        tables = {}
        for name, table in second_grid(**WIDE).items():
            tables[name] = tmp_path / "tables" / f"{name}.parquet"
            table.to_parquet(tables[name])
        out = tmp_path / "results"
        findings = {"md": out / "findings.md", "json": out / "findings.json"}
        out.mkdir()
        _run_script(
            "write_findings",
            {n: p for n, p in tables.items() if n != "per_class"},
            findings,
            tmp_path,
        )
        claims = _figures(out, {f"accuracy_{v}": v for v in VICTIMS})
        claims |= _figures(out, {x: x for x in ("recovery_vs_budget", "strategies")})
        _run_script(
            "plot_claims",
            {"summary": tables["summary"], "strategies": tables["strategies"]},
            claims,
            tmp_path,
        )
        defenses = _figures(out, {x: x for x in ("defense_utility", "defense_perturbation")})
        _run_script(
            "plot_defenses",
            {"defended": tables["defended"], "matched": tables["matched_cost"]},
            defenses,
            tmp_path,
        )
        assert all(
            p.stat().st_size for p in [*findings.values(), *claims.values(), *defenses.values()]
        )
        # the findings: each victim's verdict where they disagree, the few-seed notice
        markdown = findings["md"].read_text()
        assert f"**The realistic adversary evades it: {f.DEPENDS}.**" in markdown
        assert f"- **{MNIST}: Yes**, it flags 0.001." in markdown
        assert f"- **{CIFAR}: No**, it flags 0.994." in markdown
        assert NOTICE in markdown and "Not enough seeds" in markdown
        data = json.loads(findings["json"].read_text())
        assert data["claim3"]["by_victim"] == {MNIST: "yes", CIFAR: "no"}
        # accuracy figures: inside [0, 1] with the (far wider) bands clipped, budget ticks
        for name in [*VICTIMS, "strategies"]:
            for ax in _visible(drawn[name]):
                low, high = ax.get_ylim()
                assert 0.0 <= low < high <= 1.0
                assert _bands(ax).min() == 0.0 and _bands(ax).max() == 1.0
                _assert_budget_ticks(ax)
        # recovery: from 0 to just above the weak victim's surrogates (recovery above 1)
        for ax in _visible(drawn["recovery_vs_budget"]):
            low, high = ax.get_ylim()
            assert low == 0.0 and figures.RECOVERY_TOP < high and _bands(ax).max() == high
            assert list(ax.get_xticks())[: len(BUDGETS)] == list(BUDGETS)
        # the trade-off: no defense costs benign users, so each is drawn against its strength
        axes = _visible(drawn["defense_utility"])
        assert len(axes) == len(VICTIMS) * len(ATTACKS) * len(DEFENSES)
        for ax in axes:
            defense = ax.get_title().split("\n")[0].rsplit(": ", 1)[1]
            strength, values = DEFENSES[defense]
            assert ax.get_xlabel() == f"{defense}'s {strength} (stronger to the right)"
            np.testing.assert_array_equal(ax.get_xticks(), sorted(values))
            low, high = ax.get_ylim()
            assert 0.0 <= low < high <= 1.0
    finally:
        import matplotlib.pyplot as plt

        for figure in drawn.values():
            plt.close(figure)


def test_claim1_not_enough_seeds_names_the_series_that_may_reach_the_target():
    # MNIST's best recovery (0.889) is under the target, inside two seeds' intervals: the
    # line names the series whose interval holds the target, not only the best mean
    key = f"{MNIST}/probs"
    found = _found()["claim1"]
    assert not found.numbers[key]["stolen"] and found.verdict[key] == f.FEW_SEEDS
    could = found.numbers[key]["could_reach"]
    assert could["recovery"] + could["recovery_ci95"] >= f.RECOVERY_TARGET
    assert f"({f._pm(could['recovery'], could['recovery_ci95'])}) may reach it" in found.text
    assert "could_reach" not in _found(seeds=THREE)["claim1"].numbers[key]
