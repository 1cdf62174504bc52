"""Read the relay passwords of many hosts from the OS keyring in one go.

keyring.get_password opens a new D-Bus connection for every entry with Secret Service: 20-27 ms
each, 1.5 s of a 50-host deploy in the benchmark, while no host could start. With Secret Service
all entries are read over the one connection of keyring's own collection, with secretstorage's
public API; every other backend (KWallet, macOS Keychain, Windows, keyrings.alt, pass through
keyring-pass) is asked entry by entry with keyring's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from contextlib import closing
from importlib import metadata
from importlib.util import find_spec
from typing import Any

import keyring
import keyring.backend
import keyring.errors
import keyring.util.platform_

Entry = tuple[str, str]  # (keyring service, user): keyring.get_password(service, user)

# keyring's own backends, as its entry points name them (keyring 25), and the module each of the
# Linux ones needs to be viable: KWallet dbus-python, libsecret PyGObject. Windows and macOS are
# never viable on Linux; chainer only chains two or more viable backends.
KEYRING_OWN_BACKENDS = frozenset({"KWallet", "SecretService", "Windows", "chainer", "libsecret", "macOS"})
OTHER_LINUX_BACKEND_MODULES = ("dbus", "gi")

# keyring-pass's backend for pass (passwordstore.org), one of keyring's documented third-party backends.
PASS_BACKEND = "keyring_pass.PasswordStoreBackend"

_chosen = False


def no_backend_message(what: str, service: str, user: str) -> str:
    """The one line for keyring.errors.NoKeyringError, `what` being e.g. "read the relay password".

    keyring finds no backend where no desktop session runs (over SSH, in CI): no Secret Service or
    KWallet on a session bus, and no other backend installed and chosen.
    """
    return (
        f"no OS keyring backend is available to {what} (keyring service {service!r}, user {user!r}): run in a "
        "desktop session with Secret Service (gnome-keyring, KeePassXC) or KWallet, or install and choose a "
        f"keyring backend, e.g. for pass `pip install keyring-pass` and PYTHON_KEYRING_BACKEND={PASS_BACKEND} "
        "(or default-keyring in keyringrc.cfg; other backends: keyring's documentation, Third-Party Backends); "
        "check with `keyring --list-backends` or `python -m keyring diagnose`"
    )


class ChosenBackendUnusable(keyring.errors.KeyringError):
    """The backend chosen with PYTHON_KEYRING_BACKEND or keyringrc.cfg could not be loaded or is not viable."""


def unusable_backend_message(what: str, service: str, user: str, error: Exception) -> str:
    """The one line for ChosenBackendUnusable: e.g. keyring-pass chosen but not installed, or pass missing."""
    return (
        f"the keyring backend chosen with PYTHON_KEYRING_BACKEND or keyringrc.cfg cannot {what} (keyring service "
        f"{service!r}, user {user!r}): {error}; install it where the deploy runs (for {PASS_BACKEND}: "
        "`pip install keyring-pass`, pass and a store made with `pass init GPG-ID`) or choose another; "
        "check with `keyring --list-backends` or `python -m keyring diagnose`"
    )


def backend() -> keyring.backend.KeyringBackend:
    """keyring's backend, after choose_backend. Raises ChosenBackendUnusable where keyring cannot load
    the backend the user chose (keyring's own discovery skips any that fails)."""
    choose_backend()
    try:
        return keyring.get_keyring()
    except Exception as error:  # ImportError, the backend's own viability error (RuntimeError, OSError, ...)
        # One line (a keyringrc.cfg that is not INI is reported over three); the message goes on after it.
        reason = " ".join(str(error).split()).rstrip(".")
        raise ChosenBackendUnusable(f"{type(error).__name__}: {reason}") from error


def choose_backend() -> None:
    """Where keyring's own choice can only be Secret Service, tell keyring so, before it looks at all backends.

    Without a backend chosen by the user, keyring loads every backend it knows and takes the viable
    one of highest priority. On Linux that costs 0.05-0.17 s a run: its macOS backend looks for three
    frameworks through ctypes at import, which runs ldconfig, gcc and ld for each. The answer is
    known without that when all of these hold: Linux; no backend chosen by the user
    (PYTHON_KEYRING_BACKEND, keyringrc.cfg: then keyring loads only that one anyway); no backends
    installed but keyring's own; neither dbus-python nor PyGObject importable (so neither KWallet
    nor libsecret is viable); and Secret Service viable by keyring's own check, its `priority`. Then
    this sets a Secret Service backend with keyring.set_keyring, as keyring itself would have;
    otherwise it does nothing and keyring chooses as always. It acts at its first call only, so a
    program that sets a backend in code should do so with PYTHON_KEYRING_BACKEND or keyringrc.cfg.
    """
    global _chosen
    if _chosen:
        return
    _chosen = True
    if sys.platform != "linux" or "PYTHON_KEYRING_BACKEND" in os.environ:
        return
    # The directory that `keyring diagnose` prints as its config path.
    if (keyring.util.platform_.config_root() / "keyringrc.cfg").exists():
        return
    if {entry.name for entry in metadata.entry_points(group="keyring.backends")} != KEYRING_OWN_BACKENDS:
        return
    if any(find_spec(name) is not None for name in OTHER_LINUX_BACKEND_MODULES):
        return
    from keyring.backends import SecretService

    try:
        SecretService.Keyring.priority  # noqa: B018  (keyring's viability check: raises if not viable)
    except Exception:  # not viable: keyring's own look finds out what is, and says so
        return
    keyring.set_keyring(SecretService.Keyring())


def read_passwords(entries: Iterable[Entry]) -> dict[Entry, str | None]:
    """The password of each (service, user) entry, None where there is none.

    Raises keyring.errors.NoKeyringError without a backend, ChosenBackendUnusable when the chosen one
    cannot be loaded, another KeyringError when the keyring cannot be read (locked, the prompt
    dismissed, the daemon gone).
    """
    wanted = list(dict.fromkeys(entries))
    found = backend()
    if wanted and _is_secret_service(found):
        return _from_secret_service(found, wanted)
    return {entry: found.get_password(*entry) for entry in wanted}


def read_each(entries: Iterable[Entry]) -> tuple[dict[Entry, str | None], dict[Entry, Exception]]:
    """Each entry's password asked alone through keyring's own get_password, and what it raised for
    those it could not read: after read_passwords failed, so that one bad entry refuses its hosts only."""
    passwords: dict[Entry, str | None] = {}
    failures: dict[Entry, Exception] = {}
    for entry in dict.fromkeys(entries):
        try:
            passwords[entry] = keyring.get_password(*entry)
        except Exception as error:  # any backend's error, reported with its host
            failures[entry] = error
    return passwords, failures


def _is_secret_service(backend: Any) -> bool:
    try:
        from keyring.backends import SecretService
    except ImportError:  # secretstorage is not installed: not on Linux
        return False
    return type(backend) is SecretService.Keyring


def _from_secret_service(backend: Any, wanted: list[Entry]) -> dict[Entry, str | None]:
    """What SecretService.Keyring.get_password finds, for all entries over one connection.

    The same collection (the backend's preferred one, unlocked), the same attributes (the backend's
    selected scheme) and the same choice, the first match, as keyring's get_password.
    """
    import secretstorage

    scheme = backend.schemes[backend.scheme]
    collection = backend.get_preferred_collection()  # connects, unlocks; raises KeyringError
    found: dict[Entry, str | None] = {}
    session = None  # the first secret read opens an encrypted session; the others reuse it
    with closing(collection.connection):
        try:
            for service, user in wanted:
                query = {scheme["username"]: user, scheme["service"]: service}
                match = next(iter(collection.search_items(query)), None)
                if match is None:
                    found[(service, user)] = None
                    continue
                item = secretstorage.Item(collection.connection, match.item_path, session)
                if item.is_locked():
                    item.unlock()  # what keyring does: a prompt, where the desktop has one
                found[(service, user)] = item.get_secret().decode("utf-8")
                session = item.session
        except secretstorage.exceptions.SecretStorageException as error:
            raise keyring.errors.KeyringError(f"{type(error).__name__}: {error}") from error
    return found
