"""Put the rendered files in place, build the maps, check, and reload or restart postfix.

Everything happens in one remote command (templates/scripts/apply_config.sh.j2) that either installs
the whole new configuration or restores the previous one, so a host is never left half-changed.
"""

from __future__ import annotations

import io
from collections.abc import Generator
from dataclasses import dataclass

from pyinfra import host, logger, state
from pyinfra.api import StringCommand, operation

from postfix_nullclient import diff
from postfix_nullclient.facts import HostState
from postfix_nullclient.mail_systems import HELD_DIR, held_mail_script
from postfix_nullclient.model import INIT_SYSTEMS, ORIGINALS_DIR, RESTART_SETTINGS, SECRET_STAT, ManagedFile
from postfix_nullclient.render import Meaning, render_script

OWN_MARK = "Written by postfix-nullclient"  # in the first lines of the main.cf the deploy writes


@dataclass(frozen=True)
class Plan:
    """What the apply command has to do on one host; nothing at all when `needed` is False."""

    changed: list[ManagedFile]
    maps_to_build: list[str]
    action: str  # "reload" or "restart"
    enable: bool  # the service is not enabled at boot yet
    needed: bool
    flush: bool = False  # packages come first: postfix reloads, and the mail they held back leaves


def differs(wanted: ManagedFile, found: HostState) -> bool:
    if wanted.secret:
        owner_mode = found.modes.get(wanted.name)
        return wanted.name not in found.secrets_same or owner_mode != SECRET_STAT
    return found.contents.get(wanted.name) != wanted.content


def main_cf_values(content: str | None) -> dict[str, str]:
    values = {}
    for line in (content or "").splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.startswith(("#", " ", "\t")):
            values[key.strip()] = value.strip()
    return values


def plan(files: list[ManagedFile], found: HostState, installing: bool = False) -> Plan:
    """Compare the wanted files with what the fact found; decide what the apply command does.

    `installing`: the deploy installs packages first. A running postfix then reloads even if no file
    changes, and flushes its queue: mail deferred for want of a SASL module leaves now, not at its
    next retry, which can be an hour away (maximal_backoff_time)."""
    changed = [wanted for wanted in files if differs(wanted, found)]
    names = {wanted.name for wanted in changed}
    stale_maps = [f.name for f in files if f.hashed_map and found.fresh_maps.get(f.name) != SECRET_STAT]
    # An apply killed between moving a map in and building its database leaves that database with
    # the previous content, and its date cannot tell: a staged file is dated back (apply_config.sh.j2).
    rebuild = names | set(stale_maps) if not found.interrupted else {f.name for f in files}
    maps_to_build = [f.name for f in files if f.hashed_map and f.name in rebuild]

    new_main_cf = next((f.content for f in files if f.name == "main.cf"), None)
    old, new = main_cf_values(found.contents.get("main.cf")), main_cf_values(new_main_cf)
    needs_restart = (
        found.interrupted or not found.running or any(old.get(key) != new.get(key) for key in RESTART_SETTINGS)
    )
    action = "restart" if needs_restart else "reload"
    flush = installing and found.running
    needed = bool(
        changed
        or maps_to_build
        or found.interrupted
        or found.stale_stage
        or not found.running
        or not found.enabled
        or flush
    )
    return Plan(changed, maps_to_build, action, not found.enabled, needed, flush)


def apply_script(plan: Plan, init: str, meant: Meaning) -> str:
    """The complete stdin of the apply command, for a host whose service manager is `init`; it
    installs nothing unless Postfix reads the staged configuration back as `meant`.

    Enabling an enabled service costs systemctl seconds: the script does it only where the fact
    found postfix not enabled. All of it inside { }: the shell runs nothing before it has read the
    closing brace, so a connection cut while the stdin travels runs nothing rather than a part of it.
    """
    return render_script(
        "apply_config",
        changed=plan.changed,
        maps=plan.maps_to_build,
        action=plan.action,
        init=INIT_SYSTEMS[init],
        enable=plan.enable,
        flush=plan.flush,
        parameters="".join(f"{name} = {value}\n" for name, value in meant.parameters.items()),
        lookups=meant.lookups,
        login=meant.login,
    )


def foreign_configuration(found: HostState) -> str | None:
    """What the deploy says when it replaces a main.cf it did not write (e.g. Debian's "Internet Site")."""
    content = found.contents.get("main.cf")
    if content is None or OWN_MARK in content:
        return None
    values = main_cf_values(content)
    shown = ", ".join(f"{key} = {values.get(key, '(default)')}" for key in ("inet_interfaces", "mydestination"))
    line = (
        f"replacing this host's own Postfix configuration ({shown}): postfix will listen on loopback only "
        f"and deliver nothing locally; its main.cf is kept in {ORIGINALS_DIR}/main.cf"
    )
    queued = found.queued.get("postfix", 0)
    return line + (f"; the {queued} message(s) in postfix's queue leave through the relay" if queued else "")


def show_diff(plan: Plan, found: HostState) -> None:
    """--diff: what changes in each plain file; for a secret, only that it changed.

    Called by the deploy while it prepares, so that it shows once, with or without -y and --dry.
    """
    if not diff.wanted():
        return
    for wanted in plan.changed:
        if wanted.secret:
            same = wanted.name in found.secrets_same  # only its owner or mode differs (differs())
            diff.show_secret(wanted.name, new=wanted.name not in found.modes, mode_only=SECRET_STAT if same else None)
        else:
            diff.show_file(wanted.name, found.contents.get(wanted.name), wanted.content)


def describe(plan: Plan) -> str:
    """What the apply command does, for its output: the files it writes, the maps it builds, reload or restart."""
    parts = [f"{f.name} (secret)" if f.secret else f.name for f in plan.changed]
    parts += [f"postmap {name}" for name in plan.maps_to_build]
    return f"{', '.join(parts) or 'no file changed'}; {plan.action} postfix" + (
        "; flush the queue" if plan.flush else ""
    )


@operation()
def configure(
    files: list[ManagedFile], found: HostState, init: str, meant: Meaning, installing: bool = False
) -> Generator[StringCommand, None, None]:
    """
    Make the host's Postfix configuration what ``files`` say, in one command, or do nothing.

    + files: the managed files with their wanted content (``render.render_files``)
    + found: the host's NullClientHost fact
    + init: the host's service manager, systemd or openrc
    + meant: what Postfix must read back from the new configuration (``render.meaning``), or
      nothing is installed
    + installing: the operation before installs packages (``plan``)

    The command is the apply script rendered for this host, on stdin: contents, the password
    included, never appear on a command line, in pyinfra's output or in a ``--diff``.
    """
    todo = plan(files, found, installing)
    if not todo.needed:
        host.noop("the null-client configuration is already in place and postfix runs")
        return
    replaced = foreign_configuration(found)
    if replaced and any(f.name == "main.cf" for f in todo.changed):
        host.log(replaced, logger.warning)
    if state.is_executing:  # once, where it happens; a dry run shows the files in its --diff
        host.log(describe(todo), logger.info)
    # A file-like stdin: pyinfra reads its lines, and its repr shows nothing of them.
    yield StringCommand("sh -s", _stdin=io.StringIO(apply_script(todo, init, meant)))


@operation()
def hold_mail(other_systems: bool, postfix_queue: bool) -> Generator[StringCommand, None, None]:
    """
    Before the switch, keep queued mail from leaving the way it would have: or nothing.

    + other_systems: take the mail queued by the mail systems postfix's install removes into
      ``mail_systems.HELD_DIR`` (exim4, nullmailer)
    + postfix_queue: put the mail in a Postfix queue that the deploy reconfigures on hold, until
      ``send_held_mail`` re-queues it through the new configuration

    The command is templates/scripts/held_mail.sh.j2 ("hold", "hold_postfix").
    """
    steps = [step for step, wanted in (("hold", other_systems), ("hold_postfix", postfix_queue)) if wanted]
    if not steps:
        host.noop("no queued mail to hold")
        return
    yield StringCommand("sh -s", _stdin=io.StringIO(held_mail_script(*steps)))


@operation()
def send_held_mail(held: int, postfix_queue: bool) -> Generator[StringCommand, None, None]:
    """
    Send what ``hold_mail`` held, through the new configuration and the relay: or nothing.

    + held: messages in the held directory, or taken there by this deploy (``mail_systems.HELD_DIR``)
    + postfix_queue: re-queue the mail that a reconfigured Postfix held, so that it is rewritten as
      new mail is (sender, local recipients)

    The command is templates/scripts/held_mail.sh.j2 ("requeue_postfix", "send"): a message leaves the held
    directory only once postfix has queued it; one that postfix does not take fails the operation
    and stays there.
    """
    if not held and not postfix_queue:
        host.noop("no mail of a replaced mail system waits")
        return
    if held:
        host.log(f"{held} held message(s) in {HELD_DIR} go to postfix and out through the relay", logger.info)
    steps = ["requeue_postfix", "send"] if postfix_queue else ["send"]
    yield StringCommand("sh -s", _stdin=io.StringIO(held_mail_script(*steps)))
