"""Attacks on --diff and pyinfra's output: passwords that look like other content, rotation, setting
values that look like diff syntax, the tables with long host names and every refusal.

The strongest check is differential: two runs that differ only in the password must print the same
bytes. Then nothing of the password (itself, base64, a digest, its length, which characters changed)
can be in the output, whatever masking does or does not do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run_pyinfra, store_password
from tests.test_deploy_fake import (
    EVERY_ALERT_SOURCE,
    FRESH_DEBIAN,
    OPERATIONS,
    SERVICE,
    configured_everywhere,
    host_settings,
    write_inventory,
)

BASELINE = "baseline-Pa55word-that-is-long-and-plain-0123456789"
# One of each kind: a word of main.cf ("yes", "587"), what a mask looks like, diff syntax, odd characters.
LOOKALIKES = {
    "the login": "torres@example.net",
    "the relay": "mail.example.net",
    "yes": "yes",
    "587": "587",
    "stars": "***",
    "one character": "x",
    "leading dash": "-x",
    "hunk header": "@@ -1,3 +1,3 @@",
    "tab": "a\tb",
    "backslash": "a\\b",
    "non-ASCII": "pässwörd€",
    "percent": "%s%d%(x)s{0}",
}
VOLATILE = re.compile(r"0x[0-9a-f]+|\d+\.\d+s|\d+(\.\d+)? ?(ms|seconds?)|in \d+\.\d+")


def normalized(output: str) -> str:
    return VOLATILE.sub("N", output)


@pytest.fixture
def env(keyring_env):
    return keyring_env


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """One directory for every differential run: the baseline and the attack see the same paths."""
    return tmp_path_factory.mktemp("diff-attacks")


@pytest.fixture(scope="module")
def baseline(keyring_env, runs_dir) -> Callable[..., str]:
    """The output with BASELINE as the password, made once per host state and arguments."""
    made: dict[tuple, str] = {}

    def of(answer: list[str], *args: str) -> str:
        key = (tuple(answer), args)
        if key not in made:
            made[key] = dry_diff(keyring_env, runs_dir, BASELINE, answer, *args)
        return made[key]

    return of


def dry_diff(env, tmp_path, password: str, answer: list[str], *args: str) -> str:
    store_password(env, SERVICE, "torres@example.net", password)
    inventory = write_inventory(tmp_path / "inventory.py", {"torres": answer})
    run = run_pyinfra(env, tmp_path, inventory, *args)
    assert run.returncode == 0, run.output
    return normalized(run.output)


@pytest.mark.parametrize("password", LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_first_deploy_dry_diff_prints_the_same_bytes_whatever_the_password(env, runs_dir, baseline, password):
    answer = [*FRESH_DEBIAN, *EVERY_ALERT_SOURCE]
    args = ("--dry", "--diff", "-vvv", "--debug")
    attack = dry_diff(env, runs_dir, password, answer, *args)
    assert "Will create sasl_passwd: a secret (content not shown)" in attack
    assert attack == baseline(answer, *args)


ROTATIONS = {
    "one character more": ("old-Pa55word", "old-Pa55wordX"),
    "one character changed": ("old-Pa55word", "old-Pa55worX"),
    "long to one character": (BASELINE, "x"),
    "to the old one's base64": ("old-Pa55word", "b2xkLVBhNTV3b3Jk"),
}


@pytest.mark.parametrize(("old", "new"), ROTATIONS.values(), ids=ROTATIONS.keys())
def test_rotation_dry_diff_prints_the_same_bytes_whatever_the_old_and_new_password(env, runs_dir, baseline, old, new):
    """The host holds `old`, the keyring `new`: the output is that of any other rotation."""
    args = ("--dry", "--diff", "-vvv", "--debug")

    def held(old_password: str) -> list[str]:
        settings = host_settings("torres", old_password)
        return [
            line for line in configured_everywhere(settings, "torres.example.net") if line != "secret_same sasl_passwd"
        ]

    attack = dry_diff(env, runs_dir, new, held(old), *args)
    assert "Will change sasl_passwd: the secret changed (content not shown)" in attack
    assert attack == baseline(held("some-0ther-password"), *args)


@pytest.mark.parametrize("password", ["yes", "x", "torres@example.net", "-x"], ids=["yes", "x", "login", "dash"])
def test_first_deploy_with_y_prints_the_same_bytes_whatever_the_password(env, runs_dir, baseline, password):
    answer = [*FRESH_DEBIAN, *EVERY_ALERT_SOURCE]
    args = ("-y", "--diff", "-vvv", "--debug")
    attack = dry_diff(env, runs_dir, password, answer, *args)
    assert attack == baseline(answer, *args)


def changed_timer_diff(env, tmp_path, host_copy: str) -> str:
    """--dry --diff of a configured host whose watchdog timer is `host_copy` (the deploy's content differs)."""
    from postfix_nullclient import alerts

    settings = host_settings("torres", BASELINE)
    store_password(env, SERVICE, "torres@example.net", BASELINE)
    answer = [line for line in configured_everywhere(settings, "torres.example.net") if alerts.TIMER_UNIT not in line]
    answer.append(f"{'0' * 64}  {alerts.TIMER_UNIT}")  # the host's copy differs
    responses = {f"cat {alerts.TIMER_UNIT}": host_copy.split("\n")}
    inventory = write_inventory(
        tmp_path / "inventory.py", {"torres": answer}, {"torres": {"fake_responses": responses}}
    )
    run = run_pyinfra(env, tmp_path, inventory, "--dry", "--diff")
    assert run.returncode == 0, run.output
    return run.output


@pytest.mark.parametrize("local_line", ["-- a local line", "--- a local line", "++ a local line"])
def test_a_removed_line_that_starts_like_a_diff_header_still_shows(env, tmp_path, local_line):
    """difflib's "--- "/"+++ " headers are its first two lines only: a host's line "-- x", removed, is
    "--- x" too, and was dropped with them, so the diff hid the line the deploy takes away."""
    from postfix_nullclient import alerts

    wanted = next(
        f for f in alerts.watchdog_files(host_settings("torres", BASELINE), "systemd") if f.path == alerts.TIMER_UNIT
    )
    output = changed_timer_diff(env, tmp_path, wanted.content.replace("[Timer]\n", f"[Timer]\n{local_line}\n"))
    assert f"Will change {alerts.TIMER_UNIT}" in output
    assert f"  - {local_line}\n" in output, output


def test_terminal_control_characters_of_a_hosts_file_show_escaped(env, tmp_path):
    """A host's file with ESC sequences (cursor up, erase line) or a carriage return would rewrite the
    operator's terminal, hiding the diff's lines above; they show as \\x1b and \\x0d instead."""
    from postfix_nullclient import alerts

    wanted = next(
        f for f in alerts.watchdog_files(host_settings("torres", BASELINE), "systemd") if f.path == alerts.TIMER_UNIT
    )
    sneaky = "OnUnitActiveSec=300s\x1b[1A\x1b[2K\rOnUnitActiveSec=300s"
    output = changed_timer_diff(env, tmp_path, wanted.content.replace("OnUnitActiveSec=300s", sneaky))
    assert "\x1b" not in output and "\r" not in output
    assert "  - OnUnitActiveSec=300s\\x1b[1A\\x1b[2K\\x0dOnUnitActiveSec=300s\n" in output, output


LONG = "accounting-department-workstation-{}.north-branch-office.headquarters.corp.example.net"


def long_named_hosts(env) -> tuple[dict, dict]:
    """Three deployable hosts with long names, and one refused host (long-named too) of each cause."""
    names = {cause: LONG.format(cause) for cause in ("a", "b", "c", "distribution", "init", "keyring", "settings")}
    for key in ("a", "b", "c", "distribution", "init", "settings"):
        store_password(env, SERVICE, f"ws-{key}@example.net", BASELINE)
    store_password(env, SERVICE, "ws-keyring@example.net", None)
    replacing = [*FRESH_DEBIAN, "dpkg ii  exim4-daemon-light", "queued exim4 2"]
    hosts = {
        names["a"]: [*FRESH_DEBIAN, *EVERY_ALERT_SOURCE],
        names["b"]: replacing,
        names["c"]: None,
        names["distribution"]: ["os gentoo 2.15", "init openrc", "fqdn gent.example.net"],
        names["init"]: ["os debian 12", "init openrc", "fqdn oprc.example.net"],
        names["keyring"]: None,
        names["settings"]: None,
    }
    data = {name: {"smtp_user": f"ws-{key}@example.net"} for key, name in names.items()}
    data[names["settings"]]["forward_to"] = "alice"
    return hosts, data


def table(output: str, title: str) -> list[str]:
    start = output.index(title)
    return output[start:].split("\n\n", 1)[0].splitlines()[1:]


ROWS = sorted(
    [*OPERATIONS, *(f"Refuse: {cause}" for cause in ("keyring entry", "settings", "distribution", "init system"))]
)


def operation_rows(rows: list[str]) -> list[str]:
    return sorted(line.split("|", 1)[1].split("  ")[0].strip() for line in rows[1:] if "|" in line)


def test_results_table_of_long_named_hosts_and_every_refusal_stays_within_100_columns(env, tmp_path):
    """Host names of 90 characters, three deployed (one replacing exim4 with held mail), one refused for
    each cause: the Results table has one row per fixed name, and counts only, within 100 columns."""
    hosts, data = long_named_hosts(env)
    run = run_pyinfra(env, tmp_path, write_inventory(tmp_path / "inventory.py", hosts, data), "-y")

    assert run.returncode != 0, "four hosts are refused"
    rows = table(run.output, "--> Results:")
    assert operation_rows(rows[:-1]) == ROWS, "\n".join(rows)
    assert max(len(line) for line in rows) <= 100, "\n".join(rows)


def test_detected_changes_table_names_each_operation_once_whatever_the_host_names(env, tmp_path):
    """Without -y pyinfra's "Detected changes" table lists host names in its Change column (cut at 48
    characters by pyinfra): with long host names it is wider than 100 columns (129 here), which the
    deploy's names cannot prevent; its operation column stays the fixed names, one row each."""
    hosts, data = long_named_hosts(env)
    run = run_pyinfra(env, tmp_path, write_inventory(tmp_path / "inventory.py", hosts, data), "--dry", "--diff")

    assert run.returncode == 0, run.output
    rows = table(run.output, "--> Detected changes:")
    assert operation_rows(rows) == ROWS, "\n".join(rows)
    assert max(len(line.split("|", 1)[1].split("  ")[0].strip()) for line in rows[1:]) <= 24


def test_a_secret_map_whose_mode_alone_differs_is_not_said_to_have_changed(env, tmp_path):
    """The host's map holds the deploy's password but is 0644: the diff said "the secret changed",
    which tells an operator that the password on the host is another one; it is the mode."""
    settings = host_settings("torres", BASELINE)
    answer = [
        "mode sasl_passwd root:root:644" if line == "mode sasl_passwd root:root:600" else line
        for line in configured_everywhere(settings, "torres.example.net")
    ]
    output = dry_diff(env, tmp_path, BASELINE, answer, "--dry", "--diff")
    assert "Will change sasl_passwd: owner and mode to root:root:600; the secret is the same" in output, output
    assert "the secret changed" not in output
