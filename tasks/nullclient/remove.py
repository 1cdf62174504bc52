"""The deploy of `nullclient remove`: take the null client off each host, in one command.

Run by nullclient.commands as `pyinfra INVENTORY postfix_nullclient.nullclient.remove.remove` with
`--data nullclient_remove=stop|purge`, `nullclient_queued_mail` (refuse, keep or discard),
`nullclient_keep_queue=DIR` for keep, and `nullclient_report=DIR`, where it writes one JSON file per
host with what the remove script said. With `nullclient_dry=yes` it changes nothing: the report is
the script's dry run (the RemovalPlan fact). Otherwise the script (templates/scripts/remove.sh.j2)
is sent on stdin like the deploy's own apply command, and the report follows it.
"""

import json
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import python, server

from postfix_nullclient.distro import look_at
from postfix_nullclient.nullclient.remove_plan import REFUSE, RemovalPlan, remove_script, said
from postfix_nullclient.nullclient.reports import report_path


def write_report(report: Path, lines: list[str]) -> None:
    report.write_text(json.dumps({"host": host.name, "lines": lines}))


def write_report_of(report: Path, removal: OperationMeta) -> None:
    write_report(report, said(removal.stdout_lines))


@deploy("nullclient remove")
def remove() -> None:
    """Remove the null client from each host, or with nullclient_dry=yes say what that would do."""
    _, family = look_at(host)
    mode = str(host.data.get("nullclient_remove"))
    queued_mail = str(host.data.get("nullclient_queued_mail") or REFUSE)
    keep_dir = str(host.data.get("nullclient_keep_queue") or "")
    if host.data.get("nullclient_dry") == "yes":
        write_report(report_path(), host.get_fact(RemovalPlan, mode, queued_mail, keep_dir, family.name))
        return
    done = server.shell(
        name=f"Remove the null client: delete the password map, restore the original files, "
        f"{shlex.quote(mode)} postfix",
        commands=["sh -s"],
        _stdin=remove_script(mode, family, queued_mail, keep_dir),
    )
    python.call(name="Report what the removal did", function=write_report_of, report=report_path(), removal=done)
