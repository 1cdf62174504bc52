"""End to end: the relay's certificate is verified, and no mail is lost when the relay or postfix goes away.

One workstation (sf2) relays through a smarthost of this module's own ("relay-sf.example.net" on an
extra address of the lab bridge, with a lab-CA certificate for that name), so that the relay can be
stopped, swapped for an impostor and started again without touching anyone else's hosts.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import base, network, smarthost
from lab.ca import ensure_ca, issue_certificate
from lab.config import DOMAIN, FORWARD_TO, STATE_DIR
from tests.e2e.conftest import Workstation, deploy

RELAY_NAME = f"relay-sf.{DOMAIN}"
REAL = "relay-sf"
IMPOSTOR = "relay-sf-impostor"
BURST_USERS = ["sfburst1", "sfburst2", "sfburst3", "sfburst4", "sfburst5"]


@dataclass
class Relay:
    address: str
    cert: tuple[Path, Path]
    certs_dir: Path


@pytest.fixture(scope="module")
def sf2(make_workstations) -> Workstation:
    return make_workstations(["sf2"])[0]


@pytest.fixture(scope="module")
def relay(sf2, tmp_path_factory) -> Iterator[Relay]:
    """The real relay-sf; removed with its address, DNS name and spool afterwards, even on failure."""
    certs_dir = tmp_path_factory.mktemp("relay-sf-certs")
    address = network.claim_address()
    try:
        network.add_dns_host(REAL, RELAY_NAME, address)
        cert = issue_certificate(base.ca_dir(), RELAY_NAME, certs_dir / "real")
        smarthost.start(STATE_DIR, base.ca_dir(), cert=cert, name=REAL, listen=address)
        smarthost.set_account(STATE_DIR, sf2.smtp_user, sf2.password, name=REAL)
        yield Relay(address, cert, certs_dir)
    finally:
        for name in (REAL, IMPOSTOR):
            smarthost.stop(STATE_DIR, name)
            shutil.rmtree(STATE_DIR / name, ignore_errors=True)
        network.remove_dns_host(REAL)
        network.release_address(address)


def configure(env: dict[str, str], workstation: Workstation, port: int, *extra: str) -> str:
    run = deploy(env, [workstation], "--data", f"relay_host={RELAY_NAME}", "--data", f"relay_port={port}", *extra)
    assert run.returncode == 0, run.output
    return run.output


@pytest.fixture
def on_587(sf2, relay, keyring_env) -> Workstation:
    configure(keyring_env, sf2, 587)
    start_real(relay)
    # Left over by an earlier test that failed: it must not make this one fail or pass.
    sf2.run("postsuper -d ALL 2>/dev/null")
    return sf2


def start_real(relay: Relay) -> None:
    smarthost.stop(STATE_DIR, IMPOSTOR)
    smarthost.start(STATE_DIR, base.ca_dir(), cert=relay.cert, name=REAL, listen=relay.address)


def send(workstation: Workstation, subjects: list[str], user: str = "root") -> None:
    """Submit one mail per subject with sendmail, all in one ssh command."""
    script = "".join(
        f"printf 'Subject: {subject}\\n\\nsafety test\\n' | runuser -u {user} -- /usr/sbin/sendmail -i root\n"
        for subject in subjects
    )
    workstation.run("sh -e", input=script)


def queue(workstation: Workstation) -> list[dict]:
    out = workstation.run("postqueue -j").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_until_deferred(workstation: Workstation, count: int, timeout: float = 60) -> list[dict]:
    """Wait until `count` mails sit in the deferred queue: postfix tried the relay and kept them."""
    deadline = time.monotonic() + timeout
    while True:
        found = [entry for entry in queue(workstation) if entry["queue_name"] == "deferred"]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"expected {count} deferred mails on {workstation.name}, queue: {queue(workstation)}")
        time.sleep(0.3)


def arrived_once(subjects: list[str], timeout: float) -> None:
    """Every subject arrives at the real relay, each exactly once, and the workstation's queue empties."""
    wanted = set(subjects)
    smarthost.wait_for_messages(STATE_DIR, len(wanted), timeout, lambda m: m["subject"] in wanted, name=REAL)
    got = [m["subject"] for m in smarthost.messages(STATE_DIR, REAL) if m["subject"] in wanted]
    assert sorted(got) == sorted(wanted), "every mail exactly once"


def flush_and_wait(workstation: Workstation, subjects: list[str], timeout: float = 120) -> None:
    workstation.run("postqueue -f")
    try:
        arrived_once(subjects, timeout)
    except TimeoutError as error:
        reasons = {r.get("delay_reason") for e in queue(workstation) for r in e["recipients"]}
        raise AssertionError(f"{error}\nstill queued because: {reasons}\n{smtp_log(workstation)[-1500:]}") from None
    deadline = time.monotonic() + 30
    while queue(workstation) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert queue(workstation) == []
    # Counted again once the queue is empty: a duplicate would have been delivered by now.
    arrived_once(subjects, 5)


def wait_flushing(workstation: Workstation, subjects: list[str], timeout: float) -> None:
    """Wait for every subject at the real relay, flushing now and then: on a loaded machine a few mails may
    be deferred (a slow relay), and postfix would retry them only minutes later. Lost is what never comes."""
    wanted = set(subjects)
    deadline = time.monotonic() + timeout
    while len({m["subject"] for m in smarthost.messages(STATE_DIR, REAL)} & wanted) < len(wanted):
        if time.monotonic() > deadline:
            reasons = {r.get("delay_reason") for e in queue(workstation) for r in e["recipients"]}
            raise TimeoutError(f"not all {len(wanted)} mails arrived in {timeout}s; deferred because: {reasons}")
        time.sleep(10)
        workstation.run("postqueue -f")
    arrived_once(subjects, 5)


def smtp_log(workstation: Workstation) -> str:
    return workstation.run("journalctl --no-pager -o cat -t postfix/smtp").stdout


def unique(prefix: str, count: int = 1) -> list[str]:
    token = uuid.uuid4().hex[:10]
    return [f"{prefix} {token} {i}" for i in range(count)]


# --- the relay port ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("port", "tls_mode"), [(465, "implicit TLS"), (587, "STARTTLS")])
def test_relay_port_works_with_its_tls_mode(sf2, relay, keyring_env, port, tls_mode):
    configure(keyring_env, sf2, port)
    start_real(relay)
    assert sf2.run("postconf -h smtp_tls_wrappermode").stdout.strip() == ("yes" if port == 465 else "no")
    [subject] = unique(f"port {port}")

    send(sf2, [subject])

    [message] = smarthost.wait_for_messages(STATE_DIR, 1, 60, lambda m: m["subject"] == subject, name=REAL)
    assert message["port"] == port and message["tls"] is True, f"{tls_mode}: {message['port']} {message['tls']}"
    assert message["auth_user"] == sf2.smtp_user and message["rcpt_tos"] == [FORWARD_TO]
    assert f"Verified TLS connection established to {RELAY_NAME}[{relay.address}]:{port}" in smtp_log(sf2)


# --- impostors on the relay's address --------------------------------------------------------------------


def _impostor_no_starttls(relay: Relay) -> tuple[str, tuple[Path, Path]]:
    return "no-starttls", relay.cert


def _impostor_other_name(relay: Relay) -> tuple[str, tuple[Path, Path]]:
    return "real", issue_certificate(base.ca_dir(), f"other-sf.{DOMAIN}", relay.certs_dir / "other-name")


def _impostor_untrusted_ca(relay: Relay) -> tuple[str, tuple[Path, Path]]:
    rogue_ca = relay.certs_dir / "rogue-ca"
    ensure_ca(rogue_ca, name="rogue CA")
    return "real", issue_certificate(rogue_ca, RELAY_NAME, relay.certs_dir / "untrusted")


@pytest.mark.parametrize(
    ("impostor", "postfix_says", "evidence"),
    [
        pytest.param(
            _impostor_no_starttls,
            "TLS is required, but was not offered",
            "TLS is required, but was not offered",
            id="no-starttls-auth-in-clear",
        ),
        pytest.param(
            _impostor_other_name,
            "Server certificate not verified",
            "hostname mismatch",
            id="certificate-for-another-name",
        ),
        pytest.param(
            _impostor_untrusted_ca,
            "Server certificate not verified",
            "untrusted issuer",
            id="certificate-from-untrusted-ca",
        ),
    ],
)
def test_impostor_gets_neither_password_nor_mail_and_the_mail_waits_for_the_real_relay(
    on_587, relay, impostor, postfix_says, evidence
):
    mode, cert = impostor(relay)
    smarthost.stop(STATE_DIR, REAL)
    smarthost.start(STATE_DIR, base.ca_dir(), mode=mode, cert=cert, name=IMPOSTOR, listen=relay.address)
    smarthost.clear(STATE_DIR, IMPOSTOR)
    [subject] = unique("impostor")

    send(on_587, [subject])
    [queued] = wait_until_deferred(on_587, 1)

    assert postfix_says in queued["recipients"][0].get("delay_reason", ""), queued
    # Postfix did talk to the impostor (relay= names its address), and stopped before AUTH, for this reason.
    log = smtp_log(on_587).splitlines()
    [deferral] = [line for line in log if line.startswith(f"{queued['queue_id']}: ") and "status=deferred" in line]
    assert f"relay={RELAY_NAME}[{relay.address}]:587" in deferral, deferral
    assert any(evidence in line and relay.address in line for line in log), [
        line for line in log if relay.address in line
    ][-4:]
    assert smarthost.auth_attempts(STATE_DIR, IMPOSTOR) == [], "no credentials may reach an impostor"
    assert smarthost.messages(STATE_DIR, IMPOSTOR) == [], "no mail may reach an impostor"

    start_real(relay)
    flush_and_wait(on_587, [subject])


# --- no mail lost ----------------------------------------------------------------------------------------


def test_twenty_mails_sent_while_the_relay_is_down_all_arrive_after_it_returns(on_587, relay):
    smarthost.stop(STATE_DIR, REAL)
    subjects = unique("relay down", 20)

    send(on_587, subjects)
    wait_until_deferred(on_587, 20)

    start_real(relay)
    flush_and_wait(on_587, subjects)


def test_a_deploy_that_restarts_postfix_loses_no_queued_mail(on_587, relay, keyring_env):
    smarthost.stop(STATE_DIR, REAL)
    subjects = unique("queued over a deploy", 10)
    send(on_587, subjects)
    wait_until_deferred(on_587, 10)
    master_pid = on_587.run("cat /var/spool/postfix/pid/master.pid").stdout.split()
    # inet_protocols changes with ipv6, and that needs a restart of postfix, not a reload.
    ipv6 = on_587.run("postconf -h inet_protocols").stdout.strip() != "all"

    output = configure(keyring_env, on_587, 587, "--data", f"ipv6={str(ipv6).lower()}")

    assert "restart postfix" in output, output
    assert on_587.run("cat /var/spool/postfix/pid/master.pid").stdout.split() != master_pid
    assert len(queue(on_587)) == 10
    start_real(relay)
    flush_and_wait(on_587, subjects)


def test_a_burst_of_500_mails_from_several_users_arrives_complete_and_once(on_587, relay):
    on_587.run("".join(f"id -u {user} >/dev/null 2>&1 || useradd -M {user}\n" for user in BURST_USERS))
    per_user = 500 // len(BURST_USERS)
    subjects = {user: unique(f"burst {user}", per_user) for user in BURST_USERS}

    with ThreadPoolExecutor(len(BURST_USERS)) as pool:
        list(pool.map(lambda user: send(on_587, subjects[user], user=user), BURST_USERS))

    every = [subject for user in BURST_USERS for subject in subjects[user]]
    assert len(set(every)) == 500
    wait_flushing(on_587, every, timeout=300)
    deadline = time.monotonic() + 60
    while queue(on_587) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert queue(on_587) == []
    arrived_once(every, 5)
