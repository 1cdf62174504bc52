"""The NullClientHost fact's shell script, run by a real shell on this machine, read back by process()."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from postfix_nullclient.facts import NullClientHost
from postfix_nullclient.model import APPLYING_MARK, CONFIG_DIR

MAIN_CF = "# a comment\nrelayhost = [mail.example.net]:587\n\twith a tab, ünïcode and a trailing newline\n"


def look(conf: Path, packages: list[str], path: str | None = None, stdin: str = "") -> tuple[list[str], object]:
    """Run the fact's command with `conf` in place of /etc/postfix, `stdin` the deploy's digests of the
    secret files; return its lines and what process() made."""
    command = NullClientHost().command(packages=packages)
    assert f"conf={CONFIG_DIR}\n" in command
    command = command.replace(f"conf={CONFIG_DIR}\n", f"conf={conf}\n")
    env = {**os.environ, "PATH": path} if path else None
    out = subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, text=True, check=True, env=env)
    lines = out.stdout.splitlines()
    return lines, NullClientHost().process(lines)


def test_contents_hashes_modes_and_map_freshness(tmp_path):
    (tmp_path / "main.cf").write_text(MAIN_CF)
    secret = tmp_path / "sasl_passwd"
    secret.write_text("[mail.example.net]:587 torres@example.net:pass word\n")
    secret.chmod(0o600)
    database = tmp_path / "sasl_passwd.db"  # no postconf here: the default suffix, .db
    database.write_bytes(b"map")
    database.chmod(0o640)
    os.utime(secret, (1_000_000, 1_000_000))  # the map is older than its database: fresh

    digest = hashlib.sha256(secret.read_bytes()).hexdigest()

    lines, found = look(tmp_path, ["dpkg", "no-such-package-here"], stdin=f"sasl_passwd {digest}\n")

    assert found.contents == {"main.cf": MAIN_CF}  # virtual_alias is absent, so not reported
    assert found.secrets_same == {"sasl_passwd"}
    assert not any(digest in line for line in lines), "the digest never leaves the host"
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
    assert found.modes == {"sasl_passwd": f"{user}:{group}:600", "sasl_passwd.db": f"{user}:{group}:640"}
    assert found.fresh_maps == {"sasl_passwd": f"{user}:{group}:640"}
    assert not any("pass word" in line for line in lines)  # the secret map is hashed, never read back
    assert found.os_id != "unknown" and found.fqdn
    inet6 = Path("/proc/net/if_inet6")
    assert found.ipv6 == (inet6.exists() and any(line.split()[-1] == "lo" for line in inet6.read_text().splitlines()))
    # This machine is a Debian: dpkg is installed, an unknown package is not.
    assert found.packages == {"dpkg"}


@pytest.mark.parametrize("stdin", ["", "sasl_passwd " + "0" * 64 + "\n", "main.cf x\nsasl_passwd\n", "../x y\n"])
def test_a_secret_map_is_the_same_only_for_its_own_digest_and_the_digest_never_leaves(tmp_path, stdin):
    secret = tmp_path / "sasl_passwd"
    secret.write_text("[mail.example.net]:587 torres@example.net:pass word\n")
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()

    lines, found = look(tmp_path, ["dpkg"], stdin=stdin)

    assert found.secrets_same == set()
    assert not any(digest in line for line in lines)


def test_a_map_newer_than_its_database_is_stale(tmp_path):
    secret = tmp_path / "sasl_passwd"
    secret.write_text("x\n")
    database = tmp_path / "sasl_passwd.db"
    database.write_bytes(b"map")
    os.utime(database, (1_000_000, 1_000_000))

    _, found = look(tmp_path, ["dpkg"])

    assert found.fresh_maps == {}
    assert not found.running  # no postfix here


def test_process_reads_each_package_manager_and_the_service_lines():
    found = NullClientHost().process(
        [
            "dpkg ii  postfix",
            "dpkg un  mailx",
            "dpkg rc  bsd-mailx",
            "package cyrus-sasl-plain",
            "secret_same sasl_passwd",
            "b" * 64 + "  /usr/local/lib/postfix-nullclient/watchdog",
            "map_fresh sasl_passwd sasl_passwd.lmdb",
            "mode sasl_passwd.lmdb root:root:600",
            "running yes",
            "enabled yes",
            "init openrc",
            "content main.cf " + base64.b64encode(b"x = 1\n").decode(),
        ]
    )
    assert found.packages == {"postfix", "cyrus-sasl-plain"}
    assert found.secrets_same == {"sasl_passwd"}
    assert found.sha256 == {"/usr/local/lib/postfix-nullclient/watchdog": "b" * 64}
    assert found.fresh_maps == {"sasl_passwd": "root:root:600"}
    assert found.running and found.enabled and found.init == "openrc"
    assert found.contents == {"main.cf": "x = 1\n"}


def fake_postfix(tmp_path: Path, database_type: str = "hash") -> tuple[Path, str]:
    """A queue directory and a PATH whose `postconf` answers like Postfix's for it."""
    queue = tmp_path / "spool"
    (queue / "pid").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    postconf = bin_dir / "postconf"
    postconf.write_text(f"#!/bin/sh\nprintf '%s\\n' {database_type} {queue}\n")
    postconf.chmod(0o755)
    return queue, f"{bin_dir}:{os.environ['PATH']}"


@pytest.fixture
def process_called_master(tmp_path):
    """A live process whose name (/proc/PID/comm) is master, as Postfix's master daemon's is."""
    program = tmp_path / "master"
    shutil.copy("/bin/sleep", program)
    process = subprocess.Popen([str(program), "60"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def test_running_means_the_pid_file_names_a_live_master(tmp_path, process_called_master):
    queue, path = fake_postfix(tmp_path, "lmdb")
    (tmp_path / "sasl_passwd").write_text("x\n")
    (tmp_path / "sasl_passwd.lmdb").write_bytes(b"map")
    os.utime(tmp_path / "sasl_passwd", (1_000_000, 1_000_000))
    (queue / "pid" / "master.pid").write_text(f"{process_called_master:>10}\n")  # as Postfix writes it

    _, found = look(tmp_path, ["dpkg"], path)

    assert found.running
    assert found.database_type == "lmdb"
    assert set(found.fresh_maps) == {"sasl_passwd"}  # the database of Postfix's type, .lmdb


@pytest.mark.parametrize("pid_file", ["absent", "dead", "another", "garbage"])
def test_not_running_when_the_pid_file_is_missing_stale_or_names_another_process(tmp_path, pid_file):
    queue, path = fake_postfix(tmp_path)
    if pid_file != "absent":
        dead = subprocess.Popen(["true"])
        dead.wait()
        pid = {"dead": dead.pid, "another": os.getpid(), "garbage": "12x"}[pid_file]
        (queue / "pid" / "master.pid").write_text(f"{pid:>10}\n")

    _, found = look(tmp_path, ["dpkg"], path)

    assert not found.running


def test_queued_mail_of_other_systems_and_an_interrupted_apply(tmp_path):
    spool = tmp_path / "input"
    spool.mkdir()
    for name in ("1a-H", "1a-D", "2b-H"):
        (spool / name).write_text("x")
    held = tmp_path / "held"
    held.mkdir()
    (held / "nullmailer-1").write_text("x")
    pending = tmp_path / "applying"
    command = NullClientHost().command(
        packages=["dpkg"],
        queues={"exim4": [f"{spool}/*-H", f"{spool}/*/*-H"], "held": [f"{held}/*"], "dma": [f"{tmp_path}/none/Q*"]},
    )
    assert f"[ -e {APPLYING_MARK} ]" in command
    command = command.replace(f"[ -e {APPLYING_MARK} ]", f"[ -e {pending} ]")
    found = NullClientHost().process(
        subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout.splitlines()
    )
    assert found.queued == {"exim4": 2, "held": 1}  # an empty queue is not reported
    assert not found.interrupted
    pending.write_text("")
    found = NullClientHost().process(
        subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout.splitlines()
    )
    assert found.interrupted


def test_a_secret_stdin_is_sent_whole_and_shown_masked():
    """pyinfra prints a fact's arguments at -vvv with str(), _stdin among them; it sends readlines()."""
    from postfix_nullclient.facts import HiddenStdin

    stdin = HiddenStdin(["the password\n"])
    assert str(stdin) == repr(stdin) == "*MASKED*"
    assert stdin.readlines() == ["the password\n"] == list(stdin)
    assert stdin.readlines() == ["the password\n"], "read again whole, as a fact may be"
