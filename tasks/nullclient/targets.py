"""Which hosts a command is about, their data as the deploy sees it, and running pyinfra on them.

Two forms, as with pyinfra itself: `-i INVENTORY [HOST...]` (the user's inventory, optionally
limited to some of its hosts), or one HOST that is in no inventory (pyinfra's single-host form),
whose data is group_data/all.py plus --data and the SSH options.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postfix_nullclient.nullclient.terminal import printable

# The deploy itself, by the pyinfra CLI's own "module.function" form: no deploy file is needed, so
# it runs the same from a checkout, from an installed wheel and from any directory.
DEPLOY = "postfix_nullclient.deploy_null_client"


class UsageError(Exception):
    """Bad input: the command refuses it with this message and exit status 2."""


@dataclass(frozen=True)
class Target:
    """The hosts of one command: an inventory file and host names in it, or one host in no inventory."""

    inventory: str | None
    hosts: tuple[str, ...]
    data: dict[str, str] = field(default_factory=dict)  # --data overrides, as pyinfra gets them

    @property
    def inventory_argument(self) -> str:
        return self.inventory or self.hosts[0]

    def pyinfra_arguments(self) -> list[str]:
        """Everything after `pyinfra` but the deploy file: inventory, --limit, --data."""
        arguments = [self.inventory_argument]
        if self.inventory:
            for name in self.hosts:
                arguments += ["--limit", name]
        elif "ssh_hostname" not in self.data:
            # The host's name is its address; said so, pyinfra takes it as a host without resolving it first.
            arguments += ["--data", f"ssh_hostname={self.hosts[0]}"]
        for key, value in self.data.items():
            arguments += ["--data", f"{key}={value}"]
        return arguments

    def deploy_command(self, name: str) -> str:
        """The deploy of one of these hosts, as the user runs it: the hint of what a deploy fixes."""
        one = Target(self.inventory, (name,), self.data)
        return shlex.join(["pyinfra", *one.pyinfra_arguments(), DEPLOY])

    def nullclient_options(self, name: str, ssh: bool = True) -> str:
        """The options of `nullclient COMMAND` for one of these hosts, as this command was given them:
        `-i INVENTORY HOST`, or HOST with its SSH options (unless ssh is False); --data either way."""
        words = ["-i", self.inventory, name] if self.inventory else [name]
        data = dict(self.data)
        if not self.inventory and ssh:
            for option, key in SSH_OPTIONS.items():
                if data.get(key):
                    words += [option, data[key]]
        for key, value in data.items():
            if not key.startswith("ssh_"):
                words += ["--data", f"{key}={value}"]
        return shlex.join(words)


# The nullclient options for a host in no inventory, and the pyinfra data each one sets.
SSH_OPTIONS = {
    "--address": "ssh_hostname",
    "--ssh-user": "ssh_user",
    "--ssh-port": "ssh_port",
    "--ssh-key": "ssh_key",
    "--known-hosts": "ssh_known_hosts_file",
}


def parse_data(items: list[str]) -> dict[str, str]:
    """--data KEY=VALUE items, as pyinfra takes them."""
    data = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise UsageError(f"--data {item!r} is not KEY=VALUE, e.g. --data forward_to=you@example.org")
        data[key.strip()] = value
    return data


# What pyinfra prints after an unexpected error: where its traceback went, and where to report a bug.
PYINFRA_ADVICE = ("--> The full traceback has been written to", "--> If this is unexpected please consider")


def host_data(target: Target) -> dict[str, dict[str, Any]]:
    """Every target host's data (inventory, group data, --data), as pyinfra reads it, without connecting
    to any host: `pyinfra INVENTORY debug-inventory --json`."""
    if target.inventory:
        check_inventory_file(target.inventory)
    listed = subprocess.run(
        [sys.executable, "-m", "pyinfra", *target.pyinfra_arguments(), "debug-inventory", "--json"],
        env={**os.environ, "PYINFRA_PROGRESS": "off"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        # The reason is the last line of pyinfra's error or of the inventory's traceback, not pyinfra's advice after it.
        said = [
            line.strip() for line in listed.stderr.splitlines() if line.strip() and not line.startswith(PYINFRA_ADVICE)
        ]
        raise UsageError(
            f"cannot read the inventory {target.inventory_argument!r}: {(said or ['no reason given'])[-1]}; "
            "correct what it names, then run again"
        )
    data = {host["name"]: host["data"] for host in json.loads(listed.stdout)}
    wanted = list(target.hosts) or list(data)
    unknown = [name for name in wanted if name not in data]
    if unknown:
        raise UsageError(
            f"{', '.join(unknown)} not in the inventory {target.inventory}; its hosts: {', '.join(data) or 'none'}"
            " (for a host in no inventory, leave out -i)"
        )
    return {name: data[name] for name in wanted}


def check_inventory_file(inventory: str) -> None:
    """The inventory exists and is Python, read as pyinfra will read it: its mistake said here with the
    line, where pyinfra would answer with a traceback in a log file."""
    path = Path(inventory)
    if not path.is_file():
        raise UsageError(
            f"inventory file {inventory!r} does not exist; give the path of your pyinfra inventory with -i "
            "(e.g. -i inventory.py), or leave out -i for a host in no inventory"
        )
    try:
        compile(path.read_bytes(), inventory, "exec")
    except SyntaxError as error:
        raise UsageError(
            f"the inventory {inventory} is not valid Python: "
            + (f"line {error.lineno}: " if error.lineno else "")
            + f"{error.msg}; correct it there"
        ) from error
    except (OSError, ValueError) as error:  # unreadable; a NUL byte
        raise UsageError(f"cannot read the inventory {inventory}: {error}") from error


def run_pyinfra(
    target: Target, deploy: Path | str, extra_data: dict[str, str] | None = None, capture: bool = False
) -> subprocess.CompletedProcess:
    """`pyinfra INVENTORY DEPLOY -y --data ...` from the user's directory; output shown or captured.

    DEPLOY is a deploy file or a deploy function ("module.function").

    Never a secret on this command line: the deploy files read the keyring themselves.
    """
    arguments = target.pyinfra_arguments()
    for key, value in (extra_data or {}).items():
        arguments += ["--data", f"{key}={value}"]
    command = [sys.executable, "-m", "pyinfra", *arguments, str(deploy), "-y"]
    env = {**os.environ, "PYINFRA_PROGRESS": "off"}
    if capture:
        return subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    # Shown as it comes, each line escaped: what a host prints reaches the terminal as text only.
    pipe = subprocess.PIPE
    with subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe, text=True, errors="replace"
    ) as process:
        relays = [
            threading.Thread(target=_relay, args=pair)
            for pair in ((process.stdout, sys.stdout), (process.stderr, sys.stderr))
        ]
        for relay in relays:
            relay.start()
        for relay in relays:
            relay.join()
    return subprocess.CompletedProcess(command, process.returncode)


def _relay(lines: Any, out: Any) -> None:
    for line in lines:
        out.write(printable(line.removesuffix("\n")) + "\n")
        out.flush()


# --- host keys of a host in no inventory -------------------------------------------------------------


def known_host_name(address: str, port: int) -> str:
    """The name under which ssh and paramiko keep a host key: `host`, or `[host]:port` off port 22."""
    return address if port == 22 else f"[{address}]:{port}"


def host_key_known(known_hosts: Path, address: str, port: int) -> bool:
    import paramiko

    if not known_hosts.exists():
        return False
    keys = paramiko.HostKeys()
    keys.load(str(known_hosts))
    return keys.lookup(known_host_name(address, port)) is not None


def fetch_host_key(address: str, port: int, timeout: float = 10) -> Any:
    """The host's public key, read from the SSH handshake, before any login."""
    import paramiko

    with socket.create_connection((address, port), timeout=timeout) as sock:
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=timeout)
            return transport.get_remote_server_key()
        finally:
            transport.close()


def fingerprint(key: Any) -> str:
    """OpenSSH's SHA256 fingerprint of a public key, as `ssh-keygen -lf` prints it."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def add_host_key(known_hosts: Path, address: str, port: int, key: Any) -> None:
    known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(known_hosts, "a") as out:
        out.write(f"{known_host_name(address, port)} {key.get_name()} {key.get_base64()}\n")
