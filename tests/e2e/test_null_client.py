"""End to end on the lab: three fresh workstations (Debian 12 and 13) deployed at once, mail really sent.

Asserts on what happened: the smarthost's record of each message (envelope, AUTH user, TLS),
Postfix's own log on the workstation, its sockets, files and process ids.
"""

import re
import shlex
import time
import uuid

import pytest

from lab import smarthost
from lab.config import FORWARD_TO, STATE_DIR
from tests.e2e.conftest import NO_CHANGE_OPERATIONS, deploy

AWKWARD_PASSWORD = "Aw kward#:@$%pass 'word\""


@pytest.fixture(scope="module")
def workstations(make_workstations, keyring_env):
    # A mixed inventory: Debian 12 and Debian 13 in one run.
    made = make_workstations(["e2e1", "e2e2", "e2e3"], passwords={"e2e1": AWKWARD_PASSWORD}, suites={"e2e3": "trixie"})
    run = deploy(keyring_env, made, "-vvv")
    assert run.returncode == 0, run.output
    assert AWKWARD_PASSWORD not in run.output
    return made


def send(workstation, command: str) -> str:
    """Run a mail-sending shell command with $SUBJECT set to a fresh unique subject; return it."""
    subject = f"e2e {uuid.uuid4().hex[:10]}"
    workstation.run(f"SUBJECT={shlex.quote(subject)}; {command}")
    return subject


def arrived(subject: str) -> dict:
    return smarthost.wait_for_messages(STATE_DIR, 1, timeout=60, predicate=lambda m: m["subject"] == subject)[0]


@pytest.mark.parametrize(
    "sender",
    [
        pytest.param('echo "from root" | mail -s "$SUBJECT" root', id="root-via-mail"),
        pytest.param(
            'printf "Subject: %s\\n\\nfrom nobody\\n" "$SUBJECT" | runuser -u nobody -- /usr/sbin/sendmail -i root',
            id="unprivileged-via-sendmail",
        ),
        pytest.param('echo "to nobody known" | mail -s "$SUBJECT" no-such-user', id="nonexistent-local-user"),
    ],
)
def test_local_mail_arrives_at_forward_to_authenticated_and_over_tls(workstations, sender):
    for workstation in workstations:
        message = arrived(send(workstation, sender))
        assert message["rcpt_tos"] == [FORWARD_TO]
        assert message["auth_user"] == workstation.smtp_user
        assert message["mail_from"] == workstation.smtp_user
        assert message["tls"] is True and message["port"] == 587
        assert workstation.smtp_user in message["from"]


def test_the_inventory_mixes_debian_12_and_13(workstations):
    releases = {w.name: w.run(". /etc/os-release; echo $VERSION_ID").stdout.strip() for w in workstations}
    assert releases == {"e2e1": "12", "e2e2": "12", "e2e3": "13"}


def test_the_relay_certificate_was_verified(workstations):
    for workstation in workstations:
        log = workstation.run("journalctl --no-pager -o cat -t postfix/smtp").stdout
        assert "Verified TLS connection established to mail.example.net" in log, log[-2000:]
        assert "Untrusted TLS" not in log and "Anonymous TLS" not in log


def test_password_with_awkward_characters_round_trips_into_the_map(workstations):
    e2e1 = workstations[0]
    found = e2e1.run(
        "postmap -q '[mail.example.net]:587' \"$(postconf -h default_database_type):/etc/postfix/sasl_passwd\""
    ).stdout
    assert found == f"{e2e1.smtp_user}:{AWKWARD_PASSWORD}\n"


def test_maps_and_databases_are_root_only(workstations):
    for workstation in workstations:
        modes = workstation.run("stat -c '%n %U:%G:%a' /etc/postfix/sasl_passwd /etc/postfix/sasl_passwd.*").stdout
        lines = modes.splitlines()
        assert len(lines) == 2, modes
        assert all(line.endswith(" root:root:600") for line in lines), modes


def test_nothing_listens_beyond_loopback(workstations):
    for workstation in workstations:
        sockets = workstation.run("ss -Hltunp").stdout.splitlines()
        postfix = [line for line in sockets if '"master"' in line]
        assert postfix, f"postfix should listen on loopback: {sockets}"
        for line in sockets:
            if '"sshd"' in line:
                continue  # the lab's own way in
            local = line.split()[4]
            assert local.startswith(("127.", "[::1]", "::1")), f"{workstation.name}: {line}"


def test_second_deploy_changes_nothing_says_so_per_host_and_does_not_touch_postfix(workstations, keyring_env):
    master_pids = {w.name: w.run("cat /var/spool/postfix/pid/master.pid").stdout.split() for w in workstations}
    log_lengths = {w.name: len(w.run("journalctl --no-pager -o cat -t postfix/master").stdout) for w in workstations}

    run = deploy(keyring_env, workstations)

    assert run.returncode == 0, run.output
    operations = ("Install packages", "Configure Postfix", "Queue watchdog")
    for workstation in workstations:
        # Every operation says it for every host: the install, the configuration, the alerts.
        assert run.output.count(f"[{workstation.fqdn}] No changes") == NO_CHANGE_OPERATIONS, run.output
    results = run.output[run.output.index("--> Results:") :]
    hosts = len(workstations)
    for operation in operations:
        assert re.search(rf"{re.escape(operation)}\s+{hosts}\s+-\s+-\s+{hosts}\s", results), results
    for workstation in workstations:
        assert workstation.run("cat /var/spool/postfix/pid/master.pid").stdout.split() == master_pids[workstation.name]
        new_log = workstation.run("journalctl --no-pager -o cat -t postfix/master").stdout
        assert "reload" not in new_log[log_lengths[workstation.name] :], new_log


def postfix_state(workstation) -> str:
    """`postfix status` (its own running check, unlike the deploy's fact) and whether it starts at boot."""
    status = workstation.run("postfix status >/dev/null 2>&1 && echo running || echo stopped").stdout.strip()
    boot = workstation.run("systemctl is-enabled postfix || true").stdout.strip()
    return f"{status} {boot}"


def test_a_stopped_disabled_or_killed_postfix_is_started_again(workstations, keyring_env):
    stopped, killed, untouched = workstations
    stopped.run("systemctl disable -q --now postfix")
    killed.run("kill -KILL $(cat /var/spool/postfix/pid/master.pid)")  # leaves a stale pid file behind
    assert postfix_state(stopped) == "stopped disabled"
    assert postfix_state(killed).startswith("stopped")
    untouched_pid = untouched.run("cat /var/spool/postfix/pid/master.pid").stdout.split()
    untouched_log = len(untouched.run("journalctl --no-pager -o cat -t postfix/master").stdout)

    run = deploy(keyring_env, workstations)

    assert run.returncode == 0, run.output
    assert "no file changed; restart postfix" in run.output, run.output
    for workstation in workstations:
        assert postfix_state(workstation) == "running enabled", workstation.name
    assert untouched.run("cat /var/spool/postfix/pid/master.pid").stdout.split() == untouched_pid
    assert "reload" not in untouched.run("journalctl --no-pager -o cat -t postfix/master").stdout[untouched_log:]
    subject = send(killed, 'echo "after the restart" | mail -s "$SUBJECT" root')
    assert arrived(subject)["auth_user"] == killed.smtp_user
    again = deploy(keyring_env, workstations)
    assert again.returncode == 0 and "] Success" not in again.output, again.output


def test_sasl_modules_removed_by_hand_come_back_and_the_mail_they_held_back_leaves_at_once(workstations, keyring_env):
    workstation = workstations[1]
    # Without its SASL modules postfix has no mechanism for the relay's AUTH, and defers the mail.
    workstation.run("dpkg --purge --force-depends libsasl2-modules >/dev/null 2>&1 && postfix reload 2>/dev/null")
    subject = send(workstation, 'echo "waits for a mechanism" | mail -s "$SUBJECT" root')
    deadline = time.monotonic() + 60
    while "no mechanism available" not in workstation.run("postqueue -j").stdout:
        assert time.monotonic() < deadline, workstation.run("postqueue -p").stdout
        time.sleep(1)

    run = deploy(keyring_env, [workstation])

    assert run.returncode == 0, run.output
    assert "install libsasl2-modules" in run.output and "reload postfix; flush the queue" in run.output, run.output
    # At once: without the flush, the next try would come at Postfix's backoff, 300 s or more later.
    message = smarthost.wait_for_messages(STATE_DIR, 1, timeout=30, predicate=lambda m: m["subject"] == subject)
    assert message and message[0]["auth_user"] == workstation.smtp_user
    again = deploy(keyring_env, [workstation])
    assert again.returncode == 0 and again.output.count("No changes") == NO_CHANGE_OPERATIONS, again.output
