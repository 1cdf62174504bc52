"""End to end: a canary password, deployed and then rotated, shows up nowhere but in the password map.

While each deploy runs, two watchers look for it: one on this machine reads every process's command
line (the workstation's processes are visible here too), one on the workstation reads, as root and
in a tight loop, every file in /etc/postfix, in the apply command's staging directories and in the
shared temporary directories, noting the mode of each file that holds the canary. Afterwards the
workstation's whole written layer, its tmpfs directories and its journal are searched.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import uuid
from dataclasses import dataclass, field

import pytest

from lab import hosts, smarthost
from lab.config import FORWARD_TO, STATE_DIR
from tests.conftest import store_password
from tests.e2e.conftest import SERVICE, Workstation, deploy

# Every character that has broken a password map, a shell command or a config parser somewhere.
AWKWARD = "'\"$HOME `id` $(id) #1 :2 @3 %4 \\5 ;&|<>*?!"
THE_MAP = ("/etc/postfix/sasl_passwd", "/etc/postfix/sasl_passwd.db")
STOP_FILE = "/run/sf-secret-watch.stop"

# Runs on the workstation as `python3 -c WATCHER`; the token comes on stdin, never on a command line.
WATCHER = r"""
import json, os, stat, sys, time
token = sys.stdin.readline().strip().encode()
holders, staging, rounds = {}, {}, 0
print("ready", flush=True)

def read(path, directory_mode):
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return
    if token in data:
        seen = holders.setdefault(path, [])
        entry = [oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, directory_mode]
        if entry not in seen:
            seen.append(entry)

def scan(directory, directory_mode=None):
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".nullclient.") and directory == "/etc/postfix":
            try:
                st = os.lstat(entry.path)
            except OSError:
                continue
            staging.setdefault(entry.path, [oct(stat.S_IMODE(st.st_mode)), st.st_uid])
            for root, _, files in os.walk(entry.path):
                for name in files:
                    read(os.path.join(root, name), staging[entry.path][0])
        else:
            read(entry.path, directory_mode)

deadline = time.monotonic() + 600
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    for directory in ("/etc/postfix", "/tmp", "/var/tmp", "/dev/shm", "/root", "/run"):
        scan(directory)
    rounds += 1
print(json.dumps({"holders": holders, "staging": staging, "rounds": rounds}), flush=True)
"""


class ProcessWatch(threading.Thread):
    """Reads every process's command line on this machine (the lab hosts' included) until stopped."""

    def __init__(self, token: bytes) -> None:
        super().__init__(daemon=True)
        self.token = token
        self.leaks: list[str] = []  # argv[0] of each process whose command line held the token
        self.apply_steps: set[str] = set()  # proof that the watch saw the apply command's short steps
        self.rounds = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                        cmdline = f.read()
                except OSError:
                    continue
                if self.token in cmdline:
                    self.leaks.append(cmdline.split(b"\0")[0].decode(errors="replace"))
                for step in (b"postmap", b"postfix check", b"postfix-script"):
                    if step in cmdline:
                        self.apply_steps.add(step.decode())
            self.rounds += 1

    def __enter__(self) -> ProcessWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join(10)


class FileWatch:
    """The WATCHER on a workstation, from before a deploy until after it."""

    def __init__(self, workstation: Workstation, token: str) -> None:
        self.workstation = workstation
        self.token = token
        self.result: dict = {}

    def __enter__(self) -> FileWatch:
        self.workstation.run(f"rm -f {STOP_FILE}")
        command = f"python3 -c {shlex.quote(WATCHER)} {STOP_FILE}"
        self.process = subprocess.Popen(
            ["ssh", *hosts.ssh_options(), self.workstation.address, command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.process.stdin.write(self.token + "\n")
        self.process.stdin.close()
        assert self.process.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.workstation.run(f"touch {STOP_FILE}")
            self.process.wait(timeout=60)  # its one line of JSON fits in the pipe
            self.result = json.loads(self.process.stdout.read())
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.workstation.run(f"rm -f {STOP_FILE}", check=False)


@dataclass
class Evidence:
    tokens: list[str]
    outputs: dict[str, str] = field(default_factory=dict)  # run name -> pyinfra's output
    process_watches: list[ProcessWatch] = field(default_factory=list)
    file_watches: list[dict] = field(default_factory=list)


def canary() -> tuple[str, str]:
    """(password, token): the token, unique to this password, is what every search looks for."""
    token = f"sfcanary{uuid.uuid4().hex[:16]}"
    return f"{token} {AWKWARD}", token


def watched_deploy(evidence: Evidence, name: str, env: dict, workstation: Workstation, *args: str) -> None:
    token = evidence.tokens[-1]
    with ProcessWatch(token.encode()) as processes, FileWatch(workstation, token) as files:
        run = deploy(env, [workstation], *args)
    evidence.outputs[name] = run.output
    evidence.process_watches.append(processes)
    evidence.file_watches.append(files.result)
    assert run.returncode == 0, f"{name} failed (exit {run.returncode})"


@pytest.fixture(scope="module")
def evidence(make_workstations, keyring_env) -> tuple[Workstation, Evidence]:
    """Deploy a canary with -vvv --diff, rotate it (dry run first), deploy the new one with --json too."""
    first, first_token = canary()
    [sf1] = make_workstations(["sf1"], passwords={"sf1": first})
    found = Evidence(tokens=[first_token])
    watched_deploy(found, "first deploy -vvv --diff", keyring_env, sf1, "-vvv", "--diff")

    second, second_token = canary()
    found.tokens.append(second_token)
    store_password(keyring_env, SERVICE, sf1.smtp_user, second)
    smarthost.set_account(STATE_DIR, sf1.smtp_user, second)
    dry = deploy(keyring_env, [sf1], "--dry", "--diff")
    assert dry.returncode == 0, dry.output
    found.outputs["rotation --dry --diff"] = dry.output
    watched_deploy(found, "rotation -vvv --diff --json", keyring_env, sf1, "-vvv", "--diff", "--json")
    return sf1, found


def test_the_canary_is_in_no_output_label_or_json(evidence):
    _, found = evidence
    assert "sasl_passwd (secret)" in found.outputs["rotation -vvv --diff --json"], "the apply operation's output"
    for name, output in found.outputs.items():
        for token in found.tokens:
            assert token not in output, f"the canary is in the output of the {name}"
        assert AWKWARD not in output


def test_dry_diff_of_the_rotation_says_the_secret_changed_and_shows_nothing_of_it(evidence):
    _, found = evidence
    dry = found.outputs["rotation --dry --diff"]
    assert "Will change sasl_passwd: the secret changed (content not shown)" in dry, dry
    assert "Will change main.cf" not in dry, "only the secret changed"


def test_the_canary_is_on_no_process_command_line_during_the_deploys(evidence):
    _, found = evidence
    for watch in found.process_watches:
        assert watch.leaks == [], f"processes with the canary on their command line: {watch.leaks}"
        # The watch was fine-grained enough to see the apply command's short-lived steps.
        assert watch.apply_steps, f"the process watch saw none of the apply steps in {watch.rounds} rounds"


def test_only_root_only_files_hold_the_canary_from_their_first_byte(evidence):
    _, found = evidence
    for watch in found.file_watches:
        assert watch["staging"], f"the file watch never saw a staging directory ({watch['rounds']} rounds)"
        for path, (mode, uid) in watch["staging"].items():
            assert (mode, uid) == ("0o700", 0), f"staging directory {path} is {mode} uid {uid}"
        assert set(watch["holders"]) & set(THE_MAP), "the watch must have seen the map itself"
        for path, seen in watch["holders"].items():
            assert path in THE_MAP or path.startswith("/etc/postfix/.nullclient."), f"{path} holds the canary"
            for mode, uid, gid, directory_mode in seen:
                assert (mode, uid, gid) == ("0o600", 0, 0), f"{path} held the canary as {mode} {uid}:{gid}"
                if path not in THE_MAP:
                    assert directory_mode == "0o700", f"{path} held the canary in a directory {directory_mode}"


def test_no_file_or_journal_on_the_workstation_holds_the_canary(evidence):
    sf1, found = evidence
    patterns = "\n".join(found.tokens) + "\n"
    # What the workstation wrote to disk: its overlay's upper layer, searched from this machine.
    upper = STATE_DIR / "hosts" / sf1.name / "upper"
    on_disk = subprocess.run(["grep", "-rlsF", "-f", "-", str(upper)], input=patterns, capture_output=True, text=True)
    allowed = {str(upper) + path for path in THE_MAP}
    assert sorted(set(on_disk.stdout.splitlines()) - allowed) == []
    assert set(on_disk.stdout.splitlines()) == allowed, "the search must find the map and its database"
    # Its memory file systems (/run holds the volatile journal, /tmp, /dev/shm), searched on it.
    in_memory = sf1.run("grep -rlsF -f - /run /tmp /dev/shm /var/tmp /root /home || true", input=patterns)
    assert in_memory.stdout.split() == []
    journal = sf1.run("journalctl --no-pager -o export").stdout
    assert not any(token in journal for token in found.tokens)
    modes = sf1.run("stat -c '%n %U:%G:%a' " + " ".join(THE_MAP)).stdout.splitlines()
    assert modes == [f"{path} root:root:600" for path in THE_MAP]


def test_after_the_rotation_mail_goes_out_with_the_new_password(evidence):
    sf1, _ = evidence
    subject = f"rotated {uuid.uuid4().hex[:10]}"
    sf1.run(f"echo rotated | mail -s '{subject}' root")
    [message] = smarthost.wait_for_messages(STATE_DIR, 1, 60, lambda m: m["subject"] == subject)
    # The relay knows only the new password (set_account in the fixture): the rotation really happened.
    assert message["auth_user"] == sf1.smtp_user and message["rcpt_tos"] == [FORWARD_TO]
