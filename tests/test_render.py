"""The rendered files, for several hosts and settings, without a host."""

import re

import pytest

from postfix_nullclient.render import local_domains, postfix_hostname, regex_escape, render_files
from postfix_nullclient.settings import Settings
from tests.support.settings import make_settings

DEBIAN_CA = "/etc/ssl/certs/ca-certificates.crt"
AWKWARD_PASSWORD = "pa ss#:@$% word\\'\"x"


def rendered(settings: Settings, fqdn: str = "torres.example.net", ipv6: bool = False) -> dict[str, str]:
    return {f.name: f.content for f in render_files(settings, fqdn, ipv6, DEBIAN_CA)}


def main_cf(settings: Settings, **kwargs) -> dict[str, str]:
    values = {}
    for line in rendered(settings, **kwargs)["main.cf"].splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key.strip() not in values, f"{key} set twice"
            values[key.strip()] = value.strip()
    return values


def regexp_map(content: str):
    """Evaluate a Postfix regexp: table the way Postfix does: first matching line wins."""
    rules = []
    for line in content.splitlines():
        if line.startswith(("/", "!/")):
            negated = line.startswith("!")
            pattern, result = line[1 + negated :].split("/\t")
            rules.append((re.compile(pattern, re.IGNORECASE), negated, result))

    def lookup(address: str) -> str | None:
        for pattern, negated, result in rules:
            match = pattern.search(address)
            if bool(match) != negated:
                return match.expand(result.replace("$", "\\")) if match else result
        return None

    return lookup


def test_main_cf_is_a_null_client_for_submission():
    cf = main_cf(make_settings())
    assert cf["relayhost"] == "[mail.example.net]:587"
    assert cf["myhostname"] == "torres.example.net"
    assert cf["mydestination"] == ""
    assert cf["virtual_alias_domains"] == "", "else every domain the regexp matches would become local"
    assert cf["inet_interfaces"] == "loopback-only"
    assert cf["inet_protocols"] == "ipv4"
    assert cf["local_transport"].startswith("error:")
    assert cf["smtp_sasl_auth_enable"] == "yes"
    assert cf["smtp_sasl_security_options"] == "noanonymous"
    assert cf["smtp_sasl_tls_security_options"] == "noanonymous"
    assert cf["smtp_tls_security_level"] == "secure"
    assert cf["smtp_tls_CAfile"] == "/etc/ssl/certs/ca-certificates.crt"
    assert cf["smtp_tls_wrappermode"] == "no"
    assert cf["smtp_sasl_password_maps"] == "$default_database_type:/etc/postfix/sasl_passwd"


def test_ca_file_is_the_distributions_unless_set():
    assert main_cf(make_settings())["smtp_tls_CAfile"] == DEBIAN_CA
    assert main_cf(make_settings(ca_file="/etc/my-ca.pem"))["smtp_tls_CAfile"] == "/etc/my-ca.pem"


def test_port_465_uses_implicit_tls():
    cf = main_cf(make_settings(relay_port=465))
    assert cf["relayhost"] == "[mail.example.net]:465"
    assert cf["smtp_tls_wrappermode"] == "yes"


@pytest.mark.parametrize(
    ("setting", "host_ipv6", "protocols"), [(None, False, "ipv4"), (None, True, "all"), (False, True, "ipv4")]
)
def test_ipv6_follows_the_host_unless_set(setting, host_ipv6, protocols):
    assert main_cf(make_settings(ipv6=setting), ipv6=host_ipv6)["inet_protocols"] == protocols


def test_myhostname_is_qualified_when_the_host_has_no_domain():
    assert postfix_hostname(make_settings(), "torres") == "torres.example.net"
    assert postfix_hostname(make_settings(myhostname="ws.lan.example.com"), "torres") == "ws.lan.example.com"
    assert main_cf(make_settings(host_name="kirk.example.net"), fqdn="kirk.corp.example.com")["myhostname"] == (
        "kirk.corp.example.com"
    )


@pytest.mark.parametrize(("port", "password"), [(587, "s3cret"), (465, AWKWARD_PASSWORD)])
def test_password_map_key_is_the_relayhost_and_the_password_round_trips(port, password):
    settings = make_settings(relay_port=port, password=password)
    line = rendered(settings)["sasl_passwd"]
    assert line.endswith("\n") and line.count("\n") == 1
    # Postfix: the key is the first word, the value the rest of the line; SASL splits it at the first colon.
    key, value = line.rstrip("\n").split(None, 1)
    assert key == main_cf(settings)["relayhost"]
    user, _, secret = value.partition(":")
    assert (user, secret) == ("torres@example.net", password)


def test_fallback_relays_are_tried_in_order_with_the_same_login_and_tls_mode():
    settings = make_settings(relay_port=465, fallback_relays=["backup.example.net", "mail.example.org:465"])
    assert main_cf(settings)["smtp_fallback_relay"] == "[backup.example.net]:465, [mail.example.org]:465"
    assert main_cf(settings)["smtp_tls_wrappermode"] == "yes"
    assert rendered(settings)["sasl_passwd"] == "".join(
        f"{key} torres@example.net:s3cret\n"
        for key in ("[mail.example.net]:465", "[backup.example.net]:465", "[mail.example.org]:465")
    )
    assert main_cf(make_settings())["smtp_fallback_relay"] == ""


def test_only_the_password_map_holds_the_password():
    files = render_files(make_settings(password=AWKWARD_PASSWORD), "torres.example.net", False, DEBIAN_CA)
    assert [f.name for f in files if AWKWARD_PASSWORD in f.content] == ["sasl_passwd"]
    secret = next(f for f in files if f.secret)
    assert (secret.name, secret.mode, secret.hashed_map) == ("sasl_passwd", "0600", True)


def test_local_recipients_go_to_the_owner_and_outside_ones_stay():
    lookup = regexp_map(rendered(make_settings())["virtual_alias"])
    for local in ("root@torres.example.net", "cron@torres", "nosuchuser@localhost", "bob@torres.example.net"):
        assert lookup(local) == "alice@example.org", local
    for outside in (
        "example.org",
        "example.net",
        "alice@example.org",
        "root@kirk.example.net",
        "root@example.net",
        "x@torres.example.net.evil",
    ):
        assert lookup(outside) is None, outside


def test_extra_aliases_win_over_forward_to():
    lookup = regexp_map(rendered(make_settings(extra_aliases={"bob": "bob@example.org"}))["virtual_alias"])
    assert lookup("bob@torres.example.net") == "bob@example.org"
    assert lookup("bobby@torres.example.net") == "alice@example.org"
    assert lookup("root@torres.example.net") == "alice@example.org"


def test_bounces_to_the_login_go_to_the_owner():
    lookup = regexp_map(rendered(make_settings())["virtual_alias"])
    assert lookup("torres@example.net") == "alice@example.org"
    assert lookup("kirk@example.net") is None


def test_every_sender_becomes_the_login_or_the_chosen_sender():
    canonical = regexp_map(rendered(make_settings())["sender_canonical"])
    for sender in ("root@torres.example.net", "cron@torres", "alice@example.org"):
        assert canonical(sender) == "torres@example.net"
    lookup = regexp_map(rendered(make_settings(sender_address="alerts@example.net"))["sender_canonical"])
    assert lookup("root@torres.example.net") == "alerts@example.net"


def test_bounce_senders_stay_so_that_an_undeliverable_bounce_is_dropped_not_looped():
    canonical = regexp_map(rendered(make_settings())["sender_canonical"])
    # Postfix looks the null sender up as "" or "@domain"; its own senders map to themselves (no change).
    for postfix_own in ("", "@torres.example.net"):
        assert canonical(postfix_own) is None
    for postfix_own in ("MAILER-DAEMON@torres.example.net", "double-bounce@torres.example.net"):
        assert canonical(postfix_own) == postfix_own


def test_regex_escape_for_postfix_regexp_tables():
    assert regex_escape("a.b+c(d)") == r"a\.b\+c\(d\)"
    assert local_domains("ws1.example.net") == r"ws1\.example\.net|ws1|localhost|localhost\.localdomain"


def test_two_hosts_differ_only_where_they_should():
    torres = rendered(make_settings())
    kirk = rendered(
        make_settings(host_name="kirk.example.net", smtp_user="kirk@example.net", sender_address="kirk@example.net"),
        fqdn="kirk.example.net",
    )
    assert not any("torres" in content for content in kirk.values())
    assert torres["main.cf"].replace("torres", "kirk") == kirk["main.cf"]


def test_no_template_spells_a_path_or_the_tag_that_the_model_declares():
    """Each of these is declared once (model.py, alerts.py, mail_systems.py) and reaches the
    templates as a variable: a template that spells one itself would depend on two spellings matching."""
    from pathlib import Path

    from postfix_nullclient import alerts, mail_systems, model

    declared = [model.CONFIG_DIR, model.STATE_DIR, model.SENDMAIL, model.MESSAGE_TAG, mail_systems.HELD_DIR]
    declared += [alerts.WATCHDOG, alerts.MOTD, alerts.SERVICE_UNIT, alerts.TIMER_UNIT, alerts.PERIODIC]
    declared += [alerts.UPGRADES_MAIL_CONF, *(system.queue_dir for system in mail_systems.MAIL_SYSTEMS)]
    declared += ["/var/spool/postfix"]  # Postfix's queue_directory: asked of postconf on the host
    templates = Path(__file__).resolve().parent.parent / "templates"
    spelled = [
        f"{path.relative_to(templates)}:{number}: {value}"
        for path in sorted(templates.rglob("*.j2"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if not line.lstrip().startswith(("#", "//"))  # comments may name them for the reader
        for value in declared
        if value and value in line
    ]
    assert spelled == []
