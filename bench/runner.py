"""Run one measured thing: a command's wall time and peak RSS, a deploy, a command count, an SSH floor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.labkit import RELAY_FQDN
from lab import hosts

PROJECT = Path(__file__).resolve().parent.parent
PYINFRA = PROJECT / ".venv" / "bin" / "pyinfra"
COUNTING = Path(__file__).resolve().with_name("pyinfra_counting.py")
PARALLEL_FLOOR = Path(__file__).resolve().with_name("parallel_floor.py")
DEPLOY_TIMEOUT = 1800.0


class BenchError(RuntimeError):
    pass


@dataclass
class Timed:
    seconds: float
    max_rss_mib: float  # peak resident set of the process (and any child it waited for)
    returncode: int
    log: Path


def run_timed(argv: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = DEPLOY_TIMEOUT) -> Timed:
    """Run `argv` with its output to `log`; wall time from fork to exit, peak RSS from wait4()."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        start = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=PROJECT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            # wait4, not wait: it returns the rusage of this one child, so ru_maxrss is its own peak.
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped already: Popen must not wait again
    return Timed(seconds, usage.ru_maxrss / 1024, process.returncode, log)


def deploy_argv(*extra: str) -> list[str]:
    """The deploy exactly as a user runs it on the lab, with our relay."""
    return ["lab/inventory.py", "deploy.py", "-y", "--data", f"relay_host={RELAY_FQDN}", *extra]


def deploy_env(env: dict[str, str], names: list[str], keyring_backend: str | None = None) -> dict[str, str]:
    """The keyring session's environment for a deploy of `names`.

    Without `keyring_backend`, keyring chooses its backend as on a workstation whose user has not
    chosen one (the lab's session names SecretService in PYTHON_KEYRING_BACKEND; that is dropped):
    it looks at every backend it knows, which is part of what a user waits for.
    """
    chosen = {"PYTHON_KEYRING_BACKEND": keyring_backend} if keyring_backend else {}
    variables = {key: value for key, value in env.items() if key != "PYTHON_KEYRING_BACKEND"}
    return {**variables, **chosen, "NULLCLIENT_LAB_HOSTS": ",".join(names), "PYINFRA_PROGRESS": "off"}


def deploy(env: dict[str, str], names: list[str], log: Path, keyring_backend: str | None = None) -> Timed:
    """`pyinfra lab/inventory.py deploy.py -y` on `names`, timed; a failed deploy stops the benchmark."""
    timed = run_timed([str(PYINFRA), *deploy_argv()], log, deploy_env(env, names, keyring_backend))
    if timed.returncode != 0:
        raise BenchError(f"the deploy of {len(names)} host(s) failed (exit {timed.returncode}): see {log}")
    return timed


@dataclass
class Counted:
    by_host: dict[str, dict]  # host name -> {"exec": N, "sftp": N, "commands": [...]}
    timeline: dict[str, float]  # see bench/pyinfra_counting.py
    seconds: float


def count_commands(env: dict[str, str], names: list[str], log: Path) -> Counted:
    """Deploy `names` once through bench/pyinfra_counting.py; return its counts by host name."""
    counts_file = log.with_suffix(".counts.json")
    argv = [sys.executable, str(COUNTING), str(counts_file), *deploy_argv()]
    timed = run_timed(argv, log, deploy_env(env, names))
    if timed.returncode != 0:
        raise BenchError(f"the counted deploy of {len(names)} host(s) failed (exit {timed.returncode}): see {log}")
    by_address = json.loads(counts_file.read_text())
    timeline = by_address.pop("_timeline")
    names_by_address = {host.address: host.name for host in hosts.hosts()}
    by_host = {names_by_address.get(address, address): entry for address, entry in by_address.items()}
    return Counted(by_host, timeline, timed.seconds)


# --- SSH ---------------------------------------------------------------------------------------------------


class SshMaster:
    """One open SSH connection (OpenSSH ControlMaster) to a lab host: later commands pay no handshake."""

    def __init__(self, host: hosts.LabHost, socket: Path) -> None:
        self.host = host
        self.socket = socket

    def _options(self) -> list[str]:
        return [*hosts.ssh_options(), "-o", f"ControlPath={self.socket}"]

    def __enter__(self) -> SshMaster:
        # -f: ssh forks once the connection is up; its PID is not ours to know, `-O exit` ends it.
        subprocess.run(
            ["ssh", *self._options(), "-o", "ControlMaster=yes", "-o", "ControlPersist=600", "-f", "-N",
             f"root@{self.host.address}"],
            check=True, timeout=30,
        )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(
            ["ssh", *self._options(), "-O", "exit", f"root@{self.host.address}"], capture_output=True, check=False
        )

    def run(self, command: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", *self._options(), "-o", "ControlMaster=no", f"root@{self.host.address}", command],
            input=input, capture_output=True, text=True, check=True, timeout=timeout,
        )  # fmt: skip


def timed_ssh(argv_prefix: list[str], address: str, command: str) -> float:
    start = time.perf_counter()
    subprocess.run([*argv_prefix, f"root@{address}", command], capture_output=True, check=True, timeout=60)
    return time.perf_counter() - start


def parallel_floor(addresses: list[str], command: str) -> float:
    """bench/parallel_floor.py: `command` on every address at once over new connections, in one process."""
    out = subprocess.run(
        [sys.executable, str(PARALLEL_FLOOR), str(hosts.LAB_KEY), str(hosts.KNOWN_HOSTS), command, *addresses],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return float(out.stdout)
