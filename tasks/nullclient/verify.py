"""The deploy of `nullclient verify`: look at each host, change nothing, write a report.

Run by nullclient.commands as `pyinfra INVENTORY postfix_nullclient.nullclient.verify.verify` with
`--data nullclient_report=DIR` (one JSON file per host there) and optionally
`--data nullclient_test_mail=SECONDS`. The wanted state is the deploy's own: the same
settings (keyring included), the same fact, the same rendered files and the same plan.
"""

from pathlib import Path

from pyinfra import host, state
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import python

from postfix_nullclient.distro import look_at
from postfix_nullclient.nullclient.checks import (
    SETTINGS,
    Check,
    NullClientHealth,
    check_configuration,
    check_fallback_relays,
    check_login,
    check_password_map,
    check_queue,
    check_relay,
    check_test_mail,
    read_mail_probe,
    report_json,
    send_test_mail,
)
from postfix_nullclient.nullclient.reports import report_path
from postfix_nullclient.postfix import plan
from postfix_nullclient.render import render_files, render_secret_files
from postfix_nullclient.settings import Refusal, settings_for


def host_checks() -> list[Check]:
    settings = settings_for(state, host)
    if isinstance(settings, Refusal):  # what the deploy would refuse cannot be compared with the host
        return [Check(SETTINGS, False, str(settings))]
    found, family = look_at(host, settings.mail_package, render_secret_files(settings))
    files = render_files(settings, found.fqdn, found.ipv6, family.ca_file)
    health = host.get_fact(NullClientHealth)
    return [
        check_configuration(files, found, plan(files, found), health),
        check_password_map(settings, health),
        check_relay(settings, health),
        *check_fallback_relays(settings, health),
        check_login(settings, health),
        check_queue(health),
    ]


def write_report(report: Path, checks: list[Check], test_mail: OperationMeta | None = None) -> None:
    if test_mail is not None:
        checks = [*checks, check_test_mail(read_mail_probe(test_mail.stdout_lines))]
    report.write_text(report_json(host.name, checks))


@deploy("nullclient verify")
def verify() -> None:
    """Check each host against the deploy's wanted state; with a test mail, after it has left."""
    checks = host_checks()
    test_mail_timeout = int(host.data.get("nullclient_test_mail") or 0)
    if test_mail_timeout and checks[0].name != SETTINGS:
        # The test mail is an operation: it runs when pyinfra executes, and the report follows it.
        sent = send_test_mail(
            name="Send a test mail to root and wait until it leaves the queue", timeout=test_mail_timeout
        )
        python.call(
            name="Write the verify report", function=write_report, report=report_path(), checks=checks, test_mail=sent
        )
    else:
        write_report(report_path(), checks)
