"""Alert sources and the queue watchdog: the warnings reach a person, and mail that cannot leave is noticed.

unattended-upgrades (where installed; it is never installed for this) mails its report to root, so
to forward_to: one apt.conf.d file. cron and sudo need nothing: cron mails a job's output to the
crontab's owner and sudo its incidents to root, and the deploy sends every local user's mail to
forward_to. The watchdog (templates/scripts/watchdog.sh.j2) looks at the queue from a systemd timer, or
from crond's /etc/periodic/15min on OpenRC, and warns once per problem when mail waits too long.

The operations read the deploy's one fact (the SHA-256 of each file below, whether the timer is
enabled, whether unattended-upgrades is installed) and send their files on the stdin of one command.
With --diff, the deploy shows what they would change (show_diff; the host's copy of a changed file
is read then, and only then).
"""

from __future__ import annotations

import base64
import hashlib
import io
import posixpath
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

from pyinfra import host, logger, state
from pyinfra.api import StringCommand, operation
from pyinfra.facts.files import FileContents

from postfix_nullclient import diff
from postfix_nullclient.facts import HostState
from postfix_nullclient.model import STATE_DIR
from postfix_nullclient.render import render_script, render_template
from postfix_nullclient.settings import Settings
from postfix_nullclient.spec import duration_text

WATCHDOG = "/usr/local/lib/postfix-nullclient/watchdog"
WATCHDOG_STATE = f"{STATE_DIR}/watchdog"  # last-run, last-said, problem
MOTD = "/run/motd.d/postfix-nullclient"  # pam_motd shows /run/motd.d at SSH and console logins (Debian)
# On /run's tmpfs with MOTD, so that a full /var neither empties the login message nor makes the
# watchdog forget what it told: the problem it told (as in WATCHDOG_STATE), and the login message
# while it is written (then renamed into /run/motd.d, where pam_motd shows every file).
WATCHDOG_RUN = "/run/postfix-nullclient"
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
# `postqueue -j` asks Postfix's showq, which any local user can keep busy (every one of them, up to
# default_process_limit): past QUEUE_SECONDS the watchdog counts the queue's files instead.
QUEUE_SECONDS = 20
SHOWN_REASONS = 5
REASON_LENGTH = 200
JOURNAL_DETAILS = 10
UPGRADES_PACKAGE = "unattended-upgrades"
UPGRADES_MAIL_CONF = "/etc/apt/apt.conf.d/51postfix-nullclient-mail"  # after the package's 50unattended-upgrades

# The queue flushed when the network is back: a hook of each network stack the host uses starts
# FLUSH (templates/scripts/flush_on_network.sh.j2), which flushes at most once per FLUSH_INTERVAL
# seconds and ends within FLUSH_SECONDS. systemd-networkd has no hooks of its own: a path unit watches
# its state file (the file's content is networkd's private data and never read; the state is asked of
# networkd over D-Bus). The path unit is PartOf the watchdog's timer, so that whatever stops the timer
# (`nullclient remove`) stops it too.
FLUSH = "/usr/local/lib/postfix-nullclient/flush-on-network"
FLUSH_INTERVAL = 20
FLUSH_SECONDS = 60
NETWORKMANAGER_HOOK = "/etc/NetworkManager/dispatcher.d/90-postfix-nullclient"
IFUPDOWN_HOOK = "/etc/network/if-up.d/postfix-nullclient"
NETWORKD_STATE = "/run/systemd/netif/state"
NETWORKD_ONLINE_WAIT = 15  # seconds the flush waits for networkd to say "routable" after a change
FLUSH_PATH_NAME = "postfix-nullclient-flush.path"
FLUSH_PATH_UNIT = f"/etc/systemd/system/{FLUSH_PATH_NAME}"
FLUSH_SERVICE_UNIT = "/etc/systemd/system/postfix-nullclient-flush.service"
FLUSH_PATH_LINK = f"/etc/systemd/system/paths.target.wants/{FLUSH_PATH_NAME}"  # what `systemctl enable` makes
# Each network stack, and the sh test that is true where the host uses it (the fact runs them).
NETWORK_STACKS = {
    "NetworkManager": f"[ -d {posixpath.dirname(NETWORKMANAGER_HOOK)} ]",
    # Enabled (the link `systemctl enable` makes), or running: its state file exists.
    "systemd-networkd": f"{{ [ -e /etc/systemd/system/multi-user.target.wants/systemd-networkd.service ] "
    f"|| [ -e {NETWORKD_STATE} ]; }}",
    "ifupdown": f"{{ command -v ifup >/dev/null && [ -d {posixpath.dirname(IFUPDOWN_HOOK)} ]; }}",
}
# The enable link before the unit it points to: a link left dangling is not seen (remove tests -e).
NETWORK_FILES = (FLUSH, NETWORKMANAGER_HOOK, IFUPDOWN_HOOK, FLUSH_PATH_LINK, FLUSH_PATH_UNIT, FLUSH_SERVICE_UNIT)

# Every file of this module, for the fact (which hashes those that exist) and for `nullclient remove`.
ALERT_FILES = (WATCHDOG, SERVICE_UNIT, TIMER_UNIT, PERIODIC, UPGRADES_MAIL_CONF, *NETWORK_FILES)


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


def warn_after(settings: Settings) -> int:
    """Seconds a message waits before the watchdog warns: watchdog_threshold, or half the queue lifetime
    where that is shorter, so that a warning always comes before Postfix gives a message up."""
    return min(settings.watchdog_threshold, settings.queue_lifetime // 2)


def watchdog_script(
    settings: Settings,
    state_dir: str = WATCHDOG_STATE,
    motd_file: str = MOTD,
    run_dir: str = WATCHDOG_RUN,
    queue_seconds: int = QUEUE_SECONDS,
) -> str:
    """The watchdog itself, a POSIX sh script; other directories and time limits than the host's only for tests."""
    threshold = warn_after(settings)
    return render_script(
        "watchdog",
        threshold=threshold,
        threshold_text=duration_text(threshold),
        lifetime=settings.queue_lifetime,
        lifetime_text=duration_text(settings.queue_lifetime),
        state_dir=state_dir,
        motd_file=motd_file,
        run_dir=run_dir,
        queue_seconds=queue_seconds,
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


def put_files_script(files: list[HostFile], remove: Sequence[str] = (), after: Sequence[str] = ()) -> str:
    return render_script("put_files", files=files, remove=list(remove), after=list(after))


def put_files(files: list[HostFile], remove: Sequence[str] = (), after: Sequence[str] = ()) -> StringCommand:
    """The one command of an operation, which says what it does when it runs (once, where it happens)."""
    if state.is_executing:
        parts = [f"write {', '.join(wanted.path for wanted in files)}"] if files else []
        parts += [f"remove {', '.join(remove)}"] if remove else []
        host.log("; ".join([*parts, *after]), logger.info)
    return StringCommand("sh -s", _stdin=io.StringIO(put_files_script(files, remove=remove, after=after)))


def show_diff(
    watchdog: list[HostFile], network: list[HostFile], upgrades_mail: HostFile | None, found: HostState, init: str
) -> None:
    """--diff: each alert file that the operations below would change, against the host's own copy (read
    only here), and each that they would delete.

    Called by the deploy while it prepares, as postfix.show_diff, so that it shows once, with or without
    -y (which skips pyinfra's change detection, and so the operations, while it prepares) and --dry.
    """
    if not diff.wanted():
        return
    put_upgrades_mail, remove_upgrades_mail = upgrades_mail_changes(upgrades_mail, found)
    put = [*watchdog_changes(watchdog, found, init), *network_changes(network, found)[0], *put_upgrades_mail]
    for wanted in put:
        if found.sha256.get(wanted.path) == wanted.sha256:
            continue  # the same content, written again only so that the timer is enabled
        old = host.get_fact(FileContents, path=wanted.path) if wanted.path in found.sha256 else None
        diff.show_file(wanted.path, None if old is None else "\n".join(old), wanted.content)
    for path in [*network_leftovers(network, found), *remove_upgrades_mail]:
        diff.show_removal(path)


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
def watchdog(files: list[HostFile], found: HostState, init: str) -> Generator[StringCommand, None, None]:
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
    yield put_files(changed, after=after)


@operation()
def unattended_upgrades_mail(wanted: HostFile | None, found: HostState) -> Generator[StringCommand, None, None]:
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
    yield put_files(put, remove=remove)


# --- the queue flushed when the network is back ------------------------------------------------------


def network_files(stacks: set[str]) -> list[HostFile]:
    """The flush script and a hook for each network stack the host uses (`stacks`: NETWORK_STACKS' names)."""
    if not stacks:
        return []
    files = [
        HostFile(
            FLUSH,
            render_script(
                "flush_on_network",
                state_dir=WATCHDOG_STATE,
                interval=FLUSH_INTERVAL,
                networkd_state=NETWORKD_STATE,
                online_wait=NETWORKD_ONLINE_WAIT,
            ),
            "0755",
        )
    ]
    hook = {"flush": FLUSH, "run_seconds": FLUSH_SECONDS}
    if "NetworkManager" in stacks:
        files.append(
            HostFile(NETWORKMANAGER_HOOK, render_template("network_hook.j2", stack="NetworkManager", **hook), "0755")
        )
    if "ifupdown" in stacks:
        files.append(HostFile(IFUPDOWN_HOOK, render_template("network_hook.j2", stack="ifupdown", **hook), "0755"))
    if "systemd-networkd" in stacks:
        files.append(
            HostFile(FLUSH_PATH_UNIT, render_template("flush.path.j2", networkd_state=NETWORKD_STATE, timer=TIMER_NAME))
        )
        files.append(HostFile(FLUSH_SERVICE_UNIT, render_template("flush.service.j2", **hook)))
    return files


def network_leftovers(files: list[HostFile], found: HostState) -> list[str]:
    """The network files on the host that `files` no longer has: the hooks of stacks the host no longer uses."""
    wanted_paths = {wanted.path for wanted in files}
    # The enable link is never a wanted file: `systemctl enable` makes it.
    return [path for path in NETWORK_FILES if path in found.sha256 and path not in {*wanted_paths, FLUSH_PATH_LINK}]


def network_changes(files: list[HostFile], found: HostState) -> tuple[list[HostFile], list[str], list[str]]:
    """(files to write, paths to delete, commands after them) for the network hooks: the hooks of stacks
    the host no longer uses go, and the path unit is enabled and started, or stopped and disabled."""
    put = [wanted for wanted in files if found.sha256.get(wanted.path) != wanted.sha256]
    wanted_paths = {wanted.path for wanted in files}
    gone = network_leftovers(files, found)
    systemd_units = (FLUSH_PATH_UNIT, FLUSH_SERVICE_UNIT, FLUSH_PATH_LINK)
    after = []
    if FLUSH_PATH_UNIT in wanted_paths:
        if put or FLUSH_PATH_LINK not in found.sha256:
            after = ["systemctl daemon-reload", f"systemctl enable -q {FLUSH_PATH_NAME}"]
            after.append(f"systemctl restart {FLUSH_PATH_NAME}")
    elif FLUSH_PATH_UNIT in gone:  # stopped and disabled while its file is there, then deleted
        units = [path for path in NETWORK_FILES if path in found.sha256 and path in systemd_units]
        gone = [path for path in gone if path not in units]
        after = [f"systemctl disable --now -q {FLUSH_PATH_NAME} || true", "rm -f " + " ".join(units)]
        after.append("systemctl daemon-reload")
    return put, gone, after


@operation()
def flush_on_network(files: list[HostFile], found: HostState) -> Generator[StringCommand, None, None]:
    """
    Flush Postfix's queue when the network is back: install the hooks of the host's network stacks, or do nothing.

    + files: the flush script and hooks (``network_files``)
    + found: the host's NullClientHost fact
    """
    put, remove, after = network_changes(files, found)
    if not put and not remove and not after:
        if files:
            stacks = ", ".join(sorted(found.network_stacks))
            host.noop(f"the queue is already flushed when {stacks} brings the network back")
        else:
            host.noop("no known network stack (NetworkManager, systemd-networkd, ifupdown): nothing to hook")
        return
    yield put_files(put, remove=remove, after=after)
