"""Install postfix and what a null client needs, without a single prompt, with the host's package manager."""

from __future__ import annotations

from pyinfra.operations import apk, apt, dnf, pacman, server, zypper

from tasks.distro import Family
from tasks.facts import HostState
from tasks.settings import Settings

# "No configuration": the installer writes no main.cf and asks nothing; the deploy writes its own.
DEBCONF_PRESEED = "postfix postfix/main_mailer_type select No configuration\n"


def wanted_packages(settings: Settings, family: Family) -> list[str]:
    """postfix, the SASL modules its AUTH needs (PLAIN, LOGIN), CA certificates, a `mail` command."""
    return [*family.packages, settings.mail_package or family.mail_package]


def install(settings: Settings, family: Family, found: HostState) -> None:
    missing = [name for name in wanted_packages(settings, family) if name not in found.packages]
    if not missing:
        return
    name = f"Install {', '.join(missing)}"
    if family.package_manager == "apt":
        if "postfix" in missing:
            server.shell(
                name="Preseed debconf: install postfix without configuring it",
                commands=["debconf-set-selections"],
                _stdin=DEBCONF_PRESEED,
            )
        apt.packages(name=name, packages=missing, update=True, no_recommends=True)
    elif family.package_manager == "dnf":
        dnf.packages(name=name, packages=missing)
    elif family.package_manager == "pacman":
        pacman.packages(name=name, packages=missing, update=True)
    elif family.package_manager == "apk":
        apk.packages(name=name, packages=missing, update=True)
    elif family.package_manager == "zypper":
        zypper.packages(name=name, packages=missing, update=True)
