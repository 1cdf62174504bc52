"""Mail systems a workstation may have before the null client: what replaces them and their queued mail.

Postfix's package conflicts with every other mail transport agent, so installing it removes them.
Their queued mail must not go with them: before the install, the deploy takes each queued message
out of a queue it knows how to read ("holds" it in HELD_DIR, as envelope + message), and once postfix
is configured hands every held message to postfix's sendmail, which sends it through the relay
(templates/scripts/held_mail.sh.j2). A queue it cannot read is reported with its place and size, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from postfix_nullclient.model import STATE_DIR
from postfix_nullclient.render import render_script

HELD_DIR = f"{STATE_DIR}/held"


@dataclass(frozen=True)
class MailSystem:
    name: str
    packages: tuple[str, ...]  # any of them installed: the system is there, and postfix's install removes it
    queue_dir: str  # where its queued mail is, for the messages; "" when it keeps no queue
    queue_files: tuple[str, ...]  # shell globs that match one file per queued message
    holdable: bool  # the deploy can take its queued mail out and hand it to postfix


MAIL_SYSTEMS = (
    # exim4 -bp lists the queue, -Mvc prints a message: possible only while exim4 is installed.
    MailSystem(
        "exim4", ("exim4-daemon-light", "exim4-daemon-heavy"), "/var/spool/exim4/input",
        ("/var/spool/exim4/input/*-H", "/var/spool/exim4/input/*/*-H"), True,
    ),
    # Its queue files are already envelope + message, the format of HELD_DIR.
    MailSystem("nullmailer", ("nullmailer",), "/var/spool/nullmailer/queue", ("/var/spool/nullmailer/queue/*",), True),
    MailSystem("msmtp-mta", ("msmtp-mta",), "", (), False),  # sends at once or fails: no queue
    MailSystem("dma", ("dma",), "/var/spool/dma", ("/var/spool/dma/Q*",), False),
    MailSystem("sendmail", ("sendmail-bin",), "/var/spool/mqueue", ("/var/spool/mqueue/qf*",), False),
)  # fmt: skip

PACKAGES = tuple(name for system in MAIL_SYSTEMS for name in system.packages)


def held_mail_script(*steps: str) -> str:
    """The stdin of `sh -s` that runs ``steps`` of templates/scripts/held_mail.sh.j2: "hold" (the replaced
    systems' queued mail), "hold_postfix", "requeue_postfix" (a reconfigured Postfix's own), "send"."""
    systems = {system.name: system for system in MAIL_SYSTEMS}
    return render_script(
        "held_mail",
        steps=steps,
        held_dir=HELD_DIR,
        exim4_input=systems["exim4"].queue_dir,
        nullmailer_queue=systems["nullmailer"].queue_dir,
    )


def installed(packages: set[str]) -> list[MailSystem]:
    """The other mail systems among the host's installed packages."""
    return [system for system in MAIL_SYSTEMS if packages.intersection(system.packages)]


@dataclass(frozen=True)
class Replacement:
    """What the deploy does about the mail systems it finds on a host, and the lines that say so."""

    systems: list[MailSystem]  # installed, removed by postfix's install
    hold: bool  # take queued mail out of them before the install
    report: list[str]


def replacement(packages: set[str], queued: dict[str, int]) -> Replacement:
    """The other mail systems among ``packages``, and what happens to the mail in their queues."""
    systems, hold, report = installed(packages), False, []
    for system in systems:
        count = queued.get(system.name, 0)
        removed = ", ".join(sorted(packages.intersection(system.packages)))
        if not system.queue_dir:
            fate = "it keeps no queue"
        elif not count:
            fate = f"its queue {system.queue_dir} is empty"
        elif system.holdable:
            hold = True
            fate = (
                f"the {count} message(s) in its queue {system.queue_dir} are kept in {HELD_DIR} "
                "and sent through the relay once postfix is configured"
            )
        else:
            fate = (
                f"{count} message(s) stay in its queue {system.queue_dir}: the deploy cannot send them; "
                f"read them there, or send them with {system.name} before the deploy"
            )
        report.append(f"replacing {system.name} ({removed}), which postfix's install removes; {fate}")
    return Replacement(systems, hold, report)
