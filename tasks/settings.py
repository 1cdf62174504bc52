"""Settings of each host, validated, with the relay password read from the OS keyring.

Every active host is checked at the first deploy of a run, before any command runs on any host,
and all passwords are read in one go. A host with a problem is refused alone, with a message that
names the setting or keyring entry and its fix; only when every host is refused does the whole run
stop before it starts.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from dataclasses import dataclass, field, replace
from typing import Any
from weakref import WeakKeyDictionary

import keyring
import keyring.errors
from pyinfra.api import HiddenValue
from pyinfra.api.exceptions import PyinfraError

from postfix_nullclient import keyring_lookup
from postfix_nullclient.defaults import DEFAULTS
from postfix_nullclient.keyring_lookup import Entry

RELAY_PORTS = (587, 465)
ADDRESS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
LOCAL_NAME = re.compile(r"^[a-z_][a-z0-9_.-]*$")
UNATTENDED_UPGRADES_MAIL = ("only-on-error", "on-change", "always", "off")
DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class SettingsError(PyinfraError):
    """Bad settings or a missing secret on every host: raised before any host is touched."""


@dataclass(frozen=True)
class Settings:
    """What one host's deploy needs, all checked."""

    host_name: str
    relay_host: str
    relay_port: int
    mail_domain: str
    smtp_user: str
    forward_to: str
    keyring_service: str
    sender_address: str
    extra_aliases: dict[str, str]
    ca_file: str | None  # None: the distribution's CA bundle
    myhostname: str | None
    ipv6: bool | None
    mail_package: str | None  # None: the distribution's mail command package
    password: HiddenValue = field(repr=False)  # pyinfra's own: shown as *MASKED*, unmask() to read
    unattended_upgrades_mail: str | None = "only-on-error"  # None: left as it is ("off")
    watchdog_threshold: int = 3600  # seconds
    watchdog_interval: int = 300  # seconds

    @property
    def relayhost(self) -> str:
        """Postfix's relayhost, and so the password map's key: one string, never two."""
        return f"[{self.relay_host}]:{self.relay_port}"


def short_name(host_name: str) -> str:
    """torres.example.net -> torres; @fake/torres -> torres; @local -> this machine's own name."""
    if host_name == "@local":  # `pyinfra @local deploy.py`, run on the workstation itself
        host_name = socket.gethostname()
    return host_name.rsplit("/", 1)[-1].split(".", 1)[0]


def _bool_or_none(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "none", "auto"):
        return None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def duration_seconds(value: Any) -> int:
    """A duration setting in seconds: 3600, "3600", "90s", "30m", "1h", "2d". ValueError if it is none of these."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        seconds = value
    else:
        match = DURATION.match(str(value))
        if not match:
            raise ValueError(value)
        seconds = int(match.group(1)) * DURATION_UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(value)
    return seconds


def _where(setting: str) -> str:
    return f"set {setting} in the inventory (host data), group_data/all.py, or with --data {setting}=..."


class _Checker:
    """Collects every problem of one host instead of stopping at the first."""

    def __init__(self, host_name: str, data: Any) -> None:
        self.host_name = host_name
        self.data = data
        self.problems: list[str] = []

    def fail(self, message: str) -> None:
        self.problems.append(f"{self.host_name}: {message}")

    def get(self, setting: str) -> Any:
        """The host's value; where it has none, the documented default (postfix_nullclient.defaults)."""
        value = self.data.get(setting)
        return DEFAULTS.get(setting) if value is None else value

    def address(self, setting: str, value: Any, example: str) -> str:
        if not value:
            self.fail(f"{setting} is not set; {_where(setting)} (e.g. {example})")
        elif not isinstance(value, str) or not ADDRESS.match(value):
            self.fail(f"{setting} {value!r} is not a mail address like {example}; {_where(setting)}")
        return value or ""

    def hostname(self, setting: str, value: Any) -> str:
        if not value:
            self.fail(f"{setting} is empty; {_where(setting)} (e.g. mail.example.net)")
        elif not isinstance(value, str) or not HOSTNAME.match(value):
            self.fail(f"{setting} {value!r} is not a host name; {_where(setting)} (e.g. mail.example.net)")
        return value or ""


def password_problem(password: str) -> str | None:
    """Why the password map cannot hold `password` ("is empty", ...), or None."""
    if password == "":
        return "is empty"
    if any(c in password for c in "\n\r\0"):
        return "contains a line break or NUL, which the password map cannot hold"
    if password != password.strip():
        return "starts or ends with white space, which Postfix would drop"
    return None


def _password_problems(host_name: str, entry: Entry, passwords: dict[Entry, str | None]) -> list[str]:
    service, user = entry
    password = passwords.get(entry)
    store = f"store it with: keyring set {service} {user}"
    if password is None:
        return [f"{host_name}: no password in the keyring for service {service!r}, user {user!r}; {store}"]
    if problem := password_problem(password):
        return [f"{host_name}: the keyring entry for service {service!r}, user {user!r} {problem}; {store}"]
    return []


def with_passwords(good: dict[str, Settings]) -> tuple[dict[str, Settings], dict[str, list[str]]]:
    """Each host's settings with its password, all read in one go; the problems of the others, by host."""
    entries = {name: (settings.keyring_service, settings.smtp_user) for name, settings in good.items()}
    try:
        passwords = keyring_lookup.read_passwords(entries.values())
    except keyring.errors.NoKeyringError:
        return {}, {
            name: [
                f"{name}: no OS keyring backend is available to read the relay password "
                f"(service {service!r}, user {user!r}); run the deploy in a desktop session with "
                "Secret Service (gnome-keyring) or KWallet, or install and choose one, e.g. "
                "`pip install keyrings.alt` and PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring"
            ]
            for name, (service, user) in entries.items()
        }
    except keyring.errors.KeyringError as error:
        return {}, {
            name: [
                f"{name}: the keyring could not be read (service {service!r}, user {user!r}): "
                f"{type(error).__name__}: {error}; unlock it and run again"
            ]
            for name, (service, user) in entries.items()
        }
    problems = {name: _password_problems(name, entry, passwords) for name, entry in entries.items()}
    with_password = {
        name: replace(settings, password=HiddenValue(passwords[entries[name]] or ""))
        for name, settings in good.items()
        if not problems[name]
    }
    return with_password, {name: found for name, found in problems.items() if found}


def check_host(host_name: str, data: Any) -> tuple[Settings | None, list[str]]:
    """Validate one host's data; return the settings (with an empty password) or the problems.

    with_passwords() adds the passwords; nullclient's secret commands need only the names.
    """
    check = _Checker(host_name, data)

    relay_host = check.hostname("relay_host", check.get("relay_host"))
    relay_port = check.get("relay_port")
    try:
        relay_port = int(relay_port)
    except (TypeError, ValueError):
        relay_port = None
    if relay_port not in RELAY_PORTS:
        check.fail(
            f"relay_port {check.get('relay_port')} is not supported: use 587 (submission, STARTTLS) "
            f"or 465 (implicit TLS); {_where('relay_port')}"
        )

    mail_domain = check.hostname("mail_domain", check.get("mail_domain"))
    smtp_user = check.get("smtp_user")
    if not smtp_user:
        name = short_name(host_name)
        if not LOCAL_NAME.match(name.lower()) or _is_ip(host_name.rsplit("/", 1)[-1]):
            check.fail(f"cannot derive smtp_user from the host name {host_name!r}; {_where('smtp_user')}")
        smtp_user = f"{name.lower()}@{mail_domain}"
    smtp_user = check.address("smtp_user", smtp_user, "torres@example.net")
    forward_to = check.address("forward_to", check.get("forward_to"), "you@example.org")
    sender_address = check.address("sender_address", check.get("sender_address") or smtp_user, smtp_user)

    service = check.get("keyring_service")
    if not service or not isinstance(service, str):
        check.fail(f"keyring_service is empty; {_where('keyring_service')} (default postfix-nullclient)")

    extra_aliases = check.get("extra_aliases") or {}
    if not isinstance(extra_aliases, dict):
        check.fail(f"extra_aliases must be a dict of local name -> address; {_where('extra_aliases')}")
        extra_aliases = {}
    for local, target in extra_aliases.items():
        if not isinstance(local, str) or not LOCAL_NAME.match(local):
            check.fail(f"extra_aliases key {local!r} is not a local user name like 'alice'")
        check.address(f"extra_aliases[{local!r}]", target, "alice@example.org")

    ca_file = check.get("ca_file")
    if ca_file is not None and (not isinstance(ca_file, str) or not ca_file.startswith("/")):
        check.fail(f"ca_file {ca_file!r} is not an absolute path; {_where('ca_file')}")

    myhostname = check.get("myhostname")
    if myhostname is not None:
        check.hostname("myhostname", myhostname)
        if isinstance(myhostname, str) and myhostname.replace(".", "").isdigit():
            # Postfix refuses a numeric myhostname ("bad parameter value"), and only once it runs.
            check.fail(f"myhostname {myhostname!r} is numeric, Postfix wants a name; {_where('myhostname')}")

    try:
        ipv6 = _bool_or_none(check.get("ipv6"))
    except ValueError:
        check.fail(f"ipv6 {check.get('ipv6')!r} is not one of true, false, auto; {_where('ipv6')}")
        ipv6 = None

    mail_package = check.get("mail_package") or None

    upgrades_mail = check.get("unattended_upgrades_mail")
    upgrades_mail = "off" if upgrades_mail is False else str(upgrades_mail).strip().lower()
    if upgrades_mail not in UNATTENDED_UPGRADES_MAIL:
        check.fail(
            f"unattended_upgrades_mail {check.get('unattended_upgrades_mail')!r} is not one of "
            f"{', '.join(UNATTENDED_UPGRADES_MAIL)}; {_where('unattended_upgrades_mail')}"
        )
    durations = {}
    for setting in ("watchdog_threshold", "watchdog_interval"):
        try:
            durations[setting] = duration_seconds(check.get(setting))
        except ValueError:
            check.fail(
                f"{setting} {check.get(setting)!r} is not a duration: use seconds, or a number with s, m, h "
                f'or d, e.g. 3600 or "1h"; {_where(setting)}'
            )

    if check.problems:
        return None, check.problems
    settings = Settings(
        host_name=host_name,
        relay_host=relay_host,
        relay_port=relay_port,
        mail_domain=mail_domain,
        smtp_user=smtp_user,
        forward_to=forward_to,
        keyring_service=service,
        sender_address=sender_address,
        extra_aliases=dict(extra_aliases),
        ca_file=ca_file,
        myhostname=myhostname,
        ipv6=ipv6,
        mail_package=mail_package,
        password=HiddenValue(""),
        unattended_upgrades_mail=None if upgrades_mail == "off" else upgrades_mail,
        watchdog_threshold=durations["watchdog_threshold"],
        watchdog_interval=durations["watchdog_interval"],
    )
    return settings, []


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Refusal:
    """Why one host is refused: every problem of its settings and keyring entry, each with its fix."""

    host_name: str
    problems: list[str]  # each "HOST: what is wrong; the fix"

    def __str__(self) -> str:
        return "; ".join(problem.removeprefix(f"{self.host_name}: ") for problem in self.problems)


_lock = threading.Lock()  # gevent-patched under the pyinfra CLI: hosts wait for the one check
_checked: WeakKeyDictionary[Any, dict[str, Settings | Refusal]] = WeakKeyDictionary()


def settings_for(state: Any, host: Any) -> Settings | Refusal:
    """The settings of `host`, or why it is refused; at the first call of a run, every active host is checked.

    Raises SettingsError, before any command runs anywhere, when every active host is refused.
    """
    with _lock:
        if state not in _checked:
            checked = check_inventory(state.inventory.get_active_hosts())
            refusals = [found for found in checked.values() if isinstance(found, Refusal)]
            if checked and len(refusals) == len(checked):
                problems = [problem for refusal in refusals for problem in refusal.problems]
                raise SettingsError("refusing to deploy, no host was touched:\n  - " + "\n  - ".join(problems))
            _checked[state] = checked
        checked = _checked[state]
        if host.name not in checked:  # a host that was not active at the first call: on its own
            checked.update(check_inventory([host]))
    return checked[host.name]


def check_inventory(hosts: Any) -> dict[str, Settings | Refusal]:
    """Each host's settings with its password, or its Refusal; the keyring is read once for all."""
    good: dict[str, Settings] = {}
    problems: dict[str, list[str]] = {}
    for host in hosts:
        settings, host_problems = check_host(host.name, host.data)
        if settings:
            good[host.name] = settings
        else:
            problems[host.name] = host_problems
    # The keyring is asked only for the hosts whose entry names are right.
    good, password_problems = with_passwords(good)
    problems.update(password_problems)
    return {**good, **{name: Refusal(name, found) for name, found in problems.items()}}
