"""End to end on the lab: a workstation that behaves like a laptop, offline for a while.

One workstation, lt1, configured by systemd-networkd on host0 as every lab host is. Its link is taken
down from this machine (the host's side of its veth, `ip link set vb-lt1 down`), so that the
workstation sees what a laptop sees when it loses its network: no carrier, no route, no DNS. SSH goes
over the same link: what the workstation does while it is offline is scheduled before (systemd-run),
and its queue is read from this machine, in the host's own file system.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab import base, hosts, network, smarthost
from lab.ca import issue_certificate
from lab.config import DOMAIN, STATE_DIR
from postfix_nullclient import alerts
from tests.e2e.conftest import NO_CHANGE_OPERATIONS, Workstation, lab_host_data, nullclient, run_deploy, write_inventory

NAME = "lt1"
VETH = f"vb-{NAME}"  # systemd-nspawn's name for the host's side of --network-bridge
# What "within a few seconds" means here: the link's carrier, networkd's address, the flush, one SMTP session.
BACK_WITHIN = 10
# Two relays of this module's own, each with its own address, name and certificate: the first can be
# stopped without touching the lab's smarthost, which others use.
RELAYS = ("relay-lt1", "relay-lt2")


@pytest.fixture(scope="module")
def lt1(make_workstations, keyring_env, tmp_path_factory) -> Iterator[Workstation]:
    (ws,) = make_workstations([NAME])
    inventory = write_inventory(tmp_path_factory.mktemp("lt") / "inventory.py", [(ws.fqdn, lab_host_data(ws))])
    run = run_deploy(keyring_env, str(inventory))
    assert run.returncode == 0, run.output
    again = run_deploy(keyring_env, str(inventory))
    assert again.output.count(f"[{ws.fqdn}] No changes") == NO_CHANGE_OPERATIONS, again.output
    yield ws


def deferred_files(ws: Workstation) -> list[Path]:
    """Postfix's deferred queue of the workstation, read from this machine (its root is a directory here)."""
    return [
        path for path in (hosts.HOSTS_DIR / ws.name / "root/var/spool/postfix/deferred").rglob("*") if path.is_file()
    ]


@contextmanager
def link_down(ws: Workstation) -> Iterator[None]:
    subprocess.run(["ip", "link", "set", VETH, "down"], check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "link", "set", VETH, "up"], check=True)


def test_the_deploy_hooks_systemd_networkd_and_no_stack_the_host_does_not_use(lt1):
    assert lt1.run(f"systemctl is-active {alerts.FLUSH_PATH_NAME}").stdout.strip() == "active"
    for absent in (alerts.NETWORKMANAGER_HOOK, alerts.IFUPDOWN_HOOK):
        assert lt1.run(f"test -e {absent}", check=False).returncode == 1, absent


def test_mail_written_offline_reaches_the_relay_within_seconds_of_the_link_coming_back(lt1):
    subject = f"offline {uuid.uuid4().hex[:10]}"
    # Written 2 s from now, when the link is down.
    lt1.run(f"systemd-run -q --on-active=2 /bin/sh -c 'echo written offline | mail -s \"{subject}\" root'")
    with link_down(lt1):
        deadline = time.monotonic() + 30
        while not deferred_files(lt1):
            assert time.monotonic() < deadline, "the mail written offline was never deferred"
            time.sleep(0.2)
        time.sleep(2)  # offline a little longer: Postfix's next try is minutes away now
    back = time.time()

    message = smarthost.wait_for_messages(
        STATE_DIR, 1, timeout=BACK_WITHIN, predicate=lambda m: m["subject"] == subject
    )[0]

    print(f"delivered {message['received'] - back:.1f} s after the link came back")
    assert message["tls"] is True and message["auth_user"] == lt1.smtp_user
    log = lt1.run("journalctl --no-pager -o short -t postfix/smtp -t postfix-nullclient").stdout
    print(log)
    assert "status=deferred" in log, log
    assert "the network is back (systemd-networkd): the mail queue is being sent" in log, log


def flushes(ws: Workstation, since: str) -> list[tuple[float, str]]:
    """(time, stack) of each flush the hooks started since `since`, from the journal."""
    log = ws.run(f"journalctl --no-pager -o short-unix -t postfix-nullclient --since {since}").stdout
    found = re.findall(r"^([0-9.]+) .*the network is back \((\S+)\): the mail queue is being sent$", log, re.MULTILINE)
    return [(float(at), stack) for at, stack in found]


def wait_for_flushes(ws: Workstation, since: str, count: int, timeout: float) -> list[tuple[float, str]]:
    deadline = time.monotonic() + timeout
    while len(found := flushes(ws, since)) < count:
        assert time.monotonic() < deadline, found
        time.sleep(0.3)
    return found


def test_the_hooks_flush_on_up_only_never_on_an_empty_queue_and_at_most_once_per_interval(lt1):
    """NetworkManager's and ifupdown's hooks, as the deploy renders them, run by hand on lt1 (which
    uses systemd-networkd): what each starts is the same flush script."""
    hooks = {f.path: f.content for f in alerts.network_files({"NetworkManager", "ifupdown"})}
    lt1.run("cat > /tmp/nm-hook", input=hooks[alerts.NETWORKMANAGER_HOOK])
    lt1.run("cat > /tmp/ifupdown-hook", input=hooks[alerts.IFUPDOWN_HOOK])
    lt1.run(f"rm -f {alerts.WATCHDOG_STATE}/last-flush")  # the earlier tests' flushes do not count
    since = "@" + lt1.run("date +%s.%N").stdout.strip()
    assert lt1.run("postqueue -j").stdout == ""
    lt1.run("sh /tmp/nm-hook host0 up; IFACE=host0 sh /tmp/ifupdown-hook; sleep 2")
    assert flushes(lt1, since) == []  # an empty queue
    assert lt1.run(f"test -e {alerts.WATCHDOG_STATE}/last-flush", check=False).returncode == 1

    smarthost.set_account(STATE_DIR, lt1.smtp_user, "the-server-changed-it")  # deferred, the link is up
    try:
        lt1.run("echo deferred | mail -s deferred root")
        deadline = time.monotonic() + 30
        while "SASL authentication failed" not in lt1.run("postqueue -j").stdout:
            assert time.monotonic() < deadline, lt1.run("postqueue -p").stdout
            time.sleep(0.5)
        lt1.run("sh /tmp/nm-hook host0 down; IFACE=lo sh /tmp/ifupdown-hook; sleep 2")
        assert flushes(lt1, since) == []  # not an interface coming up
        # Three events: the first flushes; the second waits for the rest of the interval, then flushes;
        # the third comes while the second waits, and leaves it to the second.
        lt1.run("sh /tmp/nm-hook host0 up")
        wait_for_flushes(lt1, since, 1, 5)
        lt1.run("IFACE=host0 sh /tmp/ifupdown-hook; sleep 1")
        third = lt1.run(f'start=$(date +%s.%N); {alerts.FLUSH} NetworkManager; echo "$start $(date +%s.%N)"')
        found = wait_for_flushes(lt1, since, 2, alerts.FLUSH_INTERVAL + 10)
    finally:
        smarthost.set_account(STATE_DIR, lt1.smtp_user, lt1.password)
    third_start, third_end = map(float, third.stdout.split())

    print(f"flushes: {found}; the third event took {third_end - third_start:.1f} s")
    assert [stack for _, stack in found] == ["NetworkManager", "ifupdown"]
    assert alerts.FLUSH_INTERVAL - 1 < found[1][0] - found[0][0] < alerts.FLUSH_INTERVAL + 2
    assert third_end - third_start < 1
    time.sleep(1)
    assert len(flushes(lt1, since)) == 2
    lt1.run("postqueue -f")
    deadline = time.monotonic() + 30
    while lt1.run("postqueue -j").stdout:
        assert time.monotonic() < deadline, lt1.run("postqueue -p").stdout
        time.sleep(0.5)


def test_with_a_short_queue_lifetime_the_watchdog_warns_before_it_ends_and_nothing_is_bounced(
    lt1, keyring_env, tmp_path
):
    inventory = write_inventory(
        tmp_path / "inventory.py", [(lt1.fqdn, lab_host_data(lt1, queue_lifetime="2m", watchdog_threshold="5s"))]
    )
    run = run_deploy(keyring_env, str(inventory))
    assert run.returncode == 0, run.output
    assert lt1.run("postconf -h maximal_queue_lifetime bounce_queue_lifetime").stdout.split() == ["2m", "2m"]
    subject = f"lifetime {uuid.uuid4().hex[:10]}"
    start = "@" + lt1.run("date +%s.%N").stdout.strip()
    smarthost.set_account(STATE_DIR, lt1.smtp_user, "the-server-changed-it")  # the relay cannot be used
    try:
        lt1.run(f"echo waits | mail -s '{subject}' root")
        deadline = time.monotonic() + 30
        while "SASL authentication failed" not in lt1.run("postqueue -j").stdout:
            assert time.monotonic() < deadline, lt1.run("postqueue -p").stdout
            time.sleep(0.5)
        time.sleep(6)  # older than the threshold of 5 s
        lt1.run(f"systemctl start {alerts.TIMER_NAME.replace('.timer', '.service')}")
        warning = lt1.run(f"journalctl --no-pager -o cat -t postfix-nullclient -p warning --since {start}").stdout
    finally:
        smarthost.set_account(STATE_DIR, lt1.smtp_user, lt1.password)
    lt1.run("postqueue -f")
    smarthost.wait_for_messages(STATE_DIR, 1, timeout=30, predicate=lambda m: m["subject"] == subject)

    print(warning)
    assert "1 message(s) have waited longer than 5s in the mail queue of lt1" in warning
    assert re.search(
        r"Postfix gives the oldest up \(and returns it to its sender through the same relay\) in 1m", warning
    )
    log = lt1.run(f"journalctl --no-pager -o cat --since {start} -t postfix/qmgr -t postfix/bounce").stdout
    assert "expired" not in log and "postfix/bounce" not in log and "sender non-delivery" not in log, log
    bounces = [m for m in smarthost.messages(STATE_DIR) if m["mail_from"] in ("", "<>") and lt1.name in m["data"]]
    assert bounces == []


@pytest.fixture(scope="module")
def relays(lt1, tmp_path_factory) -> Iterator[dict[str, tuple[str, tuple[Path, Path]]]]:
    """name -> (address, certificate) of RELAYS, each up with lt1's account; all gone afterwards."""
    certs_dir = tmp_path_factory.mktemp("lt-relays")
    made: dict[str, tuple[str, tuple[Path, Path]]] = {}
    try:
        for name in RELAYS:
            address = network.claim_address()
            made[name] = (address, ())
            network.add_dns_host(name, f"{name}.{DOMAIN}", address)
            cert = issue_certificate(base.ca_dir(), f"{name}.{DOMAIN}", certs_dir / name)
            made[name] = (address, cert)
            smarthost.start(STATE_DIR, base.ca_dir(), cert=cert, name=name, listen=address)
            smarthost.set_account(STATE_DIR, lt1.smtp_user, lt1.password, name=name)
        yield made
    finally:
        for name, (address, _) in made.items():
            smarthost.stop(STATE_DIR, name)
            shutil.rmtree(STATE_DIR / name, ignore_errors=True)
            network.remove_dns_host(name)
            network.release_address(address)


def test_the_fallback_relay_takes_the_mail_while_the_relay_is_down_and_the_relay_gets_it_back(
    lt1, relays, keyring_env, tmp_path
):
    first, second = (f"{name}.{DOMAIN}" for name in RELAYS)
    data = lab_host_data(lt1, relay_host=first, fallback_relays=[second])
    run = run_deploy(keyring_env, str(write_inventory(tmp_path / "inventory.py", [(lt1.fqdn, data)])))
    assert run.returncode == 0, run.output
    start = "@" + lt1.run("date +%s.%N").stdout.strip()

    smarthost.stop(STATE_DIR, RELAYS[0])
    try:
        while_down = f"relay down {uuid.uuid4().hex[:10]}"
        lt1.run(f"echo fallback | mail -s '{while_down}' root")
        taken = smarthost.wait_for_messages(
            STATE_DIR, 1, timeout=30, predicate=lambda m: m["subject"] == while_down, name=RELAYS[1]
        )[0]
    finally:
        address, cert = relays[RELAYS[0]]
        smarthost.start(STATE_DIR, base.ca_dir(), cert=cert, name=RELAYS[0], listen=address)
    back = f"relay back {uuid.uuid4().hex[:10]}"
    lt1.run(f"echo relay | mail -s '{back}' root")
    returned = smarthost.wait_for_messages(
        STATE_DIR, 1, timeout=30, predicate=lambda m: m["subject"] == back, name=RELAYS[0]
    )[0]

    log = lt1.run(f"journalctl --no-pager -o cat -t postfix/smtp --since {start}").stdout
    print(log)
    for message in (taken, returned):
        assert message["tls"] is True and message["auth_user"] == lt1.smtp_user and message["port"] == 587
    assert f"Verified TLS connection established to {second}[{relays[RELAYS[1]][0]}]:587" in log
    assert f"Verified TLS connection established to {first}[{relays[RELAYS[0]][0]}]:587" in log
    assert not [m for m in smarthost.messages(STATE_DIR, name=RELAYS[1]) if m["subject"] == back]
    verify = nullclient(keyring_env, "verify", "-i", str(tmp_path / "inventory.py"))
    print(verify.stdout)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert re.search(rf"ok +fallback relay \[{second}\]:587: \[{second}\]:587: certificate verified", verify.stdout)
    assert re.search(rf"ok +fallback password map \[{second}\]:587: ", verify.stdout)
    assert re.search(
        rf"ok +fallback login \[{second}\]:587: the relay accepts the login {lt1.smtp_user}: 235 ", verify.stdout
    )


def test_verify_fails_when_a_fallback_relay_refuses_the_login_and_names_the_account_it_lacks(
    lt1, relays, keyring_env, tmp_path
):
    first, second = (f"{name}.{DOMAIN}" for name in RELAYS)
    inventory = write_inventory(
        tmp_path / "inventory.py", [(lt1.fqdn, lab_host_data(lt1, relay_host=first, fallback_relays=[second]))]
    )
    run = run_deploy(keyring_env, str(inventory))
    assert run.returncode == 0, run.output
    smarthost.set_account(STATE_DIR, lt1.smtp_user, "another-password", name=RELAYS[1])
    try:
        verify = nullclient(keyring_env, "verify", "-i", str(inventory))
    finally:
        smarthost.set_account(STATE_DIR, lt1.smtp_user, lt1.password, name=RELAYS[1])

    print(verify.stdout)
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert re.search(rf"ok +login: the relay accepts the login {lt1.smtp_user}: 235 ", verify.stdout)
    assert re.search(
        rf"FAIL +fallback login \[{second}\]:587: the relay refuses the login {lt1.smtp_user} with the password in "
        r"the host's map: 535 ",
        verify.stdout,
    )
    assert f"give {lt1.smtp_user} on [{second}]:587 the keyring entry's password, as on relay_host" in verify.stdout
    assert lt1.password not in verify.stdout + verify.stderr


def test_status_says_since_when_mail_waits_for_the_network_and_when_the_oldest_would_expire(
    lt1, relays, keyring_env, tmp_path
):
    inventory = write_inventory(
        tmp_path / "inventory.py", [(lt1.fqdn, lab_host_data(lt1, relay_host=f"{RELAYS[0]}.{DOMAIN}"))]
    )
    run = run_deploy(keyring_env, str(inventory))
    assert run.returncode == 0, run.output
    subject = f"unreachable {uuid.uuid4().hex[:10]}"
    smarthost.stop(STATE_DIR, RELAYS[0])  # the network blocks the relay's port: refused, as a hotel's may
    try:
        lt1.run(f"echo waits | mail -s '{subject}' root")
        deadline = time.monotonic() + 30
        while "Connection refused" not in lt1.run("postqueue -j").stdout:
            assert time.monotonic() < deadline, lt1.run("postqueue -p").stdout
            time.sleep(0.5)
        status = nullclient(keyring_env, "status", "-i", str(inventory))
    finally:
        address, cert = relays[RELAYS[0]]
        smarthost.start(STATE_DIR, base.ca_dir(), cert=cert, name=RELAYS[0], listen=address)
    lt1.run("postqueue -f")
    smarthost.wait_for_messages(STATE_DIR, 1, timeout=30, predicate=lambda m: m["subject"] == subject, name=RELAYS[0])

    print(status.stdout, status.stderr)
    line = status.stdout
    assert re.search(
        rf"; offline since \S+ \S+ UTC \(connect to {RELAYS[0]}\.{DOMAIN}\[[0-9.]+\]:587: Connection refused\); ", line
    )
    assert re.search(r"; oldest message \w+ \d+s old, Postfix gives it up in 29d 23h \(\S+ \S+ UTC\); ", line), line


def test_remove_takes_the_network_hooks_away(lt1, keyring_env, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.py", [(lt1.fqdn, lab_host_data(lt1))])
    assert lt1.run(f"systemctl is-active {alerts.FLUSH_PATH_NAME}").stdout.strip() == "active"

    removed = nullclient(keyring_env, "remove", "-i", str(inventory), lt1.fqdn, "--postfix", "stop")

    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert lt1.run(f"systemctl is-active {alerts.FLUSH_PATH_NAME}", check=False).stdout.strip() == "inactive"
    left = lt1.run(f"ls -d {' '.join(alerts.NETWORK_FILES)} 2>/dev/null", check=False).stdout
    assert left == ""
