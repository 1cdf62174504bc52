"""Where an operator command's deploy writes each host's JSON report, for nullclient.commands to read."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pyinfra import host


def report_path() -> Path:
    """This host's report: a file of its own in the directory given as --data nullclient_report=DIR."""
    return Path(host.data.get("nullclient_report")) / f"{hashlib.sha256(host.name.encode()).hexdigest()[:16]}.json"
