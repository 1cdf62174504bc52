"""The deploy of `nullclient status`: one command per host, a JSON report per host.

Run by nullclient.commands as `pyinfra INVENTORY postfix_nullclient.nullclient.status.status` with
`--data nullclient_report=DIR`. Changes nothing. "Configuration
current" is the deploy's own judgement: the same settings (keyring included), the same fact, the
same rendered files and the same plans.
"""

import json

from pyinfra import host, state
from pyinfra.api import deploy

from postfix_nullclient import alerts
from postfix_nullclient.distro import UnsupportedHost, fact_arguments, family_of
from postfix_nullclient.facts import secret_digests
from postfix_nullclient.nullclient.queue_status import NullClientStatus, summary
from postfix_nullclient.nullclient.reports import report_path
from postfix_nullclient.postfix import plan
from postfix_nullclient.render import render_files, render_secret_files
from postfix_nullclient.settings import Refusal, SettingsError, check_host, settings_for
from postfix_nullclient.spec import BY_NAME, DEFAULTS


def configuration(settings, found) -> tuple[bool | None, str]:
    """(current, what differs): whether the deploy would change nothing on this host."""
    if isinstance(settings, Refusal):
        return None, f"unknown: the deploy would refuse the host: {settings}"
    try:
        family = family_of(host.name, found)
    except UnsupportedHost as error:
        return None, f"unknown: {error}"
    files = render_files(settings, found.fqdn, found.ipv6, family.ca_file)
    init = found.init or family.init
    differs = [f"{f.name} (secret)" if f.secret else f.name for f in plan(files, found).changed]
    if plan(files, found).needed and not differs:
        differs.append("postfix not running, not enabled or a map not built")
    differs += [f.path for f in alerts.watchdog_changes(alerts.watchdog_files(settings, init), found, init)]
    put, remove = alerts.upgrades_mail_changes(alerts.upgrades_mail_file(settings), found)
    differs += [f.path for f in put] + remove
    if differs:
        return False, f"NOT current: {', '.join(differs)} differ; run the deploy"
    return True, "current"


@deploy("nullclient status")
def status() -> None:
    """One command per host: the queue, the watchdog and whether the configuration is current."""
    try:
        settings = settings_for(state, host)
    except SettingsError:  # every host refused: the queue is still worth showing
        settings = Refusal(host.name, check_host(host.name, host.data)[1] or ["the keyring could not be read"])
    plain, _ = check_host(host.name, host.data)
    # Stuck as the watchdog counts it: by half the queue lifetime at the latest.
    threshold = (
        alerts.warn_after(plain) if plain else BY_NAME["watchdog_threshold"].parse(DEFAULTS["watchdog_threshold"])
    )
    # The password map is compared on the host with what the deploy would write (facts.secret_digests).
    secrets = [] if isinstance(settings, Refusal) else render_secret_files(settings)
    arguments = fact_arguments(host.data.get("mail_package"))
    status = host.get_fact(NullClientStatus, **arguments, _stdin=secret_digests(secrets))
    current, detail = configuration(settings, status.found)

    lifetime = plain.queue_lifetime if plain else BY_NAME["queue_lifetime"].parse(DEFAULTS["queue_lifetime"])
    report_path().write_text(json.dumps(summary(host.name, status, threshold, current, detail, lifetime)))
