"""End to end on the lab: a local user's odd envelope senders, on one workstation ax1.

The lab's smarthost refuses any sender but the login, as providers do; a sender that reaches it
unrewritten is refused, and so is its bounce (the null sender): the mail is lost. So every sender a
local user can give must leave as the login.
"""

from __future__ import annotations

import shlex
import uuid

import pytest

from lab import smarthost
from lab.config import FORWARD_TO, STATE_DIR
from tests.e2e.conftest import Workstation, deploy


@pytest.fixture(scope="module")
def ax1(make_workstations, keyring_env) -> Workstation:
    (workstation,) = make_workstations(["ax1"])
    run = deploy(keyring_env, [workstation])
    assert run.returncode == 0, run.output
    workstation.run("id alice >/dev/null 2>&1 || useradd alice")
    return workstation


def sent_by_alice_as(workstation: Workstation, senders: list[str]) -> None:
    """Each sender, given by the local user alice with sendmail -f, arrives at forward_to as the login,
    and nothing bounces."""
    since = "@" + workstation.run("date +%s.%N").stdout.strip()
    subjects = []
    for sender in senders:
        subject = f"ax {uuid.uuid4().hex[:10]}"
        subjects.append(subject)
        workstation.run(
            f"printf 'Subject: %s\\n\\nodd sender\\n' {shlex.quote(subject)} | "
            f"runuser -u alice -- /usr/sbin/sendmail -i -f {shlex.quote(sender)} root"
        )
    for sender, subject in zip(senders, subjects, strict=True):
        try:
            [message] = smarthost.wait_for_messages(
                STATE_DIR, 1, timeout=20, predicate=lambda m, subject=subject: m["subject"] == subject
            )
        except TimeoutError:
            log = workstation.run(f"journalctl --no-pager -o cat -t postfix/smtp --since {since}").stdout
            raise AssertionError(f"the mail from -f {sender!r} never reached the relay:\n{log}") from None
        assert (message["mail_from"], message["rcpt_tos"]) == (workstation.smtp_user, [FORWARD_TO]), sender
    log = workstation.run(f"journalctl --no-pager -o cat -t postfix/smtp --since {since}").stdout
    assert "status=bounced" not in log and "status=deferred" not in log, log


def test_a_sender_without_a_domain_leaves_as_the_login(ax1):
    # Postfix keeps -f a@ as it is and makes -f @ into ""@: no domain after the @.
    sent_by_alice_as(ax1, ["a@", "@"])


def test_a_bounce_sender_of_another_domain_leaves_as_the_login(ax1):
    # Only this machine's own MAILER-DAEMON and double-bounce keep their sender; a local user's are theirs.
    sent_by_alice_as(ax1, ["MAILER-DAEMON@evil.example", "Mailer-Daemon@evil.example", "double-bounce@evil.example"])
