"""End to end on the lab: the relay recipes, with the rules of a mail provider that the lab's smarthost plays.

A provider such as Gmail or Fastmail gives one login for all of a user's machines, and refuses a sender
that is not that login. Two workstations, rc1 and rc2, are deployed as such a user would: one
`smtp_user` and one keyring entry for both, the recipe's settings in a `group_data/all.py` beside the
user's own inventory. The per-machine accounts that make_workstations gives each host are taken away
first (keyring entry and smarthost account), so only the shared login can work: without the recipe's
smtp_user the deploy is refused, without its relay_port 465 the mail leaves on 587. The test on the
sender runs before the one on 465, so that its deploy finds the first test's configuration in place.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import smarthost
from lab.config import FORWARD_TO, RELAY_NAME, RELAY_SMTPS_PORT, RELAY_SUBMISSION_PORT, STATE_DIR
from tests.conftest import store_password
from tests.e2e.conftest import SERVICE, Workstation, lab_host_data, run_deploy, write_inventory

SHARED_LOGIN = "rc-fleet@example.net"  # the provider's one account, as you@gmail.com would be
SHARED_PASSWORD = f"app-password-{uuid.uuid4().hex}"
# The recipe of a provider with one login for every machine: the login is every machine's smtp_user.
SHARED_LOGIN_RECIPE = {"relay_host": RELAY_NAME, "relay_port": RELAY_SUBMISSION_PORT, "smtp_user": SHARED_LOGIN}
# A local user's own address, which a strict provider refuses as sender.
OWN_ADDRESS = "alice@home.example.org"


@pytest.fixture(scope="module")
def fleet(make_workstations, keyring_env) -> Iterator[list[Workstation]]:
    made = make_workstations(["rc1", "rc2"])
    for workstation in made:  # no per-machine account: the shared login alone
        store_password(keyring_env, SERVICE, workstation.smtp_user, None)
        smarthost.remove_account(STATE_DIR, workstation.smtp_user)
        workstation.run("id alice >/dev/null 2>&1 || useradd alice")
    store_password(keyring_env, SERVICE, SHARED_LOGIN, SHARED_PASSWORD)
    smarthost.set_account(STATE_DIR, SHARED_LOGIN, SHARED_PASSWORD)
    try:
        yield made
    finally:
        smarthost.remove_account(STATE_DIR, SHARED_LOGIN)
        store_password(keyring_env, SERVICE, SHARED_LOGIN, None)


def deploy_recipe(env: dict[str, str], fleet: list[Workstation], directory: Path, recipe: dict) -> None:
    """The recipe as the user's group_data/all.py beside their inventory of both hosts; deployed."""
    (directory / "group_data").mkdir()
    (directory / "group_data" / "all.py").write_text("".join(f"{name} = {value!r}\n" for name, value in recipe.items()))
    inventory = write_inventory(directory / "inventory.py", [(ws.fqdn, lab_host_data(ws)) for ws in fleet])
    run = run_deploy(env, str(inventory))
    assert run.returncode == 0, run.output
    assert SHARED_PASSWORD not in run.output


def send(workstation: Workstation, command: str) -> str:
    """Run a mail-sending shell command with $SUBJECT set to a fresh unique subject; return it."""
    subject = f"recipe {workstation.name} {uuid.uuid4().hex[:10]}"
    workstation.run(f"SUBJECT={shlex.quote(subject)}; {command}")
    return subject


def arrived(subject: str) -> dict:
    return smarthost.wait_for_messages(STATE_DIR, 1, timeout=60, predicate=lambda m: m["subject"] == subject)[0]


def sent_by_the_login(message: dict, port: int) -> None:
    assert message["auth_user"] == SHARED_LOGIN
    assert message["mail_from"] == SHARED_LOGIN
    assert SHARED_LOGIN in message["from"], message["from"]
    assert message["tls"] is True and message["port"] == port


def test_one_login_and_one_keyring_entry_serve_every_machine(fleet, keyring_env, tmp_path):
    deploy_recipe(keyring_env, fleet, tmp_path, SHARED_LOGIN_RECIPE)

    for workstation in fleet:
        password_map = workstation.run(
            f"postmap -q '[{RELAY_NAME}]:{RELAY_SUBMISSION_PORT}' "
            '"$(postconf -h default_database_type):/etc/postfix/sasl_passwd"'
        ).stdout
        assert password_map == f"{SHARED_LOGIN}:{SHARED_PASSWORD}\n"
        cron_like = arrived(send(workstation, 'echo "from root" | mail -s "$SUBJECT" root'))
        unprivileged = arrived(
            send(
                workstation,
                'printf "Subject: %s\\n\\nfrom nobody\\n" "$SUBJECT" | runuser -u nobody -- /usr/sbin/sendmail -i root',
            )
        )
        for message in (cron_like, unprivileged):
            sent_by_the_login(message, RELAY_SUBMISSION_PORT)
            assert message["rcpt_tos"] == [FORWARD_TO]
            # With one sender for all, the headers still say which machine wrote the mail.
            assert f"by {workstation.fqdn} (Postfix" in message["data"], message["data"]


def test_a_local_user_s_own_sender_is_sent_as_the_login_and_never_refused(fleet, keyring_env, tmp_path):
    deploy_recipe(keyring_env, fleet, tmp_path, SHARED_LOGIN_RECIPE)
    own_sender = (
        f'printf "From: Alice Example <{OWN_ADDRESS}>\\nSender: {OWN_ADDRESS}\\nTo: %s\\nSubject: %s\\n\\nmine\\n" '
        f'"$TO" "$SUBJECT" | runuser -u alice -- /usr/sbin/sendmail -i -f {OWN_ADDRESS} "$TO"'
    )

    for workstation in fleet:
        since = "@" + workstation.run("date +%s.%N").stdout.strip()
        to_root = arrived(send(workstation, f"TO=root; {own_sender}"))
        outside = arrived(send(workstation, f"TO=someone@elsewhere.example.org; {own_sender}"))
        bare = 'printf "Subject: %s\\n\\nbare\\n" "$SUBJECT" | runuser -u alice -- /usr/sbin/sendmail -i -f alice root'
        bare_name = arrived(send(workstation, bare))
        quoted_sender = "'\"a b\"@home.example.org'"
        quoted = f"printf 'Subject: %s\\n\\nquoted\\n' \"$SUBJECT\" | /usr/sbin/sendmail -i -f {quoted_sender} root"
        quoted_local_part = arrived(send(workstation, quoted))
        for message in (to_root, outside, bare_name, quoted_local_part):
            sent_by_the_login(message, RELAY_SUBMISSION_PORT)
            assert OWN_ADDRESS not in message["from"] and f"Sender: {OWN_ADDRESS}" not in message["data"]
        assert to_root["from"] == f"Alice Example <{SHARED_LOGIN}>"
        assert to_root["rcpt_tos"] == [FORWARD_TO] and bare_name["rcpt_tos"] == [FORWARD_TO]
        assert outside["rcpt_tos"] == ["someone@elsewhere.example.org"]
        log = workstation.run(f"journalctl --no-pager -o cat -t postfix/smtp --since {since}").stdout
        assert log.count("status=sent") == 4 and "status=deferred" not in log and "status=bounced" not in log, log
        assert workstation.run("postqueue -j").stdout == ""


def test_a_provider_with_implicit_tls_only_gets_the_mail_on_465(fleet, keyring_env, tmp_path):
    deploy_recipe(keyring_env, fleet, tmp_path, SHARED_LOGIN_RECIPE | {"relay_port": RELAY_SMTPS_PORT})

    for workstation in fleet:
        since = "@" + workstation.run("date +%s.%N").stdout.strip()
        message = arrived(send(workstation, 'echo "over 465" | mail -s "$SUBJECT" root'))
        sent_by_the_login(message, RELAY_SMTPS_PORT)
        assert message["rcpt_tos"] == [FORWARD_TO]
        log = workstation.run(f"journalctl --no-pager -o cat -t postfix/smtp --since {since}").stdout
        assert f"Verified TLS connection established to {RELAY_NAME}[" in log and f"]:{RELAY_SMTPS_PORT}:" in log, log
