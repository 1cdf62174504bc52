"""The lab's workstations: Debian hosts booted by systemd-nspawn with systemd as PID 1, reached over SSH.

Each host is an overlay over the shared base (its writes go to STATE_DIR/hosts/NAME/upper), sits on the
lab bridge with a static address and no default route, and runs in cgroups of its own
(/sys/fs/cgroup/{systemd,unified}/nclab/NAME) so that teardown can find and kill every process it made.
"""

import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from lab import base, network
from lab.config import (
    BRIDGE,
    CGROUP_NAME,
    DEFAULT_SUITE,
    DOMAIN,
    EXTRA_ADDRESS_FIRST,
    EXTRA_ADDRESS_LAST,
    GATEWAY,
    MAX_HOSTS,
    NETWORK_PREFIX,
    STATE_DIR,
    WS_ADDRESS_OFFSET,
)
from lab.tools import LabError, ensure_tools, require_root

HOSTS_DIR = STATE_DIR / "hosts"
SSH_DIR = STATE_DIR / "ssh"
LAB_KEY = SSH_DIR / "id_ed25519"
KNOWN_HOSTS = SSH_DIR / "known_hosts"
HOSTS_JSON = STATE_DIR / "hosts.json"
LOCK_FILE = STATE_DIR / "lock"
CGROUP_ROOTS = [Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified")]
HOST_KEY = "etc/ssh/ssh_host_ed25519_key"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,19}")
# systemd in each host takes inotify instances; the default 128 per user runs out at about 20 hosts.
INOTIFY_INSTANCES = 8192
BOOT_TIMEOUT = 60.0  # seconds until sshd answers, plus one per host booting at the same time


@dataclass(frozen=True)
class LabHost:
    name: str
    fqdn: str
    address: str
    suite: str


# --- ssh -----------------------------------------------------------------------------------------------


def ssh_options() -> list[str]:
    """Options for the `ssh` binary: the lab key, pinned host keys, no prompts, no user configuration."""
    return [
        "-F", "/dev/null", "-i", str(LAB_KEY), "-l", "root",
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
    ]  # fmt: skip


def ssh(
    host: LabHost | str, command: str, check: bool = True, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run `command` as root on a lab host with the real ssh client."""
    address = host.address if isinstance(host, LabHost) else _find(host).address
    return subprocess.run(
        ["ssh", *ssh_options(), f"root@{address}", command],
        input=input,
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def ssh_command(host: LabHost) -> str:
    return shlex.join(["ssh", *ssh_options(), f"root@{host.address}"])


# --- public API ------------------------------------------------------------------------------------------


def hosts() -> list[LabHost]:
    """The running lab hosts, as written in STATE_DIR/hosts.json."""
    try:
        records = json.loads(HOSTS_JSON.read_text())
    except FileNotFoundError:
        return []
    return [LabHost(**record) for record in records]


def up(count: int, suite: str = DEFAULT_SUITE) -> list[LabHost]:
    """Make sure ws1..wsCOUNT and the shared parts run; return all running hosts."""
    if not 1 <= count <= MAX_HOSTS:
        raise LabError(f"the lab has 1 to {MAX_HOSTS} workstations, not {count}")
    require_root()
    names = [f"ws{k}" for k in range(1, count + 1)]
    try:
        with _lock():
            _start(names, suite)
    finally:
        _remove_empty_state_dir()
    return hosts()


def create_host(name: str, suite: str = DEFAULT_SUITE) -> LabHost:
    """Boot a fresh host `name` (replacing one of that name), with the shared parts; return it."""
    if not NAME_PATTERN.fullmatch(name):
        raise LabError(f"bad host name {name!r}: use lower case letters, digits and '-', at most 20")
    require_root()
    try:
        with _lock():
            if (HOSTS_DIR / name).exists():
                _destroy(name)
            _start([name], suite)
    finally:
        _remove_empty_state_dir()
    return _find(name)


def destroy_host(name: str) -> None:
    """Stop host `name` and remove everything it had: processes, cgroups, mounts, files, DNS record."""
    require_root()
    if not STATE_DIR.exists():  # the lab is down: nothing to destroy, and nothing to create either
        return
    with _lock():
        _destroy(name)


def down() -> None:
    """Tear down the whole lab, whatever state it is in."""
    require_root()
    with _lock():
        _down()
    _remove_empty_state_dir()


def _remove_empty_state_dir() -> None:
    """After a down, or a first `up` that failed, nothing but the lock is left: remove it and STATE_DIR."""
    if STATE_DIR.is_dir() and [path.name for path in STATE_DIR.iterdir()] == [LOCK_FILE.name]:
        LOCK_FILE.unlink(missing_ok=True)
        with suppress(OSError):
            STATE_DIR.rmdir()


def status() -> list[str]:
    """Lines that tell what of the lab runs."""
    lines = [
        f"bridge {BRIDGE}: {'up' if network.bridge_exists() else 'absent'}",
        f"dnsmasq: {_pid_text(network.daemon_pid('dnsmasq', 'dnsmasq'))}",
        f"apt-cacher-ng: {_pid_text(network.daemon_pid('apt-cacher-ng', 'apt-cacher-ng'))}",
        f"smarthost: {_smarthost_status()}",
    ]
    for name in sorted(_host_dirs()):
        host = _record(name)
        state = "running" if _nspawn_pid(name) else "stopped"
        if host is None:
            lines.append(f"{name}: half made ({state}); `python -m lab down` removes it")
        else:
            ready = "ready" if (HOSTS_DIR / name / "ready").exists() else "not ready"
            lines.append(f"{host.name}  {host.address}  {host.suite}  {state}, {ready}")
    return lines


# --- start -----------------------------------------------------------------------------------------------


def _start(names: list[str], suite: str) -> None:
    """Start the shared parts and the hosts among `names` that don't run; on any failure or Ctrl-C,
    remove what this call made (and the shared parts too when the lab was not up before)."""
    require_root()
    ensure_tools()
    was_up = network.bridge_exists() or bool(_host_dirs())
    made: list[str] = []
    try:
        root = base.ensure_base(suite)
        _ensure_shared()
        todo = [name for name in names if not _running(name)]
        for name in todo:
            if (HOSTS_DIR / name).exists():  # a crashed or half-made host of that name
                _destroy(name)
        if todo:
            network.raise_sysctl("fs.inotify.max_user_instances", INOTIFY_INSTANCES)
        prepared = []
        for name in todo:  # all prepared before any boots: booting hosts would slow the rest down
            made.append(name)
            prepared.append(_prepare(name, suite, root))
        _write_known_hosts()
        _wait_until_ready({host.name: (host, _boot(host)) for host in prepared})
    except BaseException:
        print("lab: start failed, removing what it made", file=sys.stderr, flush=True)
        if was_up:
            for name in made:
                _destroy(name)
        else:
            _down()
        raise
    finally:
        _write_hosts_json()


def _ensure_shared() -> None:
    for directory in (STATE_DIR, HOSTS_DIR, SSH_DIR):
        directory.mkdir(parents=True, exist_ok=True)
    _ensure_lab_key()
    network.ensure_bridge()
    network.ensure_dns()
    network.ensure_apt_proxy()
    from lab import smarthost  # written beside this module; imported late so the rest works without it

    smarthost.start(STATE_DIR, base.ca_dir())


def _ensure_lab_key() -> None:
    if not LAB_KEY.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nullclient-lab", "-f", str(LAB_KEY)], check=True
        )


def _address_for(name: str) -> str:
    match = re.fullmatch(r"ws(\d+)", name)
    if match and 1 <= int(match.group(1)) <= MAX_HOSTS:
        return f"{NETWORK_PREFIX}.{WS_ADDRESS_OFFSET + int(match.group(1))}"
    taken = {host.address for host in map(_record, _host_dirs()) if host}
    for last in range(EXTRA_ADDRESS_FIRST, EXTRA_ADDRESS_LAST + 1):
        if f"{NETWORK_PREFIX}.{last}" not in taken:
            return f"{NETWORK_PREFIX}.{last}"
    raise LabError("no free address left for another lab host: destroy some with `python -m lab down`")


def _prepare(name: str, suite: str, root: Path) -> LabHost:
    """Mount the host's overlay and write what makes it this host into its upper layer."""
    host = LabHost(name, f"{name}.{DOMAIN}", _address_for(name), suite)
    directory = HOSTS_DIR / name
    for part in ("upper", "work", "root"):
        (directory / part).mkdir(parents=True, exist_ok=True)
    (directory / "host.json").write_text(json.dumps(asdict(host)) + "\n")
    merged = directory / "root"
    options = f"lowerdir={root},upperdir={directory / 'upper'},workdir={directory / 'work'}"
    _run("mount", "-t", "overlay", "overlay", "-o", options, str(merged))
    etc = merged / "etc"
    (etc / "hostname").write_text(f"{name}\n")
    (etc / "hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{host.fqdn} {name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
    # Matched before the stock 80-container-host0.network, which would ask for DHCP.
    (etc / "systemd/network/10-host0.network").write_text(
        f"[Match]\nName=host0\n\n[Network]\nAddress={host.address}/24\nDNS={GATEWAY}\nDomains={DOMAIN}\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.fqdn}", "-f", str(merged / HOST_KEY))
    dot_ssh = merged / "root/.ssh"
    dot_ssh.mkdir(mode=0o700, exist_ok=True)
    (dot_ssh / "authorized_keys").write_text(LAB_KEY.with_suffix(".pub").read_text())
    (dot_ssh / "authorized_keys").chmod(0o600)
    network.add_dns_host(name, host.fqdn, host.address)
    return host


def _boot(host: LabHost) -> subprocess.Popen:
    directory = HOSTS_DIR / host.name
    cgroups = [_cgroup(root, host.name) for root in CGROUP_ROOTS]
    for cgroup in cgroups:
        cgroup.mkdir(parents=True, exist_ok=True)
    nspawn = [
        "systemd-nspawn", "-q", "-b", "-D", str(directory / "root"), "-M", host.name,
        "--register=no", "--keep-unit", f"--network-bridge={BRIDGE}", "--console=passive",
        "--resolv-conf=off", "--timezone=off",
    ]  # fmt: skip
    # The shell moves itself into the host's own cgroups, then becomes systemd-nspawn: without cgroups of
    # its own per host, the hosts' units fail at step CGROUP and teardown cannot find their processes.
    script = 'echo $$ > "$1/cgroup.procs" && echo $$ > "$2/cgroup.procs" && shift 2 && exec "$@"'
    with open(directory / "console.log", "ab") as log:
        process = subprocess.Popen(
            ["sh", "-c", script, "sh", *map(str, cgroups), *nspawn],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C goes to us, and we tear the host down in order
        )
    (directory / "nspawn.pid").write_text(f"{process.pid}\n")
    return process


def _wait_until_ready(processes: dict[str, tuple[LabHost, subprocess.Popen]]) -> None:
    """Wait until every host's sshd accepts the lab key with its pinned host key (all hosts at once)."""
    deadline = time.monotonic() + BOOT_TIMEOUT + len(processes)
    stop = threading.Event()

    def wait_for(name: str, host: LabHost, process: subprocess.Popen) -> None:
        log = HOSTS_DIR / name / "console.log"
        while not stop.is_set():
            if process.poll() is not None:
                raise LabError(f"{name} stopped while booting (exit {process.returncode}): see {log}")
            if network.port_open(host.address, 22, timeout=1) and ssh(host, "true", check=False).returncode == 0:
                (HOSTS_DIR / name / "ready").touch()
                return
            if time.monotonic() > deadline:
                raise LabError(f"{name} did not answer ssh within {BOOT_TIMEOUT:.0f} s: see {log}")
            stop.wait(0.2)

    with ThreadPoolExecutor(max_workers=max(1, len(processes))) as pool:
        futures = [pool.submit(wait_for, name, *started) for name, started in processes.items()]
        try:
            for future in as_completed(futures):
                future.result()
        finally:
            stop.set()  # on a failure or Ctrl-C, the other waits end too, before the hosts are removed


# --- stop ------------------------------------------------------------------------------------------------


def _destroy(name: str) -> None:
    directory = HOSTS_DIR / name
    pid = _nspawn_pid(name)
    if pid is not None:
        # SIGTERM to nspawn powers the guest off cleanly, in about 2 s.
        network.stop_process(pid, timeout=15)
    for root in CGROUP_ROOTS:
        _kill_cgroup(_cgroup(root, name))
    network.remove_dns_host(name)
    base.remove_tree(directory)
    for root in CGROUP_ROOTS:
        _remove_cgroup(_cgroup(root, name))
    _write_known_hosts()
    _write_hosts_json()


def _down() -> None:
    errors: list[str] = []

    def attempt(what: str, action, *args) -> None:
        try:
            action(*args)
        except Exception as error:  # keep going: down must clean whatever it can
            errors.append(f"{what}: {error}")

    # All hosts power off at once (about 2 s each when done one after the other).
    for pid in filter(None, map(_nspawn_pid, _host_dirs())):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for name in sorted(_host_dirs()):
        attempt(f"host {name}", _destroy, name)
    for root in CGROUP_ROOTS:  # cgroups whose host directory is already gone
        lab_cgroup = root / CGROUP_NAME
        for cgroup in sorted(lab_cgroup.iterdir()) if lab_cgroup.is_dir() else []:
            if cgroup.is_dir():
                attempt(f"cgroup {cgroup}", _kill_cgroup, cgroup)
                attempt(f"cgroup {cgroup}", _remove_cgroup, cgroup)
        attempt(f"cgroup {lab_cgroup}", _remove_cgroup, lab_cgroup)
    attempt("smarthost", _stop_smarthost)
    attempt("apt-cacher-ng", network.stop_daemon, "apt-cacher-ng", "apt-cacher-ng")
    attempt("dnsmasq", network.stop_daemon, "dnsmasq", "dnsmasq")
    attempt("bridge", network.remove_bridge)
    attempt("sysctl", network.restore_sysctls)
    for path in (HOSTS_DIR, SSH_DIR, network.DNS_HOSTS_DIR, STATE_DIR / "smarthost"):
        attempt(str(path), base.remove_tree, path)
    for path in (HOSTS_JSON, *STATE_DIR.glob("*.log"), *STATE_DIR.glob("*.pid"), *STATE_DIR.glob("*.socket")):
        path.unlink(missing_ok=True)
    if errors:
        raise LabError("down left something behind: " + "; ".join(errors))


def _stop_smarthost() -> None:
    from lab import smarthost

    smarthost.stop(STATE_DIR)


def _smarthost_status() -> str:
    from lab import smarthost

    return "running" if smarthost.is_running(STATE_DIR) else "not running"


def _kill_cgroup(cgroup: Path) -> None:
    """SIGKILL every process left in `cgroup` and below it, until none is left."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = _cgroup_pids(cgroup)
        if not pids:
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            network.reap(pid)
        time.sleep(0.1)
    raise LabError(f"processes {sorted(_cgroup_pids(cgroup))} in {cgroup} survive SIGKILL")


def _cgroup_pids(cgroup: Path) -> set[int]:
    pids: set[int] = set()
    if cgroup.is_dir():
        for procs in cgroup.rglob("cgroup.procs"):
            pids.update(int(pid) for pid in procs.read_text().split() if network.is_alive(int(pid)))
    return pids


def _remove_cgroup(cgroup: Path) -> None:
    # Cgroup directories are removed with rmdir, deepest first; their files go with them.
    if not cgroup.is_dir():
        return
    for directory in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        directory.rmdir()
    cgroup.rmdir()


# --- state -----------------------------------------------------------------------------------------------


@contextmanager
def _lock() -> Iterator[None]:
    """One lab command at a time, across processes (a test may create a host while `up` runs)."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _cgroup(root: Path, name: str) -> Path:
    return root / CGROUP_NAME / name


def _host_dirs() -> list[str]:
    return [path.name for path in HOSTS_DIR.iterdir() if path.is_dir()] if HOSTS_DIR.is_dir() else []


def _record(name: str) -> LabHost | None:
    try:
        return LabHost(**json.loads((HOSTS_DIR / name / "host.json").read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def _nspawn_pid(name: str) -> int | None:
    """The pid of the host's systemd-nspawn, if it still runs (checked, so a reused pid is never killed)."""
    try:
        pid = int((HOSTS_DIR / name / "nspawn.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    args = network.cmdline(pid)
    ours = args[:1] in (["sh"], ["systemd-nspawn"]) and str(HOSTS_DIR / name / "root") in args
    return pid if ours and network.is_alive(pid) else None


def _running(name: str) -> bool:
    return (HOSTS_DIR / name / "ready").exists() and _nspawn_pid(name) is not None


def _find(name: str) -> LabHost:
    for host in hosts():
        if host.name == name:
            return host
    raise LabError(f"no running lab host {name!r}: see `python -m lab status`")


def _write_hosts_json() -> None:
    ready = [host for name in _host_dirs() if (HOSTS_DIR / name / "ready").exists() and (host := _record(name))]
    if not ready and not HOSTS_DIR.is_dir():
        HOSTS_JSON.unlink(missing_ok=True)
        return
    ready.sort(key=lambda host: int(host.address.rsplit(".", 1)[1]))
    temporary = HOSTS_JSON.with_suffix(".tmp")
    temporary.write_text(json.dumps([asdict(host) for host in ready], indent=2) + "\n")
    temporary.rename(HOSTS_JSON)


def _write_known_hosts() -> None:
    if not SSH_DIR.is_dir():
        return
    lines = []
    for name in sorted(_host_dirs()):
        host, public = _record(name), HOSTS_DIR / name / "upper" / f"{HOST_KEY}.pub"
        if host and public.exists():
            key_type, key = public.read_text().split()[:2]
            lines.append(f"{host.fqdn},{host.address} {key_type} {key}\n")
    temporary = KNOWN_HOSTS.with_suffix(".tmp")
    temporary.write_text("".join(lines))
    temporary.rename(KNOWN_HOSTS)


def _pid_text(pid: int | None) -> str:
    return f"running (pid {pid})" if pid else "not running"


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"`{' '.join(command[:3])} ...` failed: {result.stderr.strip()}")
