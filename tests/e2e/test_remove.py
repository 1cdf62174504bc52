"""End to end on the lab: `nullclient remove` loses no mail and does nothing it was not asked to.

One workstation, rm1, in a user's own inventory, deployed once; the tests run in this file's order
and share it. Mail is kept queued by taking rm1's account away on the smarthost (AUTH fails with a
temporary error, so Postfix defers the mail), as when the relay refuses the workstation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import smarthost
from lab.config import STATE_DIR
from tests.conftest import PROJECT
from tests.e2e.conftest import Workstation, lab_host_data, run_deploy, write_inventory
from tests.e2e.test_busy_apt import HOLD_LOCK

QUEUE = "/var/spool/postfix"
# One file per queued message, in whichever of Postfix's queues it is.
COUNT_QUEUED = (
    f"find {QUEUE}/maildrop {QUEUE}/incoming {QUEUE}/active {QUEUE}/deferred {QUEUE}/hold {QUEUE}/corrupt"
    " -type f 2>/dev/null | wc -l"
)
# What a removal would change: configuration, the deploy's files and record, postfix, the queue.
# (The watchdog's own state is left out: its timer may run meanwhile.)
HOST_STATE = (
    "postconf -n; postfix status 2>/dev/null && echo postfix running || echo postfix stopped;"
    " systemctl is-enabled postfix; dpkg-query -W -f='${db:Status-Abbrev}\\n' postfix;"
    " find /etc/postfix /var/lib/postfix-nullclient /usr/local/lib/postfix-nullclient /etc/systemd/system"
    " -path /var/lib/postfix-nullclient/watchdog -prune -o -type f -print0 | xargs -0 sha256sum | sort; " + COUNT_QUEUED
)
KEPT = "/root/kept-queue"
# The README's steps to put kept mail back into a configured null client's queue.
PUT_BACK = f"""set -e
systemctl stop postfix
cp -a {KEPT}/* "$(postconf -h queue_directory)"/
postfix set-permissions
postsuper -s
systemctl start postfix
postqueue -f
"""


@dataclass
class Rm:
    ws: Workstation
    inventory: Path
    env: dict[str, str]

    def nullclient(self, *args: str) -> subprocess.CompletedProcess:
        run = subprocess.run(
            [sys.executable, "-m", "postfix_nullclient.nullclient", *args],
            cwd=PROJECT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )
        print(run.stdout, run.stderr)  # the README's examples come from here
        return run

    def remove(self, *args: str) -> subprocess.CompletedProcess:
        return self.nullclient("remove", "-i", str(self.inventory), self.ws.fqdn, *args)

    def deploy(self) -> None:
        run = run_deploy(self.env, str(self.inventory))
        assert run.returncode == 0, run.output

    def queue_mail(self, count: int) -> list[str]:
        """`count` messages that stay queued: the relay refuses rm1's login until relay_accepts()."""
        smarthost.remove_account(STATE_DIR, self.ws.smtp_user)
        subjects = [f"queued {n} {os.urandom(4).hex()}" for n in range(count)]
        for subject in subjects:
            self.ws.run(f"echo body | mail -s '{subject}' root")
        deadline = time.monotonic() + 30
        while int(self.ws.run(COUNT_QUEUED).stdout) != count:
            assert time.monotonic() < deadline, self.ws.run("postqueue -p").stdout
            time.sleep(0.5)
        return subjects

    def relay_accepts(self) -> None:
        smarthost.set_account(STATE_DIR, self.ws.smtp_user, self.ws.password)


@pytest.fixture(scope="module")
def rm(make_workstations, keyring_env, tmp_path_factory) -> Iterator[Rm]:
    (ws,) = make_workstations(["rm1"])
    inventory = write_inventory(tmp_path_factory.mktemp("rm") / "inventory.py", [(ws.fqdn, lab_host_data(ws))])
    shared = Rm(ws, inventory, keyring_env)
    shared.deploy()
    try:
        yield shared
    finally:
        shared.relay_accepts()


@pytest.fixture(scope="module")
def queued(rm) -> list[str]:
    """Three messages in rm1's queue, which the relay does not take."""
    return rm.queue_mail(3)


def test_remove_without_host_names_or_all_is_refused_and_changes_nothing(rm, queued):
    before = rm.ws.run(HOST_STATE).stdout

    run = rm.nullclient("remove", "-i", str(rm.inventory), "--postfix", "stop")

    assert run.returncode == 2, run.stdout + run.stderr
    assert f"no host named: this would remove the null client from every host of {rm.inventory} (1: {rm.ws.fqdn})" in (
        run.stderr
    )
    assert "add --all" in run.stderr
    assert rm.ws.run(HOST_STATE).stdout == before


def test_dry_run_says_what_it_would_do_and_changes_nothing(rm, queued):
    leftover = "/etc/postfix/.nullclient.Dry123"
    rm.ws.run(f"mkdir -m 700 {leftover} && echo secret > {leftover}/sasl_passwd")
    before = rm.ws.run(HOST_STATE).stdout
    assert "postfix running" in before and f"\n{len(queued)}\n" in before

    run = rm.nullclient("remove", "-i", str(rm.inventory), "--all", "--postfix", "purge", "--keep-queue", KEPT, "--dry")

    assert run.returncode == 0, run.stdout + run.stderr
    assert rm.ws.run(HOST_STATE).stdout == before
    assert rm.ws.run(f"test -e {KEPT}", check=False).returncode == 1
    report = run.stdout.splitlines()
    assert report[0].startswith("== dry run, nothing was changed")
    assert report[1] == rm.ws.fqdn
    for line in [
        "  postfix: stopped and disabled (it was running)",
        "  password map: deleted /etc/postfix/sasl_passwd /etc/postfix/sasl_passwd.db",
        f"  leftover of an interrupted apply: deleted {leftover}",
        f"  queued mail: 3 message(s) copied from {QUEUE} to {KEPT} before the purge (Postfix queue files, to put back"
        " later)",
        "  files the first deploy created: deleted /etc/postfix/main.cf /etc/postfix/virtual_alias"
        " /etc/postfix/sender_canonical /etc/postfix/sasl_passwd",
        f"  left on the host: {KEPT} (3 message(s))",
    ]:
        assert line in report, run.stdout
    assert any(line.startswith("  postfix: purged (env DEBIAN_FRONTEND=noninteractive apt-get") for line in report)
    rm.ws.run(f"rm -r {leftover}")


def test_purge_with_mail_queued_is_refused_without_a_choice_and_changes_nothing(rm, queued):
    before = rm.ws.run(HOST_STATE).stdout

    run = rm.remove("--postfix", "purge")

    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith("nullclient remove: refusing, nothing was changed on any host:\n")
    assert f"  {rm.ws.fqdn}: 3 message(s) are queued in {QUEUE}, which a purge deletes; say what becomes of them:" in (
        run.stderr
    )
    assert "--keep-queue DIR" in run.stderr and "--discard-queued-mail" in run.stderr
    assert rm.ws.run(HOST_STATE).stdout == before


def test_purge_keeps_queued_mail_whole_in_the_named_directory_to_be_put_back(rm, queued):
    run = rm.remove("--postfix", "purge", "--keep-queue", KEPT)

    assert run.returncode == 0, run.stdout + run.stderr
    assert f"  queued mail: 3 message(s) copied from {QUEUE} to {KEPT} before the purge" in run.stdout
    assert int(rm.ws.run(f"find {KEPT} -type f | wc -l").stdout) == 3
    assert rm.ws.run(f"stat -c %a {KEPT}").stdout.strip() == "700"
    assert not rm.ws.run("dpkg-query -W -f='${db:Status-Abbrev}' postfix", check=False).stdout.startswith("ii")
    # The owner puts them back once postfix runs again: all three leave through the relay.
    rm.deploy()
    rm.relay_accepts()
    put_back = rm.ws.run(PUT_BACK, check=False)
    assert put_back.returncode == 0, put_back.stdout + put_back.stderr
    arrived = smarthost.wait_for_messages(
        STATE_DIR, 3, timeout=60, predicate=lambda message: message["subject"] in queued
    )
    assert sorted(message["subject"] for message in arrived) == sorted(queued)


def test_purge_discards_queued_mail_when_told_and_says_so(rm):
    rm.queue_mail(2)

    run = rm.remove("--postfix", "purge", "--discard-queued-mail")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "  queued mail: 2 message(s) discarded (--discard-queued-mail)" in run.stdout
    assert int(rm.ws.run(COUNT_QUEUED).stdout) == 0
    rm.relay_accepts()
    rm.deploy()


def test_remove_deletes_a_staging_leftover_of_an_interrupted_apply(rm):
    leftover = "/etc/postfix/.nullclient.Kill42"
    rm.ws.run(f"mkdir -m 700 {leftover} && echo secret > {leftover}/sasl_passwd")

    run = rm.remove("--postfix", "stop")

    assert run.returncode == 0, run.stdout + run.stderr
    assert rm.ws.run(f"test -e {leftover}", check=False).returncode == 1
    assert f"  leftover of an interrupted apply: deleted {leftover}" in run.stdout


def test_purge_waits_for_a_dpkg_lock_held_by_another_apt(rm):
    rm.ws.run(HOLD_LOCK)
    deadline = time.monotonic() + 10
    while rm.ws.run("test -e /run/lock-held", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the lock holder did not start"
        time.sleep(0.2)

    run = rm.remove("--postfix", "purge")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "Could not get lock" not in run.stdout + run.stderr
    assert any(line.startswith("  postfix: purged (") for line in run.stdout.splitlines()), run.stdout
    # dpkg removed postfix after the holder let go (the lab shares one clock).
    released = int(rm.ws.run("cat /run/lock-released").stdout)
    assert int(rm.ws.run("stat -c %Y /var/log/dpkg.log").stdout) >= released
    assert rm.ws.run("test -e /var/lib/dpkg/info/postfix.list", check=False).returncode == 1
    assert not rm.ws.run("dpkg-query -W -f='${db:Status-Abbrev}' postfix", check=False).stdout.startswith("ii")
