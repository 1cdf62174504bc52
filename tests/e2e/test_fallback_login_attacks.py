"""End to end on the lab: `nullclient verify`'s login on the fallback relays, attacked.

One workstation, fa1, relayed by relay-fa1 (the lab's smarthost, its own address and certificate),
with relay-fa3 (another such smarthost) or relay-fa2 as fallback relay. relay-fa2 is this module's
own SMTP server, in this process, with a certificate of the lab's CA for its name: it speaks as it is
told (HOSTILE_MODES), so it can be a relay that never answers, or one whose lines imitate a success,
hold terminal escapes, answer AUTH with a temporary failure, or echo the AUTH line back.
"""

from __future__ import annotations

import base64
import re
import shutil
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import base, network, smarthost
from lab.ca import issue_certificate
from lab.config import DOMAIN, STATE_DIR
from tests.e2e.conftest import Workstation, lab_host_data, nullclient, run_deploy, write_inventory

NAME = "fa1"
RELAY, HOSTILE, SPARE = "relay-fa1", "relay-fa2", "relay-fa3"
NOWHERE = f"relay-fa9-nowhere.{DOMAIN}"  # never in the lab's DNS


class HostileRelay(socketserver.ThreadingTCPServer):
    """An SMTP server on port 587 with STARTTLS and a real certificate, which says what `mode` wants."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: str, cert: tuple[Path, Path]) -> None:
        self.mode = "fake"
        self.auth_lines: list[bytes] = []
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(*cert)
        super().__init__((address, 587), HostileSession)


# What relay-fa2 says, by mode: its greeting, its EHLO lines after TLS, its answer to AUTH.
FAKE_SUCCESS = "235 2.7.0 Authentication successful"
HOSTILE_MODES = {
    # A greeting and EHLO lines that imitate AUTH's success; AUTH itself is refused.
    "fake": (
        f"220 relay-fa2 ESMTP {FAKE_SUCCESS}",
        ["250-relay-fa2 " + FAKE_SUCCESS, "235-2.7.0 Authentication successful", "250-AUTH PLAIN LOGIN", FAKE_SUCCESS],
        "535 5.7.8 Authentication credentials invalid",
    ),
    # Terminal escapes in every line it says.
    "escapes": (
        "220 relay-fa2 \x1b]0;owned\x07 ESMTP",
        ["250-relay-fa2 \x1b[2J\x1b[H", "250-AUTH PLAIN LOGIN", "250 \x1b[1A\x1b[2K8BITMIME"],
        "535 5.7.8 \x1b[1A\x1b[2K\x1b[32mok\x1b[0m \x07bad",
    ),
    # A temporary failure of AUTH.
    "temporary": (
        "220 relay-fa2 ESMTP",
        ["250-relay-fa2", "250-AUTH PLAIN LOGIN", "250 8BITMIME"],
        "454 4.7.0 Temporary authentication failure",
    ),
    # AUTH refused with the command echoed, as some servers do with a command they do not take.
    "echo": ("220 relay-fa2 ESMTP", ["250-relay-fa2", "250-AUTH PLAIN LOGIN", "250 8BITMIME"], "500 5.5.1 echo"),
}


class HostileSession(socketserver.StreamRequestHandler):
    server: HostileRelay

    def handle(self) -> None:
        relay, sock = self.server, self.request
        sock.settimeout(60)
        if relay.mode == "silent":  # accepts TCP, says nothing, until the client goes
            try:
                while sock.recv(1024):
                    pass
            except OSError:
                pass
            return
        greeting, ehlo, auth = HOSTILE_MODES[relay.mode]
        reader = sock.makefile("rb")

        def say(*lines: str) -> None:
            sock.sendall(b"".join(line.encode() + b"\r\n" for line in lines))

        say(greeting)
        tls = False
        while line := reader.readline():
            command = line.strip().upper()
            if command.startswith((b"EHLO", b"HELO")):
                say(*ehlo) if tls else say("250-relay-fa2", "250-STARTTLS", "250 8BITMIME")
            elif command == b"STARTTLS" and not tls:
                say("220 2.0.0 Ready to start TLS")
                sock = relay.context.wrap_socket(sock, server_side=True)
                reader, tls = sock.makefile("rb"), True
            elif command.startswith(b"AUTH"):
                relay.auth_lines.append(line)
                echoed = line.decode(errors="replace").strip()
                say(f"{auth}: {echoed}" if relay.mode == "echo" else auth)
            elif command == b"QUIT":
                say("221 2.0.0 Bye")
                return
            else:
                say("502 5.5.2 Error: command not recognized")


@pytest.fixture(scope="module")
def fa1(make_workstations) -> Workstation:
    (ws,) = make_workstations([NAME])
    return ws


@pytest.fixture(scope="module")
def relays(fa1, tmp_path_factory) -> Iterator[dict]:
    """relay-fa1 and relay-fa3 (smarthosts with fa1's account), relay-fa2 (HostileRelay); all gone afterwards."""
    certs_dir = tmp_path_factory.mktemp("fa-relays")
    addresses: dict[str, str] = {}
    started: list[str] = []
    hostile: HostileRelay | None = None
    try:
        for name in (RELAY, SPARE, HOSTILE):
            addresses[name] = network.claim_address()
            network.add_dns_host(name, f"{name}.{DOMAIN}", addresses[name])
            cert = issue_certificate(base.ca_dir(), f"{name}.{DOMAIN}", certs_dir / name)
            if name == HOSTILE:
                hostile = HostileRelay(addresses[name], cert)
                threading.Thread(target=hostile.serve_forever, daemon=True).start()
            else:
                started.append(name)
                smarthost.start(STATE_DIR, base.ca_dir(), cert=cert, name=name, listen=addresses[name])
                smarthost.set_account(STATE_DIR, fa1.smtp_user, fa1.password, name=name)
        yield {"addresses": addresses, "hostile": hostile}
    finally:
        if hostile is not None:
            hostile.shutdown()
            hostile.server_close()
        for name in started:
            smarthost.stop(STATE_DIR, name)
            shutil.rmtree(STATE_DIR / name, ignore_errors=True)
        for name, address in addresses.items():
            network.remove_dns_host(name)
            network.release_address(address)


def deploy_with(fa1: Workstation, keyring_env: dict, tmp_path: Path, *fallbacks: str, **extra: object) -> Path:
    data = lab_host_data(fa1, relay_host=f"{RELAY}.{DOMAIN}", fallback_relays=list(fallbacks), **extra)
    inventory = write_inventory(tmp_path / "inventory.py", [(fa1.fqdn, data)])
    run = run_deploy(keyring_env, str(inventory))
    assert run.returncode == 0, run.output
    return inventory


def line_of(output: str, check: str) -> str:
    found = [line for line in output.splitlines() if check in line]
    assert len(found) == 1, output
    return found[0].strip()


def secrets_of(ws: Workstation) -> list[str]:
    """The password, and the AUTH PLAIN line's base64 (whole, and its part that holds the password)."""
    plain = base64.b64encode(f"\0{ws.smtp_user}\0{ws.password}".encode()).decode()
    return [ws.password, plain, plain[len(plain) // 2 :], base64.b64encode(ws.password.encode()).decode()]


SNOOP = r"""
while [ ! -e /tmp/fa-stop ]; do
  for p in /proc/[0-9]*; do
    cat "$p/cmdline" "$p/environ" 2>/dev/null | tr '\0' ' '; echo
  done
  ls -la /tmp /var/tmp /dev/shm 2>/dev/null
  cat /tmp/* /var/tmp/* /dev/shm/* 2>/dev/null
done >> /home/fa-snoop/seen 2>&1
"""


def test_a_local_user_polling_proc_and_tmp_sees_no_password_or_base64_during_verify(fa1, relays, keyring_env, tmp_path):
    inventory = deploy_with(fa1, keyring_env, tmp_path, f"{SPARE}.{DOMAIN}")
    fa1.run("id fa-snoop >/dev/null 2>&1 || useradd -m -s /bin/sh fa-snoop; rm -f /tmp/fa-stop /home/fa-snoop/seen")
    fa1.run("cat > /home/fa-snoop/snoop.sh && chown -R fa-snoop /home/fa-snoop", input=SNOOP)
    fa1.run("systemd-run -q --uid=fa-snoop --unit=fa-snoop sh /home/fa-snoop/snoop.sh")
    try:
        verifies = [nullclient(keyring_env, "verify", "-i", str(inventory)) for _ in range(3)]
    finally:
        fa1.run("touch /tmp/fa-stop; sleep 2; systemctl stop fa-snoop 2>/dev/null; rm -f /tmp/fa-stop", check=False)
    seen = fa1.run("cat /home/fa-snoop/seen", timeout=120).stdout
    fa1.run("userdel -r fa-snoop", check=False)

    print(verifies[-1].stdout, f"the local user read {len(seen)} characters")
    for verify in verifies:
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert re.search(rf"ok +fallback login \[{SPARE}\.{DOMAIN}\]:587: the relay accepts", verify.stdout)
    assert "openssl s_client" in seen and "posttls-finger" in seen  # it did watch the logins
    for secret in secrets_of(fa1):
        assert secret not in seen
        for verify in verifies:
            assert secret not in verify.stdout + verify.stderr


def test_a_fallback_relay_that_never_answers_ends_verify_in_bounded_time_and_says_so(
    fa1, relays, keyring_env, tmp_path
):
    relays["hostile"].mode = "silent"
    inventory = deploy_with(fa1, keyring_env, tmp_path, f"{HOSTILE}.{DOMAIN}")
    start = time.monotonic()
    verify = nullclient(keyring_env, "verify", "-i", str(inventory))
    took = time.monotonic() - start

    print(verify.stdout, f"verify took {took:.0f} s")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert took < 120
    login = line_of(verify.stdout, f"fallback login [{HOSTILE}.{DOMAIN}]:587")
    assert login.startswith("FAIL") and "not tried" in login and "15 s" in login, login
    assert re.search(r"ok +login: the relay accepts", verify.stdout)


def test_a_fallback_relay_that_does_not_resolve_is_reported_and_nothing_crashes(fa1, relays, keyring_env, tmp_path):
    inventory = deploy_with(fa1, keyring_env, tmp_path, NOWHERE)
    verify = nullclient(keyring_env, "verify", "-i", str(inventory))

    print(verify.stdout, verify.stderr)
    assert verify.returncode == 1, verify.stdout + verify.stderr
    login = line_of(verify.stdout, f"fallback login [{NOWHERE}]:587")
    assert login.startswith("FAIL") and "not tried" in login, login
    relay = line_of(verify.stdout, f"fallback relay [{NOWHERE}]:587")
    assert relay.startswith("FAIL") and f"fix: correct fallback_relays if [{NOWHERE}]:587 is wrong" in relay, relay
    assert "Traceback" not in verify.stdout + verify.stderr


def test_lines_of_a_fallback_relay_that_imitate_a_success_do_not_make_its_login_ok(fa1, relays, keyring_env, tmp_path):
    relays["hostile"].mode = "fake"
    inventory = deploy_with(fa1, keyring_env, tmp_path, f"{HOSTILE}.{DOMAIN}")
    verify = nullclient(keyring_env, "verify", "-i", str(inventory))

    print(verify.stdout)
    assert relays["hostile"].auth_lines, "openssl never sent AUTH to relay-fa2"
    login = line_of(verify.stdout, f"fallback login [{HOSTILE}.{DOMAIN}]:587")
    assert login.startswith("FAIL"), login
    assert verify.returncode == 1


def test_terminal_escapes_of_a_fallback_relay_are_never_printed_raw(fa1, relays, keyring_env, tmp_path):
    relays["hostile"].mode = "escapes"
    inventory = deploy_with(fa1, keyring_env, tmp_path, f"{HOSTILE}.{DOMAIN}")
    verify = nullclient(keyring_env, "verify", "-i", str(inventory))
    as_json = nullclient(keyring_env, "verify", "--json", "-i", str(inventory))

    print(verify.stdout)
    login = line_of(verify.stdout, f"fallback login [{HOSTILE}.{DOMAIN}]:587")
    assert login.startswith("FAIL") and "\\x1b[1A" in login, login
    for output in (verify.stdout + verify.stderr, as_json.stdout + as_json.stderr):
        assert "\x1b" not in output and "\x07" not in output


def test_a_temporary_auth_failure_of_a_fallback_relay_does_not_say_rotate(fa1, relays, keyring_env, tmp_path):
    relays["hostile"].mode = "temporary"
    inventory = deploy_with(fa1, keyring_env, tmp_path, f"{HOSTILE}.{DOMAIN}")
    verify = nullclient(keyring_env, "verify", "-i", str(inventory))

    print(verify.stdout)
    login = line_of(verify.stdout, f"fallback login [{HOSTILE}.{DOMAIN}]:587")
    assert login.startswith("FAIL") and "454 4.7.0" in login, login
    after = verify.stdout.split(login, 1)[1].split("\n", 2)[1]  # the fix, on the line after
    assert "rotate" not in login + after, after


def test_a_fallback_relay_that_echoes_the_auth_line_does_not_get_the_base64_into_verify_output(
    fa1, relays, keyring_env, tmp_path
):
    relays["hostile"].mode = "echo"
    inventory = deploy_with(fa1, keyring_env, tmp_path, f"{HOSTILE}.{DOMAIN}")
    verify = nullclient(keyring_env, "verify", "-i", str(inventory))
    as_json = nullclient(keyring_env, "verify", "--json", "-i", str(inventory))

    print(verify.stdout)
    assert relays["hostile"].auth_lines, "openssl never sent AUTH to relay-fa2"
    line_of(verify.stdout, f"fallback login [{HOSTILE}.{DOMAIN}]:587")
    for secret in secrets_of(fa1):
        assert secret not in verify.stdout + verify.stderr + as_json.stdout + as_json.stderr


def test_without_openssl_both_logins_say_why_and_verify_does_not_crash(fa1, relays, keyring_env, tmp_path):
    inventory = deploy_with(fa1, keyring_env, tmp_path, f"{SPARE}.{DOMAIN}")
    fa1.run("mv /usr/bin/openssl /usr/bin/openssl.fa-away")
    try:
        verify = nullclient(keyring_env, "verify", "-i", str(inventory))
    finally:
        fa1.run("mv /usr/bin/openssl.fa-away /usr/bin/openssl")

    print(verify.stdout, verify.stderr)
    assert verify.returncode == 1
    for check in ("login:", f"fallback login [{SPARE}.{DOMAIN}]:587"):
        line = line_of(verify.stdout, check)
        assert line.startswith("FAIL") and "not tried: openssl or base64 is not installed" in line, line
    assert "Traceback" not in verify.stdout + verify.stderr


def test_a_password_map_without_the_fallbacks_entry_fails_its_map_and_login_lines(fa1, relays, keyring_env, tmp_path):
    inventory = deploy_with(fa1, keyring_env, tmp_path, f"{SPARE}.{DOMAIN}")
    fa1.run(f"sed -i '/{SPARE}/d' /etc/postfix/sasl_passwd && postmap /etc/postfix/sasl_passwd")
    try:
        verify = nullclient(keyring_env, "verify", "-i", str(inventory))
    finally:
        deploy_with(fa1, keyring_env, tmp_path, f"{SPARE}.{DOMAIN}")

    print(verify.stdout)
    assert verify.returncode == 1
    key = f"[{SPARE}.{DOMAIN}]:587"
    assert line_of(verify.stdout, f"fallback password map {key}").startswith("FAIL")
    login = line_of(verify.stdout, f"fallback login {key}")
    assert login.startswith("FAIL") and "the password map has no entry" in login, login
    assert re.search(r"ok +login: the relay accepts", verify.stdout)


@pytest.mark.parametrize(
    "fallbacks",
    [
        [f"{RELAY.upper()}.{DOMAIN}"],  # the relay itself, in capitals
        [f"{SPARE}.{DOMAIN}.", f"{RELAY}.{DOMAIN}"],  # a trailing dot; the relay again
        [f"{SPARE}.{DOMAIN}:465"],  # implicit TLS with a STARTTLS relay_port
        [f"{SPARE}.{DOMAIN}", f"{SPARE.upper()}.{DOMAIN}:587"],  # the same endpoint twice
    ],
)
def test_fallback_relays_a_careless_admin_writes_are_refused_by_the_deploy_and_verify(
    fa1, relays, keyring_env, tmp_path, fallbacks
):
    data = lab_host_data(fa1, relay_host=f"{RELAY}.{DOMAIN}", fallback_relays=fallbacks)
    inventory = write_inventory(tmp_path / "inventory.py", [(fa1.fqdn, data)])
    run = run_deploy(keyring_env, str(inventory))
    verify = nullclient(keyring_env, "verify", "-i", str(inventory))

    print(run.output[-2000:], verify.stdout, verify.stderr)
    assert run.returncode != 0 and "fallback_relays" in run.output
    assert verify.returncode != 0 and "fallback_relays" in verify.stdout + verify.stderr
    assert "Traceback" not in run.output + verify.stdout + verify.stderr


def test_many_fallback_relays_each_get_their_own_login_line(fa1, relays, keyring_env, tmp_path):
    many = [f"{SPARE}.{DOMAIN}", f"{HOSTILE}.{DOMAIN}", NOWHERE, f"{SPARE.upper()}-x.{DOMAIN}"]
    relays["hostile"].mode = "temporary"
    inventory = deploy_with(fa1, keyring_env, tmp_path, *many)
    verify = nullclient(keyring_env, "verify", "-i", str(inventory))

    print(verify.stdout)
    assert verify.returncode == 1
    assert line_of(verify.stdout, f"fallback login [{SPARE}.{DOMAIN}]:587").startswith("ok")
    for failing in many[1:]:
        assert line_of(verify.stdout, f"fallback login [{failing}]:587").startswith("FAIL")
