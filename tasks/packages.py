"""Install postfix and what a null client needs, without a single prompt, with the host's package manager."""

from __future__ import annotations

from pyinfra.operations import apk, dnf, pacman, server, zypper

from tasks.distro import Family
from tasks.facts import HostState
from tasks.settings import Settings

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


def install(settings: Settings, family: Family, found: HostState) -> None:
    missing = [name for name in wanted_packages(settings, family) if name not in found.packages]
    if not missing:
        return
    name = f"Install {', '.join(missing)}"
    if family.package_manager == "apt":
        server.shell(name=name, commands=[f"{APT_INSTALL} {' '.join(missing)}"], _stdin=DEBCONF_PRESEED)
    elif family.package_manager == "dnf":
        dnf.packages(name=name, packages=missing)
    elif family.package_manager == "pacman":
        pacman.packages(name=name, packages=missing, update=True)
    elif family.package_manager == "apk":
        apk.packages(name=name, packages=missing, update=True)
    elif family.package_manager == "zypper":
        zypper.packages(name=name, packages=missing, update=True)
