"""The benchmark's own part of the lab: bn* hosts, a relay of its own, a keyring of its own.

The relay is a separate smarthost instance (name RELAY_INSTANCE) on an extra address of the lab
bridge, with its own DNS name and a certificate from the lab's CA, so that other users of the lab
neither see our mail nor change our accounts, and our latency figures see no one else's mail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

from lab import base, hosts, network, smarthost
from lab.ca import issue_certificate
from lab.config import BRIDGE, DEFAULT_SUITE, DOMAIN, NETWORK_PREFIX, STATE_DIR

PREFIX = "bn"
RELAY_INSTANCE = "bn-relay"
RELAY_FQDN = f"{RELAY_INSTANCE}.{DOMAIN}"
KEYRING_SERVICE = "postfix-nullclient"  # the default keyring_service (postfix_nullclient.DEFAULTS)
# Extra bridge addresses others may take too (the lab's rules: 10.213.0.2-9); we try the high end first.
RELAY_ADDRESS_CANDIDATES = [f"{NETWORK_PREFIX}.{last}" for last in range(9, 1, -1)]


def host_name(index: int) -> str:
    return f"{PREFIX}{index}"


def smtp_user(name: str) -> str:
    return f"{name}@{DOMAIN}"


# --- hosts -----------------------------------------------------------------------------------------------


def lab_host(name: str) -> hosts.LabHost:
    found = [host for host in hosts.hosts() if host.name == name]
    if not found:
        raise RuntimeError(f"lab host {name} is not running")
    return found[0]


class Hosts:
    """The hosts this run made (bn*, and an* for the Ansible peer); destroy_all() removes them, and only them."""

    def __init__(self) -> None:
        self.made: set[str] = set()

    def fresh(self, names: list[str]) -> None:
        """Boot each of `names` anew (replacing a host of that name): identical, fresh hosts, all at once.

        lab.hosts has no public call that boots several named hosts together: create_host boots one and
        waits for its sshd, holding the lab lock; 10 hosts took 3 minutes that way on the shared machine.
        So this does what create_host does, for all of them in one lock hold (as the lab's own `up` does).
        """
        self.made.update(names)
        try:
            with hosts._lock():
                _power_off([name for name in names if (hosts.HOSTS_DIR / name).exists()])
                for name in names:
                    if (hosts.HOSTS_DIR / name).exists():
                        hosts._destroy(name)
                hosts._start(names, DEFAULT_SUITE)
        finally:
            hosts._remove_empty_state_dir()

    def destroy_all(self) -> None:
        names = sorted(self.made)
        _power_off(names)
        for name in names:
            try:
                hosts.destroy_host(name)
            except Exception as error:  # go on: every other host must still go
                print(f"bench: could not destroy {name}: {error!r}", file=sys.stderr, flush=True)
            else:
                self.made.discard(name)


def _power_off(names: list[str]) -> None:
    """SIGTERM to each host's nspawn (ours, by PID), all at once: a clean power-off takes ~2 s each."""
    pids = [pid for pid in map(hosts._nspawn_pid, names) if pid is not None]
    with ThreadPoolExecutor(max_workers=max(1, len(pids))) as pool:
        list(pool.map(lambda pid: network.stop_process(pid, timeout=15), pids))


# --- the relay -------------------------------------------------------------------------------------------


def _bridge_addresses() -> set[str]:
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", BRIDGE], capture_output=True, text=True, check=True
    ).stdout
    return {field.split("/")[0] for line in out.splitlines() for field in line.split() if field.count(".") == 3}


@contextmanager
def relay() -> Iterator[str]:
    """Our own smarthost instance at RELAY_FQDN; yields its address; removes all of it afterwards."""
    taken = _bridge_addresses()
    address = next((a for a in RELAY_ADDRESS_CANDIDATES if a not in taken), None)
    if address is None:
        raise RuntimeError(f"no free extra address on {BRIDGE} among {RELAY_ADDRESS_CANDIDATES}")
    directory = STATE_DIR / RELAY_INSTANCE
    added = False
    try:
        subprocess.run(["ip", "addr", "add", f"{address}/24", "dev", BRIDGE], check=True)
        added = True
        network.add_dns_host(RELAY_INSTANCE, RELAY_FQDN, address)
        cert = issue_certificate(base.ca_dir(), RELAY_FQDN, directory / "tls")
        smarthost.start(STATE_DIR, base.ca_dir(), name=RELAY_INSTANCE, listen=address, cert=cert)
        yield address
    finally:
        with suppress(Exception):
            smarthost.stop(STATE_DIR, RELAY_INSTANCE)
        network.remove_dns_host(RELAY_INSTANCE)
        if added:
            subprocess.run(["ip", "addr", "del", f"{address}/24", "dev", BRIDGE], check=False)
        shutil.rmtree(directory, ignore_errors=True)


def set_accounts(passwords: dict[str, str]) -> None:
    """The mail accounts on our relay, one per host, as the owner would create them."""
    for name, password in passwords.items():
        smarthost.set_account(STATE_DIR, smtp_user(name), password, name=RELAY_INSTANCE)


# --- the keyring -----------------------------------------------------------------------------------------


@contextmanager
def keyring_session() -> Iterator[dict[str, str]]:
    """A private Secret Service (gnome-keyring) in a home of its own; yields the environment for pyinfra."""
    from lab.keyring import secret_service

    home = Path(tempfile.mkdtemp(prefix="bn-keyring-"))
    try:
        with secret_service(home) as variables:
            yield {**os.environ, **variables}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def store_passwords(env: dict[str, str], passwords: dict[str, str]) -> None:
    """Store every host's password through the keyring package in one process (stdin: never printed)."""
    script = (
        "import json, sys, keyring\n"
        "service = sys.argv[1]\n"
        "for user, password in json.load(sys.stdin).items(): keyring.set_password(service, user, password)\n"
    )
    entries = {smtp_user(name): password for name, password in passwords.items()}
    subprocess.run(
        [sys.executable, "-c", script, KEYRING_SERVICE], input=json.dumps(entries), env=env, text=True, check=True
    )
