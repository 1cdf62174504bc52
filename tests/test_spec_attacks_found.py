"""Attacks on the settings' spec that once succeeded: values the spec accepted that the deploy could not carry,
and a refusal whose advice did not do what it says. Each test states what must hold."""

from __future__ import annotations

import shlex

import keyring.cli
import pytest

from postfix_nullclient.render import meaning, postfix_hostname
from postfix_nullclient.settings import _password_problems, check_host

HOST = "torres.example.net"
BASE = {"forward_to": "alice@example.org"}
DEBIAN_CA = "/etc/ssl/certs/ca-certificates.crt"


@pytest.mark.parametrize(
    "data",
    [
        # The login's bounces go to forward_to, but the alias of the same local name sends them elsewhere.
        {"sender_address": "bob@torres.example.net", "extra_aliases": {"bob": "bob@example.org"}},
        # The check's probe of "an outside address that is left alone" is this host's own sender.
        {"sender_address": "someone@example.com"},
    ],
    ids=["sender-is-an-alias", "sender-is-the-probe"],
)
def test_accepted_settings_never_mean_two_answers_for_one_address(data):
    """The host's check compares every lookup of meaning() with postmap: two answers for one address
    can never both hold, so such settings are refused on every host, naming no setting."""
    found, _ = check_host(HOST, {**BASE, **data})
    if found is None:
        return  # refused by the spec: what must happen
    answers: dict[tuple[str, str], set[str]] = {}
    for table, address, answer in meaning(found, HOST, False, DEBIAN_CA).lookups:
        answers.setdefault((table, address.lower()), set()).add(answer)
    contradictions = {key: found for key, found in answers.items() if len(found) > 1}
    assert not contradictions, f"accepted, but meant two ways: {contradictions}"


def test_an_accepted_myhostname_is_a_host_name_postfix_takes_once_qualified_with_mail_domain():
    """A myhostname without a dot gets .mail_domain; 63 + 1 + 253 characters is no host name (Postfix's
    valid_hostname: 255 at most), and postmap then fails on the host with no word of myhostname."""
    mail_domain = ".".join(["b" * 63, "c" * 63, "d" * 63, "e" * 57, "net"])
    data = {**BASE, "myhostname": "a" * 63, "mail_domain": mail_domain, "smtp_user": "torres@example.net"}
    found, problems = check_host(HOST, data)
    if found is None:
        assert any("myhostname" in problem for problem in problems), problems
        return
    assert len(postfix_hostname(found, HOST)) <= 253, "accepted, and longer than a host name"


@pytest.mark.parametrize(
    ("service", "user"),
    [("--disable", "torres@example.net"), ("-b", "torres@example.net"), ("postfix-nullclient", "-torres@example.net")],
)
def test_the_keyring_command_a_refusal_suggests_stores_the_entry_it_names(service, user):
    """Both names are accepted by the spec (a keyring service name, a mail address may start with -);
    the keyring CLI reads a leading - as its own option, so the suggested command stores nothing."""
    found, problems = check_host(HOST, {**BASE, "keyring_service": service, "smtp_user": user})
    assert found, problems
    [problem] = _password_problems(HOST, (service, user), {})
    command = problem.split("store it with: ", 1)[1]
    words = shlex.split(command)
    assert words[0] == "keyring"
    try:
        parsed = keyring.cli.CommandLineTool().parser.parse_args(words[1:])
    except SystemExit:
        pytest.fail(f"keyring's own parser refuses the suggested command: {command}")
    assert (parsed.operation, parsed.service, parsed.username, parsed.disable) == ("set", service, user, False), (
        f"the suggested command does something else: {command}"
    )


@pytest.mark.parametrize(
    "fallbacks", [["MAIL.example.net"], ["backup.example.net", "Backup.Example.NET"]], ids=["the-relay", "twice"]
)
def test_a_fallback_relay_that_is_the_relay_or_another_in_other_case_is_refused(fallbacks):
    """Host names and the password map's keys ignore case (postmap folds them): [MAIL.example.net]:587
    is the relay again, and postmap says 'duplicate entry' on the host. The spec compares them as written."""
    found, problems = check_host(HOST, {**BASE, "relay_host": "mail.example.net", "fallback_relays": fallbacks})
    assert found is None, f"accepted: smtp_fallback_relay {found.fallback_relays}"
    assert problems[0].startswith(f"{HOST}: fallback_relays "), problems
