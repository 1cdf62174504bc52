"""The deploy through the pyinfra CLI against @fake hosts: what it refuses, plans and sends.

The keyring is the real Secret Service (gnome-keyring); only the hosts are simulated, by
pyinfra's own @fake connector answering the one fact with a host state.
"""

import base64
import re
from pathlib import Path

import pytest

from postfix_nullclient import alerts
from postfix_nullclient.render import render_files, render_secret_files
from postfix_nullclient.settings import Settings
from tests.conftest import run_pyinfra, store_password
from tests.support.settings import make_settings

AWKWARD_PASSWORD = "C0rrect horse#: @battery $staple %50"
SERVICE = "postfix-nullclient"
FRESH_DEBIAN = ["os debian 12", "fqdn torres.example.net", "ipv6 no", "database_type -", "init systemd"]
PACKAGES = ["postfix", "libsasl2-modules", "ca-certificates", "bsd-mailx"]


def host_settings(name: str, password: str, relay_port: int = 587) -> Settings:
    return make_settings(f"@fake/{name}", password, relay_port=relay_port)


def configured_host_answer(settings: Settings, fqdn: str, secret_same: bool = True) -> list[str]:
    """What the fact prints on a host that this deploy already configured with `settings`; with
    secret_same False, the host's password map holds another password than the deploy's."""
    lines = ["os debian 12", f"fqdn {fqdn}", "ipv6 no", "database_type hash", "init systemd"]
    lines += ["running yes", "enabled yes"]
    for managed in render_files(settings, fqdn, False, "/etc/ssl/certs/ca-certificates.crt"):
        if managed.secret:
            lines += [f"secret_same {managed.name}"] if secret_same else []
            lines += [f"mode {managed.name} root:root:600"]
            lines += [f"map_fresh {managed.name} {managed.name}.db", f"mode {managed.name}.db root:root:600"]
        else:
            lines.append(f"content {managed.name} {base64.b64encode(managed.content.encode()).decode()}")
    for wanted in alerts.watchdog_files(settings, "systemd"):
        lines.append(f"{wanted.sha256}  {wanted.path}")
    lines.append("watchdog_enabled yes")
    return lines + [f"dpkg ii  {name}" for name in PACKAGES]


def write_inventory(path: Path, hosts: dict[str, list[str] | None]) -> Path:
    """An inventory of @fake hosts; each answers the fact with the given lines (None: a fresh Debian 12)."""
    entries = []
    for name, answer in hosts.items():
        data = {"forward_to": "alice@example.org", "fake_delay": 0}
        data["fake_responses"] = {"default_database_type": answer or FRESH_DEBIAN}
        entries.append((f"@fake/{name}", data))
    path.write_text(f"workstations = {entries!r}\n")
    return path


def stdin_of(commands: list[dict], command: str) -> str:
    return next(c["stdin"] for c in commands if c["command"] == command)


def staged_files(apply_stdin: str) -> dict[str, str]:
    found = re.findall(r"^stage_file (\S+) (\d+) '([A-Za-z0-9+/=]*)'$", apply_stdin, re.MULTILINE)
    return {name: base64.b64decode(encoded).decode() for name, _, encoded in found}


@pytest.fixture
def env(keyring_env):
    for name in ("torres", "kirk"):
        store_password(keyring_env, SERVICE, f"{name}@example.net", None)
    return keyring_env


def test_a_host_without_keyring_entry_is_refused_alone_and_the_others_deploy(env, tmp_path):
    store_password(env, SERVICE, "torres@example.net", AWKWARD_PASSWORD)
    inventory = write_inventory(tmp_path / "inventory.py", {"torres": None, "kirk": None})

    run = run_pyinfra(env, tmp_path, inventory, "-y")

    assert run.returncode != 0, "a refused host makes the run fail"
    assert "Traceback" not in run.output
    assert "@fake/kirk" not in run.commands, "the refused host runs no command at all"
    assert len(run.commands["@fake/torres"]) == 4, "the other host is deployed: fact, install, apply, watchdog"
    summary = run.output[run.output.index("host(s) failed; the others went on:") :]
    assert (
        "@fake/kirk: refused, nothing was run on it: no password in the keyring for service "
        "'postfix-nullclient', user 'kirk@example.net'; store it with: keyring set postfix-nullclient "
        "kirk@example.net"
    ) in summary
    assert "@fake/torres" not in summary


def test_when_every_host_is_refused_the_run_stops_before_any_command(env, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.py", {"torres": None, "kirk": None})

    run = run_pyinfra(env, tmp_path, inventory, "-y")

    assert run.returncode != 0
    assert "refusing to deploy, no host was touched" in run.output
    for name in ("torres", "kirk"):
        assert f"@fake/{name}: no password in the keyring for service 'postfix-nullclient'" in run.output
        assert f"keyring set postfix-nullclient {name}@example.net" in run.output
    assert "Traceback" not in run.output
    assert run.commands == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["--data", "relay_port=25"], "relay_port 25 is not supported: use 587"),
        (["--data", "forward_to=alice"], "forward_to 'alice' is not a mail address"),
        (["--data", "relay_host="], "relay_host '' is empty"),
    ],
)
def test_bad_settings_are_refused_before_any_command(env, tmp_path, data, message):
    store_password(env, SERVICE, "torres@example.net", AWKWARD_PASSWORD)
    inventory = write_inventory(tmp_path / "inventory.py", {"torres": None})

    run = run_pyinfra(env, tmp_path, inventory, "-y", *data)

    assert run.returncode != 0
    assert f"@fake/torres: {message}" in run.output
    assert run.commands == {}


def test_a_password_the_map_cannot_hold_is_refused(env, tmp_path):
    store_password(env, SERVICE, "torres@example.net", "first line\nsecond line")
    run = run_pyinfra(env, tmp_path, write_inventory(tmp_path / "inventory.py", {"torres": None}), "-y")
    assert run.returncode != 0
    assert "contains a line break" in run.output
    assert "first line" not in run.output
    assert run.commands == {}


def test_no_keyring_backend_says_how_to_get_one(env, tmp_path):
    no_backend = {**env, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    run = run_pyinfra(no_backend, tmp_path, write_inventory(tmp_path / "inventory.py", {"torres": None}), "-y")
    assert run.returncode != 0
    assert "no OS keyring backend" in run.output and "PYTHON_KEYRING_BACKEND" in run.output
    assert run.commands == {}


def test_first_deploy_installs_without_prompt_and_applies_everything_in_one_command(env, tmp_path):
    store_password(env, SERVICE, "torres@example.net", AWKWARD_PASSWORD)
    inventory = write_inventory(tmp_path / "inventory.py", {"torres": None})

    run = run_pyinfra(env, tmp_path, inventory, "-y", "-vvv")

    assert run.returncode == 0, run.output
    commands = run.commands["@fake/torres"]
    command_lines = [c["command"] for c in commands]
    # Four commands: the fact, the install (debconf preseed on its stdin, update, install), the apply,
    # the watchdog. unattended-upgrades is not on this host: nothing for it, and it is not installed.
    assert len(commands) == 4, command_lines
    install = next(c for c in commands if "apt-get" in c["command"] and " install " in c["command"])
    assert install["command"].startswith("debconf-set-selections && apt-get update")
    assert "No configuration" in install["stdin"]
    assert "DEBIAN_FRONTEND=noninteractive" in install["command"]
    assert all(name in install["command"] for name in PACKAGES)
    apply_stdin = stdin_of(commands, "sh -s")
    files = staged_files(apply_stdin)
    assert sorted(files) == ["main.cf", "sasl_passwd", "sender_canonical", "virtual_alias"]
    assert files["sasl_passwd"] == f"[mail.example.net]:587 torres@example.net:{AWKWARD_PASSWORD}\n"
    assert "stage_file sasl_passwd 0600 " in apply_stdin
    # All of it inside { }: sh runs nothing before it has read the closing brace.
    assert "\n{\nset -eu\n" in apply_stdin and apply_stdin.endswith("\napply restart sasl_passwd\n}\n")
    # The password goes to the host inside stdin only: never on a command line, never in the output.
    assert not any(AWKWARD_PASSWORD in line for line in command_lines)
    assert AWKWARD_PASSWORD not in run.output
    assert base64.b64encode(f"torres@example.net:{AWKWARD_PASSWORD}".encode()).decode()[:12] not in run.output
    watchdog = commands[-1]["stdin"]
    assert "put_file /usr/local/lib/postfix-nullclient/watchdog 0755 " in watchdog
    assert "put_file /etc/systemd/system/postfix-nullclient-watchdog.timer 0644 " in watchdog
    assert "systemctl enable -q postfix-nullclient-watchdog.timer" in watchdog
    assert AWKWARD_PASSWORD not in watchdog and "unattended" not in watchdog
    assert "unattended-upgrades is not installed (it is not installed for this)" in run.output


def test_configured_host_runs_only_the_fact_and_says_no_change_per_operation(env, tmp_path):
    store_password(env, SERVICE, "torres@example.net", AWKWARD_PASSWORD)
    answer = configured_host_answer(host_settings("torres", AWKWARD_PASSWORD), "torres.example.net")
    inventory = write_inventory(tmp_path / "inventory.py", {"torres": answer})

    run = run_pyinfra(env, tmp_path, inventory, "-y")

    assert run.returncode == 0, run.output
    assert len(run.commands["@fake/torres"]) == 1, run.commands
    assert "default_database_type" in run.commands["@fake/torres"][0]["command"]
    assert run.output.count("[@fake/torres] No changes") == 5, "every operation says so for the host"
    results = run.output[run.output.index("--> Results:") :]
    assert re.search(r"Postfix null client \| Install the null client's packages\s+1\s+-\s+-\s+1", results)
    assert re.search(r"Postfix null client \| Apply null-client configuration\s+1\s+-\s+-\s+1", results)
    assert re.search(r"Grand total\s+5\s+-\s+-\s+5", results)


def test_password_rotation_dry_diff_says_the_secret_changed_and_shows_nothing_of_it(env, tmp_path):
    old_password, new_password = "old-Pa55 word#1", "new-Pa55 word#2"
    store_password(env, SERVICE, "torres@example.net", new_password)
    answer = configured_host_answer(host_settings("torres", old_password), "torres.example.net", secret_same=False)
    inventory = write_inventory(tmp_path / "inventory.py", {"torres": answer})
    [new_map] = render_secret_files(host_settings("torres", new_password))

    run = run_pyinfra(env, tmp_path, inventory, "--dry", "--diff", "-vvv")

    assert run.returncode == 0, run.output
    assert "Will change sasl_passwd: the secret changed (content not shown)" in run.output
    assert "sasl_passwd (secret)" in run.output
    assert old_password not in run.output and new_password not in run.output
    # The host compares the map with the digest it gets on the fact's stdin; it never leaves the stdin.
    [fact] = run.commands["@fake/torres"]
    assert f"sasl_passwd {new_map.sha256}" in str(fact["stdin"])
    assert new_map.sha256 not in run.output and new_map.sha256 not in fact["command"]
    assert [c["command"] for c in run.commands["@fake/torres"]] == [run.commands["@fake/torres"][0]["command"]]


def test_dry_diff_of_a_setting_change_shows_the_file_diff_and_changes_nothing(env, tmp_path):
    store_password(env, SERVICE, "torres@example.net", AWKWARD_PASSWORD)
    # The password map's key follows the relayhost: the host finds the map differs from the deploy's.
    answer = configured_host_answer(host_settings("torres", AWKWARD_PASSWORD), "torres.example.net", secret_same=False)
    inventory = write_inventory(tmp_path / "inventory.py", {"torres": answer})

    run = run_pyinfra(env, tmp_path, inventory, "--dry", "--diff", "--data", "relay_port=465")

    assert run.returncode == 0, run.output
    assert "Will change main.cf" in run.output
    assert "+ relayhost = [mail.example.net]:465" in run.output
    assert "- relayhost = [mail.example.net]:587" in run.output
    assert "sasl_passwd (secret)" in run.output, "the map key follows the relayhost"
    assert AWKWARD_PASSWORD not in run.output
    assert len(run.commands["@fake/torres"]) == 1


def test_a_keyring_backend_that_raises_refuses_only_the_hosts_it_cannot_read(env, tmp_path):
    sealed = {**env, "PYTHON_KEYRING_BACKEND": "tests.support.keyrings.SealedForKirk"}
    inventory = write_inventory(tmp_path / "inventory.py", {"torres": None, "kirk": None})

    run = run_pyinfra(sealed, tmp_path, inventory, "-y")

    assert run.returncode != 0
    assert "Traceback" not in run.output
    assert "@fake/kirk" not in run.commands
    assert len(run.commands["@fake/torres"]) == 4, "the host whose entry could be read is deployed"
    assert (
        "@fake/kirk: refused, nothing was run on it: the keyring could not be read (service 'postfix-nullclient', "
        "user 'kirk@example.net'): RuntimeError: the vault is sealed; unlock it and run again"
    ) in run.output
