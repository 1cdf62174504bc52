"""tasks/keyring_lookup.py reads what keyring.get_password reads, for many entries at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from postfix_nullclient.keyring_lookup import PASS_BACKEND
from tests.conftest import PROJECT, run_pyinfra, store_password
from tests.test_nullclient_cli import nullclient

SERVICE = "nullclient-lookup-test"
ENTRIES = {f"host{k}@example.net": f"pass word {k} #:@$%'\"" for k in range(12)}
# Non-ASCII, and lengths around the cipher's 16-byte blocks (a full block of padding).
ENTRIES |= {"block@example.net": "0123456789abcdef", "short@example.net": "x", "utf8@example.net": "pässwörd €"}

# Compares read_passwords with keyring.get_password in a fresh process with the given backend.
COMPARE = """
import json, sys, keyring
from postfix_nullclient.keyring_lookup import read_passwords
service, users = sys.argv[1], sys.argv[2:]
entries = [(service, user) for user in users]
batch = read_passwords(entries + entries[:2])  # a repeated entry is read once
print(json.dumps({
    "backend": type(keyring.get_keyring()).__module__,
    "one_by_one": [keyring.get_password(*entry) for entry in entries],
    "batch": [batch[entry] for entry in entries],
    "keys": len(batch),
}))
"""


def compare(env: dict[str, str], users: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", COMPARE, SERVICE, *users], cwd=PROJECT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_secret_service_batch_reads_the_same_entries_as_keyring(keyring_env):
    for user, password in ENTRIES.items():
        store_password(keyring_env, SERVICE, user, password)
    store_password(keyring_env, SERVICE, "missing@example.net", None)
    store_password(keyring_env, "other-service", "host0@example.net", "not this one")
    try:
        users = [*ENTRIES, "missing@example.net"]
        found = compare(keyring_env, users)
        assert found["backend"] == "keyring.backends.SecretService"
        assert found["batch"] == found["one_by_one"] == [*ENTRIES.values(), None]
        assert found["keys"] == len(users)
    finally:
        for user in ENTRIES:
            store_password(keyring_env, SERVICE, user, None)
        store_password(keyring_env, "other-service", "host0@example.net", None)


def test_other_backends_are_asked_entry_by_entry(tmp_path):
    """Any backend but Secret Service: here a file-backed one written against keyring's backend API."""
    backend_module = tmp_path / "memory_backend.py"
    backend_module.write_text(
        "import json, os\n"
        "from keyring.backend import KeyringBackend\n"
        "class Keyring(KeyringBackend):\n"
        "    priority = 1\n"
        "    def _data(self):\n"
        "        return json.loads(open(os.environ['TEST_KEYRING_FILE']).read())\n"
        "    def get_password(self, service, username):\n"
        "        return self._data().get(f'{service}/{username}')\n"
        "    def set_password(self, service, username, password): raise NotImplementedError\n"
        "    def delete_password(self, service, username): raise NotImplementedError\n"
    )
    store = tmp_path / "store.json"
    store.write_text(json.dumps({f"{SERVICE}/{user}": password for user, password in ENTRIES.items()}))
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{tmp_path}:{PROJECT}",
        "PYTHON_KEYRING_BACKEND": "memory_backend.Keyring",
        "TEST_KEYRING_FILE": str(store),
    }
    found = compare(env, [*ENTRIES, "missing@example.net"])
    assert found["backend"] == "memory_backend"
    assert found["batch"] == found["one_by_one"] == [*ENTRIES.values(), None]


# keyring's backend after choose_backend(), in a fresh process; and whether keyring loaded its macOS backend.
CHOSEN = """
import sys, keyring
from postfix_nullclient.keyring_lookup import choose_backend
if sys.argv[1] == "choose_backend": choose_backend()
print(type(keyring.get_keyring()).__module__, "keyring.backends.macOS" in sys.modules)
"""


def chosen(env: dict[str, str], how: str) -> tuple[str, bool]:
    out = subprocess.run([sys.executable, "-c", CHOSEN, how], cwd=PROJECT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    module, macos_loaded = out.stdout.split()
    return module, macos_loaded == "True"


def test_secret_service_is_chosen_as_keyring_would_without_loading_every_backend(keyring_env):
    env = {key: value for key, value in keyring_env.items() if key != "PYTHON_KEYRING_BACKEND"}  # no user choice
    assert chosen(env, "keyring alone") == ("keyring.backends.SecretService", True)
    assert chosen(env, "choose_backend") == ("keyring.backends.SecretService", False)


def test_keyring_chooses_when_another_backend_is_installed(keyring_env, tmp_path):
    """A third-party backend of higher priority, installed as a distribution with a keyring.backends entry point."""
    (tmp_path / "extra_backend.py").write_text(
        "from keyring.backend import KeyringBackend\n"
        "class Keyring(KeyringBackend):\n"
        "    priority = 20\n"
        "    def get_password(self, service, username): return None\n"
        "    def set_password(self, service, username, password): raise NotImplementedError\n"
        "    def delete_password(self, service, username): raise NotImplementedError\n"
    )
    dist_info = tmp_path / "extra_backend-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-backend\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[keyring.backends]\nextra = extra_backend\n")
    env = {key: value for key, value in keyring_env.items() if key != "PYTHON_KEYRING_BACKEND"}
    env["PYTHONPATH"] = f"{tmp_path}:{PROJECT}"
    assert chosen(env, "keyring alone")[0] == "extra_backend"
    assert chosen(env, "choose_backend")[0] == "extra_backend"


def test_a_backend_chosen_by_the_user_is_kept(keyring_env, tmp_path):
    config = tmp_path / "home" / ".config" / "python_keyring"
    config.mkdir(parents=True)
    (config / "keyringrc.cfg").write_text("[backend]\ndefault-keyring=keyring.backends.null.Keyring\n")
    env = {key: value for key, value in keyring_env.items() if key != "PYTHON_KEYRING_BACKEND"}
    env |= {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config")}
    assert chosen(env, "choose_backend")[0] == "keyring.backends.null"
    env = {**keyring_env, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    assert chosen(env, "choose_backend")[0] == "keyring.backends.null"


# What one sees where no backend is viable, e.g. over SSH: the entry, the ways out, and how to check.
NO_BACKEND_ADVICE = (
    "no OS keyring backend is available to {what} (keyring service 'postfix-nullclient', user 'torres@example.net'): ",
    "desktop session with Secret Service (gnome-keyring, KeePassXC) or KWallet",
    "`pip install keyring-pass` and PYTHON_KEYRING_BACKEND=keyring_pass.PasswordStoreBackend",
    "keyringrc.cfg",
    "Third-Party Backends",
    "check with `keyring --list-backends` or `python -m keyring diagnose`",
)
# ... and where the chosen backend cannot be loaded: keyring-pass chosen, but not installed or pass not set up.
UNUSABLE_BACKEND_ADVICE = (
    "the keyring backend chosen with PYTHON_KEYRING_BACKEND or keyringrc.cfg cannot {what} (keyring service "
    "'postfix-nullclient', user 'torres@example.net'): ",
    "`pip install keyring-pass`, pass and a store made with `pass init GPG-ID`) or choose another",
    "check with `keyring --list-backends` or `python -m keyring diagnose`",
)
SESSION_VARIABLES = ("DBUS_SESSION_BUS_ADDRESS", "GNOME_KEYRING_CONTROL", "PYTHON_KEYRING_BACKEND", "XDG_RUNTIME_DIR")


def over_ssh(tmp_path: Path) -> dict[str, str]:
    """As over SSH or in CI: no D-Bus session bus, no backend chosen, a home without keyringrc.cfg."""
    env = {key: value for key, value in os.environ.items() if key not in SESSION_VARIABLES}
    return {**{key: value for key, value in env.items() if not key.startswith("XDG_")}, "HOME": str(tmp_path / "home")}


@pytest.fixture(params=["no-session-bus", "fail-backend-chosen"])
def no_backend_env(request, tmp_path: Path) -> dict[str, str]:
    """No backend at all; or keyring's own fail backend chosen."""
    env = over_ssh(tmp_path)
    if request.param == "fail-backend-chosen":
        env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    return env


@pytest.fixture
def pass_chosen_env(tmp_path: Path) -> dict[str, str]:
    """keyring-pass's backend chosen where it is not installed (or, if it is, with an empty store)."""
    empty_store = tmp_path / "password-store"
    return {**over_ssh(tmp_path), "PYTHON_KEYRING_BACKEND": PASS_BACKEND, "PASSWORD_STORE_DIR": str(empty_store)}


def one_line_with_the_advice(output: str, prefix: str, advice: tuple[str, ...], what: str) -> str:
    (line,) = [line for line in output.splitlines() if prefix in line]
    for part in advice:
        assert part.format(what=what) in line, (part, line)
    return line


INVENTORY = 'workstations = [("@fake/torres", {"forward_to": "alice@example.org", "fake_delay": 0})]\n'


def deploy_fake_host(env: dict[str, str], tmp_path: Path):
    (tmp_path / "inventory.py").write_text(INVENTORY)
    return run_pyinfra(env, tmp_path, tmp_path / "inventory.py", "-y")


def secret_show(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "inventory.py").write_text(INVENTORY)
    return nullclient(env, "secret", "show", "-i", str(tmp_path / "inventory.py"))


def test_without_a_backend_the_deploy_refuses_the_host_naming_its_entry_and_the_ways_out(no_backend_env, tmp_path):
    run = deploy_fake_host(no_backend_env, tmp_path)
    assert run.returncode != 0
    prefix = "@fake/torres: no OS keyring backend"
    one_line_with_the_advice(run.output, prefix, NO_BACKEND_ADVICE, "read the relay password")
    assert run.commands == {}


def test_without_a_backend_nullclient_secret_show_names_the_entry_and_the_ways_out(no_backend_env, tmp_path):
    shown = secret_show(no_backend_env, tmp_path)
    assert shown.returncode == 2, shown.stderr
    line = one_line_with_the_advice(shown.stderr, "no OS keyring backend", NO_BACKEND_ADVICE, "read the password")
    assert line.startswith("nullclient secret: @fake/torres: no OS keyring backend"), line
    assert "Traceback" not in shown.stderr


def test_the_checks_the_no_backend_message_names_show_that_there_is_none(no_backend_env):
    """`keyring --list-backends` and `python -m keyring diagnose`, as the message says, in the same environment."""
    bin_directory = Path(sys.executable).parent
    listed = subprocess.run(
        [bin_directory / "keyring", "--list-backends"], env=no_backend_env, capture_output=True, text=True
    )
    diagnosed = subprocess.run(
        [sys.executable, "-m", "keyring", "diagnose"], env=no_backend_env, capture_output=True, text=True
    )
    assert listed.returncode == 0 and diagnosed.returncode == 0, listed.stderr + diagnosed.stderr
    assert "keyring.backends.fail.Keyring" in listed.stdout
    assert "SecretService" not in listed.stdout
    assert f"config path: {no_backend_env['HOME']}/.config/python_keyring/keyringrc.cfg" in diagnosed.stdout


def test_a_chosen_backend_that_cannot_load_refuses_the_deploy_naming_the_entry_and_the_fix(pass_chosen_env, tmp_path):
    run = deploy_fake_host(pass_chosen_env, tmp_path)
    assert run.returncode != 0
    prefix = "@fake/torres: the keyring backend chosen"
    one_line_with_the_advice(run.output, prefix, UNUSABLE_BACKEND_ADVICE, "read the relay password")
    assert "unlock it" not in run.output
    assert run.commands == {}


def test_a_chosen_backend_that_cannot_load_is_one_line_from_nullclient_secret_show(pass_chosen_env, tmp_path):
    shown = secret_show(pass_chosen_env, tmp_path)
    assert shown.returncode == 2, shown.stderr
    line = one_line_with_the_advice(shown.stderr, "backend chosen", UNUSABLE_BACKEND_ADVICE, "read the password")
    assert line.startswith("nullclient secret: @fake/torres: the keyring backend chosen"), line
    assert "Traceback" not in shown.stderr
