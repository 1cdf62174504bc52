"""The base root filesystem of the lab's workstations, one per Debian suite, shared read-only by all hosts."""

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from lab import ca
from lab.config import APT_PROXY_PORT, CACHE_DIR, GATEWAY, SUITES
from lab.tools import LabError

PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "openssh-server", "ca-certificates", "python3",
    "iproute2", "netbase", "procps", "iputils-ping", "less",
]  # fmt: skip
CA_IN_BASE = "usr/local/share/ca-certificates/nullclient-lab-ca.crt"
# Timers that would start apt in the background and hold the dpkg lock while a deploy installs packages.
MASKED_UNITS = [
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "apt-daily.service",
    "apt-daily-upgrade.service",
]
SSHD_CONFIG = """\
# The lab logs in as root with the lab's key only; each host has its own ed25519 host key.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
"""


def ca_dir() -> Path:
    return CACHE_DIR / "ca"


def base_dir(suite: str) -> Path:
    return CACHE_DIR / f"base-{suite}"


def mirror_url() -> str:
    """The Debian main archive that this machine's own apt uses (never written into the repository)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = _deb822_fields(stanza)
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            if _is_main_archive(fields.get("suites", "").split()):
                return fields.get("uris", "").split()[0].rstrip("/")
    lists = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
    for path in lists:
        for line in path.read_text().splitlines() if path.exists() else []:
            words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
            if len(words) >= 3 and words[0] == "deb" and _is_main_archive([words[2]]):
                return words[1].rstrip("/")
    raise LabError("no Debian archive found in this machine's apt sources: add one to /etc/apt/sources.list.d")


def _deb822_fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    return fields


def _is_main_archive(suites: list[str]) -> bool:
    # "bookworm" is the main archive; "bookworm-security" and "bookworm-updates" are not.
    return any("-" not in suite and "/" not in suite for suite in suites)


def ensure_base(suite: str) -> Path:
    """Build the base for `suite` unless it is there; re-bake it when the lab CA changed."""
    if suite not in SUITES:
        raise LabError(f"unknown suite {suite!r}: use one of {', '.join(SUITES)}")
    ca_cert = ca.ensure_ca(ca_dir())
    base = base_dir(suite)
    if base.is_dir():
        if (base / CA_IN_BASE).read_bytes() != ca_cert.read_bytes():
            _rebake_ca(base, ca_cert)
        return base
    _build(suite, base, ca_cert)
    return base


def _build(suite: str, base: Path, ca_cert: Path) -> None:
    # Built beside its final place and renamed at the end: an interrupted build never leaves a half base.
    building = base.with_name(f".{base.name}.building")
    remove_tree(building)
    mirror = mirror_url()
    print(f"building the {suite} base in {base} (about 40 s)", flush=True)
    try:
        run_interruptible(
            ["mmdebstrap", "--mode=root", "--variant=minbase", "--quiet", f"--include={','.join(PACKAGES)}",
             "--skip=cleanup/apt/lists", suite, str(building), mirror],
            what=f"mmdebstrap {suite}",
        )  # fmt: skip
        _customize(building, suite, mirror, ca_cert)
        building.rename(base)
    finally:
        remove_tree(building)


def _customize(root: Path, suite: str, mirror: str, ca_cert: Path) -> None:
    (root / "etc/apt/sources.list").write_text(f"deb {mirror} {suite} main\n")
    (root / "etc/apt/apt.conf.d/01nullclient-lab-proxy").write_text(
        f'Acquire::http::Proxy "http://{GATEWAY}:{APT_PROXY_PORT}";\n'
    )
    # No translations: `apt-get update` on a host then fetches what mmdebstrap already fetched, mostly nothing.
    (root / "etc/apt/apt.conf.d/02nullclient-lab-no-languages").write_text('Acquire::Languages "none";\n')
    (root / "etc/ssh/sshd_config.d/nullclient-lab.conf").write_text(SSHD_CONFIG)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text(f"nameserver {GATEWAY}\n")
    # Each host writes its own name and machine id into its upper layer.
    (root / "etc/hostname").unlink(missing_ok=True)
    (root / "etc/machine-id").write_text("")
    _chroot(root, "systemctl", "enable", "systemd-networkd")
    _chroot(root, "systemctl", "mask", *MASKED_UNITS)
    _install_ca(root, ca_cert)


def _rebake_ca(base: Path, ca_cert: Path) -> None:
    if any(f"lowerdir={base}" in line for line in Path("/proc/mounts").read_text().splitlines()):
        raise LabError(f"the lab CA changed while hosts run on {base}: run `python -m lab down`, then `up` again")
    print(f"the lab CA changed: installing the new one into {base}", flush=True)
    _install_ca(base, ca_cert)


def _install_ca(root: Path, ca_cert: Path) -> None:
    shutil.copyfile(ca_cert, root / CA_IN_BASE)
    _chroot(root, "update-ca-certificates", "--fresh")


def _chroot(root: Path, *command: str) -> None:
    result = subprocess.run(["chroot", str(root), *command], capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"`{' '.join(command)}` in {root} failed: {result.stderr.strip()[-300:]}")


def run_interruptible(command: list[str], what: str) -> None:
    """Run `command`; on Ctrl-C or an error here, let it clean up after itself (SIGTERM) before raising."""
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = process.communicate()
    except BaseException:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    if process.returncode != 0:
        tail = output.decode(errors="replace").strip().splitlines()[-5:]
        raise LabError(f"{what} failed (exit {process.returncode}): {' | '.join(tail)}")


def mounts_below(path: Path) -> list[Path]:
    """Mount points at or under `path`, deepest first."""
    prefix = str(path.resolve()) if path.exists() else str(path)
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(Path(point))
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def unmount_below(path: Path) -> None:
    for _ in range(5):
        points = mounts_below(path)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", str(point)], capture_output=True)
        if mounts_below(path):
            time.sleep(0.5)
    for point in mounts_below(path):
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True)
    if mounts_below(path):
        raise LabError(f"cannot unmount {mounts_below(path)[0]}: unmount it by hand, then run `python -m lab down`")


def remove_tree(path: Path) -> None:
    """rm -rf that first unmounts whatever is mounted below, so it never deletes into a mounted file system."""
    if not path.exists():
        return
    unmount_below(path)
    shutil.rmtree(path)
