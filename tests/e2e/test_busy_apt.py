"""End to end: a first deploy while another apt holds the dpkg lock waits for it instead of failing.

On a freshly booted workstation unattended-upgrades often holds the lock; the deploy's install
command asks apt-get to wait for it (tasks/packages.py).
"""

from __future__ import annotations

import time

from tests.e2e.conftest import deploy

HOLD_SECONDS = 12
# Holds the dpkg frontend lock the way apt does (an fcntl write lock), says so, and lets go later.
HOLD_LOCK = rf"""
nohup perl -e '
  use Fcntl;
  open(my $f, ">>", "/var/lib/dpkg/lock-frontend") or die;
  my $lock = pack("s s x![q] q q i", F_WRLCK, 0, 0, 0, 0);
  fcntl($f, F_SETLKW, $lock) or die "lock: $!";
  open(my $said, ">", "/run/lock-held") or die; close($said);
  sleep {HOLD_SECONDS};
  open(my $done, ">", "/run/lock-released") or die; print $done time(); close($done);
  unlink "/run/lock-held";
' >/dev/null 2>&1 &
"""


def test_first_deploy_waits_for_a_dpkg_lock_held_by_another_apt(make_workstations, keyring_env):
    [host] = make_workstations(["sf6"])
    host.run(HOLD_LOCK)
    deadline = time.monotonic() + 10
    while host.run("test -e /run/lock-held", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the lock holder did not start"
        time.sleep(0.2)

    run = deploy(keyring_env, [host])

    assert run.returncode == 0, run.output
    assert "Could not get lock" not in run.output
    # postfix was unpacked after the holder let go: the install waited (the lab shares one clock).
    released = int(host.run("cat /run/lock-released").stdout)
    installed = int(host.run("stat -c %Y /var/lib/dpkg/info/postfix.list").stdout)
    assert installed >= released
    assert host.run("dpkg-query -W -f='${db:Status-Abbrev}' postfix").stdout.startswith("ii")
    assert host.run("postfix status", check=False).returncode == 0
