"""End to end on the lab: the machine-readable output of `nullclient verify --json` and `status --json`
says what their text says, with the same exit status, on one workstation, cv1, shared by the tests here.

- A well host: every check ok in the JSON as in the text, exit 0.
- The relay refuses the host's login: the JSON names the failing check and its fix, exit 1.
- main.cf edited by hand: status's JSON says the configuration is not current and how to fix it, exit 1.
- Ctrl-C at rotate's last question, on a terminal: one line says what is left to do, exit 130.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator

import pytest

from lab import smarthost
from lab.config import STATE_DIR
from postfix_nullclient.nullclient.checks import CONFIGURATION, LOGIN, PASSWORD_MAP, QUEUE, RELAY
from tests.e2e.conftest import Workstation, deploy, lab_nullclient
from tests.test_nullclient_cli import on_a_terminal

NAME = "cv1"
INVENTORY = ["-i", "lab/inventory.py"]
CHECK_LINE = re.compile(r"  (ok  |FAIL)  ([^:]+): (.*)$")


def nullclient(env: dict[str, str], *args: str, **options) -> subprocess.CompletedProcess:
    return lab_nullclient(env, NAME, *args, **options)


@pytest.fixture(scope="module")
def ws(make_workstations, keyring_env) -> Iterator[Workstation]:
    (workstation,) = make_workstations([NAME])
    run = deploy(keyring_env, [workstation])
    assert run.returncode == 0, run.output
    yield workstation


def verify_both_ways(env: dict[str, str]) -> tuple[subprocess.CompletedProcess, dict]:
    """verify as text and as JSON, the one host's object checked against the text: the same checks in
    the same order, each with the text's verdict, detail and fix."""
    text = nullclient(env, "verify", *INVENTORY)
    as_json = nullclient(env, "verify", *INVENTORY, "--json")
    print(text.stdout + as_json.stdout)
    assert as_json.returncode == text.returncode, as_json.stdout + as_json.stderr
    (report,) = json.loads(as_json.stdout)
    lines = [CHECK_LINE.match(line) for line in text.stdout.splitlines()]
    from_text = [(found[1] == "ok  ", found[2], found[3]) for found in lines if found]
    from_json = [
        (check["ok"], check["name"], check["detail"] + (f"; fix: {check['fix']}" if check["fix"] else ""))
        for check in report["checks"]
    ]
    assert from_json == from_text
    return as_json, report


def test_verify_json_of_a_well_host_has_every_check_of_the_text_ok_and_exit_0(ws, keyring_env):
    run, report = verify_both_ways(keyring_env)

    assert run.returncode == 0, run.stdout + run.stderr
    assert (report["host"], report["reachable"], report["ok"]) == (ws.fqdn, True, True)
    assert [check["name"] for check in report["checks"]] == [CONFIGURATION, PASSWORD_MAP, RELAY, LOGIN, QUEUE]
    assert all(check["ok"] and check["fix"] == "" for check in report["checks"]), report


def test_verify_json_names_the_login_the_relay_refuses_and_its_fix_exit_1(ws, keyring_env):
    smarthost.set_account(STATE_DIR, ws.smtp_user, f"changed-on-the-relay-{os.urandom(6).hex()}")
    try:
        run, report = verify_both_ways(keyring_env)
    finally:
        smarthost.set_account(STATE_DIR, ws.smtp_user, ws.password)

    assert run.returncode == 1, run.stdout + run.stderr
    assert report["ok"] is False
    failed = [check for check in report["checks"] if not check["ok"]]
    assert [check["name"] for check in failed] == [LOGIN], report
    assert failed[0]["detail"] == (
        f"the relay refuses the login {ws.smtp_user} with the password in the host's map: "
        "535 5.7.8 Authentication credentials invalid"
    )
    assert (
        failed[0]["fix"] == f"give the host and the relay one password: nullclient rotate -i lab/inventory.py {ws.fqdn}"
    )


def test_status_json_says_a_hand_edited_main_cf_is_not_current_and_how_to_fix_it_exit_1(ws, keyring_env):
    ws.run("cp -p /etc/postfix/main.cf /root/main.cf.deployed && echo '# tuned by hand' >> /etc/postfix/main.cf")
    try:
        as_json = nullclient(keyring_env, "status", *INVENTORY, "--json")
        text = nullclient(keyring_env, "status", *INVENTORY)
    finally:
        ws.run("mv /root/main.cf.deployed /etc/postfix/main.cf")

    print(as_json.stdout + text.stdout)
    deploy_command = f"pyinfra lab/inventory.py --limit {ws.fqdn} postfix_nullclient.deploy_null_client"
    assert as_json.returncode == 1 and text.returncode == 1, as_json.stdout + as_json.stderr
    (report,) = json.loads(as_json.stdout)
    assert report["configuration"] == {
        "current": False,
        "detail": f"NOT current: main.cf differs; run the deploy: {deploy_command}",
    }
    assert text.stdout == f"{ws.fqdn}: FAIL  queue 0; " + text.stdout.split("; ", 1)[1]
    assert text.stdout.endswith(f"; configuration NOT current: main.cf differs; run the deploy: {deploy_command}\n")
    assert nullclient(keyring_env, "status", *INVENTORY).returncode == 0, "current again once main.cf is back"


def test_ctrl_c_at_rotates_last_question_says_what_is_left_to_do_exit_130(ws, keyring_env):
    try:
        status, shown = on_a_terminal(
            {**keyring_env, "NULLCLIENT_LAB_HOSTS": NAME},
            "rotate", *INVENTORY, ws.fqdn, keys=[("has the new password (Ctrl-C stops) ", b"\x03")],
        )  # fmt: skip
    finally:  # the host uses the keyring's new password now: the relay gets it, as the operator would do
        ws.password = nullclient(keyring_env, "secret", "show", *INVENTORY, ws.fqdn, "--reveal").stdout.strip()
        smarthost.set_account(STATE_DIR, ws.smtp_user, ws.password)

    print(shown)
    assert status == 130, shown
    assert shown.endswith(
        f"nullclient rotate: interrupted: {ws.fqdn} already uses the new password; once the server has it, run: "
        f"nullclient verify -i lab/inventory.py {ws.fqdn} --test-mail\r\n"
    ), shown
    assert "Traceback" not in shown
