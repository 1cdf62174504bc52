"""End to end on the lab: real warnings reach forward_to, and mail that cannot leave is noticed.

One workstation, al1, with a real cron, sudo and unattended-upgrades installed by the test (the
lab's image has none of them; the deploy never installs them), deployed with a watchdog threshold
of 5 seconds. The tests run in this file's order: the alert sources first, then the stuck queue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import hosts, smarthost
from lab.config import FORWARD_TO, STATE_DIR
from tests.conftest import PROJECT
from tests.e2e.conftest import Workstation, lab_host_data, run_deploy, write_inventory

WATCHDOG = "systemctl start postfix-nullclient-watchdog.service"
WARNINGS = "journalctl --no-pager -o cat -t postfix-nullclient -p warning"


@dataclass
class Al:
    ws: Workstation
    inventory: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def al(make_workstations, keyring_env, tmp_path_factory) -> Iterator[Al]:
    (ws,) = make_workstations(["al1"])
    installed = ws.run(
        "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
        "-o DPkg::Lock::Timeout=300 cron sudo unattended-upgrades >/dev/null",
        check=False,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    inventory = write_inventory(
        tmp_path_factory.mktemp("al") / "inventory.py", [(ws.fqdn, lab_host_data(ws, watchdog_threshold="5s"))]
    )
    run = run_deploy(keyring_env, str(inventory))
    assert run.returncode == 0, run.output
    yield Al(ws, inventory, keyring_env)


def nullclient(al: Al, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "postfix_nullclient.nullclient", *args],
        cwd=PROJECT,
        env=al.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def arrived(subject_part: str, timeout: float = 90) -> dict:
    """The first message at the smarthost whose subject has `subject_part`, sent to forward_to."""
    found = smarthost.wait_for_messages(
        STATE_DIR, 1, timeout=timeout, predicate=lambda m: subject_part in (m["subject"] or "")
    )[0]
    assert found["rcpt_tos"] == [FORWARD_TO]
    return found


def test_deploy_configures_unattended_upgrades_and_the_watchdog_and_then_changes_nothing(al):
    conf = al.ws.run("cat /etc/apt/apt.conf.d/51postfix-nullclient-mail").stdout
    assert 'Unattended-Upgrade::Mail "root";' in conf and 'MailReport "only-on-error";' in conf
    assert al.ws.run("systemctl is-enabled postfix-nullclient-watchdog.timer").stdout.strip() == "enabled"
    assert al.ws.run("systemctl is-active postfix-nullclient-watchdog.timer").stdout.strip() == "active"
    assert "threshold=5\n" in al.ws.run("cat /usr/local/lib/postfix-nullclient/watchdog").stdout

    again = run_deploy(al.env, str(al.inventory))

    assert again.returncode == 0, again.output
    assert again.output.count(f"[{al.ws.fqdn}] No changes") == 5, again.output


def test_a_users_crontab_output_reaches_forward_to(al):
    mark = f"cron-{os.urandom(4).hex()}"
    al.ws.run(f"useradd -m cronuser && echo '* * * * * echo {mark} output' | crontab -u cronuser -")

    message = arrived(mark, timeout=150)

    assert message["subject"].startswith("Cron <cronuser@al1>")
    assert f"{mark} output" in message["data"]
    al.ws.run("crontab -r -u cronuser")


def test_sudo_by_a_user_not_in_sudoers_sends_security_information_to_forward_to(al):
    password = os.urandom(12).hex()  # a throwaway login password of a throwaway user: on stdin only
    al.ws.run("useradd -m intruder && chpasswd", input=f"intruder:{password}\n")

    tried = al.ws.run("su intruder -c 'sudo -S -k -p \"\" true'", check=False, input=f"{password}\n")

    assert tried.returncode != 0 and "is not in the sudoers file" in tried.stderr
    message = arrived("*** SECURITY information for al1")
    assert "intruder : user NOT in sudoers" in message["data"]


def test_a_failed_unattended_upgrades_run_mails_forward_to(al):
    # An apt source that apt cannot read makes the run fail: the mail setting is errors only.
    al.ws.run("echo 'deb broken' > /etc/apt/sources.list.d/al-broken.list")
    try:
        run = al.ws.run("unattended-upgrade", check=False)
    finally:
        al.ws.run("rm -f /etc/apt/sources.list.d/al-broken.list")

    assert run.returncode != 0
    message = arrived("unattended-upgrades result for")
    assert message["subject"].endswith(": FAILURE")
    assert "Apt returned an error" in message["data"]


def queue_reason(ws: Workstation) -> str:
    lines = [json.loads(line) for line in ws.run("postqueue -j").stdout.splitlines() if line.strip()]
    return " ".join(r.get("delay_reason", "") for entry in lines for r in entry["recipients"])


def login_banner(ws: Workstation) -> str:
    """What an interactive SSH login shows (pam_motd), as the owner sees it."""
    login = subprocess.run(
        ["ssh", "-tt", *hosts.ssh_options(), f"root@{ws.address}"],
        input="exit\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    return login.stdout


def test_stuck_mail_is_told_once_shown_by_status_and_clears_after_rotate(al):
    smarthost.set_account(STATE_DIR, al.ws.smtp_user, "the-server-changed-it")  # the relay changes the password
    subject = f"stuck {os.urandom(4).hex()}"
    al.ws.run(f"echo stuck | mail -s '{subject}' root")
    deadline = time.monotonic() + 60
    while "SASL authentication failed" not in queue_reason(al.ws):
        assert time.monotonic() < deadline, al.ws.run("postqueue -p").stdout
        time.sleep(1)
    time.sleep(6)  # older than the threshold of 5 s
    queue_id = json.loads(al.ws.run("postqueue -j").stdout.splitlines()[0])["queue_id"]

    al.ws.run(WATCHDOG)
    al.ws.run(WATCHDOG)  # the same problem again: nothing new is said

    warnings = al.ws.run(WARNINGS).stdout.splitlines()
    print("\n".join(warnings))  # the README shows it
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(f"{queue_id} to <{FORWARD_TO}> has waited ")
    assert "SASL authentication failed" in warnings[0] and "535 5.7.8" in warnings[0]
    assert "1 message(s) have waited longer than 5s in the mail queue of al1" in warnings[1]
    banner = login_banner(al.ws)
    print(banner)
    assert "*** postfix-nullclient: 1 message(s) have waited longer than 5s" in banner
    assert "SASL authentication failed" in banner

    status = nullclient(al, "status", "-i", str(al.inventory))
    print(status.stdout)
    assert status.returncode == 1, status.stdout + status.stderr
    assert status.stdout.startswith(f"{al.ws.fqdn}: STUCK queue 1; oldest message {queue_id} ")
    assert f"; oldest deferred {queue_id} " in status.stdout
    assert "SASL authentication failed" in status.stdout and "configuration current" in status.stdout
    assert "last said: " in status.stdout and "warning: 1 message(s) have waited" in status.stdout
    as_json = json.loads(nullclient(al, "status", "-i", str(al.inventory), "--json").stdout)
    assert as_json[0]["stuck"] == 1 and as_json[0]["watchdog"]["warning_active"] is True

    rotate = subprocess.Popen(
        [sys.executable, "-m", "postfix_nullclient.nullclient", "rotate", "-i", str(al.inventory), al.ws.fqdn],
        cwd=PROJECT,
        env=al.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    try:
        for line in rotate.stdout:
            output.append(line)
            if line.startswith("Press Enter"):
                new = output[-2].strip()  # the owner reads the new password and sets it on the server
                smarthost.set_account(STATE_DIR, al.ws.smtp_user, new)
                rotate.stdin.write("\n")
                rotate.stdin.flush()
        assert rotate.wait(timeout=300) == 0, "".join(output)
    finally:
        if rotate.poll() is None:
            rotate.kill()
            rotate.wait()
    arrived(subject)
    assert al.ws.run("postqueue -j").stdout == ""

    al.ws.run(WATCHDOG)

    assert len(al.ws.run(WARNINGS).stdout.splitlines()) == 2
    cleared = al.ws.run("journalctl --no-pager -o cat -t postfix-nullclient").stdout.splitlines()[-1]
    assert cleared == "the mail queue moves again: no message has waited longer than 5s"
    assert al.ws.run("test -e /run/motd.d/postfix-nullclient", check=False).returncode == 1
    assert "postfix-nullclient" not in login_banner(al.ws)
    fine = nullclient(al, "status", "-i", str(al.inventory))
    print(fine.stdout)
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert fine.stdout.startswith(f"{al.ws.fqdn}: ok    queue 0; watchdog ran ")


def test_remove_takes_the_watchdog_away(al):
    removed = nullclient(al, "remove", "-i", str(al.inventory), al.ws.fqdn, "--postfix", "stop")

    assert removed.returncode == 0, removed.stdout + removed.stderr
    left = al.ws.run(
        "ls /usr/local/lib/postfix-nullclient /etc/systemd/system/postfix-nullclient-watchdog.timer "
        "/etc/apt/apt.conf.d/51postfix-nullclient-mail /var/lib/postfix-nullclient /run/postfix-nullclient 2>&1; "
        "systemctl is-enabled postfix-nullclient-watchdog.timer",
        check=False,
    ).stdout
    assert left.count("No such file or directory") == 5, left
    assert "enabled" not in left.replace("is-enabled", "")
