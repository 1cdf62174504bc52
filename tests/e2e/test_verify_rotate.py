"""End to end on the lab: `nullclient verify` trusts only Postfix and posttls-finger themselves, and
`nullclient rotate` judges by the host's state, on one workstation, vr2, shared by the tests here.

A local user of the workstation forges Postfix log lines as any user can (`logger -t postfix/smtp`);
a failure after the apply is made on the host itself (the watchdog's directory is a file).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from lab import smarthost
from lab.config import STATE_DIR
from tests.conftest import PROJECT
from tests.e2e.conftest import SERVICE, Workstation, deploy

NAME = "vr2"
INVENTORY = ["-i", "lab/inventory.py"]

# An unprivileged user's forger: it reads every process's command line for a test mail's Message-ID
# and writes a cleanup line with a queue id of its own for it, and a "sent" line for that queue id and
# for every queued message (mailq shows their ids to anyone); all with logger's free choice of tag.
FORGER = r"""
import os, re, subprocess, time
SENT = ("to=<owner@example.org>, relay=mail.example.net[10.213.0.1]:587, delay=1, delays=0/0/0/1, dsn=2.0.0, "
        "status=sent (250 2.0.0 forged)")
def log(tag, text):
    subprocess.run(["logger", "-t", tag, text], check=True)
seen = set()
end = time.time() + 60
while time.time() < end:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                words = cmdline.read().decode(errors="replace")
        except OSError:
            continue
        for mid in set(re.findall(r"message-id=(<nullclient-test[^>\x00]*>)", words)) - seen:
            seen.add(mid)
            log("postfix/cleanup", f"F0A6ED00001: message-id={mid}")
            log("postfix/smtp", f"F0A6ED00001: {SENT}")
    queued = subprocess.run(["mailq"], capture_output=True, text=True).stdout
    for queue_id in re.findall(r"^([0-9A-F]{6,})[*!]?\s", queued, re.M):
        log("postfix/smtp", f"{queue_id}: {SENT}")
    time.sleep(0.002)
"""


def nullclient(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "postfix_nullclient.nullclient", *args],
        cwd=PROJECT,
        env={**env, "NULLCLIENT_LAB_HOSTS": NAME},
        input="",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rotate_answering(env: dict[str, str], on_question, timeout: float = 300) -> tuple[int, str]:
    """`nullclient rotate` on vr2; at its question, on_question(output so far), then Enter."""
    process = subprocess.Popen(
        [sys.executable, "-m", "postfix_nullclient.nullclient", "rotate", *INVENTORY, f"{NAME}.example.net"],
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


def keyring_password(env: dict[str, str], user: str) -> str | None:
    script = f"import keyring; print(keyring.get_password({SERVICE!r}, {user!r}) or '')"
    found = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return found.stdout.rstrip("\n") or None


def map_password(ws: Workstation) -> str:
    found = ws.run(
        "postmap -q '[mail.example.net]:587' \"$(postconf -h default_database_type):/etc/postfix/sasl_passwd\""
    )
    return found.stdout.strip().split(":", 1)[1]


def drain(ws: Workstation) -> None:
    ws.run('postqueue -f; for _ in $(seq 60); do [ -z "$(postqueue -j)" ] && exit 0; sleep 1; done; exit 1')


@pytest.fixture(scope="module")
def ws(make_workstations, keyring_env) -> Iterator[Workstation]:
    (workstation,) = make_workstations([NAME])
    run = deploy(keyring_env, [workstation])
    assert run.returncode == 0, run.output
    workstation.run("useradd -m eve")
    yield workstation


def test_verify_is_not_fooled_by_a_local_users_forged_postfix_log_lines(ws, keyring_env):
    smarthost.set_account(STATE_DIR, ws.smtp_user, "not-the-password")  # the test mail is deferred, and stays
    ws.run("cat > /home/eve/forger.py && chown eve /home/eve/forger.py", input=FORGER)
    ws.run("su eve -s /bin/sh -c 'setsid python3 /home/eve/forger.py </dev/null >/dev/null 2>&1 &'")
    try:
        checked = nullclient(keyring_env, "verify", *INVENTORY, "--test-mail", "10")
        queued = ws.run("postqueue -j").stdout
        forged = ws.run(
            "journalctl --no-pager -o cat -t postfix/smtp -t postfix/cleanup | grep -c forged || true"
        ).stdout
    finally:
        ws.run("pkill -u eve; true")
        smarthost.set_account(STATE_DIR, ws.smtp_user, ws.password)
        drain(ws)

    print(checked.stdout)
    assert int(forged) > 0, "the forger wrote no line: the test proves nothing"
    assert checked.returncode == 1, checked.stdout
    found = re.search(
        r"FAIL  test mail: (\w+) is still queued: \1: to=<owner@example.org>.*status=deferred", checked.stdout
    )
    assert found, checked.stdout
    assert f'"queue_id": "{found.group(1)}"' in queued  # the real test mail, which postqueue still holds
    assert "SASL authentication failed" in checked.stdout
    assert "forged" not in checked.stdout and "F0A6ED00001" not in checked.stdout


def test_verify_shows_host_output_with_an_escape_sequence_escaped(ws, keyring_env):
    # A relayhost whose value ends in "clear the screen": verify prints it as host output.
    ws.run("postconf -e \"relayhost = [mail.example.net]:587$(printf '\\033')[2J\"")
    try:
        checked = nullclient(keyring_env, "verify", *INVENTORY)
    finally:
        ws.run("postconf -e 'relayhost = [mail.example.net]:587'")

    print(checked.stdout)
    assert checked.returncode == 1
    assert "\x1b" not in checked.stdout + checked.stderr
    assert "FAIL  relay: [mail.example.net]:587\\x1b[2J is not reachable" in checked.stdout


def test_rotate_after_a_later_operation_failed_keeps_the_password_the_host_uses(ws, keyring_env):
    # The apply switches the password map; then the watchdog's operation fails: its directory is a file.
    ws.run("rm -rf /usr/local/lib/postfix-nullclient && touch /usr/local/lib/postfix-nullclient")
    shown: list[str] = []

    def set_server_password(output: str) -> None:
        lines = output.splitlines()
        shown.append(lines[next(i for i, line in enumerate(lines) if "(shown this once)" in line) + 1].strip())
        smarthost.set_account(STATE_DIR, ws.smtp_user, shown[0])  # the owner's step on the mail server

    try:
        status, output = rotate_answering(keyring_env, set_server_password)
    finally:
        ws.run("rm -f /usr/local/lib/postfix-nullclient")

    print(output)
    assert status == 1, output
    (new,) = shown
    assert new != ws.password
    assert keyring_password(keyring_env, ws.smtp_user) == new
    assert map_password(ws) == new
    assert (
        f"2. the deploy failed after {ws.fqdn} switched (see above): {ws.fqdn}'s password map holds the new "
        "password, and so does the keyring" in output
    )
    assert "ok    test mail:" in output and "status=sent" in output
    assert f"the password is rotated, but the deploy of {ws.fqdn} failed (see above)" in output
    ws.password = new
    again = deploy(keyring_env, [ws])
    assert again.returncode == 0, again.output


def test_rotate_whose_apply_failed_gives_the_keyring_the_old_password_back(ws, keyring_env):
    # The apply fails and restores the previous files: the host keeps the old password.
    old = keyring_password(keyring_env, ws.smtp_user)
    failed = nullclient(keyring_env, "rotate", *INVENTORY, ws.fqdn, "--data", "ca_file=/etc/ssl/certs/nope.pem")

    print(failed.stdout + failed.stderr)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert keyring_password(keyring_env, ws.smtp_user) == old == map_password(ws)
    assert (
        f"the deploy failed (see above), and {ws.fqdn}'s password map still holds the old password: the keyring "
        f"holds the old password again, as {ws.fqdn} does; change nothing on the mail server" in failed.stdout
    )
