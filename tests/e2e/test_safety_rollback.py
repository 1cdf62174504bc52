"""End to end: a bad change never goes live, and one host's failure does not stop the others.

Two workstations, sf4 and sf5, first deployed as they should be. Then changes that fail on the host
itself, after the new files are written: a CA bundle that does not exist there (postfix check does
not look at it; the apply command does), and a postfix that refuses to start with the new files.
"""

from __future__ import annotations

import uuid

import pytest

from lab import network, smarthost
from lab.config import DOMAIN, FORWARD_TO, NETWORK_PREFIX, STATE_DIR
from tests.conftest import store_password
from tests.e2e.conftest import SERVICE, DeployRun, Workstation, deploy, lab_host_data, run_deploy, write_inventory

FILES = "main.cf virtual_alias sender_canonical sasl_passwd sasl_passwd.db"
UNREACHABLE = f"gone-sf.{DOMAIN}"
UNREACHABLE_ADDRESS = f"{NETWORK_PREFIX}.250"  # on the lab bridge, and no host has it (checked below)
# Makes postfix fail to start with one myhostname only: a start failure that postfix check cannot see.
REFUSE_TO_START = """[Service]
ExecStartPre=/bin/sh -c '! grep -q "^myhostname = refused-sf5" /etc/postfix/main.cf'
"""
DROP_IN = "/etc/systemd/system/postfix@-.service.d/sf-refuse.conf"


@pytest.fixture(scope="module")
def pair(make_workstations, keyring_env) -> list[Workstation]:
    made = make_workstations(["sf4", "sf5"])
    run = deploy(keyring_env, made)
    assert run.returncode == 0, run.output
    return made


def checksums(workstation: Workstation) -> str:
    return workstation.run(f"cd /etc/postfix && sha256sum {FILES}").stdout


def master_pid(workstation: Workstation) -> str:
    return workstation.run("cat /var/spool/postfix/pid/master.pid").stdout.strip()


def assert_still_sends_mail(workstation: Workstation) -> None:
    subject = f"still running {workstation.name} {uuid.uuid4().hex[:10]}"
    workstation.run(f"echo still running | mail -s '{subject}' root")
    [message] = smarthost.wait_for_messages(STATE_DIR, 1, 60, lambda m: m["subject"] == subject)
    assert message["auth_user"] == workstation.smtp_user and message["rcpt_tos"] == [FORWARD_TO]


def no_staging_left(workstation: Workstation) -> bool:
    return workstation.run("ls -A /etc/postfix").stdout.count(".nullclient.") == 0


def test_a_ca_file_missing_on_the_host_is_refused_and_the_previous_files_stay_live(pair, keyring_env):
    sf4 = pair[0]
    before, pid = checksums(sf4), master_pid(sf4)

    run = deploy(keyring_env, [sf4], "--data", "ca_file=/etc/ssl/certs/sf-missing.pem")

    assert run.returncode != 0
    assert "the CA bundle /etc/ssl/certs/sf-missing.pem (smtp_tls_CAfile) does not exist on this host" in run.output
    assert "the previous configuration was restored and stays live" in run.output
    assert checksums(sf4) == before
    assert master_pid(sf4) == pid, "postfix was neither reloaded nor restarted"
    assert no_staging_left(sf4)
    assert_still_sends_mail(sf4)


def deploy_inventory(env: dict[str, str], inventory, *args: str) -> DeployRun:
    return run_deploy(env, str(inventory), *args)


@pytest.fixture
def refusing_start(pair):
    sf5 = pair[1]
    sf5.run(f"mkdir -p $(dirname {DROP_IN}) && cat > {DROP_IN} && systemctl daemon-reload", input=REFUSE_TO_START)
    try:
        yield sf5
    finally:
        sf5.run(f"rm -f {DROP_IN} && systemctl daemon-reload", check=False)


@pytest.fixture
def unreachable(keyring_env):
    # Nothing may answer there, or this test would prove nothing about an unreachable host.
    assert not network.port_open(UNREACHABLE_ADDRESS, 22, timeout=2), f"{UNREACHABLE_ADDRESS} answers on ssh"
    store_password(keyring_env, SERVICE, f"gone-sf@{DOMAIN}", "unused-password")
    try:
        yield UNREACHABLE
    finally:
        store_password(keyring_env, SERVICE, f"gone-sf@{DOMAIN}", None)


def test_a_failed_start_and_an_unreachable_host_do_not_stop_the_others(
    pair, refusing_start, unreachable, keyring_env, tmp_path
):
    sf4, sf5 = pair
    before, old_name = checksums(sf5), sf5.run("postconf -h myhostname").stdout.strip()
    # A change of inet_protocols makes the apply command restart postfix, which then refuses.
    ipv6 = sf5.run("postconf -h inet_protocols").stdout.strip() != "all"
    inventory = tmp_path / "inventory.py"
    write_inventory(
        inventory,
        [
            (sf4.fqdn, lab_host_data(sf4, myhostname=f"renamed-sf4.{DOMAIN}")),
            (sf5.fqdn, lab_host_data(sf5, myhostname=f"refused-sf5.{DOMAIN}", ipv6=ipv6)),
            (unreachable, lab_host_data(sf4, ssh_hostname=UNREACHABLE_ADDRESS, ssh_connect_retries=0)),
        ],
    )

    run = deploy_inventory(keyring_env, inventory)

    assert run.returncode != 0, run.output
    # The good host was deployed.
    assert sf4.run("postconf -h myhostname").stdout.strip() == f"renamed-sf4.{DOMAIN}"
    # The host that failed half-way is back on its previous files, and postfix runs with them.
    assert "postfix did not start with the new configuration; the previous one was restored" in run.output
    assert checksums(sf5) == before
    assert sf5.run("postconf -h myhostname").stdout.strip() == old_name
    assert sf5.run("postfix status", check=False).returncode == 0
    assert no_staging_left(sf5)
    assert_still_sends_mail(sf5)
    # The run ends with a summary of which hosts failed, and why; the good host is not in it.
    summary = run.output[run.output.rindex("host(s) failed; the others went on:") :]
    assert "--> 2 host(s) failed" in run.output
    assert f"{unreachable}: unreachable: pyinfra could not connect" in summary, summary
    assert f"{sf5.fqdn}: Configure Postfix failed" in summary, summary
    assert "postfix did not start with the new configuration; the previous one was restored" in summary
    assert sf4.fqdn not in summary
