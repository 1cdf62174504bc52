"""One fact that tells everything the deploy needs about a host, in a single remote command.

A no-change run costs this one command: file contents and hashes, map freshness, packages,
service state, FQDN and IPv6. The secret map is never read back: the deploy sends the SHA-256 of what
it would write on the command's stdin (`secret_digests`), and the host says only whether it is the same.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pyinfra.api import FactBase

from postfix_nullclient.model import APPLYING_MARK, ManagedFile
from postfix_nullclient.render import render_script


@dataclass
class HostState:
    """What the NullClientHost fact found on one host."""

    os_id: str = "unknown"
    os_version: str = "unknown"
    os_like: list[str] = field(default_factory=list)
    fqdn: str = ""
    ipv6: bool = False
    contents: dict[str, str] = field(default_factory=dict)  # plain files, by name
    sha256: dict[str, str] = field(default_factory=dict)  # the alert sources' files, by path
    secrets_same: set[str] = field(default_factory=set)  # secret files that hold what the deploy sent the digest of
    modes: dict[str, str] = field(default_factory=dict)  # secret files, fresh databases: "owner:group:mode"
    fresh_maps: dict[str, str] = field(default_factory=dict)  # map -> its database's "owner:group:mode"
    database_type: str | None = None
    packages: set[str] = field(default_factory=set)
    init: str | None = None
    running: bool = False  # postfix's master process runs
    interrupted: bool = False  # an apply was killed half-way: apply and restart again
    stale_stage: bool = False  # an apply killed before that left its staging directory: apply again
    queued: dict[str, int] = field(default_factory=dict)  # mail system (or "held") -> messages queued
    enabled: bool = False  # started at boot
    watchdog_enabled: bool = False  # the watchdog's systemd timer is enabled
    network_stacks: set[str] = field(default_factory=set)  # alerts.NETWORK_STACKS that the host uses


class NullClientHost(FactBase[HostState]):
    """Files, maps, packages and service state of the Postfix null client on a host.

    The managed files are the model's LAYOUT; `packages` are the ones to look for, `alert_files` the
    alert sources' and watchdog's files to hash, `timer_link` the watchdog timer's enable link,
    `queues` per other mail system the shell globs that match one file per queued message.
    """

    def command(
        self,
        packages: list[str],
        alert_files: Sequence[str] = (),
        timer_link: str = "/nonexistent",
        queues: dict[str, list[str]] | None = None,
        network_stacks: dict[str, str] | None = None,
    ) -> str:
        return render_script(
            "fact",
            packages=packages,
            alert_files=list(alert_files),
            timer_link=timer_link,
            queues=queues or {},
            network_stacks=network_stacks or {},
            applying_mark=APPLYING_MARK,
        )

    @staticmethod
    def default() -> HostState:
        return HostState()

    def process(self, output: list[str]) -> HostState:
        state = HostState()
        databases: dict[str, str] = {}  # fresh map -> the name of its database
        for line in output:
            key, _, value = line.partition(" ")
            if _is_sha256(key):  # sha256sum: "DIGEST  NAME"
                state.sha256[value.lstrip(" *")] = key
            elif key == "secret_same":
                state.secrets_same.add(value.strip())
            elif key == "os":
                os_id, version, *like = value.split(" ")
                state.os_id, state.os_version, state.os_like = os_id, version, [w for w in like if w]
            elif key == "fqdn":
                state.fqdn = value.strip()
            elif key == "ipv6":
                state.ipv6 = value == "yes"
            elif key == "content":
                name, _, encoded = value.partition(" ")
                state.contents[name] = base64.b64decode(encoded).decode()
            elif key == "mode":
                name, _, mode = value.partition(" ")
                state.modes[name] = mode
            elif key == "map_fresh":
                name, _, database = value.partition(" ")
                databases[name] = database
            elif key == "database_type":
                state.database_type = None if value == "-" else value
            elif key == "package":
                state.packages.add(value.strip())
            elif key == "dpkg":  # "ii  NAME": installed; any other status is not
                status, _, name = value.partition(" ")
                if status == "ii":
                    state.packages.add(name.strip())
            elif key == "init":
                state.init = value
            elif key == "queued":
                name, _, count = value.partition(" ")
                state.queued[name] = int(count)
            elif key == "interrupted":
                state.interrupted = True
            elif key == "stale_stage":
                state.stale_stage = True
            elif key == "running":
                state.running = True
            elif key == "enabled":
                state.enabled = True
            elif key == "watchdog_enabled":
                state.watchdog_enabled = True
            elif key == "network_stack":
                state.network_stacks.add(value.strip())
        state.fresh_maps = {name: state.modes.get(database, "") for name, database in databases.items()}
        return state


class HiddenStdin:
    """A fact's stdin that pyinfra's output never shows: pyinfra prints a fact's arguments, _stdin
    among them, at -vvv with str(), which here is *MASKED*; it sends the lines (readlines)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def readlines(self) -> list[str]:
        return list(self.lines)

    def __iter__(self) -> Iterator[str]:
        return iter(self.lines)

    def __str__(self) -> str:
        return "*MASKED*"

    __repr__ = __str__


def secret_digests(files: list[ManagedFile]) -> HiddenStdin:
    """The stdin of the fact: "NAME DIGEST" for each secret file the deploy would write."""
    return HiddenStdin([f"{f.name} {f.sha256}\n" for f in files if f.secret])


def _is_sha256(word: str) -> bool:
    return len(word) == 64 and all(c in "0123456789abcdef" for c in word)
