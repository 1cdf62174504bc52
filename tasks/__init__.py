"""postfix_nullclient: turn Linux workstations into Postfix null clients with pyinfra.

    from postfix_nullclient import deploy_null_client

    deploy_null_client()

The flow, per host: the settings, checked, and the relay password from the OS keyring
(settings.py, keyring_lookup.py; a host with a problem is refused alone, summary.py); one look at
the host (facts.py) and its distribution family (distro.py); the missing packages installed
(packages.py); the files rendered (render.py, templates/) and put in place with a check and a
reload, or not at all (postfix.py, templates/scripts/apply_config.sh.j2); then the queue watchdog
and the mail of unattended-upgrades (alerts.py). Every path, suffix, mode and command of the host
is declared once, in model.py.
"""

from __future__ import annotations

import shlex

from pyinfra import host, logger, state
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta

from postfix_nullclient import alerts, mail_systems, packages, postfix
from postfix_nullclient.distro import UnsupportedHost, look_at
from postfix_nullclient.render import local_address_problem, meaning, render_files, render_secret_files
from postfix_nullclient.settings import Refusal, settings_for
from postfix_nullclient.spec import DEFAULTS
from postfix_nullclient.summary import record_of, refuse

__all__ = ["DEFAULTS", "deploy_null_client"]

# The operations' names: short and the same on every host, so that pyinfra's tables stay narrow and
# list each operation once; what an operation does on a host is in its own output and its --diff.
HOLD = "Hold queued mail"
INSTALL = "Install packages"
CONFIGURE = "Configure Postfix"
SEND_HELD = "Send held mail"
WATCHDOG = "Queue watchdog"
FLUSH = "Flush on network"
UPGRADES_MAIL = "unattended-upgrades mail"

SUDO_PASSWORD_EXPOSED = (
    "the sudo password travels on the remote command line of every command (pyinfra's "
    "PYINFRA_SUDO_PASSWORD=...), where any local user's ps can read it for a moment; give the deploy "
    "account passwordless sudo instead, once, on the host: echo '{user} ALL=(root) NOPASSWD: ALL' | "
    "sudo tee /etc/sudoers.d/postfix-nullclient-deploy (README: Deploying as your own user)"
)


@deploy("Postfix null client", data_defaults=DEFAULTS)
def deploy_null_client() -> OperationMeta:
    """
    Make this host a Postfix null client that sends all mail through ``relay_host``.

    Settings are pyinfra data (see ``DEFAULTS``); the relay password is read from the OS keyring.
    Returns the configuration operation's result: ``.changed`` tells whether postfix's
    configuration changed (and postfix was reloaded or restarted) on this host.
    """
    record = record_of(state)
    settings = settings_for(state, host)
    if isinstance(settings, Refusal):
        return _refuse(record, str(settings), settings.cause)
    try:
        found, family = look_at(host, settings.mail_package, render_secret_files(settings))
    except UnsupportedHost as error:
        return _refuse(record, str(error).removeprefix(f"{host.name}: "), error.cause)
    if problem := packages.mail_package_problem(settings, family) or local_address_problem(settings, found.fqdn):
        return _refuse(record, problem, "settings")

    if _uses_sudo_password():
        user = shlex.quote(str(host.data.get("ssh_user") or "YOUR-ACCOUNT"))
        host.log(SUDO_PASSWORD_EXPOSED.format(user=user), logger.warning)

    wanted = packages.wanted_packages(settings, family)
    installing = bool(packages.missing_packages(wanted, found.packages))
    replacing = mail_systems.replacement(found.packages, found.queued)
    # Mail queued before the switch: kept from leaving the old way, sent the new way after it.
    hold_postfix = postfix.foreign_configuration(found) is not None and found.queued.get("postfix", 0) > 0
    if replacing.hold or hold_postfix:  # an operation only then: a configured host's run stays at two
        hold = postfix.hold_mail(name=HOLD, other_systems=replacing.hold, postfix_queue=hold_postfix)
        record.add_operation(host.name, HOLD, hold)

    install = packages.install(
        name=INSTALL,
        wanted=wanted,
        installed=found.packages,
        package_manager=family.package_manager,
        replacing=replacing,
    )
    record.add_operation(host.name, INSTALL, install)

    init = found.init or family.init
    files = render_files(settings, found.fqdn, found.ipv6, family.ca_file)
    todo = postfix.plan(files, found, installing=installing)
    postfix.show_diff(todo, found)
    meant = meaning(settings, found.fqdn, found.ipv6, family.ca_file)
    configure = postfix.configure(
        name=CONFIGURE, files=files, found=found, init=init, meant=meant, installing=installing
    )
    record.add_operation(host.name, CONFIGURE, configure)

    held = found.queued.get("held", 0)
    if replacing.hold:
        held += sum(found.queued.get(system.name, 0) for system in replacing.systems if system.holdable)
    if held or hold_postfix:
        send = postfix.send_held_mail(name=SEND_HELD, held=held, postfix_queue=hold_postfix)
        record.add_operation(host.name, SEND_HELD, send)

    watchdog_files = alerts.watchdog_files(settings, init)
    network_files = alerts.network_files(found.network_stacks)
    upgrades_mail_file = alerts.upgrades_mail_file(settings)
    alerts.show_diff(watchdog_files, network_files, upgrades_mail_file, found, init)
    watchdog = alerts.watchdog(name=WATCHDOG, files=watchdog_files, found=found, init=init)
    record.add_operation(host.name, WATCHDOG, watchdog)
    flush = alerts.flush_on_network(name=FLUSH, files=network_files, found=found)
    record.add_operation(host.name, FLUSH, flush)
    upgrades_mail = alerts.unattended_upgrades_mail(name=UPGRADES_MAIL, wanted=upgrades_mail_file, found=found)
    record.add_operation(host.name, UPGRADES_MAIL, upgrades_mail)
    return configure


def _refuse(record, reason: str, cause: str) -> OperationMeta:
    """Refuse the host, in an operation named by the cause: "settings", "keyring entry", "distribution" or
    "init system" (short: pyinfra's results table stays within 100 columns).

    pyinfra tells operations apart by the lines they are called from: each cause has its own line, so
    that hosts refused for different causes are counted in rows of their own.
    """
    record.refused[host.name] = reason
    if cause == "keyring entry":
        return refuse(name="Refuse: keyring entry", reason=reason)
    if cause == "distribution":
        return refuse(name="Refuse: distribution", reason=reason)
    if cause == "init system":
        return refuse(name="Refuse: init system", reason=reason)
    return refuse(name="Refuse: settings", reason=reason)


def _uses_sudo_password() -> bool:
    """pyinfra sends a sudo password to this host: from host data, --data, or asked at the prompt."""
    return bool(
        host.data.get("_sudo_password")
        or state.config.SUDO_PASSWORD
        or host.connector_data.get("prompted_sudo_password")
    )
