"""The alert sources and the queue watchdog: settings, rendered files, and when the operations act."""

import shutil
import subprocess

import pytest

from postfix_nullclient import alerts
from postfix_nullclient.facts import HostState, NullClientHost
from postfix_nullclient.settings import check_host

BASE = {"forward_to": "alice@example.org"}


def settings(**data):
    found, problems = check_host("torres.example.net", {**BASE, **data})
    assert not problems, problems
    return found


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 3600), (90, 90), ("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400)]
)
def test_watchdog_threshold_takes_seconds_or_a_unit(value, seconds):
    assert settings(watchdog_threshold=value).watchdog_threshold == seconds


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("soon", "is not a duration: seconds, or a number with s, m, h or d"),
        ("0", "is out of range: from 1s to 365d"),
        ("-5", "is not a duration"),
        ("1w", "is not a duration"),
        (True, "is a bool, not a duration"),
        ("99999999999999999999d", "is not a duration"),
        ("999999999999d", "is out of range: from 1s to 365d"),
    ],
)
def test_a_bad_duration_is_refused_naming_the_setting_and_the_fix(value, reason):
    _, problems = check_host("torres.example.net", {**BASE, "watchdog_threshold": value})
    assert len(problems) == 1
    assert problems[0].startswith(f"torres.example.net: watchdog_threshold {value!r} {reason}")
    assert problems[0].endswith(
        "; e.g. watchdog_threshold = '1h'; set watchdog_threshold in the inventory (host data), "
        "group_data/all.py, or with --data watchdog_threshold=..."
    )


def test_unattended_upgrades_mail_defaults_to_errors_and_off_writes_nothing():
    assert settings().unattended_upgrades_mail == "only-on-error"
    default = alerts.upgrades_mail_file(settings())
    assert default.path == "/etc/apt/apt.conf.d/51postfix-nullclient-mail"
    assert 'Unattended-Upgrade::Mail "root";' in default.content
    assert 'Unattended-Upgrade::MailReport "only-on-error";' in default.content
    assert 'MailReport "always";' in alerts.upgrades_mail_file(settings(unattended_upgrades_mail="always")).content
    assert alerts.upgrades_mail_file(settings(unattended_upgrades_mail="off")) is None
    assert alerts.upgrades_mail_file(settings(unattended_upgrades_mail=False)) is None


def test_a_bad_unattended_upgrades_mail_is_refused():
    _, problems = check_host("torres.example.net", {**BASE, "unattended_upgrades_mail": "sometimes"})
    assert problems[0].startswith(
        "torres.example.net: unattended_upgrades_mail 'sometimes' is not one of only-on-error, on-change, always, off;"
    )


def test_unattended_upgrades_is_configured_only_where_installed():
    wanted = alerts.upgrades_mail_file(settings())
    assert alerts.upgrades_mail_changes(wanted, HostState()) == ([], [])
    assert alerts.upgrades_mail_changes(wanted, HostState(packages={"unattended-upgrades"})) == ([wanted], [])
    done = HostState(packages={"unattended-upgrades"}, sha256={wanted.path: wanted.sha256})
    assert alerts.upgrades_mail_changes(wanted, done) == ([], [])
    # Turned off after an earlier deploy: our file goes, the package's own configuration holds again.
    assert alerts.upgrades_mail_changes(None, done) == ([], [alerts.UPGRADES_MAIL_CONF])


def test_watchdog_is_a_timer_on_systemd_and_crond_periodic_on_openrc():
    systemd = {f.path: f for f in alerts.watchdog_files(settings(watchdog_threshold="90m"), "systemd")}
    assert sorted(systemd) == sorted([alerts.WATCHDOG, alerts.SERVICE_UNIT, alerts.TIMER_UNIT])
    assert "threshold=5400\n" in systemd[alerts.WATCHDOG].content
    assert "OnUnitActiveSec=300s" in systemd[alerts.TIMER_UNIT].content
    assert f"ExecStart={alerts.WATCHDOG}" in systemd[alerts.SERVICE_UNIT].content
    openrc = {f.path: f for f in alerts.watchdog_files(settings(), "openrc")}
    assert sorted(openrc) == sorted([alerts.WATCHDOG, alerts.PERIODIC])
    assert openrc[alerts.PERIODIC].mode == "0755"


def test_watchdog_changes_only_what_differs_or_everything_when_the_timer_is_off():
    files = alerts.watchdog_files(settings(), "systemd")
    installed = {f.path: f.sha256 for f in files}
    assert alerts.watchdog_changes(files, HostState(sha256=installed, watchdog_enabled=True), "systemd") == []
    assert alerts.watchdog_changes(files, HostState(sha256=installed), "systemd") == files
    other = alerts.watchdog_files(settings(watchdog_threshold="2h"), "systemd")
    changed = alerts.watchdog_changes(other, HostState(sha256=installed, watchdog_enabled=True), "systemd")
    assert [f.path for f in changed] == [alerts.WATCHDOG]


def test_the_fact_reports_alert_file_hashes_and_the_enabled_timer():
    digest = "a" * 64
    found = NullClientHost().process([f"{digest}  {alerts.WATCHDOG}", "watchdog_enabled yes"])
    assert found.sha256 == {alerts.WATCHDOG: digest} and found.watchdog_enabled


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck is not installed (apt-get install shellcheck)")
def test_the_rendered_shell_passes_shellcheck(tmp_path):
    watchdog = alerts.watchdog_files(settings(), "openrc")
    scripts = {
        "watchdog": watchdog[0].content,
        "periodic": watchdog[1].content,
        "put_files": alerts.put_files_script(watchdog, remove=["/a b"], after=["true"]),
    }
    for name, content in scripts.items():
        (tmp_path / name).write_text(content)
    checked = subprocess.run(["shellcheck", "-s", "sh", *(str(tmp_path / n) for n in scripts)], capture_output=True)
    assert checked.returncode == 0, checked.stdout.decode()


def test_status_counts_stuck_mail_and_names_the_oldest_deferred_reason():
    from postfix_nullclient.nullclient.queue_status import NullClientStatus, status_line, summary

    queue = [
        '{"queue_name": "deferred", "queue_id": "AAA", "arrival_time": 999, "recipients": '
        '[{"address": "root", "delay_reason": "SASL authentication failed"}]}',
        '{"queue_name": "active", "queue_id": "BBB", "arrival_time": 4590, "recipients": [{"address": "root"}]}',
    ]
    status = NullClientStatus().process(
        ["now 4600", *(f"queue {line}" for line in queue), "watchdog_ran 4500", "watchdog_said 2026 warning: x"]
    )
    report = summary("torres.example.net", status, 3600, True, "current")

    assert report["queue_size"] == 2 and report["stuck"] == 1
    assert report["oldest_deferred"] == {
        "queue_id": "AAA",
        "age_seconds": 3601,
        "reason": "SASL authentication failed",
    }
    assert status_line(report) == (
        "torres.example.net: STUCK queue 2; oldest deferred AAA 1h 0m: SASL authentication failed; "
        "watchdog ran 1m ago, last said: 2026 warning: x; configuration current"
    )
    fine = summary("torres.example.net", NullClientStatus().process(["now 5"]), 3600, False, "NOT current: x")
    assert fine["stuck"] == 0
    assert status_line(fine) == "torres.example.net: ok    queue 0; watchdog never ran; configuration NOT current: x"
