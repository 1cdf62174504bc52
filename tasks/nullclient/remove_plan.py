"""The stdin of the remove command: templates/scripts/remove.sh.j2 for this host's family."""

from __future__ import annotations

import posixpath

from postfix_nullclient import alerts
from postfix_nullclient.mail_systems import HELD_DIR
from postfix_nullclient.model import Family
from postfix_nullclient.render import render_script

MODES = ("stop", "purge")


def remove_script(mode: str, family: Family) -> str:
    if mode not in MODES:
        raise ValueError(f"remove mode {mode!r} is not one of {', '.join(MODES)}")
    return render_script(
        "remove",
        mode=mode,
        init=family.init_system,
        purge_command=family.packager.purge_postfix,
        alert_files=alerts.ALERT_FILES,
        watchdog_timer=alerts.TIMER_NAME,
        watchdog_motd=alerts.MOTD,
        watchdog_dir=posixpath.dirname(alerts.WATCHDOG),
        held_dir=HELD_DIR,
    )
