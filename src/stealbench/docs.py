"""README's method tables, generated from what each strategy and defense file declares.

``python -m stealbench.docs`` rewrites the part of README.md between the markers below;
``--check`` fails if it is out of date (tests/test_docs.py runs it), so a parameter added to
a method shows in README or the tests fail.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .attack.strategies import registry as strategy_registry
from .defense import registry as defense_registry

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- methods:start -->", "<!-- methods:end -->"


def _value(schema: dict) -> str:
    """A parameter's JSON schema in a few words: its type and range."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "enum" in schema:
        return " \\| ".join(map(str, schema["enum"]))
    kind = schema.get("type", "any")
    text = " or ".join(kind) if isinstance(kind, list) else kind
    if kind == "array" and "items" in schema:
        text = f"list of {_value(schema['items'])}"
    low = [f"≥ {schema['minimum']:g}"] if "minimum" in schema else []
    low += [f"> {schema['exclusiveMinimum']:g}"] if "exclusiveMinimum" in schema else []
    high = [f"≤ {schema['maximum']:g}"] if "maximum" in schema else []
    high += [f"< {schema['exclusiveMaximum']:g}"] if "exclusiveMaximum" in schema else []
    return text + (f" {', '.join(low + high)}" if low or high else "")


def _params(schemas: dict, defaults: dict, strength: str | None = None) -> str:
    out = []
    for name, schema in schemas.items():
        default = defaults.get(name)
        mark = "**" if name == strength else ""
        text = f"{mark}`{name}`{mark} ({_value(schema)}"
        out.append(text + (f"; {default!r})" if default is not None else ")"))
    return "<br>".join(out) or "-"


def summary(doc: str) -> str:
    """A method's docs in a phrase: its docstring's first paragraph up to the first colon
    outside parentheses (most open "Name (authors, venue): what it does")."""
    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == ":" and depth == 0 and text[i + 1 : i + 2] == " ":
            text = text[:i]
            break
    return text.rstrip(".").replace("``", "`").replace("|", "\\|")


def _file(module: str) -> str:
    path = "src/" + module.replace(".", "/") + ".py"
    return f"[{path.rsplit('/', 1)[-1]}]({path})"


def methods_table() -> str:
    """The markdown tables of every strategy and every defense."""
    strategy_registry.discover()  # the defaults are the functions'
    lines = [
        "| strategy | what | kind | options (type; default) | file |",
        "|---|---|---|---|---|",
    ]
    for name, spec in sorted(strategy_registry.STRATEGIES.items()):
        options = _params(spec.options, spec.defaults())
        what = summary(spec.doc)
        lines.append(f"| `{name}` | {what} | {spec.kind} | {options} | {_file(spec.module)} |")
    lines += [
        "",
        "| defense | what | parameters (type; default), **strength** | needs | file |",
        "|---|---|---|---|---|",
    ]
    for name, cls in sorted(defense_registry.DEFENSES.items()):
        params = _params(cls.params, defense_registry.defaults(cls), cls.strength)
        needs = ", ".join(cls.needs) or "-"
        what = summary(cls.__doc__ or sys.modules[cls.__module__].__doc__)
        lines.append(f"| `{name}` | {what} | {params} | {needs} | {_file(cls.__module__)} |")
    return "\n".join(lines)


def render(text: str) -> str:
    """``text`` (README) with the tables between the markers replaced by current ones."""
    if START not in text or END not in text:
        raise ValueError(f"README has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{methods_table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README is out of date")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    import stealbench.defense  # noqa: F401 (registers the defenses)

    text = args.readme.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print(f"{args.readme}: method tables out of date; run python -m stealbench.docs")
            return 1
        return 0
    args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
