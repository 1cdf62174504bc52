"""pyinfra deploy file of `nullclient verify`: look at each host, change nothing, write a report.

Run by nullclient.commands with `--data nullclient_report=DIR` (one JSON file per host there) and
optionally `--data nullclient_test_mail=SECONDS`. The wanted state is the deploy's own: the same
settings (keyring included), the same fact, the same rendered files and the same plan.
"""

import hashlib
from pathlib import Path

from pyinfra import host, state

from postfix_nullclient.distro import look_at
from postfix_nullclient.nullclient.checks import (
    Check,
    NullClientHealth,
    SendTestMail,
    check_configuration,
    check_password_map,
    check_queue,
    check_relay,
    check_test_mail,
    report_json,
)
from postfix_nullclient.postfix import plan
from postfix_nullclient.render import render_files
from postfix_nullclient.settings import Refusal, settings_for


def host_checks() -> list[Check]:
    settings = settings_for(state, host)
    if isinstance(settings, Refusal):  # what the deploy would refuse cannot be compared with the host
        return [Check("settings", False, str(settings))]
    found, family = look_at(host, settings.mail_package)
    files = render_files(settings, found.fqdn, found.ipv6, family.ca_file)
    health = host.get_fact(NullClientHealth)
    checks = [
        check_configuration(files, found, plan(files, found), health),
        check_password_map(settings, health),
        check_relay(settings, health),
        check_queue(health),
    ]
    test_mail_timeout = int(host.data.get("nullclient_test_mail") or 0)
    if test_mail_timeout:
        checks.append(check_test_mail(host.get_fact(SendTestMail, timeout=test_mail_timeout)))
    return checks


checks = host_checks()

report = Path(host.data.get("nullclient_report")) / f"{hashlib.sha256(host.name.encode()).hexdigest()[:16]}.json"
report.write_text(report_json(host.name, checks))
