"""The exit statuses of every `nullclient` command, and what each means: the one table, which
`nullclient --help` prints."""

from __future__ import annotations

import textwrap
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    NOT_WELL = 1
    USAGE = 2
    INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended


MEANINGS = {
    ExitCode.OK: "all well: the command did what it was asked, and every host it looked at is well",
    ExitCode.NOT_WELL: "a host is not well (a check failed, mail is stuck, the configuration is not current, "
    "no password is stored) or the command failed on a host",
    ExitCode.USAGE: "usage error or bad setting: the arguments, a setting, the input or a question's answer "
    "were refused; the message names the fix",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_status_text(width: int = 79) -> str:
    """The table for `nullclient --help`, each meaning wrapped beside its code."""
    rows = (
        textwrap.fill(MEANINGS[code], width, initial_indent=f"  {code.value:<5}", subsequent_indent=" " * 7)
        for code in ExitCode
    )
    return "exit status:\n" + "\n".join(rows)
