"""The remove script (templates/scripts/remove.sh.j2) for a host's family, its dry run as a fact, and
what it says.

`nullclient remove` runs the script's dry run on every host first (RemovalPlan, a fact: it changes
nothing) and changes no host if any refuses; then the script itself, which checks again.
"""

from __future__ import annotations

import posixpath

from pyinfra.api import FactBase

from postfix_nullclient import alerts
from postfix_nullclient.mail_systems import HELD_DIR
from postfix_nullclient.model import FAMILIES, MESSAGE_TAG, Family
from postfix_nullclient.render import render_script

MODES = ("stop", "purge")
# What becomes of mail still queued when postfix is purged (a purge deletes Postfix's queue directory).
REFUSE, KEEP, DISCARD = "refuse", "keep", "discard"
QUEUED_MAIL = (REFUSE, KEEP, DISCARD)
KEEP_FLAG = "--keep-queue"
DISCARD_FLAG = "--discard-queued-mail"
# The directories under Postfix's queue_directory that hold messages, one file each (postfix's
# maildrop, incoming, active, deferred and hold queues, and what it set aside as corrupt). The
# others hold delivery logs, sockets and the pid file.
QUEUE_SUBDIRS = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")
REFUSED = "refused: "


def remove_script(mode: str, family: Family, queued_mail: str = REFUSE, keep_dir: str = "", dry: bool = False) -> str:
    """The script for `--postfix MODE`, with queued mail refused, kept in `keep_dir` or discarded at a purge."""
    if mode not in MODES:
        raise ValueError(f"remove mode {mode!r} is not one of {', '.join(MODES)}")
    if queued_mail not in QUEUED_MAIL:
        raise ValueError(f"queued mail {queued_mail!r} is not one of {', '.join(QUEUED_MAIL)}")
    if (queued_mail == KEEP) != bool(keep_dir):
        raise ValueError("a directory for the queued mail goes with keep, and only with keep")
    return render_script(
        "remove",
        mode=mode,
        dry="yes" if dry else "no",
        queued_mail=queued_mail,
        keep_dir=keep_dir,
        keep_flag=KEEP_FLAG,
        discard_flag=DISCARD_FLAG,
        queue_subdirs=QUEUE_SUBDIRS,
        init=family.init_system,
        purge_command=family.packager.purge_postfix,
        alert_files=alerts.ALERT_FILES,
        watchdog_timer=alerts.TIMER_NAME,
        watchdog_motd=alerts.MOTD,
        watchdog_dir=posixpath.dirname(alerts.WATCHDOG),
        watchdog_run=alerts.WATCHDOG_RUN,
        held_dir=HELD_DIR,
    )


def said(output: list[str]) -> list[str]:
    """The script's own lines, without their tag: what it did, would do, or refused."""
    return [line.removeprefix(MESSAGE_TAG).strip() for line in output if line.startswith(MESSAGE_TAG)]


def refusal(lines: list[str]) -> str | None:
    return next((line.removeprefix(REFUSED) for line in lines if line.startswith(REFUSED)), None)


class RemovalPlan(FactBase[list[str]]):
    """What `nullclient remove` would do on this host: the remove script's dry run, which changes nothing."""

    def command(self, mode: str, queued_mail: str, keep_dir: str, family: str) -> str:
        by_name = {f.name: f for f in FAMILIES}
        return remove_script(mode, by_name[family], queued_mail, keep_dir, dry=True)

    def process(self, output: list[str]) -> list[str]:
        return said(output)
