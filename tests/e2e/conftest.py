"""Fresh lab workstations for the end-to-end tests, removed again afterwards, even on failure."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PROJECT, store_password

SERVICE = "postfix-nullclient"
# The deploy's operations on a host: install, configure, the watchdog, unattended-upgrades' mail, the
# network hooks that flush the queue.
# A no-change run says "No changes" once for each.
NO_CHANGE_OPERATIONS = 5


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab() -> Iterator[None]:
    """The lab's shared parts; torn down at the end if no one else's hosts are left in it.

    Run by pytest-xdist's workers side by side, a worker leaves that to the controller
    (tests/conftest.py), which ends after all of them.
    """
    if os.geteuid() != 0:
        pytest.skip("the lab needs root: run the suite as root (sudo ./scripts/test)")
    try:
        yield
    finally:
        if "PYTEST_XDIST_WORKER" not in os.environ:
            down_if_unused()


def down_if_unused() -> None:
    from lab import hosts

    if not hosts.hosts():
        hosts.down()


@dataclass
class Workstation:
    name: str
    fqdn: str
    address: str
    suite: str
    smtp_user: str
    password: str

    def run(
        self, command: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        from lab import hosts

        return hosts.ssh(self.name, command, check=check, input=input, timeout=timeout)


@pytest.fixture(scope="session")
def make_workstations(lab, keyring_env) -> Iterator:
    """A factory of fresh workstations with a keyring entry and a mail account each."""
    from lab import hosts, smarthost
    from lab.config import DOMAIN, STATE_DIR

    created: list[str] = []

    def make(
        names: list[str], passwords: dict[str, str] | None = None, suites: dict[str, str] | None = None
    ) -> list[Workstation]:
        made = []
        for name in names:
            created.append(name)
            host = hosts.create_host(name, **({"suite": suites[name]} if suites and name in suites else {}))
            user = f"{name}@{DOMAIN}"
            password = (passwords or {}).get(name) or f"pw-{name}-{os.urandom(8).hex()}"
            store_password(keyring_env, SERVICE, user, password)
            smarthost.set_account(STATE_DIR, user, password)
            made.append(Workstation(host.name, host.fqdn, host.address, host.suite, user, password))
        return made

    try:
        yield make
    finally:
        for name in created:
            hosts.destroy_host(name)


@dataclass
class DeployRun:
    returncode: int
    output: str


def run_deploy(env: dict[str, str], inventory: str, *args: str, extra_env: dict[str, str] | None = None) -> DeployRun:
    """`pyinfra INVENTORY deploy.py -y ARGS` from the project directory, as a user runs it."""
    process = subprocess.run(
        [str(PROJECT / ".venv" / "bin" / "pyinfra"), inventory, "deploy.py", "-y", *args],
        cwd=PROJECT,
        env={**env, **(extra_env or {}), "PYINFRA_PROGRESS": "off"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    return DeployRun(process.returncode, process.stdout + process.stderr)


def nullclient(env: dict[str, str], *args: str, input: str = "", timeout: float = 300) -> subprocess.CompletedProcess:
    """`nullclient ARGS` from the project directory, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "postfix_nullclient.nullclient", *args],
        cwd=PROJECT,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def lab_nullclient(
    env: dict[str, str], lab_hosts: str, *args: str, input: str = "", timeout: float = 300
) -> subprocess.CompletedProcess:
    """`nullclient ARGS` with the lab inventory (lab/inventory.py) limited to `lab_hosts` (comma-separated names)."""
    return nullclient({**env, "NULLCLIENT_LAB_HOSTS": lab_hosts}, *args, input=input, timeout=timeout)


def lab_host_data(workstation: Workstation, **extra: object) -> dict:
    """A lab workstation's entry in a user's own inventory: SSH access as root and forward_to."""
    from lab import hosts
    from lab.config import FORWARD_TO

    return {
        "ssh_hostname": workstation.address,
        "ssh_user": "root",
        "ssh_key": str(hosts.LAB_KEY),
        "ssh_known_hosts_file": str(hosts.KNOWN_HOSTS),
        "ssh_strict_host_key_checking": "yes",
        "ssh_look_for_keys": False,
        "ssh_allow_agent": False,
        "forward_to": FORWARD_TO,
        **extra,
    }


def write_inventory(path: Path, entries: list[tuple[str, dict]]) -> Path:
    path.write_text(f"workstations = {entries!r}\n")
    return path


def deploy(env: dict[str, str], workstations: list[Workstation], *args: str) -> DeployRun:
    """The deploy on these lab workstations, through the lab's inventory."""
    hosts = {"NULLCLIENT_LAB_HOSTS": ",".join(w.name for w in workstations)}
    return run_deploy(env, "lab/inventory.py", *args, extra_env=hosts)
