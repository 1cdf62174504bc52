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
from postfix_nullclient.nullclient.checks import RUN_THE_DEPLOY, parameter_differences, service_problems
from postfix_nullclient.nullclient.queue_status import NullClientStatus, summary
from postfix_nullclient.nullclient.reports import report_path
from postfix_nullclient.postfix import main_cf_values, plan
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
    changed = plan(files, found).changed
    problems = []
    if any(f.name == "main.cf" for f in changed) and "main.cf" in found.contents:
        problems += parameter_differences(files, main_cf_values(found.contents["main.cf"])) or ["main.cf differs"]
    problems += [
        f"{f.name} differs (secret, not shown)" if f.secret
        else f"{f.name} differs" if f.name in found.contents else f"{f.name} is missing"
        for f in changed if f.name != "main.cf" or "main.cf" not in found.contents
    ]  # fmt: skip
    problems += service_problems(files, found)
    if plan(files, found).needed and not problems:
        problems.append("an apply was interrupted, or postfix needs a restart")
    watchdog = alerts.watchdog_changes(alerts.watchdog_files(settings, init), found, init)
    put, remove = alerts.upgrades_mail_changes(alerts.upgrades_mail_file(settings), found)
    problems += [f"{path} differs" for path in [f.path for f in watchdog] + [f.path for f in put] + remove]
    if problems:
        return False, f"NOT current: {'; '.join(problems)}; {RUN_THE_DEPLOY}"
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
    arguments = fact_arguments(plain.mail_package if plain else None)  # parsed: as written it may be anything
    status = host.get_fact(NullClientStatus, **arguments, _stdin=secret_digests(secrets))
    current, detail = configuration(settings, status.found)

    lifetime = plain.queue_lifetime if plain else BY_NAME["queue_lifetime"].parse(DEFAULTS["queue_lifetime"])
    report_path().write_text(json.dumps(summary(host.name, status, threshold, current, detail, lifetime)))
