"""One summary, at the end of a run, of the hosts that failed and why.

pyinfra prints each failure where it happens, among the output of every other host; a user of many
workstations wants the list at the end. config.py registers this before pyinfra connects, so that
unreachable hosts are seen too.
"""

from __future__ import annotations

import atexit
import sys
from typing import Any

from pyinfra.api.state import BaseStateCallback

OWN_MESSAGE = "postfix-nullclient:"  # what tasks/apply_config.sh says when it refuses or rolls back


class FailureSummary(BaseStateCallback):
    def __init__(self, state: Any) -> None:
        self.state = state
        self.unreachable: dict[str, str] = {}
        self.failed: list[tuple[Any, str]] = []  # (host, op_hash)

    def host_connect_error(self, state: Any, host: Any, error: Any) -> None:
        self.unreachable[host.name] = str(error) or type(error).__name__

    def operation_host_error(self, state: Any, host: Any, op_hash: str, *retries: Any) -> None:
        self.failed.append((host, op_hash))

    def reasons(self) -> dict[str, str]:
        reasons = {name: f"unreachable: {error}" for name, error in self.unreachable.items()}
        for host, op_hash in self.failed:
            names = ", ".join(sorted(self.state.get_op_meta(op_hash).names)) or "an operation"
            try:
                stderr = self.state.get_op_data_for_host(host, op_hash).operation_meta.stderr_lines
            except Exception:  # the operation never completed: its name is all there is
                stderr = []
            own = [line for line in stderr if line.startswith(OWN_MESSAGE)]
            detail = (own or stderr[-1:] or ["see its output above"])[-1]
            reasons[host.name] = f"{names} failed: {detail}"
        return reasons

    def print(self) -> None:
        reasons = self.reasons()
        if not reasons:
            return
        print(f"\n--> {len(reasons)} host(s) failed; the others went on:", file=sys.stderr)
        for name, reason in sorted(reasons.items()):
            print(f"    {name}: {reason}", file=sys.stderr)


def report_failures_at_exit(state: Any) -> None:
    summary = FailureSummary(state)
    state.add_callback_handler(summary)
    atexit.register(summary.print)
