"""The demo: deploy one lab workstation with the project's own deploy.py, send a mail, show it arrive."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lab import hosts, smarthost
from lab.config import DOMAIN, FORWARD_TO, STATE_DIR
from lab.keyring import secret_service
from postfix_nullclient.nullclient.passwords import generate_password

PROJECT = Path(__file__).resolve().parent.parent
KEYRING_SERVICE = "postfix-nullclient"  # the default keyring_service (postfix_nullclient.DEFAULTS)
KEYRING_HOME = STATE_DIR / "keyring"


def keyring_call(env: dict[str, str], action: str, user: str, password: str = "") -> str:
    """get or set a keyring entry through the keyring package, in the lab's Secret Service session."""
    script = (
        "import keyring, sys\n"
        "action, service, user = sys.argv[1:4]\n"
        "if action == 'set': keyring.set_password(service, user, sys.stdin.read())\n"
        "else: sys.stdout.write(keyring.get_password(service, user) or '')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, action, KEYRING_SERVICE, user],
        input=password,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def ensure_password(env: dict[str, str], user: str) -> str:
    """The keyring's password for `user`, generated and stored first if there is none."""
    password = keyring_call(env, "get", user)
    if not password:
        password = generate_password()
        keyring_call(env, "set", user, password)
        print(f"stored a new password in the lab keyring: service {KEYRING_SERVICE!r}, user {user!r}")
    return password


def deploy(env: dict[str, str], names: list[str], *extra: str) -> int:
    command = [str(Path(sys.executable).with_name("pyinfra")), "lab/inventory.py", "deploy.py", "-y", *extra]
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, cwd=PROJECT, env={**env, "NULLCLIENT_LAB_HOSTS": ",".join(names)}).returncode


def main() -> int:
    print("== building the lab (first time: a few minutes for the base image)", flush=True)
    workstation = hosts.up(1)[0]
    smtp_user = f"{workstation.name}@{DOMAIN}"

    with secret_service(KEYRING_HOME) as keyring_env:
        env = {**os.environ, **keyring_env}
        password = ensure_password(env, smtp_user)
        # The account on the mail server, as the owner would create it.
        smarthost.set_account(STATE_DIR, smtp_user, password)

        print(f"\n== deploying {workstation.fqdn} with the project's deploy.py", flush=True)
        if deploy(env, [workstation.name]) != 0:
            print("the deploy failed: see its output above", file=sys.stderr)
            return 1

    subject = f"null-client demo {time.strftime('%H:%M:%S')}"
    print(f"\n== on {workstation.fqdn}: echo ... | mail -s {subject!r} root", flush=True)
    hosts.ssh(workstation, f"echo 'Hello from the root account of {workstation.fqdn}.' | mail -s '{subject}' root")

    message = smarthost.wait_for_messages(STATE_DIR, 1, timeout=60, predicate=lambda m: m.get("subject") == subject)[-1]
    print(f"\n== the smarthost received it (as {FORWARD_TO} will):")
    print(f"  envelope sender: {message['mail_from']}")
    print(f"  recipients:      {', '.join(message['rcpt_tos'])}")
    print(f"  AUTH user:       {message['auth_user']}")
    print(f"  TLS:             {message['tls_version']} {message['tls_cipher']}")
    print(f"  From: {message['from']}\n  To: {message['to']}\n  Subject: {message['subject']}")
    print("\nThe lab stays up: `python -m lab status`, `python -m lab shell`, `python -m lab down`.")
    return 0
