"""Relay passwords in the OS keyring, under the very service and user names the deploy reads.

The account of a host is made of the settings it depends on only (keyring_service, smtp_user, and
mail_domain for a derived smtp_user), each parsed by its own parser from tasks.spec, so that a name
the deploy would refuse is refused here too, with the deploy's own message, while a setting the
keyring does not need (forward_to, ...) is not asked for.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

import keyring
import keyring.errors

from postfix_nullclient import keyring_lookup
from postfix_nullclient.nullclient.targets import UsageError
from postfix_nullclient.settings import check_host, refusal
from postfix_nullclient.settings import password_problem as settings_password_problem
from postfix_nullclient.spec import BY_NAME, Invalid

# The settings a keyring entry depends on: check_host derives smtp_user from the name and mail_domain.
ACCOUNT_SETTINGS = ("keyring_service", "smtp_user", "mail_domain")

# pwgen --secure 32: letters and digits from a cryptographic source, about 190 bits; no symbols,
# so that any mail server's password form and any shell quoting take it.
PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32


@dataclass(frozen=True)
class Account:
    """Where one host's relay password lives: keyring.get_password(service, user)."""

    host: str
    service: str
    user: str

    def describe(self) -> str:
        return f"keyring service {self.service!r}, user {self.user!r}"


def account_of(host_name: str, data: Any) -> Account:
    """The keyring entry of a host, from the settings it depends on only; the deploy's own derivation
    of smtp_user (check_host), given those settings alone and every other at a valid placeholder."""
    problems = []
    for name in ACCOUNT_SETTINGS:
        setting, written = BY_NAME[name], data.get(name)
        written = setting.default if written is None else written
        try:
            setting.parse(written)
        except Invalid as reason:
            problems.append(refusal(host_name, setting, written, reason))
    if not problems:
        only_the_account = {name: setting.example for name, setting in BY_NAME.items() if name not in ACCOUNT_SETTINGS}
        settings, problems = check_host(host_name, {**only_the_account, **{n: data.get(n) for n in ACCOUNT_SETTINGS}})
    if problems:
        raise UsageError("refusing, the settings are not right:\n  - " + "\n  - ".join(problems))
    assert settings is not None
    return Account(host_name, settings.keyring_service, settings.smtp_user)


def generate_password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def password_problem(password: str, login: str) -> str | None:
    """Why the deploy would refuse this password for `login`, or None."""
    problem = settings_password_problem(password, login)
    return f"the password {problem}" if problem else None


def _keyring_call(what: str, account: Account, method: str, *arguments: str) -> Any:
    """keyring's get_password, set_password or delete_password, on the backend the deploy reads."""
    try:
        return getattr(keyring_lookup.backend(), method)(account.service, account.user, *arguments)
    except keyring.errors.NoKeyringError as error:
        message = keyring_lookup.no_backend_message(f"{what} the password", account.service, account.user)
        raise UsageError(f"{account.host}: {message}") from error
    except keyring_lookup.ChosenBackendUnusable as error:
        message = keyring_lookup.unusable_backend_message(f"{what} the password", account.service, account.user, error)
        raise UsageError(f"{account.host}: {message}") from error
    except keyring.errors.KeyringError as error:
        reason = f"{type(error).__name__}: {error}"
        raise UsageError(f"the keyring could not {what} {account.describe()}: {reason}") from error


def read(account: Account) -> str | None:
    return _keyring_call("read", account, "get_password")


def store(account: Account, password: str) -> None:
    problem = password_problem(password, account.user)
    if problem:
        raise UsageError(f"refusing to store it for {account.describe()}: {problem}")
    _keyring_call("store", account, "set_password", password)


def delete(account: Account) -> bool:
    """Delete the entry; False if there was none."""
    if read(account) is None:
        return False
    _keyring_call("delete", account, "delete_password")
    return True
