"""Settings of each host, validated, with the relay password read from the OS keyring.

Every active host is checked at the first deploy of a run, before any command runs on any host,
and all passwords are read in one go. A host with a problem is refused alone, with a message that
names the setting or keyring entry and its fix; only when every host is refused does the whole run
stop before it starts.
"""

from __future__ import annotations

import shlex
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
from postfix_nullclient.keyring_lookup import Entry
from postfix_nullclient.spec import LOCAL_NAME, SETTINGS, Invalid, Setting, address, is_ip, relay_combination


class SettingsError(PyinfraError):
    """Bad settings or a missing secret on every host: raised before any host is touched."""


@dataclass(frozen=True)
class Settings:
    """What one host's deploy needs, all checked: the parsed settings of spec.SETTINGS (smtp_user and
    sender_address derived where they are not set) and the relay password."""

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
    unattended_upgrades_mail: str | None  # None: left as it is ("off")
    watchdog_threshold: int  # seconds
    watchdog_interval: int  # seconds
    fallback_relays: tuple[tuple[str, int | None], ...]  # (host, port or None: relay_port's)
    queue_lifetime: int  # seconds
    password: HiddenValue = field(repr=False)  # pyinfra's own: shown as *MASKED*, unmask() to read

    @property
    def relayhost(self) -> str:
        """Postfix's relayhost, and so the password map's key: one string, never two."""
        return f"[{self.relay_host}]:{self.relay_port}"

    @property
    def fallback_relayhosts(self) -> list[str]:
        """Postfix's smtp_fallback_relay, in order, and so the password map's further keys."""
        return [f"[{host}]:{port or self.relay_port}" for host, port in self.fallback_relays]


def short_name(host_name: str) -> str:
    """torres.example.net -> torres; @fake/torres -> torres; @local -> this machine's own name."""
    if host_name == "@local":  # `pyinfra @local deploy.py`, run on the workstation itself
        host_name = socket.gethostname()
    return host_name.rsplit("/", 1)[-1].split(".", 1)[0]


def _where(setting: str) -> str:
    return f"set {setting} in the inventory (host data), group_data/all.py, or with --data {setting}=..."


def shown(value: Any) -> str:
    """The value as written, for a message: its repr, cut after 200 characters."""
    text = repr(value)
    return text if len(text) <= 200 else f"{text[:200]}... ({len(text)} characters)"


def refusal(host_name: str, setting: Setting, written: Any, reason: Invalid) -> str:
    """One line of a refusal: the host, the setting, the value as written, why, a good value, where."""
    value = "" if written is None else f" {shown(written)}"
    return (
        f"{host_name}: {setting.name}{value} {reason}; e.g. {setting.name} = {setting.example!r}; "
        f"{_where(setting.name)}"
    )


# RFC 4954: a server must accept an AUTH command line of 12288 octets; a longer one may be refused.
AUTH_LINE_LIMIT = 12288


def auth_plain_line_length(login: str, password: str) -> int:
    """Octets of `AUTH PLAIN <base64 of NUL login NUL password>` with its CRLF, as Postfix's client sends it."""
    encoded = (len(login.encode()) + len(password.encode()) + 2 + 2) // 3 * 4
    return len("AUTH PLAIN ") + encoded + 2


def password_problem(password: str, login: str) -> str | None:
    """Why the password map cannot hold `password` for `login` ("is empty", ...), or None."""
    if password == "":
        return "is empty"
    if any(c in password for c in "\n\r\0"):
        return "contains a line break or NUL, which the password map cannot hold"
    if password != password.strip():
        return "starts or ends with white space, which Postfix would drop"
    if (octets := auth_plain_line_length(login, password)) > AUTH_LINE_LIMIT:
        return (
            f"is too long: the login with it makes an AUTH PLAIN line of {octets} octets, and a mail server "
            f"need not take more than {AUTH_LINE_LIMIT} (RFC 4954)"
        )
    return None


def _password_problems(host_name: str, entry: Entry, passwords: dict[Entry, str | None]) -> list[str]:
    service, user = entry
    password = passwords.get(entry)
    # A name that starts with - would be an option of keyring's command line: after --, it is not.
    end_of_options = "-- " if service.startswith("-") or user.startswith("-") else ""
    store = f"store it with: keyring set {end_of_options}{shlex.quote(service)} {shlex.quote(user)}"
    if password is None:
        return [f"{host_name}: no password in the keyring for service {service!r}, user {user!r}; {store}"]
    if problem := password_problem(password, user):
        return [f"{host_name}: the keyring entry for service {service!r}, user {user!r} {problem}; {store}"]
    return []


def with_passwords(good: dict[str, Settings]) -> tuple[dict[str, Settings], dict[str, list[str]]]:
    """Each host's settings with its password, all read in one go; the problems of the others, by host."""
    entries = {name: (settings.keyring_service, settings.smtp_user) for name, settings in good.items()}
    try:
        passwords = keyring_lookup.read_passwords(entries.values())
    except keyring.errors.NoKeyringError:
        return {}, {
            name: [f"{name}: {keyring_lookup.no_backend_message('read the relay password', service, user)}"]
            for name, (service, user) in entries.items()
        }
    except keyring_lookup.ChosenBackendUnusable as error:
        return {}, {
            name: [f"{name}: {keyring_lookup.unusable_backend_message('read the relay password', *entry, error)}"]
            for name, entry in entries.items()
        }
    except Exception:  # KeyringError, or whatever a backend raises (D-Bus, OS errors): refuse, never crash
        # The backend may fail for some entries only: each is asked alone, so that only its hosts are refused.
        passwords, failures = keyring_lookup.read_each(entries.values())
    else:
        failures = {}
    problems = {
        name: [
            f"{name}: the keyring could not be read (service {service!r}, user {user!r}): "
            f"{type(failures[(service, user)]).__name__}: {failures[(service, user)]}; unlock it and run again"
        ]
        if (service, user) in failures
        else _password_problems(name, (service, user), passwords)
        for name, (service, user) in entries.items()
    }
    with_password = {
        name: replace(settings, password=HiddenValue(passwords[entries[name]] or ""))
        for name, settings in good.items()
        if not problems[name]
    }
    return with_password, {name: found for name, found in problems.items() if found}


def check_host(host_name: str, data: Any) -> tuple[Settings | None, list[str]]:
    """Parse one host's data with each setting's parser; return the settings (with an empty password)
    or every problem. with_passwords() adds the passwords; nullclient's secret commands need only the names.

    A setting the data does not hold takes its default from the spec: the deploy gets them as
    data_defaults, nullclient's commands read the inventory without them.
    """
    values: dict[str, Any] = {}
    problems = []
    for setting in SETTINGS:
        written = data.get(setting.name)
        if written is None:
            written = setting.default
        try:
            values[setting.name] = setting.parse(written)
        except Invalid as reason:
            problems.append(refusal(host_name, setting, written, reason))

    if values.get("smtp_user", "") is None and "mail_domain" in values:
        name = short_name(host_name).lower()
        if not LOCAL_NAME.fullmatch(name) or is_ip(host_name.rsplit("/", 1)[-1]):
            problems.append(
                f"{host_name}: cannot derive smtp_user from the host name {host_name!r}; {_where('smtp_user')}"
            )
        else:
            try:
                values["smtp_user"] = address(f"{name}@{values['mail_domain']}")
            except Invalid as reason:
                problems.append(f"{host_name}: smtp_user derived from the host name {reason}; {_where('smtp_user')}")
    myhostname, mail_domain = values.get("myhostname"), values.get("mail_domain")
    if myhostname and mail_domain and "." not in myhostname and len(f"{myhostname}.{mail_domain}") > 253:
        # Postfix's own limit: a name without a dot is qualified with mail_domain (render.postfix_hostname).
        problems.append(
            f"{host_name}: myhostname {shown(myhostname)} with mail_domain is longer than the 253 characters of a "
            f"host name; give a shorter one with a dot, e.g. myhostname = 'torres.example.net'; {_where('myhostname')}"
        )
    if values.get("sender_address", "") is None:
        values["sender_address"] = values.get("smtp_user")
    if problem := relay_combination(values.get("relay_host"), values.get("relay_port"), values.get("fallback_relays")):
        problems.append(f"{host_name}: {problem}; {_where('fallback_relays')}")
    if problems:
        return None, problems
    return Settings(host_name=host_name, password=HiddenValue(""), **values), []


@dataclass(frozen=True)
class Refusal:
    """Why one host is refused: every problem of its settings and keyring entry, each with its fix."""

    host_name: str
    problems: list[str]  # each "HOST: what is wrong; the fix"
    cause: str = "settings"  # or "keyring entry": its settings are right, its password could not be had

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
    refusals = {name: Refusal(name, found) for name, found in problems.items()}
    refusals.update({name: Refusal(name, found, "keyring entry") for name, found in password_problems.items()})
    return {**good, **refusals}
