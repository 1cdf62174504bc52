"""End to end: a deploy interrupted in the middle of the apply step.

The workstation rw7 is deployed, then for each case its password is rotated and its myhostname
changed (main.cf, virtual_alias and the password map all change), and a deploy is interrupted while
the apply command is at one step on the host: a hook (a wrapper earlier in root's PATH) marks that
the step is reached and holds it there, and then pyinfra is killed (SIGKILL), stopped with Ctrl-C
(SIGINT), or its connection cut (the host's sshd session killed). Then the step runs on.

What must hold: no staging directory is left, and postfix runs with the complete new configuration
(the files are those of an uninterrupted deploy, which then changes nothing; a mail leaves with the
new password, which is the only one the relay accepts, and the new name). And when the apply
command itself is killed on the host (kill -9, as on a crash), its staging directory with the
previous password stays until the next deploy, which removes it, applies again and converges.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid

import pytest

from lab import smarthost
from lab.config import DOMAIN, FORWARD_TO, STATE_DIR
from postfix_nullclient.model import APPLYING_MARK
from tests.conftest import PROJECT, store_password
from tests.e2e.conftest import NO_CHANGE_OPERATIONS, SERVICE, Workstation, deploy

FILES = "main.cf virtual_alias sender_canonical sasl_passwd sasl_passwd.db"
FIRED = "/run/rw-hook.fired"
RELEASED = "/run/rw-hook.released"
PENDING = APPLYING_MARK
# The first call of the wrapped program in an apply: `touch` stages a file (nothing moved yet),
# `postmap` builds the map's database after the files moved in (in the stage's build directory: the
# second wall's postmap calls, before anything moves, do not count), `systemctl` reloads postfix.
HOOK = """#!/bin/sh
# rw test hook: say that the apply reached this step, and hold it there until released (first call only;
# at most 30 s). A fixed pause was too short for the test's own steps on a busy machine.
case "$*" in {when}) if [ ! -e {fired} ]; then
  echo "$PPID" > {fired}
  i=0; while [ ! -e {released} ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
fi ;; esac
exec {real} "$@"
"""
WHEN = {"touch": "*", "postmap": "*/build/*", "systemctl": "*"}
REAL = {"touch": "/usr/bin/touch", "postmap": "/usr/sbin/postmap", "systemctl": "/usr/bin/systemctl"}


@pytest.fixture(scope="module")
def rw7(make_workstations, keyring_env) -> Workstation:
    [made] = make_workstations(["rw7"])
    run = deploy(keyring_env, [made])
    assert run.returncode == 0, run.output
    return made


def rotate(env: dict[str, str], workstation: Workstation) -> str:
    token = f"rwtoken{uuid.uuid4().hex[:12]}"
    password = f"{token} and more"
    store_password(env, SERVICE, workstation.smtp_user, password)
    smarthost.set_account(STATE_DIR, workstation.smtp_user, password)
    return token


def hook(workstation: Workstation, program: str) -> None:
    directory = "/usr/local/bin" if REAL[program].startswith("/usr/bin") else "/usr/local/sbin"
    script = HOOK.format(fired=FIRED, released=RELEASED, real=REAL[program], when=WHEN[program])
    path = f"{directory}/{program}"
    workstation.run(f"rm -f {FIRED} {RELEASED} && cat > {path} && chmod 755 {path}", input=script)


def unhook(workstation: Workstation) -> None:
    hooks = "/usr/local/bin/touch /usr/local/sbin/postmap /usr/local/bin/systemctl"
    workstation.run(f"touch {RELEASED}; rm -f {hooks} {FIRED}")


def start_deploy(env: dict[str, str], workstation: Workstation, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(PROJECT / ".venv" / "bin" / "pyinfra"), "lab/inventory.py", "deploy.py", "-y", *args],
        cwd=PROJECT,
        env={**env, "NULLCLIENT_LAB_HOSTS": workstation.name, "PYINFRA_PROGRESS": "off"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(workstation: Workstation, test: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while workstation.run(test, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"{workstation.name}: still not true after {seconds} s: {test}"
        time.sleep(0.2)


def sshd_session_of(workstation: Workstation, pid: str) -> str:
    """The sshd process above `pid` on the host: killing it is the connection cut, as the host sees it."""
    script = f"""pid={pid}
while [ "$pid" -gt 1 ]; do
  read -r comm < /proc/$pid/comm
  case "$comm" in sshd*) echo "$pid"; exit 0 ;; esac
  pid=$(awk '/^PPid:/ {{print $2}}' /proc/$pid/status)
done
exit 1"""
    return workstation.run(script).stdout.strip()


def checksums(workstation: Workstation) -> str:
    return workstation.run(f"cd /etc/postfix && sha256sum {FILES}").stdout


def settled(workstation: Workstation) -> None:
    """The apply command has ended on the host: no staging directory and no pending mark."""
    wait_for(workstation, f"! ls -d /etc/postfix/.nullclient.* 2>/dev/null && [ ! -e {PENDING} ]", 30)


def assert_sends_with_the_new_configuration(workstation: Workstation, name: str) -> None:
    subject = f"after the interruption {uuid.uuid4().hex[:10]}"
    workstation.run(f"echo interrupted | mail -s '{subject}' root")
    [message] = smarthost.wait_for_messages(STATE_DIR, 1, 60, lambda m: m["subject"] == subject)
    assert message["auth_user"] == workstation.smtp_user and message["rcpt_tos"] == [FORWARD_TO]
    assert message["helo"] == name, "the running postfix uses the new main.cf"


def stop_pyinfra(process: subprocess.Popen, workstation: Workstation, how: str) -> None:
    if how == "pyinfra killed":
        process.send_signal(signal.SIGKILL)
    elif how == "Ctrl-C":
        process.send_signal(signal.SIGINT)
    elif how == "connection cut":
        pid = workstation.run(f"cat {FIRED}").stdout.strip()
        workstation.run(f"kill -9 {sshd_session_of(workstation, pid)}")
    workstation.run(f"touch {RELEASED}")  # the step runs on
    process.wait(timeout=60)


@pytest.mark.parametrize(
    ("step", "how"),
    [
        ("touch", "pyinfra killed"),
        ("postmap", "Ctrl-C"),
        ("systemctl", "connection cut"),
        ("postmap", "pyinfra killed"),
    ],
)
def test_an_interrupted_deploy_leaves_the_complete_new_configuration_live(rw7, keyring_env, step, how):
    token = rotate(keyring_env, rw7)
    name = f"rw7-{step}-{how.split()[0].lower()}.{DOMAIN}"
    hook(rw7, step)
    try:
        process = start_deploy(keyring_env, rw7, "--data", f"myhostname={name}")
        try:
            wait_for(rw7, f"test -s {FIRED}", 60)
            stop_pyinfra(process, rw7, how)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        settled(rw7)
        interrupted = checksums(rw7)
    finally:
        unhook(rw7)
    assert rw7.run("postfix status", check=False).returncode == 0
    assert token in rw7.run("cat /etc/postfix/sasl_passwd").stdout
    assert_sends_with_the_new_configuration(rw7, name)

    run = deploy(keyring_env, [rw7], "--data", f"myhostname={name}")
    assert run.returncode == 0, run.output
    assert run.output.count(f"[{rw7.fqdn}] No changes") == NO_CHANGE_OPERATIONS, run.output
    assert checksums(rw7) == interrupted, "the interrupted deploy had already put every file in place"


def test_an_apply_killed_on_the_host_is_cleaned_up_and_converges(rw7, keyring_env):
    old_token = rotate(keyring_env, rw7)
    run = deploy(keyring_env, [rw7], "--data", f"myhostname=rw7-before.{DOMAIN}")
    assert run.returncode == 0, run.output
    new_token = rotate(keyring_env, rw7)
    name = f"rw7-after.{DOMAIN}"
    hook(rw7, "postmap")
    try:
        process = start_deploy(keyring_env, rw7, "--data", f"myhostname={name}")
        try:
            wait_for(rw7, f"test -s {FIRED}", 60)
            rw7.run(f"kill -9 $(cat {FIRED}) && touch {RELEASED}")  # the apply, as a crash or an OOM kill ends it
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    finally:
        unhook(rw7)
    # What such a kill leaves: the staging directory, with the previous password, and the pending mark.
    left = rw7.run("ls -d /etc/postfix/.nullclient.*").stdout.split()
    assert len(left) == 1
    assert rw7.run(f"grep -rl {old_token} {left[0]}").stdout.strip(), "the previous password is in it"
    assert rw7.run(f"stat -c %a {left[0]}").stdout.strip() == "700"
    assert rw7.run(f"test -e {PENDING}", check=False).returncode == 0

    run = deploy(keyring_env, [rw7], "--data", f"myhostname={name}")

    assert run.returncode == 0, run.output
    assert "restart postfix" in run.output, run.output
    assert rw7.run("ls -d /etc/postfix/.nullclient.* 2>/dev/null", check=False).stdout == ""
    assert rw7.run(f"test -e {PENDING}", check=False).returncode != 0
    holders = rw7.run(f"grep -rl {old_token} /etc /var/lib/postfix-nullclient /tmp /run", check=False).stdout
    assert holders == "", f"the previous password is still in {holders}"
    holders = rw7.run(f"grep -rl {new_token} /etc /var/lib/postfix-nullclient /tmp /run", check=False).stdout.split()
    assert set(holders) <= {"/etc/postfix/sasl_passwd", "/etc/postfix/sasl_passwd.db"}, holders
    assert_sends_with_the_new_configuration(rw7, name)
    again = deploy(keyring_env, [rw7], "--data", f"myhostname={name}")
    assert again.output.count(f"[{rw7.fqdn}] No changes") == NO_CHANGE_OPERATIONS, again.output
