"""--diff: what the deploy would write on a host, file by file, in one format for every file it owns.

The deploy sends its files on the stdin of its own commands, not through pyinfra's files operations,
so pyinfra's own --diff sees none of them: each operation shows its files here, while it is prepared
(once per run, with or without -y and --dry). A secret shows only that it changed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from pyinfra import host, logger, state

from postfix_nullclient.nullclient.terminal import printable


def wanted() -> bool:
    """The run was asked for --diff."""
    return bool(state.config.DIFF)


def show_file(label: str, old: str | None, new: str) -> None:
    """A plain file that would change: `old` None when the host does not have it yet."""
    host.log(f"Will {'create' if old is None else 'change'} {label}", logger.info)
    for line in unified_diff(lines(old or ""), lines(new)):
        logger.info("  %s", line)
    logger.info("")


def lines(text: str) -> list[str]:
    """The lines of a file as Postfix and sh read them, split at "\\n" only: a "\\r" or form feed in a
    line shows in it (escaped), rather than as two lines that the file does not have."""
    return text.removesuffix("\n").split("\n") if text else []


def show_secret(label: str, new: bool, mode_only: str | None = None) -> None:
    """A secret file that would change: only that it would, never a part of it. `mode_only`: the
    host's copy holds the same secret, and only its "owner:group:mode" changes, to this one."""
    if new:
        host.log(f"Will create {label}: a secret (content not shown)", logger.info)
    elif mode_only:
        host.log(f"Will change {label}: owner and mode to {mode_only}; the secret is the same", logger.info)
    else:
        host.log(f"Will change {label}: the secret changed (content not shown)", logger.info)


def show_removal(label: str) -> None:
    host.log(f"Will remove {label}", logger.info)


def unified_diff(old: list[str], new: list[str]) -> Iterator[str]:
    """A unified diff with two lines of context, without file headers: "@@ ...", "- old", "+ new", "  same".

    Only difflib's first two lines are its headers: a removed line "-- x" is "--- x" too, and an added
    "++ x" is "+++ x", and both must show. A character that is not printable shows escaped, as
    nullclient shows a host's text (\\x1b, \\x0d; a tab stays, as the maps' tabs must), so that a line
    of a host's file can neither move the terminal's cursor nor erase the lines above it."""
    for number, line in enumerate(difflib.unified_diff(old, new, n=2, lineterm="")):
        if number < 2:  # "--- " and "+++ ", the (empty) file names
            continue
        yield line if line.startswith("@@") else f"{line[:1] or ' '} {printable(line[1:])}"
