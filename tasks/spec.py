"""Every setting of the null-client deploy, declared once: name, default, parser, example, meaning.

DEFAULTS (the @deploy's data_defaults), the validation of each host's data (settings.check_host),
the commented list in group_data/all.py (`group_data_text`) and the README's settings table
(`readme_table`) all come from SETTINGS; tests/test_spec.py fails when a file says otherwise.

A parser takes the value as written (host data, group data, --data) and returns what the deploy
uses, or raises Invalid with the words that follow the value in the refusal ("is not a mail address").
Parsers match whole strings, refuse every control character, and accept only what Postfix, the
package manager and the shell scripts on the host carry literally.
"""

from __future__ import annotations

import ipaddress
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Invalid(ValueError):
    """A value that a parser refuses; str() says why, as the words after the value."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[Any], Any]  # the value as written -> the value the deploy uses; raises Invalid
    example: Any  # a good value, shown in every refusal of this setting
    meaning: str  # one line: the README's table and group_data/all.py
    default_text: str = ""  # the README's default column, where the default is derived (None)


# --- parsers ---------------------------------------------------------------------------------------

RELAY_PORTS = (587, 465)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
# RFC 5322's dot-atom local part. Postfix carries every one of these characters: the maps escape
# the ones that mean something to them ($ and / in regexp tables, render.py).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
LOCAL_PART = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
LOCAL_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")  # a user name as useradd takes it
# Letters, digits and . _ + - @ = : in absolute paths: no white space, no $ (Postfix expands it).
PATH = re.compile(r"/[A-Za-z0-9._+@=:/-]{0,4095}")
# A package name every supported package manager could mean: never an option (a leading -).
PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
DURATION = re.compile(r"([0-9]{1,12})([smhd]?)")
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
UNATTENDED_UPGRADES_MAIL = ("only-on-error", "on-change", "always", "off")
_BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "1": True}
_BOOLEAN_WORDS |= {"false": False, "no": False, "off": False, "0": False}
_AUTO_WORDS = ("auto", "none", "")


def _type_name(value: Any) -> str:
    return type(value).__name__


def text(value: Any, pattern: re.Pattern[str], what: str) -> str:
    """`value` if it is a string that `pattern` matches whole; else Invalid naming `what` it must be."""
    if not isinstance(value, str):
        raise Invalid(f"is a {_type_name(value)}, not {what}")
    if value == "":
        raise Invalid(f"is empty; it must be {what}")
    if any(not character.isprintable() for character in value):
        raise Invalid(f"contains a control character or line break; it must be {what}")
    if not pattern.fullmatch(value):
        raise Invalid(f"is not {what}")
    return value


def hostname(value: Any) -> str:
    name = text(value, HOSTNAME, "a host name")
    if len(name) > 253:
        raise Invalid("is longer than the 253 characters of a host name")
    if name.rsplit(".", 1)[-1].isdigit():
        # Postfix wants names, and verifies the relay's certificate by its name.
        raise Invalid("is an address, not a host name")
    return name


def domain(value: Any) -> str:
    name = text(value, DOMAIN, "a domain name with a dot")
    return hostname(name)


def address(value: Any) -> str:
    """A mail address whose every character Postfix's maps carry (render.py escapes $ and /)."""
    if value is None:
        raise Invalid("is not set")
    if value == "":
        raise Invalid("is empty")
    written = text(value, re.compile(r"[^@]+@[^@]+"), "a mail address")
    local, _, domain_part = written.partition("@")
    if len(written) > 254 or len(local) > 64:
        raise Invalid("is longer than a mail address may be (64 characters before the @, 254 in all)")
    if not LOCAL_PART.fullmatch(local):
        raise Invalid("is not a mail address: the part before the @ has a character or dot that it may not")
    try:
        domain(domain_part)
    except Invalid:
        raise Invalid("is not a mail address: the part after the @ is not a domain name") from None
    return written


def optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """None stays None (the setting's derived default); anything else goes through `parse`."""

    def parse_optional(value: Any) -> Any:
        return None if value is None else parse(value)

    parse_optional.__doc__ = parse.__doc__
    return parse_optional


def relay_port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Invalid(f"is a {_type_name(value)}, not a port number")
    if isinstance(value, str):
        value = int(text(value, re.compile(r"[0-9]{1,5}"), "a port number"))
    if value not in RELAY_PORTS:
        raise Invalid("is not supported: use 587 (submission, STARTTLS) or 465 (implicit TLS)")
    return value


def fallback_relays(value: Any) -> tuple[tuple[str, int | None], ...]:
    """A list of "host" or "host:port" (587 or 465); a port not written is relay_port's."""
    if value is None or value == []:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise Invalid(f"is a {_type_name(value)}, not a list of host names, each with :587 or :465 if you like")
    endpoints = []
    for written in value:
        if not isinstance(written, str):
            raise Invalid(f"holds {written!r}, a {_type_name(written)}, not a host name")
        host, colon, port = written.partition(":")
        try:
            endpoints.append((hostname(host), relay_port(port) if colon else None))
        except Invalid as reason:
            raise Invalid(f"holds {written!r}, which {reason}") from None
    if len({(host.lower(), port) for host, port in endpoints}) != len(endpoints):  # names ignore case
        raise Invalid("names an endpoint twice")
    return tuple(endpoints)


def relay_combination(relay_host: str | None, relay_port: int | None, fallbacks: Any) -> str | None:
    """Why Postfix cannot use these fallback relays with this relay, or None (also where a setting was refused
    already: None). Its SMTP client has one TLS mode (smtp_tls_wrappermode) for the relay and all fallback
    relays, and tries each fallback relay with it."""
    if relay_host is None or relay_port is None:
        return None
    seen = {(relay_host.lower(), relay_port)}
    for host, port in fallbacks or ():
        endpoint = (host.lower(), port or relay_port)  # names ignore case; a port not written is relay_port
        if endpoint in seen and endpoint[0] != relay_host.lower():
            return f"fallback_relays names {host}:{port or relay_port} twice"
        seen.add(endpoint)
        if endpoint == (relay_host.lower(), relay_port):
            return f"fallback_relays names the relay itself ({host}:{relay_port})"
        if port is not None and port != relay_port:
            mode = {587: "STARTTLS", 465: "implicit TLS"}
            return (
                f"fallback_relays {host}:{port} wants {mode[port]}, but relay_port {relay_port} is {mode[relay_port]}: "
                "Postfix tries fallback relays with the relay's one TLS mode (smtp_tls_wrappermode), so it cannot "
                f"use both; give every fallback relay port {relay_port}, or set relay_port to {port} and give it "
                "to every endpoint"
            )
    return None


def keyring_service(value: Any) -> str:
    return text(value, re.compile(r"\S(?:.{0,198}\S)?"), "a keyring service name without white space at its ends")


def extra_aliases(value: Any) -> dict[str, str]:
    """A dict of local user name -> mail address."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(f"is a {_type_name(value)}, not a dict of local user name -> mail address")
    aliases = {}
    for local, target in value.items():
        try:
            text(local, LOCAL_NAME, "a local user name (lower-case letters, digits, _ . -)")
        except Invalid as error:
            raise Invalid(f"has the key {local!r}, which {error}") from None
        try:
            aliases[local] = address(target)
        except Invalid as error:
            raise Invalid(f"maps {local!r} to {target!r}, which {error}") from None
    return aliases


def path(value: Any) -> str:
    return text(value, PATH, "an absolute path of letters, digits and . _ + - @ = : /")


def ipv6(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.lower()
        if word in _AUTO_WORDS:
            return None
        if word in _BOOLEAN_WORDS:
            return _BOOLEAN_WORDS[word]
    raise Invalid("is not one of true, false, auto")


def package(value: Any) -> str:
    return text(value, PACKAGE, "a package name (letters, digits and . _ + -, never a leading -)")


def unattended_upgrades_mail(value: Any) -> str | None:
    """One of the words; "off" (or False, None) is None: the deploy leaves its configuration alone."""
    if value is None or value is False or value == "off":
        return None
    if isinstance(value, str) and value in UNATTENDED_UPGRADES_MAIL:
        return value
    raise Invalid(f"is not one of {', '.join(UNATTENDED_UPGRADES_MAIL)}")


def duration(low: int, high: int) -> Callable[[Any], int]:
    """Seconds as an int, or a string of digits with s, m, h or d; from `low` to `high` seconds."""

    def parse_duration(value: Any) -> int:
        what = "a duration: seconds, or a number with s, m, h or d"
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise Invalid(f"is a {_type_name(value)}, not {what}")
        if isinstance(value, int):
            seconds = value
        else:
            number = text(value, DURATION, what).rstrip("smhd")
            seconds = int(number) * DURATION_UNITS[value[len(number) :]]
        if not low <= seconds <= high:
            raise Invalid(f"is out of range: from {duration_text(low)} to {duration_text(high)}")
        return seconds

    return parse_duration


def duration_text(seconds: int) -> str:
    """3600 -> "1h", 90 -> "90s", 5400 -> "90m": the shortest exact form."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def is_ip(text_: str) -> bool:
    try:
        ipaddress.ip_address(text_)
    except ValueError:
        return False
    return True


# --- the settings ----------------------------------------------------------------------------------

SETTINGS = (
    Setting("relay_host", "mail.example.net", hostname, "mail.example.net",
            "the mail server that relays everything, by the name in its certificate"),
    Setting("relay_port", 587, relay_port, 465,
            "587: submission with STARTTLS; 465: implicit TLS. Nothing else"),
    Setting("mail_domain", "example.net", domain, "example.net",
            "domain of the per-machine accounts on the mail server"),
    Setting("smtp_user", None, optional(address), "torres@example.net",
            "login on the relay; by default from the inventory name (`torres.example.net` -> "
            "`torres@example.net`; `@local`: the machine's own host name)",
            "`<short host name>@<mail_domain>`"),
    Setting("forward_to", None, address, "you@example.org",
            "real address that receives mail for root and every local user", "none, required"),
    Setting("keyring_service", "postfix-nullclient", keyring_service, "postfix-nullclient",
            "the password is `keyring.get_password(keyring_service, smtp_user)`"),
    Setting("sender_address", None, optional(address), "torres@example.net",
            "envelope and From: sender of every mail; strict relays accept only the login", "`smtp_user`"),
    Setting("extra_aliases", {}, extra_aliases, {"bob": "bob@example.org"},
            "local names sent elsewhere than `forward_to`, e.g. `{\"bob\": \"bob@example.org\"}`"),
    Setting("ca_file", None, optional(path), "/etc/ssl/certs/ca-certificates.crt",
            "CA bundle the relay's certificate is verified against, by name", "the distribution's bundle"),
    Setting("myhostname", None, optional(hostname), "torres.example.net",
            "Postfix's name; `<name>.<mail_domain>` if `hostname -f` has no dot", "the host's FQDN"),
    Setting("ipv6", None, ipv6, "auto",
            "IPv6 on/off; auto: on where the host has IPv6 on its loopback", "auto"),
    Setting("mail_package", None, optional(package), "bsd-mailx",
            "the package that provides the `mail` command (`bsd-mailx` on Debian)", "the distribution's"),
    Setting("unattended_upgrades_mail", "only-on-error", unattended_upgrades_mail, "on-change",
            "where unattended-upgrades is installed (never installed for this), its report is mailed to "
            "root, so to `forward_to`: `only-on-error`, `on-change` or `always`; `off` leaves its "
            "configuration as it is"),
    Setting("watchdog_threshold", "1h", duration(1, 365 * 86400), "1h",
            "the queue watchdog warns once a message has waited longer: seconds, or a number with `s`, "
            "`m`, `h`, `d` (1s to 365d)"),
    Setting("watchdog_interval", "5m", duration(1, 86400), "5m",
            "how often the watchdog looks at the queue (its systemd timer; every 15 minutes on OpenRC); "
            "1s to 1d"),
    Setting("fallback_relays", [], fallback_relays, ["backup.example.net"],
            "further submission servers, tried in order when `relay_host` cannot be reached: host names, "
            "each with `:587` or `:465` if you like (every one on `relay_port`'s TLS mode: Postfix has one "
            "for all), verified as `relay_host` is; the login and keyring entry are the same"),
    Setting("queue_lifetime", "30d", duration(60, 100 * 86400), "30d",
            "how long Postfix keeps trying a message, and the bounce that says one expired, before it gives "
            "up (maximal_queue_lifetime and bounce_queue_lifetime); 1m to 100d. 30d, for laptops: offline "
            "for weeks, or on networks that block the relay's port, no mail is lost, where Postfix's 5d "
            "would bounce it through the same unreachable relay, and that bounce would expire too. The "
            "watchdog warns by half of it at the latest, with the date the oldest message would expire"),
)  # fmt: skip

BY_NAME = {setting.name: setting for setting in SETTINGS}
DEFAULTS: dict[str, Any] = {setting.name: setting.default for setting in SETTINGS}


# --- what the files say of the settings ------------------------------------------------------------------


def _shown_default(setting: Setting) -> str:
    if setting.default_text:
        return setting.default_text
    return f"`{setting.default}`"


def readme_table() -> str:
    """The README's settings table."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {_shown_default(s)} | {s.meaning} |" for s in SETTINGS]
    return "\n".join(rows) + "\n"


def group_data_text() -> str:
    """The commented settings of group_data/all.py: each meaning, then the setting with its default."""
    lines = []
    for setting in SETTINGS:
        lines += textwrap.wrap(setting.meaning.replace("`", ""), 96, initial_indent="# ", subsequent_indent="#   ")
        lines.append(f"# {setting.name} = {setting.default!r}")
        lines.append("")
    return "\n".join(lines)
