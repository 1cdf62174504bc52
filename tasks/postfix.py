"""Put the rendered files in place, build the maps, check, and reload or restart postfix.

Everything happens in one remote command (templates/scripts/apply_config.sh.j2) that either installs
the whole new configuration or restores the previous one, so a host is never left half-changed.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Iterator
from dataclasses import dataclass

from pyinfra import host, logger, state
from pyinfra.api import StringCommand, operation

from postfix_nullclient.facts import HostState
from postfix_nullclient.model import INIT_SYSTEMS, RESTART_SETTINGS, SECRET_STAT, ManagedFile
from postfix_nullclient.render import render_script


@dataclass(frozen=True)
class Plan:
    """What the apply command has to do on one host; nothing at all when `needed` is False."""

    changed: list[ManagedFile]
    maps_to_build: list[str]
    action: str  # "reload" or "restart"
    enable: bool  # the service is not enabled at boot yet
    needed: bool


def differs(wanted: ManagedFile, found: HostState) -> bool:
    if wanted.secret:
        owner_mode = found.modes.get(wanted.name)
        return found.sha256.get(wanted.name) != wanted.sha256 or owner_mode != SECRET_STAT
    return found.contents.get(wanted.name) != wanted.content


def main_cf_values(content: str | None) -> dict[str, str]:
    values = {}
    for line in (content or "").splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.startswith(("#", " ", "\t")):
            values[key.strip()] = value.strip()
    return values


def plan(files: list[ManagedFile], found: HostState) -> Plan:
    """Compare the wanted files with what the fact found; decide what the apply command does."""
    changed = [wanted for wanted in files if differs(wanted, found)]
    names = {wanted.name for wanted in changed}
    stale_maps = [f.name for f in files if f.hashed_map and found.fresh_maps.get(f.name) != SECRET_STAT]
    maps_to_build = [f.name for f in files if f.hashed_map and (f.name in names or f.name in stale_maps)]

    new_main_cf = next((f.content for f in files if f.name == "main.cf"), None)
    old, new = main_cf_values(found.contents.get("main.cf")), main_cf_values(new_main_cf)
    needs_restart = not found.running or any(old.get(key) != new.get(key) for key in RESTART_SETTINGS)
    action = "restart" if needs_restart else "reload"
    needed = bool(changed or maps_to_build or not found.running or not found.enabled)
    return Plan(changed, maps_to_build, action, not found.enabled, needed)


def apply_script(plan: Plan, init: str) -> str:
    """The complete stdin of the apply command, for a host whose service manager is `init`.

    Enabling an enabled service costs systemctl seconds: the script does it only where the fact
    found postfix not enabled.
    """
    return render_script(
        "apply_config",
        changed=plan.changed,
        maps=plan.maps_to_build,
        action=plan.action,
        init=INIT_SYSTEMS[init],
        enable=plan.enable,
    )


def show_diff(plan: Plan, found: HostState) -> None:
    """--diff: what changes in each plain file; for a secret, only that it changed.

    Called by the deploy while it prepares, so that it shows once, with or without -y and --dry.
    """
    if not state.config.DIFF:
        return
    for wanted in plan.changed:
        if wanted.secret:
            host.log(f"Will change {wanted.name}: the secret changed (content not shown)", logger.info)
            continue
        host.log(f"Will change {wanted.name}", logger.info)
        old_lines = (found.contents.get(wanted.name) or "").splitlines()
        for line in unified_diff(old_lines, wanted.content.splitlines()):
            logger.info("  %s", line)
        logger.info("")


def unified_diff(old: list[str], new: list[str]) -> Iterator[str]:
    """A unified diff with two lines of context, without file headers: "@@ ...", "- old", "+ new", "  same"."""
    for line in difflib.unified_diff(old, new, n=2, lineterm=""):
        if line.startswith(("--- ", "+++ ")):
            continue
        yield line if line.startswith("@@") else f"{line[:1] or ' '} {line[1:]}"


def describe(plan: Plan) -> str:
    if not plan.needed:
        return "Apply null-client configuration"
    parts = [f"{f.name} (secret)" if f.secret else f.name for f in plan.changed]
    parts += [f"postmap {name}" for name in plan.maps_to_build]
    return f"Apply null-client configuration: {', '.join(parts) or 'no file changed'}; {plan.action} postfix"


@operation()
def configure(files: list[ManagedFile], found: HostState, init: str) -> Iterator[StringCommand]:
    """
    Make the host's Postfix configuration what ``files`` say, in one command, or do nothing.

    + files: the managed files with their wanted content (``render.render_files``)
    + found: the host's NullClientHost fact
    + init: the host's service manager, systemd or openrc

    The command is the apply script rendered for this host, on stdin: contents, the password
    included, never appear on a command line, in pyinfra's output or in a ``--diff``.
    """
    todo = plan(files, found)
    if not todo.needed:
        host.noop("the null-client configuration is already in place and postfix runs")
        return
    # A file-like stdin: pyinfra reads its lines, and its repr shows nothing of them.
    yield StringCommand("sh -s", _stdin=io.StringIO(apply_script(todo, init)))
