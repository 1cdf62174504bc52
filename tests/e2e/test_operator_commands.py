"""End to end on the lab: the operator's commands (nullclient) on one fresh workstation, op1.

The tests run in this file's order and share op1: bootstrap (host in no inventory, unknown host
key), secret, verify (all well, a stuck queue, impostor relays), rotate, remove and deploy again.
The relay accounts of op1 are set on the lab's smarthost the way the owner would set them on the
mail server. Impostor relays are our own smarthost instances on our own bridge addresses.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import hosts, network, smarthost
from lab.config import CACHE_DIR, DOMAIN, FORWARD_TO, STATE_DIR
from tests.conftest import PROJECT, store_password
from tests.e2e.conftest import deploy

SERVICE = "postfix-nullclient"
NAME = "op1"
USER = f"{NAME}@{DOMAIN}"
OWNER_MAIN_CF = "# the owner's own main.cf, from before the null client\ncompatibility_level = 3.6\n"


class Op:
    """What the tests share about op1."""

    host: hosts.LabHost
    env: dict[str, str]


def nullclient(env: dict[str, str], *args: str, input: str | None = None, timeout: float = 300):
    """`python -m nullclient ARGS` from the project directory, with op1 as the lab inventory's only host."""
    return subprocess.run(
        [sys.executable, "-m", "postfix_nullclient.nullclient", *args],
        cwd=PROJECT,
        env={**env, "NULLCLIENT_LAB_HOSTS": NAME},
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def interactive(env: dict[str, str], args: list[str], on_question, timeout: float = 300) -> tuple[int, str]:
    """Run nullclient, answer its one question with on_question(output so far) + Enter; return (status, output)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "postfix_nullclient.nullclient", *args],
        cwd=PROJECT,
        env={**env, "NULLCLIENT_LAB_HOSTS": NAME},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        for line in process.stdout:
            output.append(line)
            if line.startswith("Press Enter"):
                on_question("".join(output))
                process.stdin.write("\n")
                process.stdin.flush()
            assert time.monotonic() < deadline, "".join(output)
        return process.wait(timeout=max(1, deadline - time.monotonic())), "".join(output)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def keyring_password(env: dict[str, str]) -> str | None:
    script = f"import keyring; print(keyring.get_password({SERVICE!r}, {USER!r}) or '')"
    found = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return found.stdout.rstrip("\n") or None


def map_password(host: hosts.LabHost) -> str:
    found = hosts.ssh(
        host, "postmap -q '[mail.example.net]:587' \"$(postconf -h default_database_type):/etc/postfix/sasl_passwd\""
    )
    return found.stdout.strip().split(":", 1)[1]


def drain(host: hosts.LabHost) -> None:
    """Flush op1's queue and wait until it is empty, so that the next test starts clean."""
    hosts.ssh(host, 'postqueue -f; for _ in $(seq 60); do [ -z "$(postqueue -j)" ] && exit 0; sleep 1; done; exit 1')


def shown_password(output: str, after: str) -> str:
    """The password printed on the line after `after` (the way the owner reads it)."""
    lines = output.splitlines()
    index = next(i for i, line in enumerate(lines) if after in line)
    return lines[index + 1].strip().removeprefix("password:").strip()


@pytest.fixture(scope="module")
def op(lab, keyring_env) -> Iterator[Op]:
    shared = Op()
    shared.env = keyring_env
    store_password(keyring_env, SERVICE, USER, None)
    try:
        shared.host = hosts.create_host(NAME)
        # A file of the owner's that the first deploy replaces and the removal must bring back.
        hosts.ssh(shared.host, "mkdir -p /etc/postfix && cat > /etc/postfix/main.cf", input=OWNER_MAIN_CF)
        yield shared
    finally:
        hosts.destroy_host(NAME)
        smarthost.remove_account(STATE_DIR, USER)
        store_password(keyring_env, SERVICE, USER, None)


def bootstrap_args(host: hosts.LabHost, known_hosts: Path, *more: str) -> list[str]:
    return [
        "bootstrap", host.fqdn, "--address", host.address, "--ssh-user", "root",
        "--ssh-key", str(hosts.LAB_KEY), "--known-hosts", str(known_hosts),
        "--data", f"forward_to={FORWARD_TO}", "--test-mail", "60", *more,
    ]  # fmt: skip


def test_bootstrap_refuses_a_host_key_it_does_not_know(op, tmp_path):
    run = nullclient(op.env, *bootstrap_args(op.host, tmp_path / "known_hosts"))

    assert run.returncode == 2, run.stdout + run.stderr
    assert (
        f"refusing: the SSH host key of {op.host.address} (port 22) is not in {tmp_path / 'known_hosts'}" in run.stderr
    )
    assert "--trust-on-first-use" in run.stderr
    assert keyring_password(op.env) is None
    assert hosts.ssh(op.host, "command -v postfix", check=False).returncode != 0


def test_bootstrap_a_host_in_no_inventory_trusting_its_key_on_first_use(op, tmp_path_factory):
    known_hosts = tmp_path_factory.mktemp("bootstrap") / "known_hosts"
    server_passwords = []

    def create_account(output: str) -> None:
        # The owner creates the account with the password shown, then presses Enter.
        server_passwords.append(shown_password(output, f"login:    {USER}"))
        smarthost.set_account(STATE_DIR, USER, server_passwords[0])

    status, output = interactive(
        op.env, [*bootstrap_args(op.host, known_hosts, "--trust-on-first-use")], create_account
    )

    assert status == 0, output
    password = server_passwords[0]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", password)
    assert output.count(password) == 1  # shown once, never again (deploy output, verify)
    assert keyring_password(op.env) == password
    assert map_password(op.host) == password
    assert "ok    test mail:" in output and "status=sent" in output
    message = smarthost.wait_for_messages(
        STATE_DIR, 1, timeout=30, predicate=lambda m: m["auth_user"] == USER and "nullclient test mail" in m["subject"]
    )[0]
    assert message["rcpt_tos"] == [FORWARD_TO] and message["tls"] is True
    # The key recorded on first use is the host's real key, the one the lab pinned when it made op1.
    recorded = known_hosts.read_text().split()
    pinned = [line.split() for line in hosts.KNOWN_HOSTS.read_text().splitlines()]
    pinned = [entry[1:3] for entry in pinned if op.host.address in entry[0].split(",")]
    assert recorded[0] == op.host.address and recorded[1:3] in pinned


def test_bootstrap_again_reuses_the_keyring_password_and_never_shows_it(op, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(hosts.KNOWN_HOSTS.read_text())
    password = keyring_password(op.env)

    run = nullclient(op.env, *bootstrap_args(op.host, known_hosts, "--yes", "--test-mail", "0"))

    assert run.returncode == 0, run.stdout + run.stderr
    assert "The keyring already has a password for" in run.stdout
    assert password not in run.stdout + run.stderr
    assert keyring_password(op.env) == password


def test_secret_commands_use_the_deploys_names_and_never_show_the_value_unasked(op):
    password = keyring_password(op.env)
    inventory = ["-i", "lab/inventory.py"]

    shown = nullclient(op.env, "secret", "show", *inventory)
    assert shown.returncode == 0 and password not in shown.stdout
    assert shown.stdout == f"{op.host.fqdn}: a password is stored (keyring service {SERVICE!r}, user {USER!r})\n"
    assert nullclient(op.env, "secret", "missing", *inventory).returncode == 0
    assert nullclient(op.env, "secret", "show", *inventory, op.host.fqdn, "--reveal").stdout == password + "\n"

    assert nullclient(op.env, "secret", "delete", *inventory, op.host.fqdn).returncode == 0
    missing = nullclient(op.env, "secret", "missing", *inventory)
    assert missing.returncode == 1 and f"{op.host.fqdn}: NO password" in missing.stdout
    refused = nullclient(op.env, "verify", *inventory)
    assert (
        refused.returncode == 1
        and f"no password in the keyring for service {SERVICE!r}, user {USER!r}" in refused.stdout
    )

    stored = nullclient(op.env, "secret", "set", *inventory, op.host.fqdn, "--stdin", input=password + "\n")
    assert stored.returncode == 0 and password not in stored.stdout + stored.stderr
    assert keyring_password(op.env) == password


def test_verify_reports_a_stuck_queue_and_why(op):
    smarthost.set_account(STATE_DIR, USER, "not-the-password")
    try:
        hosts.ssh(op.host, "echo stuck | mail -s stuck root")
        stuck = nullclient(op.env, "verify", "-i", "lab/inventory.py")
        for _ in range(20):  # the first delivery attempt may still be under way
            if "SASL authentication failed" in stuck.stdout:
                break
            time.sleep(1)
            stuck = nullclient(op.env, "verify", "-i", "lab/inventory.py")
    finally:
        smarthost.set_account(STATE_DIR, USER, keyring_password(op.env))
        drain(op.host)

    assert stuck.returncode == 1, stuck.stdout
    assert re.search(
        r"FAIL  queue: 1 message\(s\) queued: \w+ \(deferred\) from 'op1@example.net' to 'owner@example.org'",
        stuck.stdout,
    )
    assert "SASL authentication failed" in stuck.stdout
    assert "ok    configuration" in stuck.stdout and "ok    relay" in stuck.stdout
    assert "1 of 1" not in stuck.stdout and "0 of 1 host(s) OK" in stuck.stdout


@pytest.fixture
def impostor(op) -> Iterator:
    """Start our own impostor relay: start(mode) -> its DNS name; everything is removed afterwards."""
    started: list[tuple[str, str]] = []

    def start(mode: str) -> str:
        name = f"op-impostor-{mode}"
        address = network.claim_address()
        started.append((name, address))
        # Its certificate is the lab CA's, but for mail.example.net: a certificate for another name.
        smarthost.start(STATE_DIR, CACHE_DIR / "ca", mode=mode, name=name, listen=address)
        smarthost.set_account(STATE_DIR, USER, "anything", name=name)
        network.add_dns_host(name, f"{name}.{DOMAIN}", address)
        return f"{name}.{DOMAIN}"

    try:
        yield start
    finally:
        for name, address in started:
            network.remove_dns_host(name)
            smarthost.stop(STATE_DIR, name)
            shutil.rmtree(STATE_DIR / name, ignore_errors=True)  # its certificate, accounts and spool
            network.release_address(address)
        run = deploy(op.env, [op.host])  # back to the real relay for the tests after this one
        assert run.returncode == 0, run.output
        drain(op.host)  # the test mails that the impostors did not get


def test_verify_fails_against_impostor_relays_and_sends_them_nothing(op, impostor):
    # One with a lab-CA certificate for another name (mail.example.net), one without STARTTLS at all.
    reasons = {"real": "hostname mismatch", "no-starttls": "it does not offer STARTTLS, and TLS is required"}
    for mode, reason in reasons.items():
        relay = impostor(mode)
        data = ["--data", f"relay_host={relay}"]
        run = deploy(op.env, [op.host], *data)
        assert run.returncode == 0, run.output

        checked = nullclient(op.env, "verify", "-i", "lab/inventory.py", *data, "--test-mail", "5")

        print(checked.stdout)  # the README shows it
        assert checked.returncode == 1, checked.stdout
        assert "ok    configuration" in checked.stdout  # the host is as deployed: only the relay is wrong
        assert f"FAIL  relay: [{relay}]:587: no TLS with a verified certificate: " in checked.stdout
        assert reason in checked.stdout
        assert "FAIL  test mail:" in checked.stdout and "still queued" in checked.stdout
        name = relay.split(".", 1)[0]
        assert smarthost.auth_attempts(STATE_DIR, name) == []
        assert smarthost.messages(STATE_DIR, name) == []


def test_rotate_switches_the_host_first_and_loses_no_mail(op):
    old = keyring_password(op.env)
    window: list[str] = []

    def change_server_password(output: str) -> None:
        new = shown_password(output, "on your mail server to (shown this once)")
        # The host is live with the new password; the server still has the old one.
        assert map_password(op.host) == new
        assert keyring_password(op.env) == new
        window.append(new)
        subject = f"sent during the rotation {os.urandom(4).hex()}"
        hosts.ssh(op.host, f"echo window | mail -s '{subject}' root")
        window.append(subject)
        smarthost.set_account(STATE_DIR, USER, new)  # the owner's step on the mail server

    status, output = interactive(
        op.env, ["rotate", "-i", "lab/inventory.py", op.host.fqdn, "--test-mail", "60"], change_server_password
    )

    assert status == 0, output
    new, subject = window
    assert new != old and re.fullmatch(r"[A-Za-z0-9]{32}", new)
    assert old not in output and output.count(new) == 1
    assert "all 1 host(s) OK" in output
    message = smarthost.wait_for_messages(STATE_DIR, 1, timeout=30, predicate=lambda m: m["subject"] == subject)[0]
    assert message["auth_user"] == USER
    # Mail sent in the window between deploy and the server change failed AUTH once, was kept, then left.
    log = hosts.ssh(op.host, "journalctl --no-pager -o cat -t postfix/smtp").stdout
    assert "SASL authentication failed" in log


def test_remove_restores_the_owners_files_and_a_later_deploy_works(op):
    removed = nullclient(op.env, "remove", "-i", "lab/inventory.py", op.host.fqdn, "--postfix", "stop")

    assert removed.returncode == 0, removed.stdout + removed.stderr
    state = hosts.ssh(
        op.host,
        "cat /etc/postfix/main.cf; ls /etc/postfix; ls /var/lib/postfix-nullclient 2>&1;"
        "systemctl is-active postfix; systemctl is-enabled postfix",
        check=False,
    ).stdout
    assert state.startswith(OWNER_MAIN_CF)
    for gone in ("sasl_passwd", "virtual_alias", "sender_canonical"):
        assert gone not in state
    assert "No such file or directory" in state and "inactive\ndisabled\n" in state
    assert keyring_password(op.env) is not None

    again = deploy(op.env, [op.host])
    assert again.returncode == 0, again.output
    assert nullclient(op.env, "verify", "-i", "lab/inventory.py").returncode == 0


def test_remove_can_purge_postfix_and_forget_the_password(op):
    removed = nullclient(
        op.env, "remove", "-i", "lab/inventory.py", op.host.fqdn, "--postfix", "purge", "--forget-password"
    )

    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert f"password deleted from the keyring (keyring service {SERVICE!r}, user {USER!r})" in removed.stdout
    assert keyring_password(op.env) is None
    installed = hosts.ssh(op.host, "dpkg-query -W -f='${db:Status-Abbrev}' postfix", check=False).stdout
    assert not installed.startswith("ii")
    assert hosts.ssh(op.host, "cat /etc/postfix/main.cf").stdout == OWNER_MAIN_CF
    assert hosts.ssh(op.host, "ls /etc/postfix/sasl_passwd*", check=False).returncode != 0
