"""The NullClientHost fact's shell script, run by a real shell on this machine, read back by process()."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from pathlib import Path

from tasks.facts import CONFIG_DIR, NullClientHost

MAIN_CF = "# a comment\nrelayhost = [mail.example.net]:587\n\twith a tab, ünïcode and a trailing newline\n"


def look(conf: Path, packages: list[str]) -> tuple[list[str], object]:
    """Run the fact's command with `conf` in place of /etc/postfix; return its lines and what process() made."""
    command = NullClientHost().command(
        plain_files=["main.cf", "virtual_alias"],
        secret_files=["sasl_passwd"],
        maps=["sasl_passwd"],
        packages=packages,
    )
    assert f"conf={CONFIG_DIR}\n" in command
    command = command.replace(f"conf={CONFIG_DIR}\n", f"conf={conf}\n")
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
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

    lines, found = look(tmp_path, ["dpkg", "no-such-package-here"])

    assert found.contents == {"main.cf": MAIN_CF}  # virtual_alias is absent, so not reported
    assert found.sha256 == {"sasl_passwd": hashlib.sha256(secret.read_bytes()).hexdigest()}
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
    assert found.modes == {"sasl_passwd": f"{user}:{group}:600"}
    assert found.fresh_maps == {"sasl_passwd": f"{user}:{group}:640"}
    assert not any("pass word" in line for line in lines)  # the secret map is hashed, never read back
    assert found.os_id != "unknown" and found.fqdn
    inet6 = Path("/proc/net/if_inet6")
    assert found.ipv6 == (inet6.exists() and any(line.split()[-1] == "lo" for line in inet6.read_text().splitlines()))
    # This machine is a Debian: dpkg is installed, an unknown package is not.
    assert found.packages == {"dpkg"}


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
            "sha256 sasl_passwd " + "a" * 64 + "  -",
            "running yes",
            "enabled yes",
            "init openrc",
            "content main.cf " + base64.b64encode(b"x = 1\n").decode(),
        ]
    )
    assert found.packages == {"postfix", "cyrus-sasl-plain"}
    assert found.sha256 == {"sasl_passwd": "a" * 64}
    assert found.running and found.enabled and found.init == "openrc"
    assert found.contents == {"main.cf": "x = 1\n"}
