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

# Runs as root on the host; prints "key value" lines that process() below reads. It runs on every
# host at every deploy, so it starts few programs: builtins where they suffice, no systemctl (10 ms
# of CPU per call, half of this whole look at a host in the benchmark).
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
for name in {plain}; do
  if [ -f "$conf/$name" ]; then printf 'content %s ' "$name"; base64 -w0 < "$conf/$name"; echo; fi
done
for name in {secret}; do
  if [ -f "$conf/$name" ]; then
    printf 'sha256 %s ' "$name"; sha256sum < "$conf/$name"
    printf 'mode %s ' "$name"; stat -c '%U:%G:%a' "$conf/$name"
  fi
done
set -- $(postconf -h default_database_type daemon_directory 2>/dev/null)
type=${{1:-}} daemon=${{2:-}}
echo "database_type ${{type:--}}"
case "$type" in lmdb) suffix=lmdb ;; cdb) suffix=cdb ;; *) suffix=db ;; esac
for name in {maps}; do
  db="$conf/$name.$suffix"
  if [ -f "$db" ] && [ ! "$conf/$name" -nt "$db" ]; then
    printf 'map_fresh %s ' "$name"; stat -c '%U:%G:%a' "$db"
  fi
done
if command -v dpkg-query >/dev/null; then
  dpkg-query -W -f='dpkg ${{db:Status-Abbrev}} ${{Package}}\n' {packages} 2>/dev/null
elif command -v rpm >/dev/null; then
  rpm -q --qf 'package %{{NAME}}\n' {packages} 2>/dev/null | grep '^package ' || true
elif command -v pacman >/dev/null; then
  pacman -Q {packages} 2>/dev/null | sed 's/^\([^ ]*\) .*/package \1/'
elif command -v apk >/dev/null; then
  apk info -e {packages} 2>/dev/null | sed 's/^/package /'
fi
# The master process of Postfix holds the lock on its pid file; `master -t` fails when it does
# (what `postfix status` asks too, at a tenth of the cost).
if [ -x "$daemon/master" ] && ! "$daemon/master" -t 2>/dev/null; then echo "running yes"; fi
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
    modes: dict[str, str] = field(default_factory=dict)  # secret files: "owner:group:mode"
    fresh_maps: dict[str, str] = field(default_factory=dict)  # map -> its database's "owner:group:mode"
    database_type: str | None = None
    packages: set[str] = field(default_factory=set)
    init: str | None = None
    running: bool = False  # postfix's master process runs
    enabled: bool = False  # started at boot


class NullClientHost(FactBase[HostState]):
    """Files, maps, packages and service state of the Postfix null client on a host."""

    def command(self, plain_files: list[str], secret_files: list[str], maps: list[str], packages: list[str]) -> str:
        def words(items: list[str]) -> str:
            return " ".join(shlex.quote(item) for item in items) or "''"

        return _SCRIPT.format(
            conf=CONFIG_DIR,
            plain=words(plain_files),
            secret=words(secret_files),
            maps=words(maps),
            packages=words(packages),
        )

    @staticmethod
    def default() -> HostState:
        return HostState()

    def process(self, output: list[str]) -> HostState:
        state = HostState()
        for line in output:
            key, _, value = line.partition(" ")
            if key == "os":
                os_id, version, *like = value.split(" ")
                state.os_id, state.os_version, state.os_like = os_id, version, [w for w in like if w]
            elif key == "fqdn":
                state.fqdn = value.strip()
            elif key == "ipv6":
                state.ipv6 = value == "yes"
            elif key == "content":
                name, _, encoded = value.partition(" ")
                state.contents[name] = base64.b64decode(encoded).decode()
            elif key == "sha256":
                name, _, digest = value.partition(" ")
                state.sha256[name] = digest.split(" ", 1)[0]  # sha256sum prints "DIGEST  -"
            elif key == "mode":
                name, _, mode = value.partition(" ")
                state.modes[name] = mode
            elif key == "map_fresh":
                name, _, mode = value.partition(" ")
                state.fresh_maps[name] = mode
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
            elif key == "running":
                state.running = True
            elif key == "enabled":
                state.enabled = True
        return state
