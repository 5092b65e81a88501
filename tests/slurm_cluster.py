"""A throwaway single-node SLURM cluster for the tests: munged, slurmctld and slurmd.

Everything lives in one temporary directory (config, keys, sockets, state, spool, logs); the
three daemons run in the foreground as children of the test process, so they are stopped by
the process ids recorded here. Accounting is off (no slurmdbd, sacct unusable); slurmctld
writes one line per finished job with jobcomp/filetxt, which is what the tests read.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel", "munge", "unmunge")
PACKAGES = ("slurm-wlm", "munge")
MEMORY_HEADROOM_MB = 2048

# srun inside a job: the SLURM executor's job step drops every SLURM_* variable but a few job
# ids before it calls `srun`, SLURM_CONF included, so srun would look for /etc/slurm/slurm.conf.
# This shim, first on the jobs' PATH, points it back at the generated config.
SRUN_SHIM = """#!/bin/sh
SLURM_CONF={conf}
export SLURM_CONF
exec {srun} "$@"
"""


class SlurmUnavailable(RuntimeError):
    """SLURM could not be installed or started here."""


class SlurmNotPossibleHere(SlurmUnavailable):
    """Not root, or the binaries are missing and there is no apt-get to install them."""


def missing_binaries() -> list[str]:
    return [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None]


def install() -> None:
    """Install Debian's slurm-wlm and munge if a daemon or client is missing (needs root)."""
    if not missing_binaries():
        return
    if shutil.which("apt-get") is None:
        raise SlurmNotPossibleHere(f"{', '.join(missing_binaries())} missing and no apt-get")
    if os.geteuid() != 0:
        raise SlurmNotPossibleHere(f"{', '.join(missing_binaries())} missing and not root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # A failing third-party source makes `update` exit non-zero; Debian's lists may still be fine.
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
    run = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if run.returncode != 0 or missing_binaries():
        raise SlurmUnavailable(
            f"apt-get install {' '.join(PACKAGES)} failed (exit {run.returncode}):\n"
            + (run.stdout + run.stderr)[-3000:]
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _memory_mb() -> int:
    meminfo = Path("/proc/meminfo").read_text()
    total_kb = int(re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M).group(1))
    return max(1024, total_kb // 1024 - MEMORY_HEADROOM_MB)


@dataclass
class SlurmCluster:
    """One node (this machine, named after `hostname -s`) in one default partition."""

    root: Path
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    cpus: int = field(default_factory=_cpus)
    memory_mb: int = field(default_factory=_memory_mb)
    partition: str = "debug"
    min_job_age: int = 600
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def jobcomp(self) -> Path:
        return self.root / "jobcomp.txt"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def env(self) -> dict[str, str]:
        """The environment of every SLURM client: this cluster's config, the srun shim."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    def log(self, daemon: str) -> Path:
        return self.root / "log" / f"{daemon}.log"

    def write_config(self) -> None:
        for sub in ("log", "state", "spool", "munge", "bin"):
            (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        r = self.root
        lines = {
            "ClusterName": "stealbench",
            "SlurmctldHost": f"{self.node}(127.0.0.1)",
            "SlurmctldPort": _free_port(),
            "SlurmdPort": _free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={r / 'munge' / 'munge.socket'}",
            "StateSaveLocation": r / "state",
            "SlurmdSpoolDir": r / "spool",
            "SlurmctldPidFile": r / "slurmctld.pid",
            "SlurmdPidFile": r / "slurmd.pid",
            "SlurmctldLogFile": self.log("slurmctld"),
            "SlurmdLogFile": self.log("slurmd"),
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
            # no slurmdbd: no accounting storage, no gathering, no cgroups
            "AccountingStorageType": "accounting_storage/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "JobCompType": "jobcomp/filetxt",
            "JobCompLoc": self.jobcomp,
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "MpiDefault": "none",
            "SwitchType": "switch/none",
            "PlugStackConfig": r / "plugstack.conf",
            # several jobs share the node, CPU by CPU and MB by MB
            "SchedulerType": "sched/backfill",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_CPU_Memory",
            # squeue remembers finished jobs this long: the executor's status checks need it
            # (the tests read finished jobs from the job completion log, which never forgets)
            "MinJobAge": self.min_job_age,
            "ReturnToService": 2,
            "SlurmdTimeout": 120,
            "InactiveLimit": 0,
            "KillWait": 5,
        }
        text = "".join(f"{key}={value}\n" for key, value in lines.items())
        text += (
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN\n"
            f"PartitionName={self.partition} Nodes={self.node} Default=YES "
            "MaxTime=INFINITE State=UP\n"
        )
        self.conf.write_text(text)
        (r / "plugstack.conf").write_text("")
        shim = self.bin / "srun"
        shim.write_text(SRUN_SHIM.format(conf=self.conf, srun=shutil.which("srun")))
        shim.chmod(0o755)

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "wb")
        try:
            self.processes[name] = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        finally:
            out.close()

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise SlurmUnavailable(
                        f"{name} exited with {proc.returncode} while waiting for {what}:\n"
                        + self.diagnostics()
                    )
            if ready():
                return
            time.sleep(0.5)
        raise SlurmUnavailable(
            f"timed out after {timeout:.0f} s waiting for {what}:\n" + self.diagnostics()
        )

    def client(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)

    def _munge_ready(self) -> bool:
        munge = self.root / "munge"
        cred = subprocess.run(
            ["munge", "-n", "-S", str(munge / "munge.socket")], capture_output=True, timeout=10
        )
        if cred.returncode != 0:
            return False
        back = subprocess.run(
            ["unmunge", "-S", str(munge / "munge.socket")],
            input=cred.stdout,
            capture_output=True,
            timeout=10,
        )
        return back.returncode == 0

    def _controller_ready(self) -> bool:
        return "UP" in self.client("scontrol", "ping").stdout

    def node_state(self) -> str:
        return self.client("sinfo", "--noheader", "--Node", "--format=%t").stdout.strip()

    def start(self, timeout: float = 60) -> None:
        """Write the config and start munged, slurmctld, slurmd; return once the node is idle."""
        if os.geteuid() != 0:
            raise SlurmNotPossibleHere("the daemons run as root (SlurmUser=root); not root here")
        install()
        self.write_config()
        munge = self.root / "munge"
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn(
            "munged",
            [
                shutil.which("munged"),
                "--foreground",
                "--force",
                f"--socket={munge / 'munge.socket'}",
                f"--key-file={key}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--log-file={self.log('munged')}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
        )
        self._wait("munged", self._munge_ready, timeout)
        self._spawn("slurmctld", [shutil.which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait("slurmctld", self._controller_ready, timeout)
        self._spawn("slurmd", [shutil.which("slurmd"), "-D", "-f", str(self.conf), "-N", self.node])
        self._wait(f"node {self.node} idle", lambda: self.node_state() == "idle", timeout)

    def stop(self, timeout: float = 20) -> None:
        """Cancel what is still queued, then stop the daemons by their pids, newest first."""
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            try:
                self.client("scancel", "--full", "--user", str(os.geteuid()), timeout=10)
                deadline = time.monotonic() + timeout
                while (
                    time.monotonic() < deadline
                    and self.client(
                        "squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING", timeout=10
                    ).stdout.strip()
                ):
                    time.sleep(0.5)
            except (subprocess.TimeoutExpired, OSError):
                pass
        for name in reversed(list(self.processes)):
            proc = self.processes[name]
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout)
        self.processes.clear()

    def diagnostics(self) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace") if path.is_file() else ""
            parts.append(f"--- {path.name}\n{text[-2000:]}")
        return "\n".join(parts)

    def finished_jobs(self) -> dict[str, dict[str, str]]:
        """Every job slurmctld finished, from jobcomp/filetxt: JobId -> its fields."""
        if not self.jobcomp.exists():
            return {}
        jobs = {}
        for line in self.jobcomp.read_text().splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobId" in fields:
                jobs[fields["JobId"]] = fields
        return jobs


def new_cluster() -> SlurmCluster:
    # Unix socket paths are short: keep the directory directly under /tmp.
    return SlurmCluster(Path(tempfile.mkdtemp(prefix="sbslurm-", dir="/tmp")))
