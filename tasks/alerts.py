"""Alert sources and the queue watchdog: the warnings reach a person, and mail that cannot leave is noticed.

unattended-upgrades (where installed; it is never installed for this) mails its report to root, so
to forward_to: one apt.conf.d file. cron and sudo need nothing: cron mails a job's output to the
crontab's owner and sudo its incidents to root, and the deploy sends every local user's mail to
forward_to. The watchdog (templates/scripts/watchdog.sh.j2) looks at the queue from a systemd timer, or
from crond's /etc/periodic/15min on OpenRC, and warns once per problem when mail waits too long.

Both operations read the deploy's one fact (the SHA-256 of each file below, whether the timer is
enabled, whether unattended-upgrades is installed) and send their files on the stdin of one command.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field

from pyinfra import host
from pyinfra.api import StringCommand, operation

from postfix_nullclient.facts import HostState
from postfix_nullclient.model import STATE_DIR
from postfix_nullclient.render import render_script, render_template
from postfix_nullclient.settings import Settings
from postfix_nullclient.spec import duration_text

WATCHDOG = "/usr/local/lib/postfix-nullclient/watchdog"
WATCHDOG_STATE = f"{STATE_DIR}/watchdog"  # last-run, last-said, problem, motd
MOTD = "/run/motd.d/postfix-nullclient"  # pam_motd shows /run/motd.d at SSH and console logins (Debian)
TIMER_NAME = "postfix-nullclient-watchdog.timer"
SERVICE_UNIT = "/etc/systemd/system/postfix-nullclient-watchdog.service"
TIMER_UNIT = f"/etc/systemd/system/{TIMER_NAME}"
TIMER_LINK = f"/etc/systemd/system/timers.target.wants/{TIMER_NAME}"  # what `systemctl enable` makes
PERIODIC = "/etc/periodic/15min/postfix-nullclient-watchdog"  # OpenRC: crond's run-parts
# The watchdog's limits: what local users control (the queue's content, their session bus) can neither
# stop it nor make it repeat without bound. A whole run ends within RUN_SECONDS (systemd's
# TimeoutStartSec, or `timeout` under crond), so the next one starts; each desktop notification, the
# only part that talks to something a user owns, within NOTIFY_SECONDS. What it tells: at most
# SHOWN_REASONS of Postfix's distinct reasons, each at most REASON_LENGTH characters, then how many
# more; at most JOURNAL_DETAILS journal lines about single messages.
RUN_SECONDS = 120
NOTIFY_SECONDS = 5
SHOWN_REASONS = 5
REASON_LENGTH = 200
JOURNAL_DETAILS = 10
UPGRADES_PACKAGE = "unattended-upgrades"
UPGRADES_MAIL_CONF = "/etc/apt/apt.conf.d/51postfix-nullclient-mail"  # after the package's 50unattended-upgrades

# Every file of this module, for the fact (which hashes those that exist) and for `nullclient remove`.
ALERT_FILES = (WATCHDOG, SERVICE_UNIT, TIMER_UNIT, PERIODIC, UPGRADES_MAIL_CONF)


@dataclass(frozen=True)
class HostFile:
    """A file the deploy owns outside /etc/postfix, by absolute path."""

    path: str
    content: str = field(default="", repr=False)
    mode: str = "0644"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()

    @property
    def encoded(self) -> str:
        return base64.b64encode(self.content.encode()).decode()


def watchdog_script(settings: Settings, state_dir: str = WATCHDOG_STATE, motd_file: str = MOTD) -> str:
    """The watchdog itself, a POSIX sh script; other directories than the host's only for tests."""
    return render_script(
        "watchdog",
        threshold=settings.watchdog_threshold,
        threshold_text=duration_text(settings.watchdog_threshold),
        state_dir=state_dir,
        motd_file=motd_file,
        notify_seconds=NOTIFY_SECONDS,
        shown_reasons=SHOWN_REASONS,
        reason_length=REASON_LENGTH,
        journal_details=JOURNAL_DETAILS,
    )


def watchdog_files(settings: Settings, init: str) -> list[HostFile]:
    """The watchdog script and what runs it: a systemd service and timer, or crond's 15-minute directory."""
    files = [HostFile(WATCHDOG, watchdog_script(settings), "0755")]
    if init == "systemd":
        interval = settings.watchdog_interval
        service = render_template("watchdog.service.j2", watchdog=WATCHDOG, run_seconds=RUN_SECONDS)
        files.append(HostFile(SERVICE_UNIT, service))
        files.append(
            HostFile(
                TIMER_UNIT,
                render_template("watchdog.timer.j2", interval=interval, interval_text=duration_text(interval)),
            )
        )
    else:
        periodic = render_template("watchdog.periodic.j2", watchdog=WATCHDOG, run_seconds=RUN_SECONDS)
        files.append(HostFile(PERIODIC, periodic, "0755"))
    return files


def upgrades_mail_file(settings: Settings) -> HostFile | None:
    """The apt.conf.d file that makes unattended-upgrades mail root; None when the setting is off."""
    if settings.unattended_upgrades_mail is None:
        return None
    content = render_template("unattended_upgrades_mail.j2", report=settings.unattended_upgrades_mail)
    return HostFile(UPGRADES_MAIL_CONF, content)


def put_files_script(files: list[HostFile], remove: list[str] = (), after: list[str] = ()) -> str:
    return render_script("put_files", files=files, remove=list(remove), after=list(after))


def watchdog_changes(files: list[HostFile], found: HostState, init: str) -> list[HostFile]:
    """The watchdog's files that differ on the host; all of them where systemd's timer is not enabled."""
    changed = [wanted for wanted in files if found.sha256.get(wanted.path) != wanted.sha256]
    if init == "systemd" and not found.watchdog_enabled:
        return files
    return changed


def upgrades_mail_changes(wanted: HostFile | None, found: HostState) -> tuple[list[HostFile], list[str]]:
    """(files to write, paths to delete) for unattended-upgrades' mail; nothing where it is not installed."""
    if wanted is None:
        return [], [UPGRADES_MAIL_CONF] if UPGRADES_MAIL_CONF in found.sha256 else []
    if UPGRADES_PACKAGE not in found.packages or found.sha256.get(wanted.path) == wanted.sha256:
        return [], []
    return [wanted], []


@operation()
def watchdog(files: list[HostFile], found: HostState, init: str) -> Iterator[StringCommand]:
    """
    Install the queue watchdog and start its timer, in one command, or do nothing.

    + files: the watchdog's files with their wanted content (``watchdog_files``)
    + found: the host's NullClientHost fact
    + init: the host's service manager, systemd or openrc
    """
    changed = watchdog_changes(files, found, init)
    if not changed:
        host.noop("the queue watchdog is already installed and its timer enabled")
        return
    after = []
    if init == "systemd":
        # restart: a changed interval applies now, not after the next run.
        after = ["systemctl daemon-reload", f"systemctl enable -q {TIMER_NAME}", f"systemctl restart {TIMER_NAME}"]
    yield StringCommand("sh -s", _stdin=io.StringIO(put_files_script(changed, after=after)))


@operation()
def unattended_upgrades_mail(wanted: HostFile | None, found: HostState) -> Iterator[StringCommand]:
    """
    Make unattended-upgrades mail its report to root where it is installed, or do nothing.

    + wanted: the apt.conf.d file (``upgrades_mail_file``); None: the setting is off, and a file of
      an earlier deploy goes, so the package's own configuration holds again
    + found: the host's NullClientHost fact
    """
    put, remove = upgrades_mail_changes(wanted, found)
    if not put and not remove:
        if wanted is None:
            host.noop("unattended_upgrades_mail is off: unattended-upgrades' configuration is left as it is")
        elif UPGRADES_PACKAGE not in found.packages:
            host.noop("unattended-upgrades is not installed (it is not installed for this)")
        else:
            host.noop("unattended-upgrades already mails root")
        return
    yield StringCommand("sh -s", _stdin=io.StringIO(put_files_script(put, remove=remove)))
