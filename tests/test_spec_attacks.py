"""Attacks on the settings' spec, as a careless admin or someone who can write one group_data file or
one host's data would make them: in every setting, characters and types that Postfix, the shell or
the other files cannot carry. Each value is refused naming the host, the setting and the value, or,
where the spec accepts it, every file and script the deploy renders carries it literally: one
main.cf line per parameter, one map rule per line, the value a single word in the shell."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyinfra.api import HiddenValue

from postfix_nullclient import alerts, spec
from postfix_nullclient.postfix import Plan, apply_script
from postfix_nullclient.render import meaning, render_files
from postfix_nullclient.settings import _password_problems, check_host, shown

HOST = "torres.example.net"
BASE = {"forward_to": "alice@example.org"}
DEBIAN_CA = "/etc/ssl/certs/ca-certificates.crt"

# Pieces of text that mean something to main.cf, a regexp map, the shell, a terminal or a reader.
FRAGMENTS = [
    "\n", "\r", "\0", "\t", "\x0b", "\x0c", "\x1b[31m", "\x7f", "\x85", "\u2028", "\u2029", "\u200b", "\u202e",
    "\xa0", "\u3000", "\uff4d", "\xfc", "\u0430",  # full-width m, an umlaut, a Cyrillic a
    "$", "${x}", "$(id)", "`id`", "/", "\\", "'", '"', "#", ",", " ", ";", "|", "&", "<", ">", "*", "?", "[", "]",
    "=", ":", "@", "%", "!", "~", "{", "}", "..", "-",
]  # fmt: skip
STRING_SETTINGS = [s for s in spec.SETTINGS if isinstance(s.example, str)]


def placements(good: str, fragment: str) -> list[str]:
    """`fragment` before, inside and after a good value."""
    return [fragment + good, good[:1] + fragment + good[1:], good + fragment]


STRING_ATTACKS = [
    (setting.name, value)
    for setting in STRING_SETTINGS
    for fragment in FRAGMENTS
    for value in placements(setting.example, fragment)
]
# Settings that take a list of strings: the same pieces in one of its items.
LIST_ATTACKS = [
    (setting.name, [value])
    for setting in spec.SETTINGS
    if isinstance(setting.example, list) and setting.example and isinstance(setting.example[0], str)
    for fragment in FRAGMENTS
    for value in placements(setting.example[0], fragment)
]
TYPE_ATTACKS = [
    (setting.name, value)
    for setting in spec.SETTINGS
    for value in [
        b"bytes", 10**400, -(10**400), -1, 0.5, float("nan"), float("inf"), ["a"], ("a",), {"a": "b"},
        [["nested"]], {"a": {"b": "c"}}, {1: 2}, frozenset({"x"}), 1j, object(),
    ]
]  # fmt: skip
LONG_ATTACKS = [(setting.name, setting.example[:1] * 100_000) for setting in STRING_SETTINGS]
# Keys a pyinfra data file may hold in a dict: not strings, not user names, or names Postfix folds alike.
ALIAS_KEY_ATTACKS = [
    ("extra_aliases", {key: "bob@example.org"})
    for key in [1, 1.5, True, None, b"bob", ("b", "o"), "Bob", "BOB", "bob@x", "bob ", " bob", "-bob", "b\nob",
                "\uff42ob", "bob\u2028", "$bob", "b/ob", "bob:x", "b" * 33, ""]
] + [
    ("extra_aliases", {"bob": target}) for target in [None, 1, ["a@example.org"], {"a": "b"}, b"a@example.org"]
]  # fmt: skip


def rendered(found) -> dict[str, str]:
    found = dataclasses.replace(found, password=HiddenValue("pa$$ w#rd:x"))
    return {f.name: f.content for f in render_files(found, HOST, False, DEBIAN_CA)}


def main_cf_parameters(text: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert not line[0].isspace(), f"a continuation line in main.cf: {line!r}"
            name, separator, value = line.partition(" =")
            assert separator, f"not a parameter line: {line!r}"
            assert name not in parameters, f"{name} set twice"
            parameters[name] = value.strip()
    return parameters


# A rule of a regexp: table as the deploy writes it: /PATTERN/ where every / inside is escaped, a tab,
# and a result whose every $ is doubled (or $1, the one back-reference the deploy means).
RULE = re.compile(r"/((?:[^/\\]|\\.)*)/\t((?:[^$\s]|\$\$|\$1(?![0-9]))+)")


def assert_carried_literally(found) -> None:
    """Every file the deploy renders for `found` carries each value literally, in its one place."""
    files = rendered(found)
    assert main_cf_parameters(files["main.cf"]) == meaning(found, HOST, False, DEBIAN_CA).parameters
    for name in ("virtual_alias", "sender_canonical"):
        lines = files[name].splitlines()
        assert len(lines) == len(files[name].split("\n")) - 1, f"{name} holds a line break that is not \\n"
        rules = [line for line in lines if line and not line.startswith("#")]
        for rule in rules:
            assert RULE.fullmatch(rule), f"{name}: a rule Postfix would read otherwise: {rule!r}"
    # One "[host]:port login:password" line for the relay and for each fallback relay.
    logins = files["sasl_passwd"].split("\n")
    assert logins.pop() == "" and len(logins) == 1 + len(getattr(found, "fallback_relays", ()))
    assert all(re.fullmatch(r"\[[A-Za-z0-9.-]+\]:(587|465) [^\s:]+:\S.*", login) for login in logins), logins
    assert all(c.isprintable() or c in "\n\t" for text in files.values() for c in text)


def assert_refused_by_name(setting: str, value: Any, problems: list[str]) -> None:
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{HOST}: {setting} {shown(value)} "), problems[0][:300]
    example = spec.BY_NAME[setting].example
    assert f"; e.g. {setting} = {example!r}; set {setting} in the inventory (host data)" in problems[0]


@pytest.mark.parametrize(
    ("setting", "value"),
    STRING_ATTACKS + LIST_ATTACKS + TYPE_ATTACKS + LONG_ATTACKS + ALIAS_KEY_ATTACKS,
    # The same ids in every pytest-xdist worker: an object's repr holds its address.
    ids=lambda v: re.sub(r" at 0x[0-9a-f]+", "", repr(v))[:30],
)
def test_a_hostile_value_is_refused_by_name_or_carried_literally_by_every_file(setting, value):
    found, problems = check_host(HOST, {**BASE, setting: value})

    if found is None:
        assert_refused_by_name(setting, value, problems)
        return
    parsed = getattr(found, setting)
    assert not isinstance(parsed, float | bytes), parsed
    if isinstance(parsed, list | tuple):
        assert isinstance(spec.BY_NAME[setting].example, list), f"{setting} became a {type(parsed).__name__}"
    assert_carried_literally(found)


NAME_253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57, "net"])
ADDRESS_254 = "x" * 64 + "@" + ".".join(["a" * 63, "b" * 63, "c" * 57, "net"])
# The longest value each setting takes, and one a character longer or over its range.
LIMITS = {
    "relay_host": (NAME_253, NAME_253 + "x"),
    "mail_domain": (NAME_253, NAME_253 + "x"),
    "myhostname": (NAME_253, "a" * 64 + ".example.net"),
    "forward_to": (ADDRESS_254, ADDRESS_254.replace("@", "@c")),
    "sender_address": ("x" * 64 + "@example.org", "x" * 65 + "@example.org"),
    "keyring_service": ("k" * 200, "k" * 201),
    "mail_package": ("m" * 128, "m" * 129),
    "watchdog_threshold": ("365d", "31536001"),
    "watchdog_interval": ("1d", "86401"),
}


@pytest.mark.parametrize("setting", LIMITS)
def test_a_value_at_the_limit_of_its_kind_is_carried_and_one_character_further_is_refused_by_name(setting):
    """Host names: 253 characters in labels of at most 63; addresses: 64 before the @, 254 in all."""
    longest, too_long = LIMITS[setting]
    found, problems = check_host(HOST, {**BASE, "smtp_user": "torres@example.net", setting: longest})
    assert found, problems
    assert_carried_literally(found)
    _, problems = check_host(HOST, {**BASE, setting: too_long})
    assert_refused_by_name(setting, too_long, problems)


def test_every_extra_alias_key_is_its_own_rule_and_root_goes_where_the_alias_says():
    aliases = {"root": "r@example.org", "bob": "b@example.org", "bob.": "b2@example.org", "b.b": "b3@example.org"}
    found, problems = check_host(HOST, {**BASE, "extra_aliases": aliases})
    assert found, problems
    virtual_alias = rendered(found)["virtual_alias"]
    rules = [line.split("\t")[0] for line in virtual_alias.splitlines() if line.startswith("/")]
    # Postfix's regexp: tables ignore case: no two rules for aliases may match the same name.
    assert len({rule.lower() for rule in rules}) == len(rules)
    first_rule_for_root = next(line for line in virtual_alias.splitlines() if line.startswith(("/^root@", "/^[^@]")))
    assert first_rule_for_root.endswith("\tr@example.org")
    assert ("virtual_alias", f"root@{HOST}", "r@example.org") in meaning(found, HOST, False, DEBIAN_CA).lookups


def test_the_second_walls_calls_hand_every_accepted_address_to_postmap_as_one_word():
    """The apply script's check lines, run by sh with meant_answer printing its arguments, give back
    exactly the lookups of meaning(): no quote, $, backquote or space of an address escapes its word."""
    hostile = "o$1'`id`${x}{|}/#&*!%=?^~-@example.org"
    data = {"forward_to": hostile, "sender_address": "s'$x`x`{y}@example.net", "extra_aliases": {"b.o-b_": hostile}}
    found, problems = check_host(HOST, data)
    assert found, problems
    found = dataclasses.replace(found, password=HiddenValue("x"))
    meant = meaning(found, HOST, False, DEBIAN_CA)
    script = apply_script(Plan([], [], "reload", False, True), "systemd", meant)
    calls = [line.strip() for line in script.splitlines() if line.strip().startswith("meant_answer ")]
    assert len(calls) == len(meant.lookups)
    shell = "meant_answer() { shift; printf '%s\\n' \"$@\"; }\n" + "\n".join(calls) + "\n"
    printed = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True).stdout
    assert printed == "".join(f"{table}\n{address}\n{answer}\n" for table, address, answer in meant.lookups)


def test_the_watchdog_its_timer_and_the_unattended_upgrades_file_carry_the_settings_as_numbers_and_words():
    data = {"watchdog_threshold": "000000000001", "watchdog_interval": "1d", "unattended_upgrades_mail": "always"}
    found, problems = check_host(HOST, {**BASE, **data})
    assert found, problems
    files = {managed.path: managed.content for managed in alerts.watchdog_files(found, "systemd")}
    assert "\nthreshold=1\n" in files[alerts.WATCHDOG]
    assert subprocess.run(["sh", "-n"], input=files[alerts.WATCHDOG], text=True).returncode == 0
    assert "\nOnUnitActiveSec=86400s\n" in files[alerts.TIMER_UNIT]
    assert '\nUnattended-Upgrade::MailReport "always";\n' in alerts.upgrades_mail_file(found).content


@pytest.mark.parametrize("password", ["se\ncret-XYZ42", "se\rcret-XYZ42", "se\0cret-XYZ42", " cret-XYZ42"])
def test_a_password_the_map_cannot_hold_is_refused_without_showing_it(password):
    problems = _password_problems(HOST, ("postfix-nullclient", "torres@example.net"), {
        ("postfix-nullclient", "torres@example.net"): password
    })  # fmt: skip
    assert problems and "keyring entry for service 'postfix-nullclient', user 'torres@example.net'" in problems[0]
    assert "XYZ42" not in problems[0]


any_key = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.binary(max_size=4))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(any_key, st.one_of(any_key, st.lists(any_key, max_size=2)), max_size=4))
def test_extra_aliases_with_keys_and_values_of_any_type_are_parsed_or_refused_by_name(aliases):
    found, problems = check_host(HOST, {**BASE, "extra_aliases": aliases})
    if found is None:
        assert problems and all(p.startswith(f"{HOST}: extra_aliases ") for p in problems), problems
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in found.extra_aliases.items())
    assert_carried_literally(found)
