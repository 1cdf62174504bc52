"""Checks and installs of what the lab needs on this machine (root, Debian packages)."""

import os
import subprocess
from pathlib import Path

# Debian package -> a file it ships that the lab (or the test command) runs; a missing file means the
# package is missing.
PACKAGES = {
    "mmdebstrap": "/usr/bin/mmdebstrap",
    "systemd-container": "/usr/bin/systemd-nspawn",
    "dnsmasq-base": "/usr/sbin/dnsmasq",
    "apt-cacher-ng": "/usr/sbin/apt-cacher-ng",
    "gnome-keyring": "/usr/bin/gnome-keyring-daemon",
    "dbus": "/usr/bin/dbus-run-session",
    # pass (passwordstore.org) and the GnuPG it encrypts with: the keyring of tests/e2e/test_keyring_backends.py.
    "gnupg": "/usr/bin/gpg",
    "pass": "/usr/bin/pass",
    "openssl": "/usr/bin/openssl",
    "openssh-client": "/usr/bin/ssh",
    "iproute2": "/usr/sbin/ip",
    "shellcheck": "/usr/bin/shellcheck",  # scripts/test lints every rendered script with it
}
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


class LabError(Exception):
    """A problem the user can fix; the message is one line that says what and how."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root (bridges, mounts, containers): run it as root, e.g. `sudo .venv/bin/python -m lab`"
        )


def missing_packages() -> list[str]:
    return [package for package, path in PACKAGES.items() if not Path(path).exists()]


def ensure_tools() -> None:
    """Install the Debian packages the lab needs that are not installed yet."""
    missing = missing_packages()
    if not missing:
        return
    if not Path("/usr/bin/apt-get").exists():
        raise LabError(f"missing packages {' '.join(missing)} and no apt-get to install them: install them by hand")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # A policy-rc.d that answers 101 keeps the packages' services (dnsmasq, apt-cacher-ng) from starting:
    # the lab runs its own instances, bound to the bridge only.
    made_policy = not POLICY_RC_D.exists()
    if made_policy:
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        _run_apt(["apt-get", "update", "-q"], env, missing)
        _run_apt(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env, missing)
    finally:
        if made_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    still_missing = missing_packages()
    if still_missing:
        raise LabError(
            f"packages {' '.join(still_missing)} are still missing after apt-get install: install them by hand"
        )


def _run_apt(command: list[str], env: dict[str, str], missing: list[str]) -> None:
    result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise LabError(
            f"cannot install {' '.join(missing)}: `{' '.join(command[:2])}` failed ({last}); "
            f"install them by hand: apt-get install {' '.join(missing)}"
        )
