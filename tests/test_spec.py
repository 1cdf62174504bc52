"""The settings' one spec: the files that list the settings agree with it, every parser accepts exactly
what it means, and a refusal names the host, the setting, the value as written and a good example."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pyinfra.api import HiddenValue

import postfix_nullclient
from postfix_nullclient import spec
from postfix_nullclient.model import FAMILIES
from postfix_nullclient.packages import mail_package_problem
from postfix_nullclient.render import meaning, render_files
from postfix_nullclient.settings import Settings, check_host, shown
from tests.support.settings import make_settings
from tests.support.strategies import host_data, passwords

PROJECT = Path(__file__).resolve().parent.parent
HOST = "torres.example.net"
BASE = {"forward_to": "alice@example.org"}
DEBIAN = next(family for family in FAMILIES if family.name == "debian")
REGENERATE = ".venv/bin/python -c 'from postfix_nullclient import spec; print(spec.{}(), end=\"\")'"


def test_the_readme_settings_table_is_the_spec():
    readme = (PROJECT / "README.md").read_text()
    start = readme.index("| setting | default | meaning |")
    end = readme.index("\n\n", start) + 1
    assert readme[start:end] == spec.readme_table(), f"regenerate it: {REGENERATE.format('readme_table')}"


def test_group_data_lists_every_setting_with_its_spec_default_and_meaning():
    text = (PROJECT / "group_data" / "all.py").read_text()
    start = text.index('"""\n\n', text.index('"""') + 3) + 5
    assert text[start:] == spec.group_data_text(), f"regenerate it: {REGENERATE.format('group_data_text')}"


def test_the_deploy_the_settings_and_the_spec_name_the_same_settings():
    assert postfix_nullclient.DEFAULTS is spec.DEFAULTS
    assert list(spec.DEFAULTS) == [setting.name for setting in spec.SETTINGS]
    fields = [field.name for field in dataclasses.fields(Settings)]
    assert fields == ["host_name", *spec.DEFAULTS, "password"]


@pytest.mark.parametrize("setting", spec.SETTINGS, ids=lambda setting: setting.name)
def test_each_default_and_example_is_accepted_by_its_own_parser(setting):
    if setting.default is not None or setting.name != "forward_to":
        setting.parse(setting.default)
    setting.parse(setting.example)


# Values a careless admin or a templated inventory may write; each must be refused, naming the setting.
HOSTILE = [
    ("ca_file", "/etc/ssl/certs/ca-certificates.crt\nsmtp_tls_security_level = may", "contains a control character"),
    ("ca_file", "etc/ssl/ca.pem", "is not an absolute path"),
    ("ca_file", "/etc/ssl/my ca.pem", "is not an absolute path"),
    ("ca_file", "/etc/$config_directory/ca.pem", "is not an absolute path"),
    ("mail_package", "-oDPkg::Pre-Invoke::=touch /tmp/x", "is not a package name"),
    ("mail_package", ["bsd-mailx"], "is a list, not a package name"),
    ("mail_package", "bsd-mailx s-nail", "is not a package name"),
    ("mail_domain", "example.net\n", "contains a control character"),
    ("mail_domain", "example", "is not a domain name with a dot"),
    ("relay_host", "mail.example.net\x00", "contains a control character"),
    ("relay_host", "192.0.2.10", "is an address, not a host name"),
    ("relay_host", "-mail.example.net", "is not a host name"),
    ("relay_host", "mail/example.net", "is not a host name"),
    ("relay_host", "x" * 300, "is not a host name"),
    ("relay_host", 587, "is a int, not a host name"),
    ("relay_port", 10**30, "is not supported"),
    ("relay_port", "587\n", "contains a control character"),
    ("relay_port", 587.0, "is a float, not a port number"),
    ("relay_port", True, "is a bool, not a port number"),
    ("forward_to", "owner@example.org\nrelayhost = [evil.example]:587", "contains a control character"),
    ("forward_to", "owner@example.org, root@evil.example", "is not a mail address"),
    ("forward_to", '"owner"@example.org', "is not a mail address"),
    ("forward_to", "owner@-example.org", "is not a mail address"),
    ("forward_to", "owner..x@example.org", "is not a mail address"),
    ("forward_to", "x" * 65 + "@example.org", "is longer than a mail address may be"),
    ("forward_to", {"owner": "owner@example.org"}, "is a dict, not a mail address"),
    ("smtp_user", "torres@example.net\r", "contains a control character"),
    ("smtp_user", "torres:x@example.net", "is not a mail address"),
    ("sender_address", "ops@example.net\x1b[31m", "contains a control character"),
    ("sender_address", "ops @example.net", "is not a mail address"),
    ("extra_aliases", {"bob": "bob@example.org\n"}, "maps 'bob' to 'bob@example.org\\n', which contains a control"),
    ("extra_aliases", {"Bob": "bob@example.org"}, "has the key 'Bob'"),
    ("extra_aliases", {"-bob": "bob@example.org"}, "has the key '-bob'"),
    ("extra_aliases", ["bob"], "is a list, not a dict"),
    ("keyring_service", "postfix-nullclient\n", "contains a control character"),
    ("keyring_service", " postfix-nullclient", "is not a keyring service name"),
    ("myhostname", "torres.example.net\nmydestination = $myhostname", "contains a control character"),
    ("myhostname", "10.1.2.3", "is an address, not a host name"),
    ("ipv6", "maybe", "is not one of true, false, auto"),
    ("ipv6", " true", "is not one of true, false, auto"),
    ("ipv6", 2, "is not one of true, false, auto"),
    ("unattended_upgrades_mail", "always\n", "is not one of"),
    ("unattended_upgrades_mail", True, "is not one of"),
    ("watchdog_threshold", "99999999999999999999d", "is not a duration"),
    ("watchdog_threshold", "1h ", "is not a duration"),
    ("watchdog_threshold", "1h\n", "contains a control character"),
    ("watchdog_threshold", 10**18, "is out of range: from 1s to 365d"),
    ("watchdog_threshold", 0, "is out of range"),
    ("watchdog_threshold", -5, "is out of range"),
    ("watchdog_threshold", 1.5, "is a float, not a duration"),
    ("watchdog_interval", "2d", "is out of range: from 1s to 1d"),
    ("watchdog_interval", "$(reboot)", "is not a duration"),
]


@pytest.mark.parametrize(("setting", "value", "reason"), HOSTILE, ids=lambda item: repr(item)[:40])
def test_a_hostile_value_is_refused_naming_the_host_setting_value_and_a_good_example(setting, value, reason):
    found, problems = check_host(HOST, {**BASE, setting: value})
    assert found is None
    assert len(problems) == 1, problems
    good = spec.BY_NAME[setting].example
    assert problems[0].startswith(f"{HOST}: {setting} {shown(value)} {reason}"), problems[0]
    assert f"; e.g. {setting} = {good!r}; set {setting} in the inventory (host data)" in problems[0]


def test_a_missing_forward_to_is_refused_as_not_set():
    _, problems = check_host(HOST, {})
    assert problems == [
        f"{HOST}: forward_to is not set; e.g. forward_to = 'you@example.org'; set forward_to in the inventory "
        "(host data), group_data/all.py, or with --data forward_to=..."
    ]


def test_the_package_managers_own_rule_refuses_a_name_that_apt_would_not_take():
    assert mail_package_problem(make_settings(mail_package="bsd-mailx"), DEBIAN) is None
    problem = mail_package_problem(make_settings(mail_package="S_Nail"), DEBIAN)
    assert problem and problem.startswith("mail_package 'S_Nail' is not a package name that apt takes")


any_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def no_control_characters(value: Any) -> bool:
    if isinstance(value, str):
        return value.isprintable()
    if isinstance(value, dict):
        return all(no_control_characters(k) and no_control_characters(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(no_control_characters(item) for item in value)
    return value is None or isinstance(value, bool | int)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(spec.SETTINGS), any_value)
def test_any_value_of_any_type_is_parsed_or_refused_by_name_never_a_crash(setting, value):
    found, problems = check_host(HOST, {**BASE, setting.name: value})
    if found is None:
        assert problems and all(problem.startswith(f"{HOST}: {setting.name} ") for problem in problems), problems
        return
    parsed = getattr(found, setting.name)
    assert no_control_characters(parsed), parsed
    if isinstance(parsed, int) and not isinstance(parsed, bool):
        assert 0 < parsed <= 365 * 86400


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(host_data(), passwords)
@example({**BASE, "sender_address": "ops$1@example.net", "extra_aliases": {"bob": "b$$/ob@example.org"}}, "pa$$ word")
def test_any_accepted_settings_render_a_main_cf_that_sets_exactly_what_the_deploy_means(data, password):
    found, problems = check_host(HOST, data)
    assert found, problems
    found = dataclasses.replace(found, password=HiddenValue(password))
    files = {f.name: f.content for f in render_files(found, HOST, False, DEBIAN.ca_file)}
    written: dict[str, str] = {}
    for line in files["main.cf"].splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(" =")
            assert name not in written, f"{name} set twice"
            written[name] = value.strip()
    assert written == meaning(found, HOST, False, DEBIAN.ca_file).parameters


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (None, ()),
        ([], ()),
        ("backup.example.net", (("backup.example.net", None),)),
        (["backup.example.net", "mail.example.org:587"], (("backup.example.net", None), ("mail.example.org", 587))),
    ],
)
def test_fallback_relays_are_host_names_with_a_port_if_you_like(value, parsed):
    assert make_settings(fallback_relays=value).fallback_relays == parsed


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            {"fallback_relays": ["mail.example.net:465"]},
            "fallback_relays mail.example.net:465 wants implicit TLS, but relay_port 587 is STARTTLS: Postfix tries "
            "fallback relays with the relay's one TLS mode (smtp_tls_wrappermode), so it cannot use both; give every "
            "fallback relay port 587, or set relay_port to 465 and give it to every endpoint",
        ),
        (
            {"relay_port": 465, "fallback_relays": ["b.example.net:587"]},
            "fallback_relays b.example.net:587 wants STARTTLS",
        ),
        ({"fallback_relays": ["mail.example.net"]}, "fallback_relays names the relay itself (mail.example.net:587)"),
        (
            {"fallback_relays": ["b.example.net:25"]},
            "fallback_relays ['b.example.net:25'] holds 'b.example.net:25', which is not supported",
        ),
        ({"fallback_relays": ["10.0.0.1"]}, "fallback_relays ['10.0.0.1'] holds '10.0.0.1', which is an address"),
        (
            {"fallback_relays": ["b.example.net", "b.example.net"]},
            "fallback_relays ['b.example.net', 'b.example.net'] names an endpoint twice",
        ),
    ],
)
def test_fallback_relays_postfix_cannot_use_are_refused_with_the_reason_and_the_fix(data, reason):
    _, problems = check_host(HOST, {**BASE, **data})
    assert len(problems) == 1 and problems[0].startswith(f"{HOST}: {reason}"), problems
    assert problems[0].endswith("or with --data fallback_relays=...")
