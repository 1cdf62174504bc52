"""--diff: what the deploy would write on a host, file by file, in one format for every file it owns.

The deploy sends its files on the stdin of its own commands, not through pyinfra's files operations,
so pyinfra's own --diff sees none of them: each operation shows its files here, while it is prepared
(once per run, with or without -y and --dry). A secret shows only that it changed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from pyinfra import host, logger, state


def wanted() -> bool:
    """The run was asked for --diff."""
    return bool(state.config.DIFF)


def show_file(label: str, old: str | None, new: str) -> None:
    """A plain file that would change: `old` None when the host does not have it yet."""
    host.log(f"Will {'create' if old is None else 'change'} {label}", logger.info)
    for line in unified_diff((old or "").splitlines(), new.splitlines()):
        logger.info("  %s", line)
    logger.info("")


def show_secret(label: str, new: bool) -> None:
    """A secret file that would change: only that it would, never a part of it."""
    if new:
        host.log(f"Will create {label}: a secret (content not shown)", logger.info)
    else:
        host.log(f"Will change {label}: the secret changed (content not shown)", logger.info)


def show_removal(label: str) -> None:
    host.log(f"Will remove {label}", logger.info)


def unified_diff(old: list[str], new: list[str]) -> Iterator[str]:
    """A unified diff with two lines of context, without file headers: "@@ ...", "- old", "+ new", "  same"."""
    for line in difflib.unified_diff(old, new, n=2, lineterm=""):
        if line.startswith(("--- ", "+++ ")):
            continue
        yield line if line.startswith("@@") else f"{line[:1] or ' '} {line[1:]}"
