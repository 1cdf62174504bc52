"""Install postfix and what a null client needs, without a single prompt, with the host's package manager."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from pyinfra import host
from pyinfra.api import StringCommand, operation

from postfix_nullclient.model import PACKAGE_MANAGERS, Family
from postfix_nullclient.settings import Settings


def wanted_packages(settings: Settings, family: Family) -> list[str]:
    """postfix, the SASL modules its AUTH needs (PLAIN, LOGIN), CA certificates, a `mail` command."""
    return [*family.packages, settings.mail_package or family.mail_package]


@operation()
def install(wanted: list[str], installed: set[str], package_manager: str) -> Iterator[str | StringCommand]:
    """
    Install the packages of ``wanted`` that are not in ``installed``, in one command, or nothing.

    + wanted: the packages the null client needs (see ``wanted_packages``)
    + installed: the packages the host has, from the deploy's NullClientHost fact
    + package_manager: a key of model.PACKAGE_MANAGERS: apt, dnf, pacman, apk or zypper
    """
    missing = [name for name in wanted if name not in installed]
    if not missing:
        host.noop(f"{', '.join(wanted)} are already installed")
        return
    packager = PACKAGE_MANAGERS[package_manager]
    yield StringCommand(packager.install, *(shlex.quote(name) for name in missing), _stdin=packager.install_stdin)
