"""The alert sources and the queue watchdog: settings, rendered files, and when the operations act."""

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

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
    assert f"\nTimeoutStartSec={alerts.RUN_SECONDS}s\n" in systemd[alerts.SERVICE_UNIT].content
    openrc = {f.path: f for f in alerts.watchdog_files(settings(), "openrc")}
    assert sorted(openrc) == sorted([alerts.WATCHDOG, alerts.PERIODIC])
    assert openrc[alerts.PERIODIC].mode == "0755"
    assert f"\nexec timeout {alerts.RUN_SECONDS} {alerts.WATCHDOG}\n" in openrc[alerts.PERIODIC].content


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


def test_network_hooks_are_only_those_of_the_stacks_the_host_uses():
    assert alerts.network_files(set()) == []
    networkd = alerts.network_files({"systemd-networkd"})
    assert [f.path for f in networkd] == [alerts.FLUSH, alerts.FLUSH_PATH_UNIT, alerts.FLUSH_SERVICE_UNIT]
    assert f"PathChanged={alerts.NETWORKD_STATE}" in networkd[1].content
    assert f"PartOf={alerts.TIMER_NAME}" in networkd[1].content  # stopped with the watchdog's timer
    every = alerts.network_files({"NetworkManager", "ifupdown", "systemd-networkd"})
    assert {f.path for f in every} == {*alerts.NETWORK_FILES} - {alerts.FLUSH_PATH_LINK}
    assert all(path in alerts.ALERT_FILES for path in alerts.NETWORK_FILES)  # hashed by the fact, deleted by remove
    for hook in (alerts.NETWORKMANAGER_HOOK, alerts.IFUPDOWN_HOOK):
        content = next(f.content for f in every if f.path == hook)
        assert f"timeout {alerts.FLUSH_SECONDS} {alerts.FLUSH} " in content and content.rstrip().endswith("exit 0")


def test_network_hooks_change_only_what_differs_and_a_gone_stacks_hook_goes():
    files = alerts.network_files({"systemd-networkd"})
    installed = {f.path: f.sha256 for f in files} | {alerts.FLUSH_PATH_LINK: files[1].sha256}
    assert alerts.network_changes(files, HostState(sha256=installed)) == ([], [], [])
    put, gone, after = alerts.network_changes(files, HostState(sha256={}))
    assert put == files and gone == []
    assert after[-2:] == [
        f"systemctl enable -q {alerts.FLUSH_PATH_NAME}",
        f"systemctl restart {alerts.FLUSH_PATH_NAME}",
    ]
    # NetworkManager replaced systemd-networkd: the path unit is stopped and disabled before its files go.
    now = alerts.network_files({"NetworkManager"})
    put, gone, after = alerts.network_changes(now, HostState(sha256=installed))
    assert [f.path for f in put] == [alerts.NETWORKMANAGER_HOOK] and gone == []  # the same flush script
    assert after[0] == f"systemctl disable --now -q {alerts.FLUSH_PATH_NAME} || true"
    assert after[1] == f"rm -f {alerts.FLUSH_PATH_LINK} {alerts.FLUSH_PATH_UNIT} {alerts.FLUSH_SERVICE_UNIT}"


def test_the_fact_reports_the_network_stacks_the_host_uses():
    command = NullClientHost().command(packages=["postfix"], network_stacks=alerts.NETWORK_STACKS)
    assert '[ -d /etc/NetworkManager/dispatcher.d ] && echo "network_stack NetworkManager"' in command
    found = NullClientHost().process(["network_stack systemd-networkd", "network_stack ifupdown"])
    assert found.network_stacks == {"systemd-networkd", "ifupdown"}


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck is not installed (apt-get install shellcheck)")
def test_the_rendered_shell_passes_shellcheck(tmp_path):
    watchdog = alerts.watchdog_files(settings(), "openrc")
    network = alerts.network_files({"NetworkManager", "ifupdown"})
    scripts = {
        "watchdog": watchdog[0].content,
        "periodic": watchdog[1].content,
        "put_files": alerts.put_files_script(watchdog, remove=["/a b"], after=["true"]),
        "flush_on_network": network[0].content,
        "networkmanager_hook": network[1].content,
        "ifupdown_hook": network[2].content,
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
        "torres.example.net: STUCK queue 2; oldest message AAA 1h 0m old, Postfix gives it up in 4d 22h "
        "(1970-01-06 00:16 UTC); oldest deferred AAA 1h 0m: SASL authentication failed; "
        "watchdog ran 1m ago, last said: 2026 warning: x; configuration current"
    )
    fine = summary("torres.example.net", NullClientStatus().process(["now 5"]), 3600, False, "NOT current: x")
    assert fine["stuck"] == 0
    assert status_line(fine) == "torres.example.net: FAIL  queue 0; watchdog never ran; configuration NOT current: x"


def test_status_never_shows_an_unreadable_queue_as_a_size():
    from postfix_nullclient.nullclient.queue_status import NullClientStatus, status_line, summary

    status = NullClientStatus().process(["now 5", "queue_error postqueue: fatal: open /etc/postfix/main.cf"])
    line = status_line(summary("torres.example.net", status, 3600, True, "current"))

    assert line.startswith("torres.example.net: STUCK queue unreadable: postqueue: fatal: open /etc/postfix/main.cf")
    assert "queue 0" not in line


def test_status_says_since_when_mail_waits_for_the_network_and_when_the_oldest_expires():
    from postfix_nullclient.nullclient.queue_status import NullClientStatus, status_line, summary

    def entry(queue_id: str, arrival: int, reason: str) -> str:
        recipients = [{"address": "root", "delay_reason": reason}]
        message = {"queue_name": "deferred", "queue_id": queue_id, "arrival_time": arrival, "recipients": recipients}
        return f"queue {json.dumps(message)}"

    unreachable = "connect to mail.example.net[10.0.0.1]:587: Network is unreachable"
    lines = [
        "now 1800000000",
        entry("OLD", 1800000000 - 3 * 86400, "SASL authentication failed; server said: 535 5.7.8"),
        entry("NET", 1800000000 - 2 * 86400, unreachable),
        entry("DNS", 1800000000 - 3600, "Host or domain name not found. Name service error for name=mail.example.net"),
    ]
    report = summary("torres.example.net", NullClientStatus().process(lines), 3600, True, "current", 30 * 86400)

    assert report["offline_since"] == {
        "at": 1800000000 - 2 * 86400,
        "utc": "2027-01-13 08:00 UTC",
        "reason": unreachable,
    }
    assert report["oldest"] == {
        "queue_id": "OLD",
        "age_seconds": 3 * 86400,
        "expires_in_seconds": 27 * 86400,
        "expires_utc": "2027-02-11 08:00 UTC",
    }
    line = status_line(report)
    assert f"; offline since 2027-01-13 08:00 UTC ({unreachable}); " in line
    assert "; oldest message OLD 3d 0h old, Postfix gives it up in 27d 0h (2027-02-11 08:00 UTC); " in line
    online = summary("torres.example.net", NullClientStatus().process(lines[:2]), 3600, True, "current", 86400)
    assert online["offline_since"] is None and "offline" not in status_line(online)
    assert "Postfix gives it up at its next delivery attempt (2027-01-13 08:00 UTC)" in status_line(online)


# --- the watchdog's bounds, on this machine: the rendered script with a fake postqueue and logger ------
#
# The script runs as it does on a host; only postqueue (the queue's JSON, as Postfix prints it) and
# logger (which here records its arguments instead of writing to a journal) come first on its PATH. A
# logger that the kernel cannot start with too long an argument fails here as it does on a host.

FAKE_POSTQUEUE = '#!/bin/sh\nexec cat "$(dirname "$0")/queue.json"\n'
FAKE_LOGGER = '#!/bin/sh\nprintf "%s\\n" "$*" >> "$(dirname "$0")/journal"\n'


def queue_entry(queue_id: str, age: int, recipients: list[dict], sender: str = "torres@example.net") -> str:
    """One message as `postqueue -j` prints it: one JSON object on one line, in Postfix's key order."""
    entry = {
        "queue_name": "deferred",
        "queue_id": queue_id,
        "arrival_time": int(time.time()) - age,
        "message_size": 1234,
        "forced_expire": False,
        "sender": sender,
        "recipients": recipients,
    }
    return json.dumps(entry)


@dataclass
class WatchdogRun:
    motd: str
    journal: list[str]  # what logger was asked to write, one call a line
    seconds: float


def run_watchdog(
    tmp_path: Path,
    queue: list[str],
    queue_seconds: int = alerts.QUEUE_SECONDS,
    fakes: dict[str, str] | None = None,
    **data: str,
) -> WatchdogRun:
    """The watchdog, once, with `queue` as postqueue's JSON; `fakes`: other programs in place of Postfix's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, content in {"postqueue": FAKE_POSTQUEUE, "logger": FAKE_LOGGER, **(fakes or {})}.items():
        (bin_dir / name).write_text(content)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "queue.json").write_text("".join(f"{line}\n" for line in queue))
    (bin_dir / "journal").unlink(missing_ok=True)
    motd = tmp_path / "motd.d" / "postfix-nullclient"
    chosen = settings(**{"watchdog_threshold": "5s", **data})
    script = alerts.watchdog_script(chosen, str(tmp_path / "state"), str(motd), str(tmp_path / "run"), queue_seconds)
    assert script.count("\nPATH=") == 1
    (tmp_path / "watchdog").write_text(script.replace("\nPATH=", f"\nPATH={bin_dir}:"))
    started = time.monotonic()
    subprocess.run(["sh", str(tmp_path / "watchdog")], check=True, timeout=60)
    journal = bin_dir / "journal"
    return WatchdogRun(
        motd.read_text() if motd.exists() else "",
        journal.read_text().splitlines() if journal.exists() else [],
        time.monotonic() - started,
    )


def test_a_flood_of_distinct_reasons_leaves_a_short_login_message_and_a_journal_summary(tmp_path):
    # 8,000 messages, each to its own address and deferred for a reason of its own.
    queue = [
        queue_entry(f"4Q{n:09X}", 600 + n, [{"address": f"user{n}@example.org", "delay_reason": f"451 4.3.0 try #{n}"}])
        for n in range(8000)
    ]

    run = run_watchdog(tmp_path, queue)

    print(run.motd)
    lines = run.motd.splitlines()
    assert len(lines) == 3 + alerts.SHOWN_REASONS + 2, run.motd
    assert lines[0].startswith("*** postfix-nullclient: 8000 message(s) have waited longer than 5s")
    assert lines[3:8] == [f"***   451 4.3.0 try #{n}" for n in range(5)]
    assert lines[8] == "***   and 7995 more (postqueue -p lists them all)"
    assert "@example.org" not in run.motd  # reasons only, never addresses
    # The journal: one line for each of the first messages, then the summary, all of them short.
    assert len(run.journal) == alerts.JOURNAL_DETAILS + 1, run.journal[-1][:300]
    assert run.journal[0].endswith("4Q000000000 to <user0@example.org> has waited 10m: 451 4.3.0 try #0")
    summary = run.journal[-1]
    assert "-p mail.warning" in summary and "8000 message(s) have waited longer than 5s" in summary
    assert summary.endswith("; and 7995 more (postqueue -p lists them all)")
    assert max(len(line) for line in run.journal) < 2000
    assert run.seconds < 20


def test_the_same_reasons_in_another_order_are_the_same_problem_and_told_once(tmp_path):
    queue = [queue_entry(f"ID{n}", 60, [{"address": "root", "delay_reason": f"reason {n}"}]) for n in range(50)]
    first = run_watchdog(tmp_path, queue)
    again = run_watchdog(tmp_path, list(reversed(queue)))
    other = run_watchdog(tmp_path, [*queue, queue_entry("ID50", 60, [{"address": "root", "delay_reason": "new"}])])

    assert len(first.journal) == alerts.JOURNAL_DETAILS + 1
    assert again.journal == []
    assert other.journal[-1].endswith("; and 46 more (postqueue -p lists them all)")


def test_the_warning_says_when_postfix_would_give_the_oldest_message_up(tmp_path):
    entry = queue_entry("ID1", 86400, [{"address": "root", "delay_reason": "connect to relay: Network is unreachable"}])
    expiry = json.loads(entry)["arrival_time"] + 10 * 86400
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expiry))

    run = run_watchdog(tmp_path, [entry], queue_lifetime="10d")

    told = r"Postfix gives the oldest up \(and returns it to its sender through the same relay\) in (9d 0h|8d 23h), at "
    assert re.search(f"; {told}{date}; Postfix says: connect to relay: Network is unreachable$", run.journal[-1])
    assert re.search(rf"^\*\*\* {told}{date}\.$", run.motd, re.MULTILINE), run.motd


def test_the_warning_comes_again_when_the_oldest_message_nears_its_expiry(tmp_path):
    reason = [{"address": "root", "delay_reason": "connect to relay: Network is unreachable"}]
    first = run_watchdog(tmp_path, [queue_entry("ID1", 86400, reason)], queue_lifetime="10d")
    same = run_watchdog(tmp_path, [queue_entry("ID1", 2 * 86400, reason)], queue_lifetime="10d")
    near = run_watchdog(tmp_path, [queue_entry("ID1", 9 * 86400, reason)], queue_lifetime="10d")

    assert first.journal and same.journal == []
    assert re.search(r"relay\) in (1d 0h|23h 59m), at ", near.journal[-1]), near.journal


def test_the_watchdog_warns_by_half_the_queue_lifetime_at_the_latest():
    assert alerts.warn_after(settings(watchdog_threshold="1h")) == 3600  # 30d of lifetime by default
    assert alerts.warn_after(settings(watchdog_threshold="30d", queue_lifetime="2h")) == 3600
    script = alerts.watchdog_script(settings(watchdog_threshold="30d", queue_lifetime="2h"))
    assert "\nthreshold=3600\nlifetime=7200\n" in script


def test_strings_in_the_queue_cannot_fake_a_reason_or_reach_the_terminal(tmp_path):
    # A local user chooses addresses: here ones that spell JSON of their own, with escaped quotes and
    # backslashes. Postfix's reason may hold quotes, backslashes and escaped control characters.
    forged = '", "delay_reason": "FORGED", "x": "\\'
    long_reason = "452 4.2.2 mailbox full " + "x" * 300
    queue = [
        queue_entry(
            "AAA",
            60,
            [{"address": f"{forged}@example.org", "delay_reason": 'said: 451 "greylisted" \\ see \x1b[31mred'}],
            sender=forged,
        ),
        queue_entry("BBB", 60, [{"address": "a@example.org", "delay_reason": long_reason}, {"address": "b"}]),
    ]

    run = run_watchdog(tmp_path, queue)

    print(run.motd)
    assert "FORGED" not in run.motd
    assert "***   said: 451 <quoted> \\ see ?[31mred\n" in run.motd  # a quoted string may be a user's
    assert f"***   {long_reason[:197]}...\n" in run.motd
    assert "***   waiting for its first delivery attempt\n" in run.motd
    assert "\x1b" not in run.motd and "\x1b" not in "".join(run.journal)
    assert "2 message(s) have waited longer than 5s" in run.journal[-1]
