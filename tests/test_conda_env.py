"""envs/stealbench.yaml built as written, and one rule of the workflow run in it alone.

No conda channel is reachable from the machines this project is tested on (only PyPI, Debian
and npm are). The conda-compatible tools those registries offer need one for ``python=3.11`` and
``pip``, the env's two conda packages: py-rattler 0.28 from PyPI solves only from a channel (tried:
it fails on resolving conda-forge's host), npm has rattler's JavaScript bindings to the same
library, Debian only conda-package-handling, which unpacks packages. So this test builds the
closest real substitute: a fresh ``python -m venv`` of this 3.11 interpreter (no system
site-packages) stands in for those two, and its pip is given the env's pip section exactly as
written, the way ``snakemake --use-conda`` and conda would give it: Snakemake copies the env file
to ``<conda-prefix>/<hash>.yaml``, conda writes the pip section to a requirements file beside that
copy and runs ``python -m pip install -U -r <file> --exists-action=b`` in that directory, with the
environment of the Snakemake process, where the Snakefile has set ``STEALBENCH_ROOT``. pip reads
the machine's own configuration (PyPI and any local wheels), as conda's pip would. The substitute
leaves out conda's solver only; what the rules import comes from that pip section.

The rule then runs through Snakemake, with the env's interpreter, from a copy of the workflow
without ``src/``, in a clean environment (``env -i``-like: PATH with the env's ``bin`` first, as
``conda activate`` would, HOME and LANG; no PYTHONPATH) and a working directory outside the
repository. Snakemake comes from the env itself: stealbench's own dependencies pin it. The job's
script preamble extends ``sys.path`` with the Snakemake process's ``sys.path``, which here holds
the env's directories only, so the job can import stealbench only through the env's install.
(From the repository's own Snakefile the job would also reach ``src/`` through the path that
Snakefile inserts into its process: the way jobs found stealbench before the env installed it.)

The env (about 6 GB, about 5 minutes to build on 2 cores) is cached under
``~/.cache/stealbench-envtest/<key>`` (``STEALBENCH_ENVTEST_CACHE`` moves it), keyed by the env
file, pyproject.toml (its dependencies come with the stealbench entry), the repository's path (the
install is editable) and the interpreter's version; a warm run takes about 20 seconds.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# conda: the env build; workflow: it runs a rule, so the quick unit tier leaves it out
pytestmark = [pytest.mark.conda, pytest.mark.workflow]

ENV_FILE = Path("envs/stealbench.yaml")
CACHE = Path(
    os.environ.get("STEALBENCH_ENVTEST_CACHE", Path.home() / ".cache" / "stealbench-envtest")
)
DONE = "env_setup_done"  # Snakemake's flag file for a completely built env
# What a rule needs of the repository, src/ left out on purpose.
WORKFLOW = ["Snakefile", "rules", "workflow", "report", "envs", "config.yaml", "configs"]
RULE_TARGET = "results/data/uci-digits.parquet"  # materialise_dataset on configs/smoke.yaml


def pip_section(root: Path) -> list[str]:
    env = yaml.safe_load((root / ENV_FILE).read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    # the venv stands in for exactly these two: any other conda package would go unbuilt here
    assert conda == ["python=3.11", "pip"], conda
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))


def env_key(root: Path) -> str:
    digest = hashlib.sha256()
    for part in (
        (root / ENV_FILE).read_bytes(),
        (root / "pyproject.toml").read_bytes(),
        str(root).encode(),
        sys.version.encode(),
    ):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def build_env(root: Path) -> Path:
    """The env of envs/stealbench.yaml (cached): a venv whose pip ran the env's pip section."""
    key = env_key(root)
    env_dir = CACHE / key
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second pytest waits for the first build
        if (env_dir / DONE).exists():
            return env_dir
        shutil.rmtree(env_dir, ignore_errors=True)  # an incomplete build, as Snakemake does
        subprocess.run(
            [sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300, env=_host_env()
        )
        # Snakemake: the env file copied beside the env; conda: the pip section written to a
        # requirements file in that directory, and pip run there.
        shutil.copyfile(root / ENV_FILE, CACHE / f"{key}.yaml")
        requirements = CACHE / f"condaenv.{key}.requirements.txt"
        requirements.write_text("\n".join(pip_section(root)))
        pip = subprocess.run(
            [env_dir / "bin/python", "-m", "pip", "install", "-U", "-r", requirements.name]
            + ["--exists-action=b"],
            cwd=CACHE,
            env={**_host_env(), "STEALBENCH_ROOT": str(root)},  # as the Snakefile sets it
            capture_output=True,
            text=True,
            timeout=1800,
        )
        requirements.unlink()
        assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
        (env_dir / "root.txt").write_text(str(root))
        (env_dir / DONE).touch()
        _prune(root, key)
        return env_dir


def _host_env() -> dict[str, str]:
    """This process's environment less what would leak its packages into the env's pip."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONUSERBASE"}
    }


def _prune(root: Path, key: str) -> None:
    """Envs (about 6 GB each) of earlier versions of this checkout's env file, and of checkouts
    that are gone (CI's clones), go."""
    for old in CACHE.iterdir():
        stamp = old / "root.txt"
        if not (old.name != key and stamp.exists()):
            continue
        if stamp.read_text() == str(root) or not Path(stamp.read_text()).is_dir():
            shutil.rmtree(old, ignore_errors=True)
            for aux in CACHE.glob(f"{old.name}.*"):
                aux.unlink(missing_ok=True)


def clean_env(env_dir: Path, home: Path) -> dict[str, str]:
    """A job's environment with nothing inherited: the env's bin first, as conda activate puts
    it, then the system's; no PYTHONPATH, no VIRTUAL_ENV."""
    return {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def test_env_installs_stealbench_from_the_snakefiles_directory(root):
    """The pip section names stealbench itself (pip brings its pinned dependencies, snakemake
    included), from where the Snakefile says it is."""
    assert "-e ${STEALBENCH_ROOT}" in pip_section(root)
    assert "os.environ.update(STEALBENCH_ROOT=str(workflow.basedir))" in (
        (root / "Snakefile").read_text()
    )


def test_a_rule_runs_in_the_env_alone(root, tmp_path):
    env_dir = build_env(root)
    python = env_dir / "bin" / "python"
    cfg = (env_dir / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg

    workflow = tmp_path / "workflow"  # the repository less src/
    workflow.mkdir()
    for name in WORKFLOW:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, workflow / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, workflow / name)
    assert not (workflow / "src").exists()
    work, home = tmp_path / "work", tmp_path / "home"
    home.mkdir()
    env = clean_env(env_dir, home)

    run = subprocess.run(
        [str(python), "-m", "snakemake", RULE_TARGET, "--cores", "1"]
        + ["--snakefile", str(workflow / "Snakefile"), "--directory", str(work)]
        + ["--allowed-rules", "materialise_dataset"]
        + ["--configfile", str(workflow / "configs/smoke.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "1 of 1 steps (100%) done" in run.stderr
    assert (work / RULE_TARGET).stat().st_size > 0
    log = (work / "results/logs/data/uci-digits.log").read_text()
    assert "materialised uci-digits" in log

    # Where that interpreter, in that environment, finds stealbench: an install in the env's
    # own site-packages (its editable .pth names the repository's src/), not an inherited path.
    probe = subprocess.run(
        [str(python), "-c", WHERE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    site, dist, origin, module, path_entry, snakemake_file = probe.stdout.split("\n")[:6]
    assert Path(site).is_relative_to(env_dir), site
    assert Path(dist).parent == Path(site), dist  # stealbench-0.1.0.dist-info in the env
    assert origin == f"{root.as_uri()} editable", origin  # ${STEALBENCH_ROOT}, resolved
    assert Path(module) == root / "src/stealbench/__init__.py"
    assert path_entry == "pth", path_entry  # src/ came from the env's .pth, not PYTHONPATH
    assert Path(snakemake_file).is_relative_to(env_dir), snakemake_file


WHERE = """
import importlib.metadata, json, os, site, sys
print(site.getsitepackages()[0])
dist = importlib.metadata.distribution("stealbench")
print(dist._path)
origin = json.loads(dist.read_text("direct_url.json"))
print(origin["url"], "editable" if origin.get("dir_info", {}).get("editable") else "copy")
import stealbench
print(stealbench.__file__)
src = os.path.dirname(os.path.dirname(stealbench.__file__))
pths = [p for p in os.listdir(site.getsitepackages()[0]) if p.endswith(".pth")]
named = any(
    src in open(os.path.join(site.getsitepackages()[0], p)).read().split() for p in pths
)
print("pth" if named and "PYTHONPATH" not in os.environ else "elsewhere")
import snakemake
print(snakemake.__file__)
"""
