"""Install postfix and what a null client needs, without a single prompt."""

from __future__ import annotations

from pyinfra.operations import apt, server

from tasks.facts import HostState
from tasks.settings import Settings

# "No configuration": the installer writes no main.cf and asks nothing; the deploy writes its own.
DEBCONF_PRESEED = "postfix postfix/main_mailer_type select No configuration\n"


def wanted_packages(settings: Settings) -> list[str]:
    """postfix, the SASL modules its AUTH needs (PLAIN, LOGIN), CA certificates, a `mail` command."""
    return ["postfix", "libsasl2-modules", "ca-certificates", settings.mail_package]


def install(settings: Settings, found: HostState) -> None:
    missing = [name for name in wanted_packages(settings) if name not in found.packages]
    if not missing:
        return
    if "postfix" in missing:
        server.shell(
            name="Preseed debconf: install postfix without configuring it",
            commands=["debconf-set-selections"],
            _stdin=DEBCONF_PRESEED,
        )
    apt.packages(
        name=f"Install {', '.join(missing)}",
        packages=missing,
        update=True,
        no_recommends=True,
    )
