"""End to end on the lab: what an unprivileged local user of a deployed workstation can do to the
queue watchdog and to `nullclient verify`, and what the operator's kill -9 of a rotation leaves.

One workstation, wf1, deployed with a watchdog threshold of 5 s, shared by the tests here; eve is its
local user. Mail waits because the mail server changed wf1's password (as in tests/e2e/test_alerts.py).
Last, eve holds every showq process Postfix will start (default_process_limit, 100): she runs
`postqueue -j` 100 times into pipes that she never reads, with a queue listing larger than a pipe and a
socket buffer (her own mail: 4 messages of 500 long recipients each). Every later `postqueue -j`,
root's too, waits for a free showq, for as long as she likes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import smarthost
from lab.config import STATE_DIR
from postfix_nullclient import alerts
from tests.conftest import PROJECT, store_password
from tests.e2e.conftest import SERVICE, Workstation, lab_host_data, run_deploy, write_inventory
from tests.e2e.test_verify_rotate import keyring_password, map_password

WATCHDOG_UNIT = "postfix-nullclient-watchdog.service"
# Programs eve names after what the watchdog and verify run: each would leave its name in eve's
# marker file. They are first in her PATH, in /tmp and in her home, and some run under those names.
FAKES = ("postqueue", "logger", "awk", "sed", "cksum", "date", "journalctl", "sendmail", "postconf", "master")
FAKE = '#!/bin/sh\necho "$0 $(id -u)" >> /home/eve/ran\nexit 0\n'


@dataclass
class Av:
    ws: Workstation
    inventory: Path


@pytest.fixture(scope="module")
def av(make_workstations, keyring_env, tmp_path_factory) -> Iterator[Av]:
    (ws,) = make_workstations(["wf1"])
    inventory = write_inventory(
        tmp_path_factory.mktemp("av") / "inventory.py", [(ws.fqdn, lab_host_data(ws, watchdog_threshold="5s"))]
    )
    run = run_deploy(keyring_env, str(inventory))
    assert run.returncode == 0, run.output
    ws.run("useradd -m eve")
    yield Av(ws, inventory)


def nullclient(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "postfix_nullclient.nullclient", *args],
        cwd=PROJECT,
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def as_eve(ws: Workstation, command: str) -> subprocess.CompletedProcess:
    return ws.run(f"su -l eve -s /bin/sh -c {shlex.quote(command)}")


BROKEN_AT: list[float] = []  # when the mail server changed the password, once per module


def stuck_mail(ws: Workstation, older_than_threshold: bool = True) -> None:
    """Mail from eve that waits: the mail server refuses wf1's password (and older than the threshold)."""
    if not BROKEN_AT:
        smarthost.set_account(STATE_DIR, ws.smtp_user, "the-server-changed-it")
        as_eve(ws, "echo stuck | /usr/sbin/sendmail -i owner@example.org")
        BROKEN_AT.append(time.monotonic())
    deadline = time.monotonic() + 60
    while "SASL authentication failed" not in ws.run("postqueue -j").stdout:
        assert time.monotonic() < deadline, ws.run("postqueue -p").stdout
        time.sleep(1)
    if older_than_threshold:
        time.sleep(max(0.0, BROKEN_AT[0] + 6 - time.monotonic()))


def still_running(word: str) -> bool:
    """Whether a process of this machine has `word` on its command line."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and word.encode() in (proc / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def drain(ws: Workstation) -> None:
    smarthost.set_account(STATE_DIR, ws.smtp_user, ws.password)
    BROKEN_AT.clear()
    ws.run('postqueue -f; for _ in $(seq 60); do [ -z "$(postqueue -j)" ] && exit 0; sleep 1; done; exit 1')


# eve makes Postfix's own binaries log lines of her choice: the journal gives them the _EXE of
# Postfix's daemons and the tag postfix/smtp; and she uses postlog and logger with Postfix's tags.
# Each line says the queued message was sent, for every queue id that mailq shows her.
FORGER = r"""
import re, subprocess, time
SENT = "to=<owner@example.org>, relay=mail.example.net[10.213.0.1]:587, delay=1, dsn=2.0.0, status=sent (250 ok)"
end = time.time() + 40
while time.time() < end:
    ids = re.findall(r"^([0-9A-F]{6,})[*!]?\s", subprocess.run(["mailq"], capture_output=True, text=True).stdout, re.M)
    for queue_id in ids:
        line = f"{queue_id}: {SENT}"
        for daemon in ("smtp", "cleanup", "qmgr"):
            subprocess.run([f"/usr/lib/postfix/sbin/{daemon}", "-o", f"mail_owner={line}"], stdin=subprocess.DEVNULL,
                           capture_output=True)
        subprocess.run(["/usr/sbin/postlog", "-t", "postfix/smtp", line], capture_output=True)
        subprocess.run(["logger", "-t", "postfix/smtp", line])
    time.sleep(0.2)
"""


def test_verify_ignores_what_a_user_makes_postfixs_own_binaries_log(av, keyring_env):
    ws = av.ws
    stuck_mail(ws, older_than_threshold=False)
    ws.run("cat > /home/eve/forger.py && chown eve /home/eve/forger.py", input=FORGER)
    as_eve(ws, "setsid python3 /home/eve/forger.py </dev/null >/dev/null 2>&1 &")
    try:
        checked = nullclient(keyring_env, "verify", "-i", str(av.inventory), "--test-mail", "5")
        forged = ws.run(
            "journalctl --no-pager -o json --since=-5min -t postfix/smtp | python3 -c '"
            "import json, sys\n"
            "for line in sys.stdin:\n"
            "    entry = json.loads(line)\n"
            '    if "status=sent (250 ok)" in entry.get("MESSAGE", ""): print(entry.get("_UID"), entry.get("_EXE"))'
            "' | sort | uniq -c"
        ).stdout
    finally:
        ws.run("pkill -u eve; true")

    print(forged)
    print(checked.stdout)
    uid = ws.run("id -u eve").stdout.strip()
    # The forgery reached the journal with Postfix's tag, some of it as Postfix's own smtp binary.
    assert f" {uid} /usr/lib/postfix/sbin/smtp\n" in forged, forged
    assert checked.returncode == 1, checked.stdout
    assert re.search(
        r"FAIL  test mail: (\w+) is still queued: \1: to=<owner@example.org>.*status=deferred", checked.stdout
    )
    assert "250 ok" not in checked.stdout


def test_programs_a_user_names_like_postfix_tools_never_run_and_the_warning_is_right(av):
    ws = av.ws
    ws.run("cat > /home/eve/fake && chown eve /home/eve/fake", input=FAKE)
    as_eve(
        ws,
        f"mkdir -p /tmp/evil ~/bin && for name in {' '.join(FAKES)}; do cp ~/fake /tmp/evil/$name; "
        "cp ~/fake ~/bin/$name; chmod 755 /tmp/evil/$name ~/bin/$name; done; "
        "echo 'PATH=/tmp/evil:$HOME/bin:$PATH; export PATH' >> ~/.profile",
    )
    as_eve(ws, "postqueue -p")  # her login shell finds her own first: the trap works
    assert ws.run("cat /home/eve/ran").stdout.startswith("/tmp/evil/postqueue ")
    # Processes of eve called master, smtp, postqueue and qmgr (each one's comm is its file's name).
    as_eve(
        ws,
        "for name in master smtp postqueue qmgr; do mkdir -p /tmp/evil/run-$name && cp /bin/sleep "
        "/tmp/evil/run-$name/$name && setsid /tmp/evil/run-$name/$name 120 </dev/null >/dev/null 2>&1 & done",
    )
    try:
        stuck_mail(ws)
        ws.run(f"rm -f /home/eve/ran {alerts.MOTD} {alerts.WATCHDOG_STATE}/problem {alerts.WATCHDOG_RUN}/problem")
        ws.run(f"systemctl start {WATCHDOG_UNIT}")
        queued = len(ws.run("postqueue -j").stdout.splitlines())  # eve's, and the test mail of verify's test
        motd = ws.run(f"cat {alerts.MOTD}").stdout
        ran = ws.run("cat /home/eve/ran 2>/dev/null; true").stdout
        processes = ws.run("pgrep -u eve -l .").stdout.split()
    finally:
        ws.run("pkill -u eve; true")
        drain(ws)

    print(motd, processes)
    assert {"master", "smtp", "postqueue", "qmgr"} <= set(processes), processes
    assert ran == ""
    # eve's message has waited; another one (verify's test mail) may be younger than the threshold yet.
    waiting = re.match(
        r"\*\*\* postfix-nullclient: (\d+) message\(s\) have waited longer than 5s in the mail queue of wf1", motd
    )
    assert waiting and 1 <= int(waiting.group(1)) <= queued, motd
    assert "SASL authentication failed" in motd


def test_rotate_killed_during_its_deploy_loses_no_password(av, keyring_env):
    ws = av.ws
    new = "rotated-" + time.strftime("%H%M%S") + "-Abc123"
    process = subprocess.Popen(
        [sys.executable, "-m", "postfix_nullclient.nullclient", "rotate", "-i", str(av.inventory), ws.fqdn, "--stdin"],
        cwd=PROJECT,
        env=keyring_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    process.stdin.write(new + "\n")
    process.stdin.flush()
    output = []
    for line in process.stdout:
        output.append(line)
        if line.startswith("== deploying"):
            time.sleep(1.5)  # pyinfra has connected and is at work on wf1
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=30)
    deadline = time.monotonic() + 60
    while still_running(str(av.inventory)):  # its pyinfra, now on its own, ends as it ends
        assert time.monotonic() < deadline
        time.sleep(0.5)

    print("".join(output))
    stored = keyring_password(keyring_env, ws.smtp_user)
    assert stored == new, "the keyring lost the new password"
    # The host holds one of the two, never neither; the next deploy puts the keyring's (new) one there.
    assert map_password(ws) in (new, ws.password)


def secret_forms(ws: Workstation, password: str) -> dict[str, str]:
    """The password and what would give it away: in base64 (the apply's check carries it so), the
    SHA-256 of the password map's content (the fact compares it), and of the password alone."""
    login = f"{ws.smtp_user}:{password}"
    line = f"[mail.example.net]:587 {login}\n"
    return {
        "password": password,
        "base64 of the login": base64.b64encode(login.encode()).decode(),
        "base64 of the password": base64.b64encode(password.encode()).decode(),
        "sha256 of the map": hashlib.sha256(line.encode()).hexdigest(),
        "sha256 of the password": hashlib.sha256(password.encode()).hexdigest(),
    }


def test_the_most_verbose_deploy_and_map_check_show_no_password_nor_a_digest_of_it(av, keyring_env, tmp_path):
    ws = av.ws
    new = "verbose-" + os.urandom(8).hex()
    store_password(keyring_env, SERVICE, ws.smtp_user, new)  # so that the map changes
    pyinfra = [str(PROJECT / ".venv" / "bin" / "pyinfra"), str(av.inventory)]
    env = {**keyring_env, "PYINFRA_PROGRESS": "off"}
    deployed = run_deploy(keyring_env, str(av.inventory), "-vvv", "--debug", "--diff")
    checked = subprocess.run(
        [*pyinfra, "postfix_nullclient.nullclient.password_check.map_password", "-y", "-vvv", "--debug",
         "--data", f"nullclient_report={tmp_path}"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    smarthost.set_account(STATE_DIR, ws.smtp_user, new)
    ws.password = new

    assert deployed.returncode == 0, deployed.output
    assert map_password(ws) == new  # the map did change in this run
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert '"map_password": "same"' in "".join(path.read_text() for path in tmp_path.glob("*.json"))
    output = deployed.output + checked.stdout + checked.stderr
    assert "*MASKED*" in checked.stdout + checked.stderr  # where the fact's stdin is shown, it is masked
    shown = [name for name, form in secret_forms(ws, new).items() if form in output]
    assert shown == [], shown


HOLD = (
    "for m in 1 2 3 4; do echo x | /usr/sbin/sendmail -i $(seq -f 'user%0200g@example.org' 1 500); done; "
    "sleep 5; for i in $(seq 100); do setsid sh -c '/usr/sbin/postqueue -j | sleep 600' "
    "</dev/null >/dev/null 2>&1 & done"
)


@pytest.fixture(scope="module")
def every_showq_held(av) -> Iterator[Workstation]:
    """wf1 with its mail waiting (a changed password) and every showq process held by eve."""
    ws = av.ws
    ws.run(f"systemctl stop {alerts.TIMER_NAME}")  # no run of the timer's in between
    smarthost.set_account(STATE_DIR, ws.smtp_user, "the-server-changed-it")
    ws.run("cat > /home/eve/hold.sh && chown eve /home/eve/hold.sh", input=HOLD)
    as_eve(ws, "sh /home/eve/hold.sh")
    deadline = time.monotonic() + 30
    while ws.run("pgrep -c -x showq", check=False).stdout.strip() != "100":
        assert time.monotonic() < deadline, ws.run("pgrep -l -x showq; true").stdout
        time.sleep(1)
    try:
        yield ws
    finally:
        ws.run("pkill -u eve; postsuper -d ALL; true")  # eve's 2,000 recipients are not worth sending
        smarthost.set_account(STATE_DIR, ws.smtp_user, ws.password)
        ws.run(f"systemctl start {alerts.TIMER_NAME}")


def test_a_user_holding_every_showq_cannot_silence_the_watchdog(every_showq_held):
    ws = every_showq_held
    ws.run(f"rm -f {alerts.MOTD} {alerts.WATCHDOG_STATE}/problem {alerts.WATCHDOG_RUN}/problem")
    started = time.monotonic()
    ran = ws.run(f"timeout 60 {alerts.WATCHDOG}; echo $?", check=False)
    seconds = time.monotonic() - started
    motd = ws.run(f"cat {alerts.MOTD} 2>/dev/null; true").stdout
    warned = ws.run("journalctl --no-pager -o cat -t postfix-nullclient -p warning --since=-2min; true").stdout

    print(f"the watchdog's run: exit {ran.stdout.strip()} after {seconds:.0f} s")
    print(motd, warned)
    # 4 messages have waited longer than 5 s behind a refused password: the watchdog says so, from the files.
    assert ran.stdout.strip() == "0", "the watchdog did not end within 60 s"
    assert seconds < alerts.QUEUE_SECONDS + 15
    assert motd.startswith("*** postfix-nullclient: 4 message(s) have waited longer than 5s in the mail queue of wf1")
    cause = f"postqueue did not answer within {alerts.QUEUE_SECONDS} s: a local process may hold every showq"
    assert f"\n***   {cause}\n" in motd
    assert warned.rstrip().endswith(f"could not be listed (counted from its files in /var/spool/postfix): {cause}")


def test_a_user_holding_every_showq_cannot_hang_verify_or_status(every_showq_held, keyring_env, av):
    # Both at once (each waits for its postqueue, not for the other): each says that the queue
    # could not be read in time, as a problem, never as an empty queue.
    started = time.monotonic()
    commands = {
        command: subprocess.Popen(
            [sys.executable, "-m", "postfix_nullclient.nullclient", command, "-i", str(av.inventory)],
            cwd=PROJECT,
            env=keyring_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command in ("verify", "status")
    }
    said = {command: process.communicate(timeout=90)[0] for command, process in commands.items()}
    seconds = time.monotonic() - started

    print(f"verify and status: exit {[p.returncode for p in commands.values()]} after {seconds:.0f} s")
    print(said["verify"], said["status"])
    cause = f"postqueue -j did not answer within {alerts.QUEUE_SECONDS} s: a local process may hold every showq"
    remain = r" \(\d+ message\(s\) remain in /var/spool/postfix/\w+\)"
    assert commands["verify"].returncode == 1
    assert re.search(rf"FAIL +queue: the queue cannot be read: {cause}{remain}", said["verify"]), said["verify"]
    assert commands["status"].returncode == 1
    assert re.search(rf"wf1.example.net: STUCK queue unreadable: {cause}{remain}", said["status"]), said["status"]
