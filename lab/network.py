"""The lab's shared parts: the bridge, its DNS (dnsmasq), the apt proxy (apt-cacher-ng) and sysctls.

Every daemon here is our own instance, started in the foreground as a child in its own session, its pid
written to STATE_DIR; it is stopped by that pid only after checking that the process is still ours.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from lab.config import (
    APT_PROXY_PORT,
    BRIDGE,
    BRIDGE_MAC,
    CACHE_DIR,
    DOMAIN,
    GATEWAY,
    NETWORK_PREFIX,
    RELAY_NAME,
    SPARE_ADDRESSES,
    STATE_DIR,
)
from lab.tools import LabError

DNS_HOSTS_DIR = STATE_DIR / "dns"  # one hosts file per lab host, read by dnsmasq as they come and go
SYSCTL_DIR = STATE_DIR / "sysctl"  # old values of the sysctls we raised, restored by down
ACNG_DIR = CACHE_DIR / "apt-cacher-ng"


# --- processes started by the lab -------------------------------------------------------------------


def pid_file(name: str) -> Path:
    return STATE_DIR / f"{name}.pid"


def log_file(name: str) -> Path:
    return STATE_DIR / f"{name}.log"


def start_daemon(name: str, command: list[str]) -> int:
    """Start `command` in the background, detached from our terminal (Ctrl-C is ours to handle)."""
    with open(log_file(name), "ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    pid_file(name).write_text(f"{process.pid}\n")
    return process.pid


def is_alive(pid: int) -> bool:
    reap(pid)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def reap(pid: int) -> None:
    # A child of this very process (tests run up and down in one process) stays a zombie until waited for.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except FileNotFoundError:
        return []


def daemon_pid(name: str, program: str) -> int | None:
    """The pid in the pid file `name`, if that process is alive and is still the `program` we started."""
    try:
        pid = int(pid_file(name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    args = cmdline(pid)
    ours = args and Path(args[0]).name == program and any(str(STATE_DIR) in arg for arg in args)
    return pid if ours and is_alive(pid) else None


def stop_process(pid: int, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        while is_alive(pid):
            time.sleep(0.05)


def stop_daemon(name: str, program: str) -> None:
    pid = daemon_pid(name, program)
    if pid is not None:
        stop_process(pid)
    pid_file(name).unlink(missing_ok=True)


def wait_for_port(address: str, port: int, timeout: float, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(address, port):
            return
        time.sleep(0.1)
    raise LabError(f"{name} does not answer on {address}:{port} after {timeout:.0f} s: see {log_file(name)}")


def port_open(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- bridge --------------------------------------------------------------------------------------------


def bridge_exists() -> bool:
    return Path(f"/sys/class/net/{BRIDGE}").exists()


def ensure_bridge() -> None:
    if not bridge_exists():
        _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("link", "set", BRIDGE, "address", BRIDGE_MAC)
    addresses = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", BRIDGE], capture_output=True, text=True)
    if f" {GATEWAY}/24 " not in addresses.stdout:
        _ip("addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def claim_address() -> str:
    """A spare address of the bridge that no one else (another test module, another run) has taken: added
    to the bridge here, for a relay to listen on; release_address gives it back."""
    for last in SPARE_ADDRESSES:
        address = f"{NETWORK_PREFIX}.{last}"
        if subprocess.run(["ip", "addr", "add", f"{address}/24", "dev", BRIDGE], capture_output=True).returncode == 0:
            return address
    raise LabError(f"every spare address of the lab bridge {BRIDGE} is taken")


def release_address(address: str) -> None:
    subprocess.run(["ip", "addr", "del", f"{address}/24", "dev", BRIDGE], capture_output=True)


def remove_bridge() -> None:
    if bridge_exists():
        _ip("link", "del", BRIDGE)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


# --- DNS -----------------------------------------------------------------------------------------------


def ensure_dns() -> None:
    DNS_HOSTS_DIR.mkdir(parents=True, exist_ok=True)
    if daemon_pid("dnsmasq", "dnsmasq"):
        return
    # Bound to the bridge address only, with no upstream: it knows the lab's names and nothing else.
    start_daemon(
        "dnsmasq",
        ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=", "--log-facility=-",
         "--no-resolv", "--no-hosts", "--bind-interfaces", f"--listen-address={GATEWAY}",
         f"--local=/{DOMAIN}/", f"--domain={DOMAIN}", "--domain-needed", "--bogus-priv",
         f"--host-record={RELAY_NAME},{GATEWAY}", f"--hostsdir={DNS_HOSTS_DIR}"],
    )  # fmt: skip
    wait_for_port(GATEWAY, 53, 10, "dnsmasq")


def add_dns_host(name: str, fqdn: str, address: str) -> None:
    # dnsmasq watches the directory: a new file is served at once, a removed one is forgotten.
    path = DNS_HOSTS_DIR / name
    path.write_text(f"{address} {fqdn} {name}\n")
    path.chmod(0o644)


def remove_dns_host(name: str) -> None:
    (DNS_HOSTS_DIR / name).unlink(missing_ok=True)


# --- apt proxy -----------------------------------------------------------------------------------------


def ensure_apt_proxy() -> None:
    if daemon_pid("apt-cacher-ng", "apt-cacher-ng"):
        return
    conf = ACNG_DIR / "conf"
    for directory in (conf, ACNG_DIR / "cache", ACNG_DIR / "log"):
        directory.mkdir(parents=True, exist_ok=True)
    # Our own configuration: no remapping to other mirrors, the URL apt asks for is the one fetched.
    (conf / "acng.conf").write_text(
        f"CacheDir: {ACNG_DIR / 'cache'}\n"
        f"LogDir: {ACNG_DIR / 'log'}\n"
        "SupportDir: /usr/lib/apt-cacher-ng\n"
        f"Port: {APT_PROXY_PORT}\n"
        f"BindAddress: {GATEWAY}\n"
        f"SocketPath: {STATE_DIR / 'apt-cacher-ng.socket'}\n"
        "ForeGround: 1\n"
        "ExThreshold: 4\n"
        "ReportPage: acng-report.html\n"
    )
    # Its own pid file (not the system instance's), given on the command line, which names STATE_DIR and so
    # tells daemon_pid that the process is ours.
    start_daemon("apt-cacher-ng", ["apt-cacher-ng", "-c", str(conf), f"PidFile={STATE_DIR / 'apt-cacher-ng.own.pid'}"])
    wait_for_port(GATEWAY, APT_PROXY_PORT, 10, "apt-cacher-ng")


# --- sysctls -------------------------------------------------------------------------------------------


def raise_sysctl(name: str, value: int) -> None:
    """Raise sysctl `name` to at least `value`, remembering the value it had before the lab changed it."""
    path = Path("/proc/sys") / name.replace(".", "/")
    current = int(path.read_text().split()[0])
    if current >= value:
        return
    SYSCTL_DIR.mkdir(parents=True, exist_ok=True)
    saved = SYSCTL_DIR / name
    if not saved.exists():
        saved.write_text(f"{current}\n")
    path.write_text(f"{value}\n")


def restore_sysctls() -> None:
    if not SYSCTL_DIR.is_dir():
        return
    for saved in SYSCTL_DIR.iterdir():
        (Path("/proc/sys") / saved.name.replace(".", "/")).write_text(saved.read_text())
        saved.unlink()
    SYSCTL_DIR.rmdir()
