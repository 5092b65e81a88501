"""README's method tables are generated from the methods' own declarations
(stealbench.docs) and must be current."""

import pytest

from stealbench import docs
from stealbench.defense import DEFENSES


def test_readme_method_tables_are_current():
    assert docs.main(["--check"]) == 0, "run: python -m stealbench.docs"


def test_the_tables_follow_what_a_method_declares(monkeypatch):
    """A parameter declared in a defense's file shows in the table (so the README test
    fails until README is regenerated)."""
    rounding = DEFENSES["rounding"]
    monkeypatch.setattr(rounding, "params", {**rounding.params, "mode": {"enum": ["half-even"]}})
    assert "`mode` (half-even)" in docs.methods_table()
    text = docs.README.read_text()
    assert docs.render(text) != text


def test_render_needs_the_markers():
    with pytest.raises(ValueError, match="no <!-- methods:start -->"):
        docs.render("# a README without the tables")


def test_every_test_named_in_bad_inputs_exists(root):
    """docs/bad-inputs.md names the test of each row as tests/<file>.py::<function>: each
    such function exists (a renamed or deleted test leaves a row without its proof)."""
    import ast
    import re

    text = (root / "docs" / "bad-inputs.md").read_text()
    named = set(re.findall(r"(tests/\w+\.py)::(\w+)", text))
    assert len(named) > 30
    missing = []
    for path, function in sorted(named):
        tree = ast.parse((root / path).read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        if function not in defined:
            missing.append(f"{path}::{function}")
    assert not missing, missing
