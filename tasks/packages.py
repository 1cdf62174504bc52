"""Install postfix and what a null client needs, without a single prompt, with the host's package manager."""

from __future__ import annotations

import re
import shlex
from collections.abc import Generator

from pyinfra import host, logger, state
from pyinfra.api import StringCommand, operation

from postfix_nullclient.mail_systems import Replacement
from postfix_nullclient.model import PACKAGE_MANAGERS, Family
from postfix_nullclient.settings import Settings


def mail_package_problem(settings: Settings, family: Family) -> str | None:
    """Why the host's package manager cannot take mail_package as a package name, or None."""
    name, packager = settings.mail_package, family.packager
    if name is None or re.fullmatch(packager.package_name, name):
        return None
    return (
        f"mail_package {name!r} is not a package name that {packager.name} takes; e.g. mail_package = "
        f"{family.mail_package!r}; set mail_package in the inventory (host data), group_data/all.py, or with "
        "--data mail_package=..."
    )


def wanted_packages(settings: Settings, family: Family) -> list[str]:
    """postfix, the SASL modules its AUTH needs (PLAIN, LOGIN), CA certificates, a `mail` command."""
    return [*family.packages, settings.mail_package or family.mail_package]


def missing_packages(wanted: list[str], installed: set[str]) -> list[str]:
    return [name for name in wanted if name not in installed]


@operation()
def install(
    wanted: list[str], installed: set[str], package_manager: str, replacing: Replacement | None = None
) -> Generator[str | StringCommand, None, None]:
    """
    Install the packages of ``wanted`` that are not in ``installed``, in one command, or nothing.

    + wanted: the packages the null client needs (see ``wanted_packages``)
    + installed: the packages the host has, from the deploy's NullClientHost fact
    + package_manager: a key of model.PACKAGE_MANAGERS: apt, dnf, pacman, apk or zypper
    + replacing: the other mail systems the install removes (``mail_systems.replacement``): each is
      named in the output with what becomes of its queued mail (``postfix.hold_mail`` took it out
      of the queues the deploy can read before this)
    """
    missing = missing_packages(wanted, installed)
    if not missing:
        host.noop(f"{', '.join(wanted)} are already installed")
        return
    if replacing:
        for line in replacing.report:
            host.log(line, logger.warning)
    if state.is_executing:  # once, where it happens
        host.log(f"install {', '.join(missing)}", logger.info)
    packager = PACKAGE_MANAGERS[package_manager]
    command = (packager.install, *(shlex.quote(name) for name in missing))
    # Only a package manager that reads an answer gets _stdin (pyinfra's arguments take no None).
    yield StringCommand(*command, _stdin=packager.install_stdin) if packager.install_stdin else StringCommand(*command)
