"""The lab itself: a fresh workstation boots systemd, is reachable over SSH, resolves and installs
through the lab, and leaves nothing behind when destroyed. Needs root."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (bridge, mounts, containers)"),
]


@pytest.fixture(scope="module")
def lab_was_up() -> Iterator[None]:
    """Tear the lab down at the end if these tests brought it up, whatever happened in between;
    beside other pytest-xdist workers, the controller does that after all of them (tests/conftest.py)."""
    from lab import hosts, network

    was_up = network.bridge_exists() or bool(hosts.hosts())
    try:
        yield
    finally:
        if not was_up and "PYTEST_XDIST_WORKER" not in os.environ:
            hosts.down()


@pytest.fixture(scope="module")
def host(lab_was_up):
    from lab import hosts

    try:
        yield hosts.create_host("t-lab1")
    finally:
        hosts.destroy_host("t-lab1")


def run(host, command: str) -> str:
    from lab import hosts

    return hosts.ssh(host, command, timeout=120).stdout.strip()


def test_systemd_is_pid_1_and_running(host) -> None:
    assert run(host, "cat /proc/1/comm") == "systemd"
    from lab import hosts

    state = hosts.ssh(host, "systemctl is-system-running --wait", check=False, timeout=120).stdout.strip()
    assert state in ("running", "degraded")


def test_fully_qualified_name(host) -> None:
    assert host.fqdn == "t-lab1.example.net"
    assert run(host, "hostname -f") == "t-lab1.example.net"


def test_smarthost_name_resolves_through_lab_dns(host) -> None:
    from lab.config import GATEWAY, RELAY_NAME

    assert run(host, "cat /etc/resolv.conf") == f"nameserver {GATEWAY}"
    assert run(host, f"getent hosts {RELAY_NAME}").split() == [GATEWAY, RELAY_NAME]


def test_no_default_route(host) -> None:
    assert "default" not in run(host, "ip route show; ip -6 route show")


def test_apt_through_the_lab_proxy(host) -> None:
    from lab import hosts

    result = hosts.ssh(host, "apt-get update", check=False, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "Acquire::http::Proxy" in run(host, "apt-config dump | grep -i proxy")


def test_listed_in_hosts_json_and_pinned(host) -> None:
    from lab import hosts

    assert host in hosts.hosts()
    known = (hosts.KNOWN_HOSTS).read_text()
    assert f"{host.fqdn},{host.address} ssh-ed25519 " in known


def test_destroy_leaves_nothing_behind(lab_was_up) -> None:
    from lab import hosts

    name = "t-lab2"
    try:
        created = hosts.create_host(name)
        assert hosts.ssh(created, "true").returncode == 0
    finally:
        hosts.destroy_host(name)
    directory = hosts.HOSTS_DIR / name
    assert not directory.exists()
    assert not [line for line in Path("/proc/self/mounts").read_text().splitlines() if str(directory) in line]
    for root in hosts.CGROUP_ROOTS:
        assert not (root / "nclab" / name).exists()
    assert name not in [h.name for h in hosts.hosts()]
    assert created.fqdn not in hosts.KNOWN_HOSTS.read_text()
    assert not any(Path(f"/proc/{pid}/cmdline").exists() and name.encode() in _cmdline(pid) for pid in _pids())


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_the_gateways_mac_stays_when_a_port_with_a_lower_one_joins_the_bridge(host) -> None:
    """A bridge left to itself takes its lowest port's MAC: the hosts' ARP entries for the gateway went
    stale as hosts came and went, and their mail to the lab's relays timed out (seen in a full run)."""
    import subprocess

    from lab.config import BRIDGE, BRIDGE_MAC, GATEWAY

    mac = Path(f"/sys/class/net/{BRIDGE}/address")
    assert mac.read_text().strip() == BRIDGE_MAC
    subprocess.run(
        ["ip", "link", "add", "t-lab-low", "address", "00:00:00:00:00:01", "type", "veth", "peer", "name", "t-lab-pr"],
        check=True,
    )
    try:
        subprocess.run(["ip", "link", "set", "t-lab-low", "master", BRIDGE], check=True)
        assert mac.read_text().strip() == BRIDGE_MAC
    finally:
        subprocess.run(["ip", "link", "del", "t-lab-low"], check=True)
    assert mac.read_text().strip() == BRIDGE_MAC
    assert BRIDGE_MAC in run(host, f"ping -c 1 -W 2 {GATEWAY} >/dev/null; ip neigh show {GATEWAY}")
