"""End to end on the lab: what a local user controls neither stops the queue watchdog nor makes it
repeat without bound.

One workstation, wd1, with a real logind, D-Bus and notify-send (installed by the test: the lab's
image has none of them, and the deploy never installs them), deployed with a watchdog threshold of
5 seconds. The user alice has a real graphical logind session (PAM's login stack, pam_systemd).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import hosts, smarthost
from lab.config import STATE_DIR
from postfix_nullclient import alerts
from tests.e2e.conftest import Workstation, lab_host_data, run_deploy, write_inventory
from tests.test_alerts import queue_entry

WATCHDOG_UNIT = "postfix-nullclient-watchdog.service"
# A session bus that accepts every connection and never answers, started by alice in place of her
# own bus; it writes each caller's uid, as the kernel tells it (SO_PEERCRED), to the file it is given.
SILENT_BUS = """\
import os, socket, struct, sys

path = f"/run/user/{os.getuid()}/bus"
if os.path.lexists(path):
    os.unlink(path)
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(64)
held = []
with open(sys.argv[1], "a", buffering=1) as callers:
    callers.write("listening\\n")
    while True:
        connection, _ = server.accept()
        _pid, uid, _gid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        callers.write(f"{uid}\\n")
        held.append(connection)
"""

FAKE_POSTQUEUE = "#!/bin/sh\nexec cat /root/flood.json\n"
FLOOD_DROP_IN = "[Service]\nBindReadOnlyPaths=/root/flood-postqueue:/usr/sbin/postqueue\n"


@dataclass
class Wd:
    ws: Workstation
    uid: str  # alice's


@pytest.fixture(scope="module")
def wd(make_workstations, keyring_env, tmp_path_factory) -> Iterator[Wd]:
    (ws,) = make_workstations(["wd1"])
    installed = ws.run(
        "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
        "-o DPkg::Lock::Timeout=300 dbus dbus-user-session libpam-systemd libnotify-bin >/dev/null",
        check=False,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    inventory = write_inventory(
        tmp_path_factory.mktemp("wd") / "inventory.py", [(ws.fqdn, lab_host_data(ws, watchdog_threshold="5s"))]
    )
    run = run_deploy(keyring_env, str(inventory))
    assert run.returncode == 0, run.output
    # alice logs in to a graphical session: logind registers it (type x11) and starts her user manager,
    # which makes her runtime directory and her session bus /run/user/UID/bus.
    ws.run(
        "useradd -m alice && systemd-run -q --unit=alice-session -p PAMName=login -p User=alice "
        "-E XDG_SESSION_TYPE=x11 sleep 3600"
    )
    uid = ws.run("id -u alice").stdout.strip()
    deadline = time.monotonic() + 30
    while ws.run(f"test -S /run/user/{uid}/bus", check=False).returncode != 0:
        assert time.monotonic() < deadline, ws.run("loginctl list-sessions; ls -la /run/user", check=False).stdout
        time.sleep(0.5)
    yield Wd(ws, uid)


def since(ws: Workstation) -> str:
    """Now on the host, for journalctl --since."""
    return "@" + ws.run("date +%s.%N").stdout.strip()


def timed_watchdog_run(ws: Workstation) -> float:
    """Seconds that `systemctl start` of the watchdog's unit takes (a oneshot: until the run ends)."""
    took = hosts.ssh(
        ws.name,
        f'start=$(date +%s.%N); timeout 60 systemctl start {WATCHDOG_UNIT}; rc=$?; echo "$rc $(date +%s.%N) $start"',
        timeout=90,
    ).stdout.split()
    assert took[0] == "0", f"systemctl start {WATCHDOG_UNIT} failed or did not end within 60 s"
    return float(took[1]) - float(took[2])


def test_a_users_silent_session_bus_neither_stops_nor_holds_up_the_warning(wd):
    ws = wd.ws
    graphical = ws.run("loginctl show-user alice -p Sessions --value").stdout.split()
    assert [ws.run(f"loginctl show-session {s} -p Type --value").stdout.strip() for s in graphical] == ["x11"]
    # alice puts a bus of her own in her runtime directory, as her own process.
    ws.run("cat > /home/alice/silent_bus.py", input=SILENT_BUS)
    ws.run("systemd-run -q --unit=alice-silent-bus -p User=alice python3 /home/alice/silent_bus.py /home/alice/callers")
    deadline = time.monotonic() + 10
    while ws.run("cat /home/alice/callers", check=False).stdout != "listening\n":
        assert time.monotonic() < deadline, ws.run("systemctl status alice-silent-bus", check=False).stdout
        time.sleep(0.2)
    # Mail that cannot leave: the relay changed the password.
    smarthost.set_account(STATE_DIR, ws.smtp_user, "the-server-changed-it")
    ws.run("echo stuck | mail -s stuck root")
    deadline = time.monotonic() + 60
    while "SASL authentication failed" not in ws.run("postqueue -j").stdout:
        assert time.monotonic() < deadline, ws.run("postqueue -p").stdout
        time.sleep(1)
    time.sleep(6)  # older than the threshold of 5 s
    start = since(ws)

    try:
        seconds = timed_watchdog_run(ws)
    finally:
        ws.run("systemctl stop alice-silent-bus")

    print(f"the watchdog's run took {seconds:.1f} s")
    print(ws.run(f"journalctl --no-pager -o cat -u {WATCHDOG_UNIT} --since {start}").stdout)
    # The notification waited on alice's bus until it was killed, and no longer.
    assert alerts.NOTIFY_SECONDS - 0.5 < seconds < alerts.NOTIFY_SECONDS + 5
    assert ws.run("cat /home/alice/callers").stdout.split() == ["listening", wd.uid]  # as alice, never as root
    assert ws.run("pgrep -x notify-send", check=False).returncode == 1
    state = ws.run(f"systemctl show {WATCHDOG_UNIT} -p ActiveState -p Result").stdout.split()
    assert sorted(state) == ["ActiveState=inactive", "Result=success"]
    warnings = ws.run(f"journalctl --no-pager -o cat -t postfix-nullclient -p warning --since {start}").stdout
    print(warnings)
    assert "1 message(s) have waited longer than 5s in the mail queue of wd1" in warnings
    assert "SASL authentication failed" in warnings
    motd = ws.run(f"cat {alerts.MOTD}").stdout
    assert motd.startswith("*** postfix-nullclient: 1 message(s) have waited longer than 5s")
    assert "SASL authentication failed" in motd


def test_a_flood_of_distinct_deferral_reasons_keeps_the_login_message_short_and_the_journal_told(wd, tmp_path):
    ws = wd.ws
    # postqueue's JSON for 8,000 messages, each deferred for a reason of its own, given to the
    # watchdog's unit in place of the real postqueue (a bind mount in the unit's own namespace).
    flood = [
        queue_entry(f"4F{n:09X}", 60 + n, [{"address": f"user{n}@example.org", "delay_reason": f"451 4.3.0 try #{n}"}])
        for n in range(8000)
    ]
    ws.run("cat > /root/flood.json", input="".join(f"{line}\n" for line in flood))
    ws.run("cat > /root/flood-postqueue && chmod 755 /root/flood-postqueue", input=FAKE_POSTQUEUE)
    drop_in = Path("/run/systemd/system") / f"{WATCHDOG_UNIT}.d" / "flood.conf"
    ws.run(f"mkdir -p {drop_in.parent} && cat > {drop_in} && systemctl daemon-reload", input=FLOOD_DROP_IN)
    start = since(ws)
    try:
        seconds = timed_watchdog_run(ws)
    finally:
        ws.run(f"rm -f {drop_in} && systemctl daemon-reload")

    print(f"the watchdog's run took {seconds:.1f} s")
    motd = ws.run(f"cat {alerts.MOTD}").stdout
    print(motd)
    lines = motd.splitlines()
    # The summary, when Postfix gives the oldest up, "Postfix says:", the reasons, the rest counted, "Look: ...".
    assert len(lines) == 3 + alerts.SHOWN_REASONS + 2
    assert lines[1].startswith("*** Postfix gives the oldest up")
    assert lines[0].startswith("*** postfix-nullclient: 8000 message(s) have waited longer than 5s")
    assert lines[-2] == "***   and 7995 more (postqueue -p lists them all)"
    assert "@example.org" not in motd
    said = ws.run(f"journalctl --no-pager -o cat -t postfix-nullclient --since {start}").stdout
    print(said)
    assert said.splitlines()[-1].startswith("8000 message(s) have waited longer than 5s in the mail queue of wd1")
    assert said.splitlines()[-1].endswith("; and 7995 more (postqueue -p lists them all)")
    assert len(said.splitlines()) == alerts.JOURNAL_DETAILS + 1
    unit_log = ws.run(f"journalctl --no-pager -o cat -u {WATCHDOG_UNIT} --since {start}").stdout
    assert "Argument list too long" not in unit_log
    assert json.loads(flood[0])["queue_id"] in said
