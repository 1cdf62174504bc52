"""End to end on the lab: attacks on `nullclient remove` that it withstands.

A careless operator and eve, an unprivileged local user of the workstation: odd --keep-queue paths,
a host that cannot be reached among several, the remove script killed half-way, a host removed twice.
One workstation, ar2, deployed once, with two messages its relay does not take (as in
test_remove.py); the tests run in this file's order and share it.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import PROJECT
from tests.e2e.conftest import lab_host_data, write_inventory
from tests.e2e.test_remove import HOST_STATE, QUEUE, Rm

QUEUED = 2
AS_EVE = "su -s /bin/sh eve -c"
KILLED = ["--postfix", "purge", "--keep-queue", "/root/kept-1"]


@pytest.fixture(scope="module")
def rm(make_workstations, keyring_env, tmp_path_factory) -> Iterator[Rm]:
    (ws,) = make_workstations(["ar2"])
    inventory = write_inventory(tmp_path_factory.mktemp("ar") / "inventory.py", [(ws.fqdn, lab_host_data(ws))])
    shared = Rm(ws, inventory, keyring_env)
    shared.deploy()
    ws.run("useradd -m -s /bin/sh eve")
    shared.queue_mail(QUEUED)
    try:
        yield shared
    finally:
        shared.relay_accepts()


def refused_unchanged(rm: Rm, keep_dir: str, reason: str) -> None:
    """A purge keeping the queue in keep_dir is refused with reason, and changes nothing on the host."""
    before = rm.ws.run(HOST_STATE + "; ls -la /etc /tmp").stdout

    run = rm.remove("--postfix", "purge", "--keep-queue", keep_dir)

    assert run.returncode == 2, run.stdout + run.stderr
    assert f"  {rm.ws.fqdn}: --keep-queue {reason}" in run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert rm.ws.run(HOST_STATE + "; ls -la /etc /tmp").stdout == before


def test_keep_queue_naming_a_local_users_file_with_an_odd_name_is_refused_and_the_file_kept(rm):
    odd = "/tmp/eve's $HOME `id` file"
    rm.ws.run(f"{AS_EVE} {shlex.quote('printf mine > ' + shlex.quote(odd))}")

    refused_unchanged(rm, odd, f"{odd} exists; name a new directory")

    assert rm.ws.run(f"cat {shlex.quote(odd)}").stdout == "mine"


def test_keep_queue_through_a_local_users_symlink_to_etc_is_refused(rm):
    rm.ws.run(f"{AS_EVE} 'ln -s /etc /tmp/kept-etc'")

    refused_unchanged(rm, "/tmp/kept-etc", "/tmp/kept-etc exists; name a new directory")


def test_keep_queue_spelled_with_dots_into_the_queue_is_refused(rm):
    refused_unchanged(
        rm, "/var/spool//postfix/../postfix/./kept/", f"{QUEUE}/kept is inside {QUEUE}, which the removal deletes"
    )


def test_one_unreachable_host_with_all_changes_no_host(rm, tmp_path):
    ghost = {**lab_host_data(rm.ws), "ssh_hostname": "ghost.invalid"}
    inventory = write_inventory(tmp_path / "inventory.py", [(rm.ws.fqdn, lab_host_data(rm.ws)), ("ghost", ghost)])
    before = rm.ws.run(HOST_STATE).stdout

    run = rm.nullclient("remove", "-i", str(inventory), "--all", "--postfix", "purge", "--discard-queued-mail")

    assert run.returncode == 1, run.stdout + run.stderr
    assert "ghost: could not be looked at" in run.stderr
    assert "nothing was changed on any host" in run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert rm.ws.run(HOST_STATE).stdout == before


def test_remove_script_killed_half_way_loses_no_mail_and_a_second_remove_finishes(rm):
    """The script is killed while apt waits for a dpkg lock, after the mail was copied."""
    rm.ws.run(
        'rm -f /run/lock-held; nohup perl -e \'use Fcntl; open(my $f, ">>", "/var/lib/dpkg/lock-frontend") or die;'
        ' my $lock = pack("s s x![q] q q i", F_WRLCK, 0, 0, 0, 0); fcntl($f, F_SETLKW, $lock) or die;'
        ' open(my $held, ">", "/run/lock-held"); close($held);'
        " sleep 60' >/dev/null 2>&1 & echo $! > /run/lock-holder"
    )
    deadline = time.monotonic() + 10
    while rm.ws.run("test -e /run/lock-held", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the lock holder did not start"
        time.sleep(0.2)
    first = subprocess.Popen(
        [sys.executable, "-m", "postfix_nullclient.nullclient", "remove", "-i", str(rm.inventory), rm.ws.fqdn, *KILLED],
        cwd=PROJECT,
        env=rm.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 90  # the remove connects and looks at the host first: seconds, more on a busy machine
    while rm.ws.run("pgrep -x apt-get", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the purge did not start"
        time.sleep(0.2)
    rm.ws.run("pkill -KILL -f '^sh -s$'; kill $(cat /run/lock-holder)")
    said, _ = first.communicate(timeout=60)
    print(said)
    assert first.returncode == 1, said
    assert "queued mail: 2 message(s) copied from /var/spool/postfix to /root/kept-1" in said, "named"
    assert int(rm.ws.run("find /root/kept-1 -type f | wc -l").stdout) == QUEUED, said

    second = rm.remove("--postfix", "purge", "--keep-queue", "/root/kept-2")

    # The killed script's apt went on once the lock was free and purged postfix; either way, a second
    # remove (waiting for that apt's lock) finishes the job, and the mail is where the first one said.
    assert second.returncode == 0, second.stdout + second.stderr
    assert int(rm.ws.run("find /root/kept-1 -type f | wc -l").stdout) == QUEUED
    assert not rm.ws.run("dpkg-query -W -f='${db:Status-Abbrev}' postfix", check=False).stdout.startswith("ii")
    assert rm.ws.run("ls -A /etc/postfix /var/lib/postfix-nullclient 2>/dev/null", check=False).stdout.strip() == ""
    assert rm.ws.run("ls -d /etc/postfix/.nullclient.* /etc/postfix/sasl_passwd*", check=False).stdout == ""


def test_remove_of_a_host_already_removed_changes_nothing_and_says_so(rm):
    run = rm.remove("--postfix", "purge")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "  files: nothing recorded in /var/lib/postfix-nullclient/original; /etc/postfix is left as it is" in (
        run.stdout
    )
    assert "  left on the host: nothing of the null client" in run.stdout
    assert int(rm.ws.run("find /root/kept-1 -type f | wc -l").stdout) == QUEUED
