"""Install postfix and what a null client needs, without a single prompt, with the host's package manager."""

from __future__ import annotations

from collections.abc import Iterator

from pyinfra import host, logger
from pyinfra.api import StringCommand, operation
from pyinfra.operations import apk, dnf, pacman, zypper

from postfix_nullclient.distro import Family
from postfix_nullclient.mail_systems import Replacement
from postfix_nullclient.settings import Settings

# "No configuration": the installer writes no main.cf and asks nothing; the deploy writes its own.
DEBCONF_PRESEED = "postfix postfix/main_mailer_type select No configuration\n"

# One command, the preseed on its stdin: the deploy's fact knows already what is missing, so no
# package fact and no separate update. The install waits up to 5 minutes for the dpkg lock that
# unattended-upgrades holds on a freshly booted workstation (apt 2.6 waits so for the install only,
# not for the update's lists lock: seen in the lab).
APT_INSTALL = (
    "debconf-set-selections"
    " && apt-get update -q"
    " && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300"
    " -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
)


def wanted_packages(settings: Settings, family: Family) -> list[str]:
    """postfix, the SASL modules its AUTH needs (PLAIN, LOGIN), CA certificates, a `mail` command."""
    return [*family.packages, settings.mail_package or family.mail_package]


def install_command(package_manager: str, missing: list[str]) -> Iterator[str | StringCommand]:
    """The commands that install `missing` with the family's package manager, without a prompt."""
    if package_manager == "apt":
        yield StringCommand(f"{APT_INSTALL} {' '.join(missing)}", _stdin=DEBCONF_PRESEED)
    elif package_manager == "dnf":
        yield from dnf.packages._inner(packages=missing)
    elif package_manager == "pacman":
        yield from pacman.packages._inner(packages=missing, update=True)
    elif package_manager == "apk":
        yield from apk.packages._inner(packages=missing, update=True)
    elif package_manager == "zypper":
        yield from zypper.packages._inner(packages=missing, update=True)


@operation()
def install(
    wanted: list[str], installed: set[str], package_manager: str, replacing: Replacement | None = None
) -> Iterator[str | StringCommand]:
    """
    Install the packages of ``wanted`` that are not in ``installed``, in one command, or nothing.

    + wanted: the packages the null client needs (see ``wanted_packages``)
    + installed: the packages the host has, from the deploy's NullClientHost fact
    + package_manager: apt, dnf, pacman, apk or zypper
    + replacing: the other mail systems the install removes (``mail_systems.replacement``): each is
      named in the output with what becomes of its queued mail (``postfix.hold_mail`` took it out
      of the queues the deploy can read before this)
    """
    missing = [name for name in wanted if name not in installed]
    if not missing:
        host.noop(f"{', '.join(wanted)} are already installed")
        return
    if replacing:
        for line in replacing.report:
            host.log(line, logger.warning)
    yield from install_command(package_manager, missing)
