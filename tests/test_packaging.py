"""pyproject.toml and envs/stealbench.yaml pin the same versions; the env installs stealbench."""

import re
import tomllib

import yaml

INSTALLS_STEALBENCH = "-e ${STEALBENCH_ROOT}"  # see the comment above it in the env file


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
    env_files = sorted((root / "envs").glob("*.yaml"))
    assert root / "envs/stealbench.yaml" in env_files, env_files
    for env_file in env_files:
        env = yaml.safe_load(env_file.read_text())
        pips = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
        assert len(pips) == 1, f"{env_file.name}: one pip section"
        pip = pips[0]
        assert INSTALLS_STEALBENCH in pip, f"{env_file.name} does not install stealbench itself"
        pinned = _pins(p for p in pip if p != INSTALLS_STEALBENCH)
        assert all(pinned.values()), f"{env_file.name}: every pip entry is pinned with =="
        for name, version in pinned.items():
            assert declared.get(name) == version, f"{env_file.name}: {name}=={version}"
        # the rules need everything but the workflow engine itself (stealbench's own
        # dependencies bring it all the same)
        assert set(declared) - set(pinned) == {"snakemake"}, f"{env_file.name}"
