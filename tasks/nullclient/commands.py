"""The operator's commands. Each returns its exit status (exit_codes.ExitCode: OK, or NOT_WELL when
a host is not well or the command failed on one), and raises UsageError (exit status USAGE) for input
it refuses, before any host is touched."""

from __future__ import annotations

import getpass
import json
import posixpath
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from postfix_nullclient.nullclient import passwords
from postfix_nullclient.nullclient.checks import (
    DEPLOY_COMMAND,
    FLUSH_COMMAND,
    ROTATE_COMMAND,
    Check,
    queue_fix,
    unreadable_queue_fix,
)
from postfix_nullclient.nullclient.exit_codes import ExitCode
from postfix_nullclient.nullclient.queue_status import status_line
from postfix_nullclient.nullclient.remove_plan import DISCARD, DISCARD_FLAG, KEEP, KEEP_FLAG, REFUSE, refusal
from postfix_nullclient.nullclient.targets import (
    DEPLOY,
    Target,
    UsageError,
    add_host_key,
    fetch_host_key,
    fingerprint,
    host_data,
    host_key_known,
    run_pyinfra,
)
from postfix_nullclient.nullclient.terminal import printable
from postfix_nullclient.settings import check_host

# The operator commands' deploys, as pyinfra takes a deploy function: "module.function".
VERIFY = "postfix_nullclient.nullclient.verify.verify"
REMOVE = "postfix_nullclient.nullclient.remove.remove"
FLUSH = "postfix_nullclient.nullclient.flush.flush"
STATUS = "postfix_nullclient.nullclient.status.status"
PASSWORD_CHECK = "postfix_nullclient.nullclient.password_check.map_password"


def say(text: str = "", out: TextIO | None = None) -> None:
    """Every line a command prints: what came from a host is escaped here (terminal.printable)."""
    print(printable(text), file=out or sys.stdout, flush=True)


def confirm(question: str) -> bool:
    """A line from the user; EOF (no terminal, nothing piped) counts as no."""
    say(question)
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("", "y", "yes")


def one_host(target: Target, command: str) -> str:
    if len(target.hosts) != 1:
        raise UsageError(f"{command} works on exactly one host, got {len(target.hosts)}: name it, e.g. {command} HOST")
    return target.hosts[0]


def account(target: Target, name: str, deploys: bool = False) -> passwords.Account:
    """The host's keyring entry; for a command that deploys, every setting is checked first, as the
    deploy will check them, so that nothing is stored or touched for a deploy that would be refused."""
    data = host_data(Target(target.inventory, (name,), target.data))[name]
    if deploys:
        _, problems = check_host(name, data)
        if problems:
            raise UsageError("refusing, the settings are not right:\n  - " + "\n  - ".join(problems))
    return passwords.account_of(name, data)


# --- host keys -----------------------------------------------------------------------------------------


def ensure_host_key(address: str, port: int, known_hosts: Path, trust_on_first_use: bool) -> str:
    """The ssh_strict_host_key_checking to run pyinfra with; asks or refuses for an unknown host key."""
    if host_key_known(known_hosts, address, port):
        return "yes"
    if trust_on_first_use:
        say(f"{address}: host key not in {known_hosts}; trusting it on first use (it will be added)")
        return "accept-new"
    if not sys.stdin.isatty():
        raise UsageError(
            f"refusing: the SSH host key of {address} (port {port}) is not in {known_hosts}. Check its fingerprint "
            f"on the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and add it, or run again with "
            "--trust-on-first-use to accept the key it shows now"
        )
    try:
        key = fetch_host_key(address, port)
    except OSError as error:
        raise UsageError(f"cannot reach {address} port {port} over SSH: {error}") from error
    say(f"The SSH host key of {address} (port {port}) is not in {known_hosts}.")
    say(f"Its {key.get_name()} key fingerprint is {fingerprint(key)}")
    if not confirm("Is that the host's key (compare on the host: ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub)? [y/N]"):
        raise UsageError(f"refusing: the host key of {address} was not confirmed")
    add_host_key(known_hosts, address, port, key)
    say(f"added to {known_hosts}")
    return "yes"


# --- secret ----------------------------------------------------------------------------------------------


def _read_stdin(read: Any) -> str:
    """stdin's text, which the keyring stores as UTF-8: other bytes are refused, not garbled."""
    try:
        text: str = read()
        text.encode()  # in a C or POSIX locale Python reads stdin with surrogateescape: such bytes end up here
    except UnicodeError as error:
        raise UsageError(
            "the password on stdin is not UTF-8 text; nothing was stored. Give it as UTF-8, or let nullclient "
            "generate one (nullclient bootstrap, nullclient rotate without --stdin)"
        ) from error
    return text


def read_password_from(stdin: TextIO) -> str:
    """The first line of stdin: later lines may answer a question (rotate --stdin's)."""
    text = _read_stdin(stdin.readline)
    # One trailing line break is the end of the line, not part of the password.
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text


def read_only_line(stdin: TextIO) -> str:
    """All of stdin, which must be one line: a password with a line break cannot be stored, and the
    second line of `pass show` (a note, a user name) is not the password's end."""
    text = _read_stdin(stdin.read)
    line = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    if "\n" in line or "\r" in line:
        lines = len(line.replace("\r\n", "\n").splitlines())
        raise UsageError(
            f"--stdin takes exactly one line, the password; got {lines} lines, nothing was stored "
            "(for the first line of pass: pass show NAME | head -n 1 | nullclient secret set ... --stdin)"
        )
    return line


def prompt_password(account: passwords.Account) -> str:
    # Without a terminal getpass would read stdin, warn that it echoes, and end in EOFError: a password
    # piped in without --stdin is meant for --stdin.
    if not sys.stdin.isatty():
        raise UsageError(
            "stdin is not a terminal, so there is no prompt for the password; nothing was stored. "
            "To give it on stdin, add --stdin"
        )
    try:
        first = getpass.getpass(f"Password for {account.user} (not shown): ")
        again = getpass.getpass("The same again: ")
    except EOFError as error:  # Ctrl-D at the prompt
        raise UsageError("no password was typed (end of input); nothing was stored") from error
    if again != first:
        raise UsageError("the two passwords differ; nothing was stored")
    return first


def secret_set(target: Target, from_stdin: bool) -> int:
    name = one_host(target, "secret set")
    entry = account(target, name)
    password = read_only_line(sys.stdin) if from_stdin else prompt_password(entry)
    replaced = passwords.read(entry) is not None
    passwords.store(entry, password)
    say(f"{name}: password {'replaced' if replaced else 'stored'} ({entry.describe()})")
    return ExitCode.OK


def secret_show(target: Target, reveal: bool) -> int:
    data = host_data(target)
    if reveal:
        name = one_host(Target(target.inventory, tuple(data), target.data), "secret show --reveal")
        password = passwords.read(account(target, name))
        if password is None:
            say(f"{name}: no password in the keyring ({account(target, name).describe()})", sys.stderr)
            return ExitCode.NOT_WELL
        say(password)
        return ExitCode.OK
    every_one_stored = True
    for name, host in data.items():
        entry = passwords.account_of(name, host)
        present = passwords.read(entry) is not None
        every_one_stored &= present
        say(f"{name}: {'a password is stored' if present else 'NO password'} ({entry.describe()})")
    return ExitCode.OK if every_one_stored else ExitCode.NOT_WELL


def secret_delete(target: Target) -> int:
    name = one_host(target, "secret delete")
    entry = account(target, name)
    if passwords.delete(entry):
        say(f"{name}: password deleted ({entry.describe()})")
    else:
        say(f"{name}: there was no password ({entry.describe()})")
    return ExitCode.OK


def secret_missing(target: Target) -> int:
    if not target.inventory:
        raise UsageError("secret missing needs an inventory: nullclient secret missing -i inventory.py")
    missing = []
    for name, host in host_data(target).items():
        entry = passwords.account_of(name, host)
        if passwords.read(entry) is None:
            missing.append(name)
            say(f"{name}: NO password ({entry.describe()}); store it with: nullclient secret set -i "
                f"{target.inventory} {name}")  # fmt: skip
    if not missing:
        say(f"every host of {target.inventory} has a password in the keyring")
    return ExitCode.NOT_WELL if missing else ExitCode.OK


# --- verify ----------------------------------------------------------------------------------------------


def _tail(output: str, lines: int = 12) -> str:
    kept = [line for line in output.splitlines() if line.strip()]
    return "\n".join("      " + line for line in kept[-lines:])


def fix_text(target: Target, name: str, fix: str) -> str:
    """A check's fix with the host's own command lines in place of its placeholders (checks.ROTATE_COMMAND, ...)."""
    return (
        fix.replace(ROTATE_COMMAND, f"nullclient rotate {target.nullclient_options(name)}")
        .replace(DEPLOY_COMMAND, target.deploy_command(name))
        .replace(FLUSH_COMMAND, f"postqueue -f on {name}")
    )


def verify_report(target: Target, name: str, checks: list[Check] | None, pyinfra_said: str) -> dict:
    """One host's verdict, as `verify --json` prints it and its text shows it: each check with its fix
    (for a failure), the host "ok" only if every check is; a host that was not checked has an "error"."""
    if checks is None:
        error = f"could not be checked; pyinfra said:\n{pyinfra_said}"
        return {"host": name, "reachable": False, "ok": False, "error": error, "checks": []}
    return {
        "host": name,
        "reachable": True,
        "ok": all(check.ok for check in checks),
        "checks": [
            {**asdict(check), "fix": fix_text(target, name, check.fix) if check.fix and not check.ok else ""}
            for check in checks
        ],
    }


def verify_lines(report: dict) -> list[str]:
    """The text of one host's verify report: its name, then one line per check."""
    if not report["reachable"]:
        return [report["host"], f"  FAIL  {report['error']}"]
    return [report["host"]] + [
        f"  {'ok  ' if check['ok'] else 'FAIL'}  {check['name']}: {check['detail']}"
        + (f"; fix: {check['fix']}" if check["fix"] else "")
        for check in report["checks"]
    ]


def verify(target: Target, test_mail_timeout: int = 0, as_json: bool = False) -> int:
    """Check every target host; print one line per check, a failure with its fix (or one JSON object
    per host); OK only if every check of every host passed."""
    names = list(host_data(target))
    with tempfile.TemporaryDirectory(prefix="nullclient-verify-") as directory:
        extra = {"nullclient_report": directory, "nullclient_test_mail": str(test_mail_timeout)}
        run = run_pyinfra(target, VERIFY, extra, capture=True)
        reports = {}
        for path in Path(directory).glob("*.json"):
            report = json.loads(path.read_text())
            reports[report["host"]] = [Check(**check) for check in report["checks"]]
    said = _tail(run.stdout + run.stderr)
    results = [verify_report(target, name, reports.get(name), said) for name in names]
    failed = sum(not report["ok"] for report in results)
    if as_json:
        say(json.dumps(results, indent=2))
    else:
        for report in results:
            for line in verify_lines(report):
                say(line)
        say(f"{len(names) - failed} of {len(names)} host(s) OK" if failed else f"all {len(names)} host(s) OK")
    return ExitCode.NOT_WELL if failed else ExitCode.OK


# --- status ----------------------------------------------------------------------------------------------


def status_fix(target: Target, report: dict) -> str:
    """What fixes what a host's status shows: the queue's cause first, then the configuration's."""
    fixes = []
    if report.get("queue_error"):
        fixes.append(unreadable_queue_fix(report["queue_error"]))
    elif report.get("stuck"):
        oldest = report.get("oldest_deferred") or {}
        fixes.append(queue_fix([oldest.get("reason") or ""]))
    if report["configuration"]["current"] is False and not fixes:
        fixes.append(DEPLOY_COMMAND)
    return fix_text(target, report["host"], "; ".join(fixes))


def status(target: Target, as_json: bool = False) -> int:
    """One line (or one JSON object) per host, all hosts at once; 1 if any host has stuck mail, a
    configuration that is not the deployed one, or no answer."""
    names = list(host_data(target))
    with tempfile.TemporaryDirectory(prefix="nullclient-status-") as directory:
        run = run_pyinfra(target, STATUS, {"nullclient_report": directory}, capture=True)
        reports = {}
        for path in Path(directory).glob("*.json"):
            report = json.loads(path.read_text())
            reports[report["host"]] = report
    unreachable = {
        "reachable": False,
        "error": "could not be looked at; pyinfra said:\n" + _tail(run.stdout + run.stderr),
    }
    results = [reports.get(name) or {"host": name, **unreachable} for name in names]
    for report in results:
        if report["reachable"]:
            configuration = report["configuration"]
            configuration["detail"] = fix_text(target, report["host"], configuration["detail"])
            report["fix"] = status_fix(target, report)
    if as_json:
        say(json.dumps(results, indent=2))
    else:
        for report in results:
            fix = report.get("fix")
            say(status_line(report) + (f"; fix: {fix}" if fix and report["stuck"] else ""))
    not_well = any(not report["reachable"] or report["stuck"] or not report["configuration"]["current"]
                   for report in results)  # fmt: skip
    return ExitCode.NOT_WELL if not_well else ExitCode.OK


# --- deploy-based commands -----------------------------------------------------------------------------


def deploy(target: Target) -> bool:
    say(f"== deploying {', '.join(target.hosts) or 'every host'} with {DEPLOY}")
    return run_pyinfra(target, DEPLOY).returncode == 0


def bootstrap(target: Target, yes: bool, test_mail_timeout: int) -> int:
    name = one_host(target, "bootstrap")
    entry = account(target, name, deploys=True)  # refuses bad settings (forward_to, names) before anything else
    password = passwords.read(entry)
    if password is None:
        password = passwords.generate_password()
        passwords.store(entry, password)
        say(f"A new password for {name} is in the keyring ({entry.describe()}).")
        say("Create this account on your mail server (shown this once):")
        say(f"  login:    {entry.user}")
        say(f"  password: {password}")
    else:
        say(f"The keyring already has a password for {name} ({entry.describe()}); it is used.")
        shown = f"nullclient secret show {target.nullclient_options(name, ssh=False)} --reveal"
        say(f"Its mail-server account is {entry.user} ({shown} shows the password).")
    del password
    if not yes and not confirm(f"Press Enter once {entry.user} exists on the mail server (Ctrl-C stops) "):
        raise UsageError("not confirmed that the account exists; nothing was deployed (--yes skips this question)")
    if not deploy(target):
        say(f"the deploy of {name} failed (see above); the password stays in the keyring for the next try")
        return ExitCode.NOT_WELL
    say(f"== verifying {name} and sending a test mail")
    return verify(target, test_mail_timeout)


def map_answer(target: Target, name: str) -> tuple[str, str]:
    """Whether the host's password map holds the keyring's password: ("same" | "differs" | "none", "")
    or ("", why the host could not say). The host compares (password_check.py); only the answer returns."""
    with tempfile.TemporaryDirectory(prefix="nullclient-password-") as directory:
        run = run_pyinfra(target, PASSWORD_CHECK, {"nullclient_report": directory}, capture=True)
        reports = [json.loads(path.read_text()) for path in Path(directory).glob("*.json")]
    report = next((report for report in reports if report["host"] == name), None)
    if report is None:
        said = [line.strip() for line in (run.stdout + run.stderr).splitlines() if line.strip()]
        return "", f"pyinfra could not ask it: {(said or ['no reason given'])[-1]}"
    return report["map_password"], report["problem"]


def password_in_use(target: Target, entry: passwords.Account, new: str, old: str) -> tuple[str, str]:
    """Which password the host's map holds, asked of the host: ("new" | "old" | "", why not known).

    Leaves the keyring holding that password; when the host cannot say or holds neither, the new one:
    the next deploy puts the keyring's password on the host, so the new one is never lost."""
    answer, problem = map_answer(target, entry.host)
    if answer == "same":
        return "new", ""
    if not answer:
        return "", problem
    passwords.store(entry, old)
    answer_old, problem = map_answer(target, entry.host)
    if answer_old == "same":
        return "old", ""
    passwords.store(entry, new)
    if not answer_old:
        return "", problem
    if answer == "none":
        return "", "its password map has no entry for the relay"
    return "", "its password map holds neither the old nor the new password"


def rotate(target: Target, from_stdin: bool, yes: bool, test_mail_timeout: int) -> int:
    """New password in the keyring, deployed and live; then the mail server; then the queue flushed.

    The host switches first, so the old password keeps working on the server until the new one is live;
    mail sent in between fails AUTH with a temporary error, stays queued, and leaves at the flush.
    What the host uses is asked of the host after the deploy, whatever pyinfra's exit status: an
    operation after the switch (the watchdog, unattended-upgrades' mail) may fail once the map is new.
    """
    name = one_host(target, "rotate")
    entry = account(target, name, deploys=True)
    old = passwords.read(entry)
    if old is None:
        raise UsageError(
            f"{name} has no password yet ({entry.describe()}): use nullclient bootstrap or nullclient secret set"
        )
    new = read_password_from(sys.stdin) if from_stdin else passwords.generate_password()
    problem = passwords.password_problem(new, entry.user)
    if problem:
        raise UsageError(f"refusing the new password: {problem}")
    if new == old:
        raise UsageError("the new password is the old one; nothing to rotate")
    passwords.store(entry, new)
    say(f"1. the new password is in the keyring ({entry.describe()})")
    deployed = deploy(target)
    in_use, unknown = password_in_use(target, entry, new, old)
    outcome = "the deploy succeeded" if deployed else "the deploy failed (see above)"
    hosts_option = target.nullclient_options(name)  # the hints below run as printed
    secret_option = target.nullclient_options(name, ssh=False)
    if in_use == "old":
        say(f"{outcome}, and {name}'s password map still holds the old password: the keyring holds the old "
            f"password again, as {name} does; change nothing on the mail server. "
            f"Fix what failed, then run nullclient rotate {hosts_option} again")  # fmt: skip
        return ExitCode.NOT_WELL
    if in_use != "new":
        say(f"{outcome}, and {name} could not say which password it uses: {unknown}. The keyring holds the new "
            f"password; {name}'s map holds the old one, the new one or neither; the mail server has the old one. "
            "Change nothing on the mail server yet: deploy again until it succeeds (that puts the keyring's "
            f"password on {name}), then set the new one on the mail server; nullclient secret show {secret_option} "
            "--reveal shows it")  # fmt: skip
        return ExitCode.NOT_WELL
    if deployed:
        say(f"2. {name} uses the new password (deployed, postfix reloaded; its password map holds it, asked of "
            f"{name}); mail waits in its queue until step 3")  # fmt: skip
    else:
        say(f"2. the deploy failed after {name} switched (see above): {name}'s password map holds the new "
            "password, and so does the keyring; mail waits in its queue until step 3. The rotation goes on; "
            f"fix what failed afterwards and deploy {name} again")  # fmt: skip
    if from_stdin:
        say(f"3. set the password of {entry.user} on your mail server to the one you gave")
    else:
        say(f"3. set the password of {entry.user} on your mail server to (shown this once):")
        say(f"     {new}")
    del old, new
    waiting = (
        f"{name} already uses the new password; once the server has it, run: "
        f"nullclient verify {hosts_option} --test-mail"
    )
    try:
        confirmed = yes or confirm("Press Enter once the mail server has the new password (Ctrl-C stops) ")
    except KeyboardInterrupt:
        say(f"nullclient rotate: interrupted: {waiting}", sys.stderr)
        return ExitCode.INTERRUPTED
    if not confirmed:
        say(f"not confirmed: {waiting}")
        return ExitCode.NOT_WELL
    say("4. flushing the queue")
    if run_pyinfra(target, FLUSH).returncode != 0:
        return ExitCode.NOT_WELL
    say(f"== verifying {name}")
    verified = verify(target, test_mail_timeout)
    if not deployed:
        say(f"the password is rotated, but the deploy of {name} failed (see above): fix that and deploy again")
        return ExitCode.NOT_WELL
    return verified


def remove(
    target: Target,
    mode: str,
    forget_password: bool,
    every_host: bool = False,
    keep_queue: str | None = None,
    discard_queued_mail: bool = False,
    dry: bool = False,
) -> int:
    """Look at every host first (the remove script's dry run) and change none if one refuses; then remove."""
    data: dict[str, Any] = host_data(target)
    if target.inventory and not target.hosts and not every_host:
        raise UsageError(
            f"no host named: this would remove the null client from every host of {target.inventory} "
            f"({len(data)}: {', '.join(data)}); name the hosts, or add --all (--dry shows what it would do)"
        )
    if mode != "purge" and (keep_queue or discard_queued_mail):
        raise UsageError(f"{KEEP_FLAG} and {DISCARD_FLAG} are for --postfix purge; with stop, queued mail stays queued")
    if keep_queue and not keep_queue.isprintable():
        raise UsageError(
            f"{KEEP_FLAG} {keep_queue!r}: name a directory of printable characters, e.g. /root/postfix-queue"
        )
    if keep_queue and not posixpath.isabs(keep_queue):
        raise UsageError(f"{KEEP_FLAG} {keep_queue}: name an absolute directory on the hosts, e.g. /root/postfix-queue")
    queued_mail = KEEP if keep_queue else DISCARD if discard_queued_mail else REFUSE
    # Before anything runs: a settings problem must stop the command, not half of it.
    entries = [passwords.account_of(name, host) for name, host in data.items()] if forget_password else []
    removal = {"nullclient_remove": mode, "nullclient_queued_mail": queued_mail}
    if keep_queue:
        removal["nullclient_keep_queue"] = posixpath.normpath(keep_queue)

    plans, looked = _removal_reports(target, {**removal, "nullclient_dry": "yes"}, capture=True)
    missing = [name for name in data if name not in plans]
    if missing:
        for name in missing:
            say(f"{name}: could not be looked at; pyinfra said:", sys.stderr)
        say(_tail(looked.stdout + looked.stderr), sys.stderr)
        say("nothing was changed on any host; name only the hosts that can be reached, or try again", sys.stderr)
        return ExitCode.NOT_WELL
    refused = {name: refusal(lines) for name, lines in plans.items() if refusal(lines)}
    if dry:
        say(f"== dry run, nothing was changed: what removing the null client (postfix: {mode}) would do")
        _print_reports(data, plans)
        for entry in entries:
            say(f"{entry.host}: the password would be deleted from the keyring ({entry.describe()})")
        return ExitCode.OK
    if refused:
        raise UsageError(
            "refusing, nothing was changed on any host:\n"
            + "\n".join(f"  {name}: {reason}" for name, reason in refused.items())
        )

    say(f"== removing the null client from {', '.join(data)} (postfix: {mode})")
    done, run = _removal_reports(target, {**removal, "nullclient_dry": "no"})  # never the user's own --data
    say("== what the removal did")
    _print_reports(data, done)
    if run.returncode != 0:
        return ExitCode.NOT_WELL
    for entry in entries:
        if passwords.delete(entry):
            say(f"{entry.host}: password deleted from the keyring ({entry.describe()})")
    return ExitCode.OK


def _removal_reports(
    target: Target, removal: dict[str, str], capture: bool = False
) -> tuple[dict[str, list[str]], subprocess.CompletedProcess]:
    """Run the remove deploy file; what its script said on each host (that answered), and the run."""
    with tempfile.TemporaryDirectory(prefix="nullclient-remove-") as directory:
        run = run_pyinfra(target, REMOVE, {**removal, "nullclient_report": directory}, capture=capture)
        reports = [json.loads(path.read_text()) for path in Path(directory).glob("*.json")]
    return {report["host"]: report["lines"] for report in reports}, run


def _print_reports(names: dict[str, Any], reports: dict[str, list[str]]) -> None:
    for name in names:
        say(name)
        for line in reports.get(name, ["no report: see pyinfra's output above"]):
            say(f"  {line}")
