"""One fact that tells everything the deploy needs about a host, in a single remote command.

A no-change run costs this one command: file contents and hashes, map freshness, packages,
service state, FQDN and IPv6. The secret map is only ever hashed here, never read back.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass, field

from pyinfra.api import FactBase

CONFIG_DIR = "/etc/postfix"
# Exists while an apply runs between moving files in and postfix's reload: left behind, it means the
# run was killed there, and the next deploy applies and restarts again (tasks/apply_config.sh).
PENDING_MARK = "/var/lib/postfix-nullclient/applying"

# Runs as root on the host; prints "key value" lines (and sha256sum's own "DIGEST  NAME" lines) that
# process() below reads. It runs on every host at every deploy, and on a lab of many hosts their
# CPU is the deploy's cost: so it starts few programs (a Postfix tool or dpkg-query costs 3-6 ms,
# a coreutil about 1, a builtin nothing), and none of systemctl or `master -t`.
_SCRIPT = r"""
conf={conf}
. /etc/os-release 2>/dev/null || true
echo "os ${{ID:-unknown}} ${{VERSION_ID:-unknown}} ${{ID_LIKE:-}}"
echo "fqdn $(hostname -f 2>/dev/null || uname -n)"
ipv6=no
if [ -r /proc/net/if_inet6 ]; then
  while read -r _ _ _ _ _ device; do [ "$device" = lo ] && ipv6=yes; done < /proc/net/if_inet6
fi
echo "ipv6 $ipv6"
set -- $(postconf -h default_database_type queue_directory 2>/dev/null)
type=${{1:-}} queue=${{2:-}}
echo "database_type ${{type:--}}"
case "$type" in lmdb) suffix=lmdb ;; cdb) suffix=cdb ;; *) suffix=db ;; esac
if cd "$conf" 2>/dev/null; then
  for name in {plain}; do
    if [ -f "$name" ]; then printf 'content %s ' "$name"; base64 -w0 < "$name"; echo; fi
  done
  secrets=
  for name in {secret}; do [ -f "$name" ] && secrets="$secrets $name"; done
  databases=
  for name in {maps}; do
    if [ -f "$name.$suffix" ] && [ ! "$name" -nt "$name.$suffix" ]; then
      echo "map_fresh $name $name.$suffix"
      databases="$databases $name.$suffix"
    fi
  done
  # Names come from the deploy's own file list: plain words, so unquoted lists split right.
  [ -n "$secrets" ] && sha256sum $secrets
  [ -n "$secrets$databases" ] && stat -c 'mode %n %U:%G:%a' $secrets $databases
fi
if command -v dpkg-query >/dev/null; then
  dpkg-query -W -f='dpkg ${{db:Status-Abbrev}} ${{Package}}\n' {packages} 2>/dev/null
elif command -v rpm >/dev/null; then
  rpm -q --qf 'package %{{NAME}}\n' {packages} 2>/dev/null | grep '^package ' || true
elif command -v pacman >/dev/null; then
  pacman -Q {packages} 2>/dev/null | sed 's/^\([^ ]*\) .*/package \1/'
elif command -v apk >/dev/null; then
  apk info -e {packages} 2>/dev/null | sed 's/^/package /'
fi
# Queued mail, as "queued NAME COUNT": another mail system's (which postfix's install removes), the
# messages the deploy took out of it and has not handed to postfix yet ("held"), and Postfix's own.
count_queued() {{  # NAME FILE...: a glob that matched nothing stays itself, and does not exist
  name=$1 n=0
  shift
  for file in "$@"; do [ -e "$file" ] && n=$((n + 1)); done
  [ "$n" -eq 0 ] || echo "queued $name $n"
}}
{queues}
[ -n "$queue" ] && count_queued postfix "$queue"/deferred/*/* "$queue"/active/* "$queue"/incoming/* \
  "$queue"/maildrop/* "$queue"/hold/*
# An apply killed between moving files in and postfix's reload (PENDING_MARK).
[ -e {pending} ] && echo "interrupted yes"
# Running: the pid in Postfix's pid file is a live process called master (what `postfix status`
# asks, with builtins only). A pid file left by a killed master names a dead or another process.
pid=
[ -n "$queue" ] && [ -r "$queue/pid/master.pid" ] && read -r pid < "$queue/pid/master.pid"
case "$pid" in
  ''|*[!0-9]*) ;;
  *) [ -r "/proc/$pid/comm" ] && read -r process < "/proc/$pid/comm" && [ "$process" = master ] && echo "running yes" ;;
esac
# Enabled at boot: the link that `systemctl enable` makes for the WantedBy of postfix.service,
# or the runlevel link of `rc-update add`.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  echo "init systemd"
  for link in /etc/systemd/system/*.wants/postfix.service; do
    [ -e "$link" ] && echo "enabled yes" && break
  done
elif command -v rc-service >/dev/null; then
  echo "init openrc"
  [ -e /etc/runlevels/default/postfix ] && echo "enabled yes"
fi
true
"""


@dataclass
class HostState:
    """What the NullClientHost fact found on one host."""

    os_id: str = "unknown"
    os_version: str = "unknown"
    os_like: list[str] = field(default_factory=list)
    fqdn: str = ""
    ipv6: bool = False
    contents: dict[str, str] = field(default_factory=dict)  # plain files, by name
    sha256: dict[str, str] = field(default_factory=dict)  # secret files, by name
    modes: dict[str, str] = field(default_factory=dict)  # secret files, fresh databases: "owner:group:mode"
    fresh_maps: dict[str, str] = field(default_factory=dict)  # map -> its database's "owner:group:mode"
    database_type: str | None = None
    packages: set[str] = field(default_factory=set)
    init: str | None = None
    running: bool = False  # postfix's master process runs
    interrupted: bool = False  # an apply was killed half-way: apply and restart again
    queued: dict[str, int] = field(default_factory=dict)  # mail system (or "held") -> messages queued
    enabled: bool = False  # started at boot


class NullClientHost(FactBase[HostState]):
    """Files, maps, packages and service state of the Postfix null client on a host."""

    def command(
        self,
        plain_files: list[str],
        secret_files: list[str],
        maps: list[str],
        packages: list[str],
        queues: dict[str, list[str]] | None = None,
        pending: str = PENDING_MARK,
    ) -> str:
        """queues: per mail system, shell globs that match one file per queued message (unquoted);
        pending: the file an interrupted apply leaves behind."""

        def words(items: list[str]) -> str:
            return " ".join(shlex.quote(item) for item in items) or "''"

        return _SCRIPT.format(
            conf=CONFIG_DIR,
            plain=words(plain_files),
            secret=words(secret_files),
            maps=words(maps),
            packages=words(packages),
            pending=shlex.quote(pending),
            queues="\n".join(
                f"count_queued {shlex.quote(name)} {' '.join(globs)}" for name, globs in (queues or {}).items()
            ),
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
            elif key == "running":
                state.running = True
            elif key == "enabled":
                state.enabled = True
        state.fresh_maps = {name: state.modes.get(database, "") for name, database in databases.items()}
        return state


def _is_sha256(word: str) -> bool:
    return len(word) == 64 and all(c in "0123456789abcdef" for c in word)
