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


def write_inventory(path: Path, hosts: dict[str, list[str] | None], data: dict[str, dict] | None = None) -> Path:
    """An inventory of @fake hosts; each answers the fact with the given lines (None: a fresh Debian 12).
    `data`: more host data by name; its "fake_responses" answer other commands than the fact."""
    entries = []
    for name, answer in hosts.items():
        more = dict((data or {}).get(name, {}))
        responses = {"default_database_type": answer or FRESH_DEBIAN, **more.pop("fake_responses", {})}
        entries.append(
            (f"@fake/{name}", {"forward_to": "alice@example.org", "fake_delay": 0, **more, "fake_responses": responses})
        )
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


@pytest.mark.parametrize(
    ("password", "reason"),
    [("first line\nsecond line", "contains a line break"), ("first line" * 1000, "is too long")],
    ids=["two lines", "10000 characters"],
)
def test_a_password_the_map_or_the_relay_cannot_take_is_refused(env, tmp_path, password, reason):
    store_password(env, SERVICE, "torres@example.net", password)
    run = run_pyinfra(env, tmp_path, write_inventory(tmp_path / "inventory.py", {"torres": None}), "-y")
    assert run.returncode != 0
    assert f"the keyring entry for service '{SERVICE}', user 'torres@example.net' {reason}" in run.output
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
    assert re.search(r"Postfix null client \| Install packages\s+1\s+-\s+-\s+1", results)
    assert re.search(r"Postfix null client \| Configure Postfix\s+1\s+-\s+-\s+1", results)
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
    assert "Will change sasl_passwd: the secret changed" in run.output, "the map key follows the relayhost"
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


# A host with every network stack and unattended-upgrades: the deploy writes every file it can.
EVERY_ALERT_SOURCE = ["dpkg ii  unattended-upgrades", *(f"network_stack {name}" for name in alerts.NETWORK_STACKS)]
OPERATIONS = (
    "Hold queued mail",
    "Install packages",
    "Configure Postfix",
    "Send held mail",
    "Queue watchdog",
    "Flush on network",
    "unattended-upgrades mail",
)


def alert_files(settings: Settings) -> list[alerts.HostFile]:
    """Every file of the alert sources the deploy writes on such a host, the watchdog's first."""
    upgrades = alerts.upgrades_mail_file(settings)
    assert upgrades is not None
    return [*alerts.watchdog_files(settings, "systemd"), *alerts.network_files(set(alerts.NETWORK_STACKS)), upgrades]


def configured_everywhere(settings: Settings, fqdn: str) -> list[str]:
    """What the fact prints on such a host that this deploy already configured with `settings`."""
    lines = [*configured_host_answer(settings, fqdn), *EVERY_ALERT_SOURCE]
    lines += [f"{wanted.sha256}  {wanted.path}" for wanted in alert_files(settings)]
    path_unit = next(wanted for wanted in alert_files(settings) if wanted.path == alerts.FLUSH_PATH_UNIT)
    return [*lines, f"{path_unit.sha256}  {alerts.FLUSH_PATH_LINK}"]  # enabled


def diff_headers(output: str) -> list[str]:
    return re.findall(r"\] (Will (?:create|change|remove) .*)", output)


def test_dry_diff_shows_every_file_of_a_first_deploy_and_none_on_the_second(env, tmp_path):
    store_password(env, SERVICE, "torres@example.net", AWKWARD_PASSWORD)
    settings = host_settings("torres", AWKWARD_PASSWORD)
    first = write_inventory(tmp_path / "first.py", {"torres": [*FRESH_DEBIAN, *EVERY_ALERT_SOURCE]})

    run = run_pyinfra(env, tmp_path, first, "--dry", "--diff", "-y")  # -y: pyinfra skips its change detection

    assert run.returncode == 0, run.output
    plain = ["main.cf", "virtual_alias", "sender_canonical", *(wanted.path for wanted in alert_files(settings))]
    expected = [f"Will create {name}" for name in plain]
    expected.insert(3, "Will create sasl_passwd: a secret (content not shown)")
    assert diff_headers(run.output) == expected
    assert "  + OnUnitActiveSec=300s\n" in run.output, "the timer's content, diffed from nothing"
    assert f"  + ExecStart={alerts.FLUSH} systemd-networkd\n" in run.output, "the flush service's"
    assert AWKWARD_PASSWORD not in run.output
    assert len(run.commands["@fake/torres"]) == 1, "a dry run runs the fact only"

    second = write_inventory(tmp_path / "second.py", {"torres": configured_everywhere(settings, "torres.example.net")})
    again = run_pyinfra(env, tmp_path, second, "--dry", "--diff")

    assert again.returncode == 0, again.output
    assert diff_headers(again.output) == []
    assert again.output.count("[@fake/torres] No changes") == 0, "a dry run executes nothing"
    assert len(again.commands["@fake/torres"]) == 1


def test_dry_diff_of_changed_alert_files_diffs_them_against_the_hosts_copy(env, tmp_path):
    store_password(env, SERVICE, "torres@example.net", AWKWARD_PASSWORD)
    settings = host_settings("torres", AWKWARD_PASSWORD)
    [old_timer] = [f for f in alert_files(settings) if f.path == alerts.TIMER_UNIT]
    # pyinfra's FileContents fact reads the host's copy of a changed file: `cat PATH`.
    host_copy = {f"cat {alerts.TIMER_UNIT}": old_timer.content.splitlines()}
    answer = configured_everywhere(settings, "torres.example.net")
    inventory = write_inventory(
        tmp_path / "inventory.py", {"torres": answer}, {"torres": {"fake_responses": host_copy}}
    )

    run = run_pyinfra(
        env,
        tmp_path,
        inventory,
        "--dry",
        "--diff",
        "--data",
        "watchdog_interval=10m",
        "--data",
        "unattended_upgrades_mail=off",
    )

    assert run.returncode == 0, run.output
    assert diff_headers(run.output) == [f"Will change {alerts.TIMER_UNIT}", f"Will remove {alerts.UPGRADES_MAIL_CONF}"]
    assert re.search(r"  - OnUnitActiveSec=300s\n +\+ OnUnitActiveSec=600s\n", run.output), run.output
    assert re.search(r"\n +\[Timer\]\n", run.output), "with the host's unchanged lines around"
    commands = [c["command"] for c in run.commands["@fake/torres"]]
    assert len(commands) == 2 and alerts.TIMER_UNIT in commands[1], "the fact, then the host's copy of the timer"


def test_the_results_table_of_three_hosts_has_one_short_row_per_operation(env, tmp_path):
    """Fixed operation names: one row each, whatever each host does, within 100 columns (the longest
    name, 24 characters after the deploy's own, and pyinfra's 4 count columns); what each host does
    is in the operation's output."""
    for name in ("torres", "kirk"):
        store_password(env, SERVICE, f"{name}@example.net", AWKWARD_PASSWORD)
    replacing = [*FRESH_DEBIAN, "dpkg ii  exim4-daemon-light", "queued exim4 2"]
    hosts = {"torres": [*FRESH_DEBIAN, *EVERY_ALERT_SOURCE], "kirk": replacing, "sulu": None}  # sulu: no password
    inventory = write_inventory(tmp_path / "inventory.py", hosts)

    run = run_pyinfra(env, tmp_path, inventory, "-y")

    assert run.returncode != 0, "sulu is refused"
    table = run.output[run.output.index("--> Results:") : run.output.index("--> Disconnecting")].splitlines()[1:-1]
    assert max(len(line) for line in table) <= 100, "\n".join(table)
    rows = [line.split("|", 1)[-1].split("  ")[0].strip() for line in table[1:-1]]
    assert sorted(rows) == sorted([*OPERATIONS, "Refuse: keyring entry"]), table
    for line in (
        "[@fake/torres] install postfix, libsasl2-modules, ca-certificates, bsd-mailx",
        "[@fake/torres] main.cf, virtual_alias, sender_canonical, sasl_passwd (secret), postmap sasl_passwd; "
        "restart postfix",
        f"[@fake/torres] write {alerts.FLUSH}, {alerts.NETWORKMANAGER_HOOK}",
        f"[@fake/torres] write {alerts.UPGRADES_MAIL_CONF}",
        "[@fake/kirk]   replacing exim4 (exim4-daemon-light)",
    ):
        assert run.output.count(line) == 1, run.output  # when it runs, not also while it is prepared


def test_each_refusal_is_labelled_by_its_cause(env, tmp_path):
    for name in ("torres", "sett", "gent", "oprc"):
        store_password(env, SERVICE, f"{name}@example.net", AWKWARD_PASSWORD)
    hosts = {
        "torres": None,
        "sett": None,
        "keyr": None,  # no password in the keyring
        "gent": ["os gentoo 2.15", "init openrc", "fqdn gent.example.net"],
        "oprc": ["os debian 12", "init openrc", "fqdn oprc.example.net"],
    }
    inventory = write_inventory(tmp_path / "inventory.py", hosts, {"sett": {"forward_to": "alice"}})

    run = run_pyinfra(env, tmp_path, inventory, "-y")

    assert run.returncode != 0
    results = run.output[run.output.index("--> Results:") :]
    for cause in ("settings", "keyring entry", "distribution", "init system"):
        assert re.search(rf"Postfix null client \| Refuse: {cause}\s+1\s+-\s+1\s+-", results), results
    assert re.search(r"Postfix null client \| Configure Postfix\s+1\s+1\s+-\s+-", results), "torres is deployed"
