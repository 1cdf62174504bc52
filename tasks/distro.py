"""A host's distribution family (declared in model.FAMILIES), from its /etc/os-release (ID, then
ID_LIKE) as the one fact read it.

Postfix's own database type needs no entry here: the host's `postconf -h default_database_type`
decides it where the maps are built (templates/main.cf.j2, the apply script).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyinfra.api.exceptions import PyinfraError

from postfix_nullclient import alerts
from postfix_nullclient.facts import HostState, NullClientHost, secret_digests
from postfix_nullclient.mail_systems import HELD_DIR, MAIL_SYSTEMS
from postfix_nullclient.mail_systems import PACKAGES as OTHER_MAIL_PACKAGES
from postfix_nullclient.model import ALL_PACKAGES, FAMILIES, Family, ManagedFile


class UnsupportedHost(PyinfraError):
    """A host this deploy does not know how to configure: refused before any change."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause  # what is not supported: "distribution" or "init system"


def family_of(host_name: str, found: HostState) -> Family:
    """The host's family, or UnsupportedHost with what was found and what is supported."""
    for os_id in (found.os_id, *found.os_like):
        for family in FAMILIES:
            if os_id in family.os_ids:
                if found.init != family.init:
                    raise UnsupportedHost(
                        f"{host_name}: {found.os_id} {found.os_version} runs {found.init or 'no known'} "
                        f"service manager, the deploy needs {family.init}; no change was made",
                        "init system",
                    )
                return family
    supported = ", ".join(f.name for f in FAMILIES)
    raise UnsupportedHost(
        f"{host_name}: unsupported distribution {found.os_id!r} {found.os_version} "
        f"(ID_LIKE: {' '.join(found.os_like) or '-'}); supported families: {supported}; no change was made",
        "distribution",
    )


def fact_arguments(mail_package: str | None = None) -> dict[str, Any]:
    """The arguments of the NullClientHost fact: the packages and alert files the deploy looks at
    (the managed files under /etc/postfix are the model's LAYOUT)."""
    return {
        # unattended-upgrades: only whether it is there; it is never installed for the alerts.
        # Other mail systems: which are installed, and how much mail their queues hold.
        "packages": sorted(
            {*ALL_PACKAGES, *OTHER_MAIL_PACKAGES, mail_package or ALL_PACKAGES[0], alerts.UPGRADES_PACKAGE}
        ),
        "alert_files": list(alerts.ALERT_FILES),
        "timer_link": alerts.TIMER_LINK,
        "network_stacks": alerts.NETWORK_STACKS,
        "queues": {
            **{system.name: list(system.queue_files) for system in MAIL_SYSTEMS if system.queue_files},
            "held": [f"{HELD_DIR}/*"],
        },
    }


def look_at(
    host: Any, mail_package: str | None = None, secrets: Sequence[ManagedFile] = ()
) -> tuple[HostState, Family]:
    """The deploy's one look at a host (a single remote command) and the host's family; `secrets`:
    the secret files the deploy would write, which the host compares with its own (facts.secret_digests)."""
    found = host.get_fact(NullClientHost, **fact_arguments(mail_package), _stdin=secret_digests(list(secrets)))
    return found, family_of(host.name, found)
