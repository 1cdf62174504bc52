"""Run the pyinfra CLI and count the remote commands it sends, at the SSH protocol level.

Usage: python bench/pyinfra_counting.py COUNTS.json PYINFRA-ARGS...

Every remote command pyinfra runs over SSH is one paramiko `Channel.exec_command` (an SSH "exec"
channel request); every file upload opens an "sftp" subsystem. Both are counted per peer address,
whatever pyinfra layer asked for them (facts, operations, connect-time checks), and written to
COUNTS.json as {address: {"exec": N, "sftp": N, "commands": [start of each command, ...]}}, with
"_timeline": seconds from the start of this process to the end of the imports, to the first and last
SSH connect, the first and last remote command, the end, and the time spent reading the keyring
(tasks/keyring_lookup.py).
The exit code is the CLI's. Used only for counting: the timed runs use the plain `pyinfra` binary.
"""

import time

START = time.perf_counter()

# isort: off
import json  # noqa: E402
import sys  # noqa: E402

import pyinfra_cli  # noqa: E402, F401  (patches the standard library for gevent, first, as the CLI does)
from paramiko import Channel  # noqa: E402
from pyinfra.connectors.ssh import SSHConnector  # noqa: E402
from pyinfra_cli.main import cli  # noqa: E402

from postfix_nullclient import keyring_lookup  # noqa: E402
# isort: on

counts: dict[str, dict] = {}
# Seconds since this process started: where a run's wall time goes (written as "_timeline").
timeline: dict[str, float] = {"imports_done": time.perf_counter() - START, "keyring_s": 0.0, "keyring_entries": 0}


def _mark(first: str, last: str) -> None:
    now = time.perf_counter() - START
    timeline.setdefault(first, now)
    timeline[last] = now


_read_passwords = keyring_lookup.read_passwords


def _timed_read_passwords(entries):
    entries = list(entries)
    start = time.perf_counter()
    try:
        return _read_passwords(entries)
    finally:
        timeline["keyring_s"] += time.perf_counter() - start
        timeline["keyring_entries"] += len(entries)


_connect = SSHConnector.connect


def _timed_connect(self, *args, **kwargs):
    _mark("connect_first_start", "connect_last_start")
    try:
        return _connect(self, *args, **kwargs)
    finally:
        _mark("connect_first_end", "connect_last_end")


_exec_command = Channel.exec_command
_invoke_subsystem = Channel.invoke_subsystem


def _peer(channel: Channel) -> str:
    try:
        return channel.get_transport().getpeername()[0]
    except Exception:  # a closed transport: still one request, of an unknown host
        return "?"


def _entry(channel: Channel) -> dict:
    return counts.setdefault(_peer(channel), {"exec": 0, "sftp": 0, "commands": []})


def _counting_exec(self: Channel, command) -> None:
    _mark("exec_first", "exec_last")
    entry = _entry(self)
    entry["exec"] += 1
    text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
    # The start of the command, on one line, tells the commands apart; stdin (secrets) is never seen here.
    entry["commands"].append(" ".join(text.split())[:160])
    return _exec_command(self, command)


def _counting_subsystem(self: Channel, subsystem) -> None:
    if subsystem == "sftp":
        _entry(self)["sftp"] += 1
    return _invoke_subsystem(self, subsystem)


keyring_lookup.read_passwords = _timed_read_passwords
SSHConnector.connect = _timed_connect
Channel.exec_command = _counting_exec
Channel.invoke_subsystem = _counting_subsystem


def main() -> int:
    counts_file, args = sys.argv[1], sys.argv[2:]
    try:
        cli.main(args=args, prog_name="pyinfra", standalone_mode=True)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    finally:
        timeline["end"] = time.perf_counter() - START
        with open(counts_file, "w") as out:
            json.dump({**counts, "_timeline": timeline}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
