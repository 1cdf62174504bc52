"""The Ansible peer: the same job as a plain playbook (bench/ansible/nullclient.yml), for comparison.

ansible-core comes from PyPI into a venv of its own, bench/.venv-ansible (gitignored), made when it
is missing. The files the playbook copies are rendered by the project itself for each peer host,
so both deploys write the same bytes; they, the inventory and Ansible's own state live in a
root-only temporary directory that is removed afterwards. The password is in one of those files
only: never on a command line, never in the playbook's output (no_log).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from pyinfra.api import HiddenValue

from bench import labkit
from bench.runner import Timed, run_timed
from lab import hosts
from lab.config import FORWARD_TO
from postfix_nullclient import alerts
from postfix_nullclient.facts import NullClientHost
from postfix_nullclient.model import FAMILIES
from postfix_nullclient.render import render_files
from postfix_nullclient.settings import check_host

BENCH_DIR = Path(__file__).resolve().parent
VENV = BENCH_DIR / ".venv-ansible"
PLAYBOOK = BENCH_DIR / "ansible" / "nullclient.yml"
ANSIBLE_PLAYBOOK = VENV / "bin" / "ansible-playbook"
_DEBIAN = next(family for family in FAMILIES if family.name == "debian")


def ensure_ansible() -> str:
    """bench/.venv-ansible with ansible-core from PyPI, made if missing; returns its version."""
    if not ANSIBLE_PLAYBOOK.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "ansible-core"],
            check=True,
        )
    script = "import importlib.metadata; print(importlib.metadata.version('ansible-core'))"
    return subprocess.run(
        [str(VENV / "bin" / "python"), "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()


def rendered_files(name: str, password: str) -> dict[str, tuple[str, str]]:
    """What the project's deploy would write on lab host `name`: file name -> (content, mode).

    The host is looked at with the deploy's own fact (its FQDN and IPv6), the settings are checked
    as the deploy checks them, with the lab inventory's data and the benchmark's relay.
    """
    fact = NullClientHost()
    command = fact.command(packages=[*_DEBIAN.packages, _DEBIAN.mail_package])
    found = fact.process(hosts.ssh(name, command).stdout.splitlines())
    lab_host = labkit.lab_host(name)
    data = {"relay_host": labkit.RELAY_FQDN, "forward_to": FORWARD_TO}
    settings, problems = check_host(lab_host.fqdn, data)
    if settings is None:
        raise RuntimeError(f"the peer's settings for {name}: {problems}")
    settings = replace(settings, password=HiddenValue(password))
    rendered = {f.name: (f.content, f.mode) for f in render_files(settings, found.fqdn, found.ipv6, _DEBIAN.ca_file)}
    # The queue watchdog and its systemd units, by their file names (the playbook knows where they go).
    rendered |= {posixpath.basename(f.path): (f.content, f.mode) for f in alerts.watchdog_files(settings, "systemd")}
    return rendered


class Peer:
    """The playbook on some lab hosts: a root-only directory with their files and inventory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.env = {
            **os.environ,
            "ANSIBLE_HOME": str(directory / "ansible-home"),  # its state here, not in ~/.ansible
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(directory / "ansible-home" / "cp"),  # ControlPersist sockets
            "ANSIBLE_LOCAL_TEMP": str(directory / "ansible-tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
        }
        self.env.pop("ANSIBLE_CONFIG", None)

    def add_hosts(self, passwords: dict[str, str]) -> None:
        """Render each host's files (the password map is root-only) and list the hosts in an inventory."""
        lines = ["[nullclients]"]
        for name, password in passwords.items():
            files_dir = self.directory / "files" / name
            files_dir.mkdir(parents=True, mode=0o700)
            for file_name, (content, mode) in rendered_files(name, password).items():
                path = files_dir / file_name
                with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, int(mode, 8)), "w") as out:
                    out.write(content)
            address = labkit.lab_host(name).address
            lines.append(f"{name} ansible_host={address} files_dir={files_dir}")
        ssh_args = " ".join(
            ["-o IdentitiesOnly=yes", "-o BatchMode=yes", f"-o UserKnownHostsFile={hosts.KNOWN_HOSTS}",
             "-o GlobalKnownHostsFile=/dev/null", "-o StrictHostKeyChecking=yes"]
        )  # fmt: skip
        lines += [
            "",
            "[nullclients:vars]",
            "ansible_user=root",
            f"ansible_ssh_private_key_file={hosts.LAB_KEY}",
            f"ansible_ssh_common_args='{ssh_args}'",
            "ansible_python_interpreter=/usr/bin/python3",
            "",
        ]
        (self.directory / "inventory.ini").write_text("\n".join(lines))

    def run(self, names: list[str], log: Path) -> Timed:
        """ansible-playbook on `names`, timed like the project's deploy; a failed run raises."""
        argv = [str(ANSIBLE_PLAYBOOK), "-i", str(self.directory / "inventory.ini"), "--limit", ",".join(names),
                str(PLAYBOOK)]  # fmt: skip
        timed = run_timed(argv, log, self.env)
        if timed.returncode != 0:
            raise RuntimeError(f"the Ansible peer failed on {len(names)} host(s) (exit {timed.returncode}): see {log}")
        return timed

    def close(self) -> None:
        """End Ansible's ControlPersist SSH masters (by their sockets), then remove the directory."""
        for socket in (self.directory / "ansible-home").rglob("*"):
            if socket.is_socket():
                subprocess.run(["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "x"], capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)


def changed_tasks(log: Path) -> int:
    """The sum of `changed=N` over the play recap of an ansible-playbook log."""
    total = 0
    for line in log.read_text(errors="replace").splitlines():
        for word in line.split():
            if word.startswith("changed="):
                total += int(word.removeprefix("changed="))
    return total


@contextmanager
def peer() -> Iterator[Peer]:
    directory = Path(tempfile.mkdtemp(prefix="an-peer-"))  # mkdtemp: mode 0700, root's
    instance = Peer(directory)
    try:
        yield instance
    finally:
        instance.close()
