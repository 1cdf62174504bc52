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
        return _refuse(record, str(settings))
    try:
        found, family = look_at(host, settings.mail_package, render_secret_files(settings))
    except UnsupportedHost as error:
        return _refuse(record, str(error).removeprefix(f"{host.name}: "), "its system is not one the deploy supports")
    if problem := packages.mail_package_problem(settings, family) or local_address_problem(settings, found.fqdn):
        return _refuse(record, problem)

    if _uses_sudo_password():
        user = shlex.quote(str(host.data.get("ssh_user") or "YOUR-ACCOUNT"))
        host.log(SUDO_PASSWORD_EXPOSED.format(user=user), logger.warning)

    wanted = packages.wanted_packages(settings, family)
    missing = [name for name in wanted if name not in found.packages]
    replacing = mail_systems.replacement(found.packages, found.queued)
    # Mail queued before the switch: kept from leaving the old way, sent the new way after it.
    hold_postfix = postfix.foreign_configuration(found) is not None and found.queued.get("postfix", 0) > 0
    if replacing.hold or hold_postfix:  # an operation only then: a configured host's run stays at two
        hold = postfix.hold_mail(
            name="Hold the mail queued before the switch", other_systems=replacing.hold, postfix_queue=hold_postfix
        )
        record.add_operation(host.name, "Hold queued mail", hold)

    replaced = "; replace " + ", ".join(system.name for system in replacing.systems) if replacing.systems else ""
    install = packages.install(
        name=f"Install {', '.join(missing)}{replaced}" if missing else "Install the null client's packages",
        wanted=wanted,
        installed=found.packages,
        package_manager=family.package_manager,
        replacing=replacing,
    )
    record.add_operation(host.name, "Install packages", install)

    init = found.init or family.init
    files = render_files(settings, found.fqdn, found.ipv6, family.ca_file)
    todo = postfix.plan(files, found)
    postfix.show_diff(todo, found)
    meant = meaning(settings, found.fqdn, found.ipv6, family.ca_file)
    configure = postfix.configure(name=postfix.describe(todo), files=files, found=found, init=init, meant=meant)
    record.add_operation(host.name, "Apply null-client configuration", configure)

    held = found.queued.get("held", 0)
    if replacing.hold:
        held += sum(found.queued.get(system.name, 0) for system in replacing.systems if system.holdable)
    if held or hold_postfix:
        send = postfix.send_held_mail(
            name="Send the mail queued before the switch through the relay", held=held, postfix_queue=hold_postfix
        )
        record.add_operation(host.name, "Send held mail", send)

    watchdog = alerts.watchdog(
        name="Install the queue watchdog", files=alerts.watchdog_files(settings, init), found=found, init=init
    )
    record.add_operation(host.name, "Install the queue watchdog", watchdog)
    flush = alerts.flush_on_network(
        name="Flush the queue when the network is back", files=alerts.network_files(found.network_stacks), found=found
    )
    record.add_operation(host.name, "Flush the queue when the network is back", flush)
    upgrades_mail = alerts.unattended_upgrades_mail(
        name="Mail of unattended-upgrades to root", wanted=alerts.upgrades_mail_file(settings), found=found
    )
    record.add_operation(host.name, "Mail of unattended-upgrades to root", upgrades_mail)
    return configure


def _refuse(record, reason: str, cause: str = "its settings or keyring entry are not right") -> OperationMeta:
    record.refused[host.name] = reason
    return refuse(name=f"Refuse the host: {cause}", reason=reason)


def _uses_sudo_password() -> bool:
    """pyinfra sends a sudo password to this host: from host data, --data, or asked at the prompt."""
    return bool(
        host.data.get("_sudo_password")
        or state.config.SUDO_PASSWORD
        or host.connector_data.get("prompted_sudo_password")
    )
