"""Attacks on `nullclient remove` that once succeeded (mail lost, a file it does not own deleted, a
host half-removed without a word): each test states what must hold.

One workstation, ar1, with a local user eve; mail is kept queued by taking ar1's account away on
the smarthost (as in test_remove.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from lab import smarthost
from lab.config import STATE_DIR
from tests.e2e.conftest import lab_host_data, write_inventory
from tests.e2e.test_remove import COUNT_QUEUED, Rm

EVE = "su -s /bin/sh eve -c"


def hold_dpkg_lock(rm: Rm, seconds: int) -> None:
    rm.ws.run(
        "rm -f /run/lock-held; nohup perl -e '"
        ' use Fcntl; open(my $f, ">>", "/var/lib/dpkg/lock-frontend") or die;'
        ' my $lock = pack("s s x![q] q q i", F_WRLCK, 0, 0, 0, 0); fcntl($f, F_SETLKW, $lock) or die;'
        ' open(my $s, ">", "/run/lock-held"); close($s);'
        f' sleep {seconds}; unlink "/run/lock-held";\' >/dev/null 2>&1 &'
    )
    deadline = time.monotonic() + 10
    while rm.ws.run("test -e /run/lock-held", check=False).returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def queue_mail(rm: Rm, count: int) -> None:
    smarthost.remove_account(STATE_DIR, rm.ws.smtp_user)
    for n in range(count):
        rm.ws.run(f"echo body | mail -s 'kept-{n}-end' root")
    deadline = time.monotonic() + 30
    while int(rm.ws.run(COUNT_QUEUED).stdout) < count:
        assert time.monotonic() < deadline
        time.sleep(0.5)


@pytest.fixture(scope="module")
def rm(make_workstations, keyring_env, tmp_path_factory) -> Iterator[Rm]:
    (ws,) = make_workstations(["ar1"])
    inventory = write_inventory(tmp_path_factory.mktemp("ar") / "inventory.py", [(ws.fqdn, lab_host_data(ws))])
    shared = Rm(ws, inventory, keyring_env)
    shared.deploy()
    ws.run("useradd -m -s /bin/sh eve")
    try:
        yield shared
    finally:
        shared.relay_accepts()


def test_keep_queue_through_a_local_users_symlink_into_the_queue_loses_no_mail(rm):
    """eve's /home/eve/backup points at the queue: the copy lands in the queue, which the purge deletes."""
    queue_mail(rm, 3)
    rm.ws.run(f"{EVE} 'ln -s /var/spool/postfix /home/eve/backup'")

    run = rm.remove("--postfix", "purge", "--keep-queue", "/home/eve/backup/kept")

    kept = int(rm.ws.run("find /home/eve/backup/kept -type f 2>/dev/null | wc -l").stdout)
    queued = int(rm.ws.run(COUNT_QUEUED).stdout)
    assert run.returncode != 0 or kept + queued >= 3, run.stdout + f"\nkept {kept} queued {queued}"


def test_remove_of_a_host_with_no_record_leaves_the_owners_own_password_map(rm):
    """After a removal (no record left), the owner sets up their own relay login: a second remove deletes it."""
    first = rm.remove("--postfix", "stop")
    assert first.returncode == 0, first.stdout + first.stderr
    rm.ws.run("mkdir -p /etc/postfix && echo '[mail.example.org]:587 owner:secret' > /etc/postfix/sasl_passwd")

    run = rm.remove("--postfix", "stop")

    print(run.stdout)
    assert rm.ws.run("test -e /etc/postfix/sasl_passwd", check=False).returncode == 0, run.stdout


def test_keep_queue_in_an_empty_directory_a_local_user_made_is_refused_or_made_root_only(rm):
    rm.relay_accepts()
    rm.deploy()
    queue_mail(rm, 2)
    rm.ws.run(f"{EVE} 'mkdir -m 777 /tmp/kept'")

    run = rm.remove("--postfix", "purge", "--keep-queue", "/tmp/kept")

    owner = rm.ws.run("stat -c '%U %a' /tmp/kept").stdout.strip()
    assert run.returncode != 0 or owner == "root 700", run.stdout + "\n" + owner


def test_mail_a_local_user_submits_during_a_purge_is_not_lost(rm):
    rm.relay_accepts()
    rm.deploy()
    queue_mail(rm, 1)
    # eve sends mail in a loop; each message that sendmail accepted is logged by its number.
    rm.ws.run(
        f"{EVE} 'nohup sh -c \"i=0; while [ \\$i -lt 3000 ] && [ ! -e /tmp/stop ]; do"
        ' printf \\"Subject: loop-\\$i-end\\n\\nbody\\n\\" | /usr/sbin/sendmail root 2>/dev/null'
        " && echo loop-\\$i-end >> /home/eve/ok; i=\\$((i+1)); sleep 0.05; done\" >/dev/null 2>&1 &'"
    )
    time.sleep(1)
    hold_dpkg_lock(rm, 4)

    run = rm.remove("--postfix", "purge", "--keep-queue", "/root/kept-loop")

    rm.ws.run("touch /tmp/stop")
    time.sleep(0.5)
    accepted = set(rm.ws.run("cat /home/eve/ok").stdout.split())
    kept = set(rm.ws.run("grep -rhao 'loop-[0-9]*-end' /root/kept-loop | sort -u", check=False).stdout.split())
    still = set(
        rm.ws.run("grep -rhao 'loop-[0-9]*-end' /var/spool/postfix 2>/dev/null | sort -u", check=False).stdout.split()
    )
    arrived = {m["subject"] for m in smarthost.wait_for_messages(STATE_DIR, 0, timeout=1)}
    lost = accepted - kept - still - arrived
    assert not lost, f"{len(accepted)} accepted, {len(kept)} kept, lost {sorted(lost)}\n{run.stdout}"


def test_keep_queue_on_a_full_file_system_says_postfix_was_not_purged(rm):
    """The copy fails for lack of space: postfix is not purged, the mail stays queued, and it says so."""
    rm.relay_accepts()
    rm.deploy()
    queue_mail(rm, 2)
    rm.ws.run(
        "mkdir -p /mnt/small && mount -t tmpfs -o size=16k tmpfs /mnt/small"
        " && { dd if=/dev/zero of=/mnt/small/fill bs=4k 2>/dev/null || true; }"
    )

    run = rm.remove("--postfix", "purge", "--keep-queue", "/mnt/small/kept")

    rm.ws.run("umount /mnt/small")
    assert int(rm.ws.run(COUNT_QUEUED).stdout) == 2, "no mail lost"
    assert run.returncode == 1
    # Said where the operator sees pyinfra's output (the summary after it has no report of a failed removal).
    assert "error: postfix was NOT purged: the copy of the 2 queued message(s)" in run.stdout + run.stderr


def test_data_nullclient_dry_does_not_turn_a_real_removal_into_a_pretended_one(rm):
    """--data nullclient_dry=yes (a setting the user may pass) reaches the real run too."""
    rm.relay_accepts()
    rm.deploy()

    run = rm.remove("--postfix", "stop", "--data", "nullclient_dry=yes")

    # The removal happened: the watchdog is gone, and main.cf is no longer the null client's.
    assert run.returncode == 0, run.stdout + run.stderr
    assert rm.ws.run("test -e /usr/local/lib/postfix-nullclient/watchdog", check=False).returncode == 1
    assert "postfix-nullclient" not in rm.ws.run("cat /etc/postfix/main.cf 2>/dev/null; true").stdout


def test_keep_queue_that_is_not_utf8_is_refused_naming_the_option(rm):
    """A byte that is not UTF-8 in --keep-queue: pyinfra's internal exception, and "could not be looked at"."""
    run = rm.remove("--postfix", "purge", "--keep-queue", "/root/kept-\udcff", "--dry")

    assert "Traceback" not in run.stdout + run.stderr and "internal exception" not in run.stderr, run.stderr
    assert "could not be looked at" not in run.stderr, run.stderr
    assert "--keep-queue" in run.stderr
