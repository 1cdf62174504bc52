"""What `nullclient status` learns from a host in one command, and how it sums it up.

The command is the deploy's own fact script (so "configuration current" is judged exactly as the
deploy would) followed by templates/scripts/status.sh.j2: the queue (`postqueue -j`) and the watchdog's
state (when it last ran, what it last said). Nothing secret is read.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyinfra.api import FactBase

from postfix_nullclient import alerts
from postfix_nullclient.facts import HostState, NullClientHost
from postfix_nullclient.render import render_script


@dataclass
class QueueStatus:
    found: HostState = field(default_factory=HostState)  # the deploy's fact
    now: int = 0
    queue: list[dict] = field(default_factory=list)
    queue_error: str = ""
    watchdog_ran: int | None = None  # epoch seconds of its last run
    watchdog_said: str = ""
    watchdog_problem: bool = False


class NullClientStatus(FactBase[QueueStatus]):
    """The NullClientHost fact, plus the queue and the watchdog's state: one command. NullClientHost's
    command and parsing, not its subclass: its facts are a HostState, these a QueueStatus."""

    # pyinfra passes a fact's arguments by the names in its signature: so spelled out, as NullClientHost's.
    def command(
        self,
        packages: list[str],
        alert_files: Sequence[str] = (),
        timer_link: str = "/nonexistent",
        queues: dict[str, list[str]] | None = None,
        network_stacks: dict[str, str] | None = None,
    ) -> str:
        found = NullClientHost().command(packages, alert_files, timer_link, queues, network_stacks)
        return found + render_script("status", state_dir=alerts.WATCHDOG_STATE)

    @staticmethod
    def default() -> QueueStatus:
        return QueueStatus()

    def process(self, output: list[str]) -> QueueStatus:
        status = QueueStatus(found=NullClientHost().process(output))
        for line in output:
            key, _, value = line.partition(" ")
            if key == "now":
                status.now = int(value)
            elif key == "queue" and value.strip():
                try:
                    status.queue.append(json.loads(value))
                except json.JSONDecodeError:
                    status.queue_error = f"postqueue -j printed: {value.strip()}"
            elif key == "queue_error":
                status.queue_error = (status.queue_error + " " + value.strip()).strip()
            elif key == "watchdog_ran":
                status.watchdog_ran = int(value)
            elif key == "watchdog_said":
                status.watchdog_said = value.strip()
            elif key == "watchdog_problem":
                status.watchdog_problem = True
        return status


def age_text(seconds: int) -> str:
    """4000 -> "1h 6m", 420 -> "7m", 40 -> "40s"."""
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _reason(entry: dict) -> str:
    reasons = [r.get("delay_reason") for r in entry.get("recipients", []) if r.get("delay_reason")]
    return reasons[0] if reasons else "waiting for its first delivery attempt"


# Postfix's words for a delivery that failed because this machine had no network (or the network
# blocked the relay): a connection or name lookup that failed, not an answer of the relay.
NETWORK_REASONS = re.compile(
    r"Network is unreachable|No route to host|Connection timed out|Connection refused|Host or domain name not found"
    r"|Name service error|Temporary failure in name resolution|conversation with \S+ timed out"
)


def _utc(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def offline_and_oldest(status: QueueStatus, lifetime: int) -> dict:
    """Since when mail waits for the network (the oldest message deferred for a network reason: it was
    written then, or the network went before its first try), and the oldest message with its expiry."""
    arrivals = [(int(entry.get("arrival_time", status.now)), entry) for entry in status.queue]
    offline = [(arrival, entry) for arrival, entry in arrivals if NETWORK_REASONS.search(_reason(entry))]
    first_offline = min(offline, key=lambda pair: pair[0], default=None)
    oldest = min(arrivals, key=lambda pair: pair[0], default=None)
    return {
        "queue_lifetime_seconds": lifetime,
        "offline_since": None
        if first_offline is None
        else {"at": first_offline[0], "utc": _utc(first_offline[0]), "reason": _reason(first_offline[1])},
        "oldest": None
        if oldest is None
        else {
            "queue_id": oldest[1].get("queue_id"),
            "age_seconds": status.now - oldest[0],
            "expires_in_seconds": oldest[0] + lifetime - status.now,
            "expires_utc": _utc(oldest[0] + lifetime),
        },
    }


def summary(
    host_name: str, status: QueueStatus, threshold: int, current: bool | None, detail: str, lifetime: int = 5 * 86400
) -> dict:
    """One host's status, as `--json` prints it; `stuck` counts messages older than the threshold;
    `lifetime`: the queue lifetime, the seconds Postfix tries a message before it gives it up."""
    ages = [(status.now - int(entry.get("arrival_time", status.now)), entry) for entry in status.queue]
    deferred = [(age, entry) for age, entry in ages if entry.get("queue_name") == "deferred"]
    oldest = max(deferred, key=lambda pair: pair[0], default=None)
    return {
        "host": host_name,
        "reachable": True,
        "queue_size": len(status.queue),
        "queue_error": status.queue_error or None,
        "threshold_seconds": threshold,
        "stuck": sum(1 for age, _ in ages if age > threshold) + (1 if status.queue_error else 0),
        "oldest_deferred": None
        if oldest is None
        else {"queue_id": oldest[1].get("queue_id"), "age_seconds": oldest[0], "reason": _reason(oldest[1])},
        "watchdog": {
            "last_run_seconds_ago": None if status.watchdog_ran is None else status.now - status.watchdog_ran,
            "last_said": status.watchdog_said or None,
            "warning_active": status.watchdog_problem,
        },
        **offline_and_oldest(status, lifetime),
        "configuration": {"current": current, "detail": detail},
    }


def status_line(report: dict) -> str:
    """One line per host: verdict, queue, oldest deferred message, watchdog, configuration."""
    if not report.get("reachable"):
        return f"{report['host']}: UNKNOWN  {report.get('error', 'could not be reached')}"
    verdict = "STUCK" if report["stuck"] else "ok   " if report["configuration"]["current"] else "FAIL "
    # An unreadable queue has no size to show: never "queue 0".
    parts = [f"queue unreadable: {report['queue_error']}" if report["queue_error"] else f"queue {report['queue_size']}"]
    if offline := report.get("offline_since"):
        parts.append(f"offline since {offline['utc']} ({offline['reason']})")
    if message := report.get("oldest"):
        left = message["expires_in_seconds"]
        expires = f"in {age_text(left)}" if left > 0 else "at its next delivery attempt"
        parts.append(
            f"oldest message {message['queue_id']} {age_text(message['age_seconds'])} old, "
            f"Postfix gives it up {expires} ({message['expires_utc']})"
        )
    oldest = report["oldest_deferred"]
    if oldest:
        parts.append(f"oldest deferred {oldest['queue_id']} {age_text(oldest['age_seconds'])}: {oldest['reason']}")
    watchdog = report["watchdog"]
    if watchdog["last_run_seconds_ago"] is None:
        parts.append("watchdog never ran")
    else:
        said = watchdog["last_said"] or "nothing yet"
        parts.append(f"watchdog ran {age_text(watchdog['last_run_seconds_ago'])} ago, last said: {said}")
    configuration = report["configuration"]
    parts.append("configuration current" if configuration["current"] else f"configuration {configuration['detail']}")
    return f"{report['host']}: {verdict} " + "; ".join(parts)
