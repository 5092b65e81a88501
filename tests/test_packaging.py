"""pyproject.toml and envs/*.yaml pin the same versions."""

import re
import tomllib

import yaml


def _pins(lines):
    out = {}
    for line in lines:
        name, _, version = line.partition("==")
        out[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return out


def test_conda_env_agrees_with_pyproject(root):
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = _pins(project["dependencies"])
    assert all(declared.values()), "every dependency in pyproject.toml is pinned with =="
    for env_file in (root / "envs").glob("*.yaml"):
        env = yaml.safe_load(env_file.read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        pinned = _pins(pip)
        for name, version in pinned.items():
            assert declared.get(name) == version, f"{env_file.name}: {name}=={version}"
        # the rules need everything but the workflow engine itself
        assert set(declared) - set(pinned) <= {"snakemake"}
