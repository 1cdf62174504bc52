"""What happened to each host that failed, listed once at the end of the run.

pyinfra prints each failure where it happens, among the output of every other host; a user of many
workstations wants the list at the end, with the fix. The deploy records here what it refused and
the operations it added; at exit, every failed host of the run is listed with its reason.
"""

from __future__ import annotations

import atexit
import sys
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from pyinfra import host, logger, state
from pyinfra.api import FunctionCommand, operation
from pyinfra.api.operation import OperationMeta

from postfix_nullclient.model import MESSAGE_TAG  # what the apply script says when it refuses or rolls back


@dataclass
class RunRecord:
    """The null-client deploy's part of one pyinfra run."""

    state: Any
    refused: dict[str, str] = field(default_factory=dict)  # host name -> reason
    operations: dict[str, list[tuple[str, OperationMeta]]] = field(default_factory=dict)

    def add_operation(self, host_name: str, label: str, meta: OperationMeta) -> None:
        self.operations.setdefault(host_name, []).append((label, meta))

    def reason(self, host_name: str) -> str:
        if host_name not in {active.name for active in self.state.activated_hosts}:
            return f"unreachable: pyinfra could not connect (its reason is above, after [{host_name}])"
        if host_name in self.refused:
            return f"refused, nothing was run on it: {self.refused[host_name]}"
        for label, meta in self.operations.get(host_name, []):
            if meta.is_complete() and meta.did_error():
                stderr = meta.stderr_lines
                own = [line for line in stderr if line.startswith(MESSAGE_TAG)]
                return f"{label} failed: {(own or stderr[-1:] or ['see its output above'])[-1]}"
        if host_name in self.operations:
            return "failed, see its output above"
        return "failed before the null-client deploy started, see its output above"

    def print_failures(self) -> None:
        failed = sorted(failed_host.name for failed_host in self.state.failed_hosts)
        if not failed:
            return
        print(f"\n--> {len(failed)} host(s) failed; the others went on:", file=sys.stderr)
        for name in failed:
            print(f"    {name}: {self.reason(name)}", file=sys.stderr)


_records: WeakKeyDictionary[Any, RunRecord] = WeakKeyDictionary()


def record_of(state: Any) -> RunRecord:
    """This run's record; the first call registers the summary printed at exit."""
    if state not in _records:
        _records[state] = RunRecord(state)
        atexit.register(_records[state].print_failures)
    return _records[state]


def _fail_host(state: Any, host: Any, reason: str) -> bool:
    # pyinfra passes state and host to a callback whose parameters have these names.
    host.log_styled(f"refused: {reason}", fg="red", log_func=logger.error)
    return False  # a command that returns False fails the operation, and so the host


@operation()
def refuse(reason: str) -> Generator[FunctionCommand, None, None]:
    """
    Fail this host with ``reason`` without running anything on it: its settings or keyring entry
    are not right. The other hosts go on.

    + reason: what is wrong and how to fix it
    """
    if not state.is_executing:  # a --dry run says it too
        host.log_styled(f"will be refused: {reason}", fg="yellow", log_func=logger.warning)
    yield FunctionCommand(_fail_host, (reason,), {})
