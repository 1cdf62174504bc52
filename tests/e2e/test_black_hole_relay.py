"""End to end: a relay that accepts the TCP connection and then never says a word (a black hole).

The black hole is a listener on the workstation rw10 itself (127.0.0.1:587, so it touches no one
else), named blackhole-rw.example.net in the lab's DNS. Deployed against it: the deploy ends in
bounded time (it never talks to the relay), a mail stays queued, connected to the black hole and
waiting for its greeting, and `nullclient verify` reports that the relay never answered, in
bounded time, with the mail in the queue.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from lab import network
from tests.conftest import PROJECT
from tests.e2e.conftest import Workstation, deploy

NAME = "blackhole-rw.example.net"
# Accepts every connection and keeps it open without a byte, as a relay behind a broken firewall does.
BLACK_HOLE = """
import socket, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 587))
server.listen(50)
held = []
while True:
    held.append(server.accept()[0])
"""


@pytest.fixture(scope="module")
def rw10(make_workstations) -> Iterator[Workstation]:
    [made] = make_workstations(["rw10"])
    # In the lab's DNS, as a relay is: posttls-finger (verify) asks DNS only, not /etc/hosts.
    network.add_dns_host(NAME.split(".")[0], NAME, "127.0.0.1")
    try:
        made.run('systemd-run -q --unit rw-black-hole python3 -c "$(cat)"', input=BLACK_HOLE)
        made.run("for i in $(seq 50); do ss -ltnH 'sport = :587' | grep -q . && exit 0; sleep 0.1; done; exit 1")
        yield made
    finally:
        network.remove_dns_host(NAME.split(".")[0])


def test_against_a_black_hole_mail_stays_queued_and_verify_says_the_relay_never_answered(rw10, keyring_env):
    started = time.monotonic()
    run = deploy(keyring_env, [rw10], "--data", f"relay_host={NAME}")
    deploy_seconds = time.monotonic() - started
    assert run.returncode == 0, run.output
    assert deploy_seconds < 120, deploy_seconds

    subject = f"into the black hole {uuid.uuid4().hex[:8]}"
    rw10.run(f"echo lost? | mail -s '{subject}' root")
    time.sleep(5)
    connected = rw10.run("ss -tnH state established 'dport = :587'").stdout
    assert "127.0.0.1:587" in connected, "postfix's smtp client sits connected to the black hole"
    queue = rw10.run("postqueue -j").stdout
    assert queue.count('"queue_id"') == 1, queue

    started = time.monotonic()
    verify = subprocess.run(
        [sys.executable, "-m", "postfix_nullclient.nullclient", "verify", "-i", "lab/inventory.py", "--data",
         f"relay_host={NAME}"],
        cwd=PROJECT,
        env={**keyring_env, "NULLCLIENT_LAB_HOSTS": rw10.name},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    verify_seconds = time.monotonic() - started
    output = verify.stdout + verify.stderr
    print(f"\ndeploy {deploy_seconds:.1f} s, verify {verify_seconds:.1f} s\n{output}")
    assert verify.returncode == 1, output
    assert f"FAIL  relay: [{NAME}]:587: connected, but it never answered" in output, output
    assert "FAIL  queue: 1 message(s) queued" in output, output
    assert verify_seconds < 90, verify_seconds
    # Still there afterwards: nothing was dropped.
    assert rw10.run("postqueue -j").stdout.count('"queue_id"') == 1
