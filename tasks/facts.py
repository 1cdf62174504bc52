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

# Runs as root on the host; prints "key value" lines that process() below reads.
_SCRIPT = r"""
conf={conf}
. /etc/os-release 2>/dev/null || true
echo "os ${{ID:-unknown}} ${{VERSION_ID:-unknown}} ${{ID_LIKE:-}}"
echo "fqdn $(hostname -f 2>/dev/null || uname -n)"
if grep -qs ' lo$' /proc/net/if_inet6; then echo "ipv6 yes"; else echo "ipv6 no"; fi
for name in {plain}; do
  if [ -f "$conf/$name" ]; then echo "content $name $(base64 -w0 < "$conf/$name")"; fi
done
for name in {secret}; do
  if [ -f "$conf/$name" ]; then
    echo "sha256 $name $(sha256sum < "$conf/$name" | cut -d' ' -f1)"
    echo "mode $name $(stat -c '%U:%G:%a' "$conf/$name")"
  fi
done
type=$(postconf -h default_database_type 2>/dev/null || true)
echo "database_type ${{type:--}}"
case "$type" in lmdb) suffix=lmdb ;; cdb) suffix=cdb ;; *) suffix=db ;; esac
for name in {maps}; do
  db="$conf/$name.$suffix"
  if [ -f "$db" ] && [ ! "$conf/$name" -nt "$db" ]; then
    echo "map_fresh $name $(stat -c '%U:%G:%a' "$db")"
  fi
done
if command -v dpkg-query >/dev/null; then
  dpkg-query -W -f='${{db:Status-Abbrev}} ${{Package}}\n' {packages} 2>/dev/null | sed -n 's/^ii *\(.*\)/package \1/p'
elif command -v rpm >/dev/null; then
  rpm -q --qf 'package %{{NAME}}\n' {packages} 2>/dev/null | grep '^package ' || true
elif command -v pacman >/dev/null; then
  pacman -Q {packages} 2>/dev/null | sed 's/^\([^ ]*\) .*/package \1/'
elif command -v apk >/dev/null; then
  apk info -e {packages} 2>/dev/null | sed 's/^/package /'
fi
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  echo "init systemd"
  systemctl is-active -q postfix && echo "active yes"
  systemctl is-enabled -q postfix 2>/dev/null && echo "enabled yes"
elif command -v rc-service >/dev/null; then
  echo "init openrc"
  rc-service postfix status >/dev/null 2>&1 && echo "active yes"
  rc-update show default 2>/dev/null | grep -qw postfix && echo "enabled yes"
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
    active: bool = False
    enabled: bool = False


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
                state.sha256[name] = digest
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
            elif key == "init":
                state.init = value
            elif key == "active":
                state.active = True
            elif key == "enabled":
                state.enabled = True
        return state
