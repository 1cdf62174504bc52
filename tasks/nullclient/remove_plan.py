"""The stdin of the remove command: nullclient/remove.sh and this host's part."""

from __future__ import annotations

import posixpath
import shlex
from pathlib import Path

from postfix_nullclient import alerts
from postfix_nullclient.distro import Family

REMOVE_SCRIPT = Path(__file__).with_name("remove.sh")
MODES = ("stop", "purge")

PURGE_COMMANDS = {
    "apt": "env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q postfix",
    "dnf": "dnf remove -y postfix",
    "pacman": "pacman -Rns --noconfirm postfix",
    "apk": "apk del postfix",
    "zypper": "zypper -n remove postfix",
}


def remove_script(mode: str, family: Family, files: list[str]) -> str:
    if mode not in MODES:
        raise ValueError(f"remove mode {mode!r} is not one of {', '.join(MODES)}")
    lines = [
        REMOVE_SCRIPT.read_text(),
        f"mode={mode}",
        f"init={shlex.quote(family.init)}",
        f"purge_command={shlex.quote(PURGE_COMMANDS[family.package_manager])}",
        f"alert_files={shlex.quote(' '.join(alerts.ALERT_FILES))}",
        f"watchdog_timer={shlex.quote(alerts.TIMER_NAME)}",
        f"watchdog_motd={shlex.quote(alerts.MOTD)}",
        f"watchdog_dir={shlex.quote(posixpath.dirname(alerts.WATCHDOG))}",
        f"files={shlex.quote(' '.join(files))}",
        "remove_null_client",
    ]
    return "\n".join(lines) + "\n"
