"""What differs between distribution families: packages, CA bundle, package manager, service manager.

The family comes from the host's /etc/os-release (ID, then ID_LIKE), read by the one fact.
Postfix's own database type needs no entry here: the host's `postconf -h default_database_type`
decides it where the maps are built (templates/main.cf.j2, tasks/apply_config.sh).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyinfra.api.exceptions import PyinfraError

from postfix_nullclient.facts import HostState, NullClientHost
from postfix_nullclient.mail_systems import HELD_DIR, MAIL_SYSTEMS
from postfix_nullclient.mail_systems import PACKAGES as OTHER_MAIL_PACKAGES
from postfix_nullclient.render import LAYOUT


class UnsupportedHost(PyinfraError):
    """A host this deploy does not know how to configure: refused before any change."""


@dataclass(frozen=True)
class Family:
    name: str
    os_ids: tuple[str, ...]  # /etc/os-release ID or ID_LIKE values
    package_manager: str  # apt, dnf, pacman, apk or zypper
    packages: tuple[str, ...]  # postfix, the SASL modules for AUTH PLAIN/LOGIN, CA certificates
    mail_package: str  # provides the `mail` command
    ca_file: str
    init: str  # the service manager the family boots with: systemd or openrc


FAMILIES = (
    Family(
        "debian", ("debian", "ubuntu"), "apt",
        ("postfix", "libsasl2-modules", "ca-certificates"), "bsd-mailx",
        "/etc/ssl/certs/ca-certificates.crt", "systemd",
    ),
    Family(
        "fedora", ("fedora", "rhel", "centos", "rocky", "almalinux"), "dnf",
        ("postfix", "cyrus-sasl-plain", "ca-certificates"), "s-nail",
        "/etc/pki/tls/certs/ca-bundle.crt", "systemd",
    ),
    Family(
        "arch", ("arch",), "pacman",
        ("postfix", "cyrus-sasl", "ca-certificates"), "s-nail",
        "/etc/ssl/certs/ca-certificates.crt", "systemd",
    ),
    Family(
        "alpine", ("alpine",), "apk",
        ("postfix", "cyrus-sasl-login", "ca-certificates"), "s-nail",
        "/etc/ssl/certs/ca-certificates.crt", "openrc",
    ),
    Family(
        "suse", ("opensuse", "opensuse-leap", "opensuse-tumbleweed", "sles", "suse"), "zypper",
        ("postfix", "cyrus-sasl-plain", "ca-certificates"), "mailx",
        "/etc/ssl/ca-bundle.pem", "systemd",
    ),
)  # fmt: skip

# Every package any family may need: the fact asks for all of them, before it knows the family.
ALL_PACKAGES = tuple(dict.fromkeys(name for f in FAMILIES for name in (*f.packages, f.mail_package)))


def family_of(host_name: str, found: HostState) -> Family:
    """The host's family, or UnsupportedHost with what was found and what is supported."""
    for os_id in (found.os_id, *found.os_like):
        for family in FAMILIES:
            if os_id in family.os_ids:
                if found.init != family.init:
                    raise UnsupportedHost(
                        f"{host_name}: {found.os_id} {found.os_version} runs {found.init or 'no known'} "
                        f"service manager, the deploy needs {family.init}; no change was made"
                    )
                return family
    supported = ", ".join(f.name for f in FAMILIES)
    raise UnsupportedHost(
        f"{host_name}: unsupported distribution {found.os_id!r} {found.os_version} "
        f"(ID_LIKE: {' '.join(found.os_like) or '-'}); supported families: {supported}; no change was made"
    )


def look_at(host: Any, mail_package: str | None = None) -> tuple[HostState, Family]:
    """The deploy's one look at a host (a single remote command) and the host's family."""
    found = host.get_fact(
        NullClientHost,
        plain_files=[f.name for f in LAYOUT if not f.secret],
        secret_files=[f.name for f in LAYOUT if f.secret],
        maps=[f.name for f in LAYOUT if f.hashed_map],
        packages=sorted({*ALL_PACKAGES, *OTHER_MAIL_PACKAGES, mail_package or ALL_PACKAGES[0]}),
        queues={
            **{system.name: list(system.queue_files) for system in MAIL_SYSTEMS if system.queue_files},
            "held": [f"{HELD_DIR}/*"],
        },
    )
    return found, family_of(host.name, found)
