"""The relay password from a keyring backend other than Secret Service, as people keep it: pass
(passwordstore.org) through keyring-pass, chosen with PYTHON_KEYRING_BACKEND or keyringrc.cfg.

A pass user installs keyring-pass beside the deploy; here it goes into a directory of its own on
PYTHONPATH, so that the project's own environment keeps keyring's own backends only (the deploy's
fast Secret Service path, keyring_lookup.choose_backend, is for those). The GnuPG home and the store
are private to the module, with a key without passphrase: nothing prompts.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import smarthost
from lab.config import STATE_DIR
from postfix_nullclient.keyring_lookup import PASS_BACKEND
from tests.conftest import PROJECT
from tests.e2e.conftest import SERVICE, Workstation, deploy

# The pass backend among keyring's documented third-party backends; 0.9.3 (March 2024) is its newest
# release, keyrings.passwordstore (0.1.0, 2021) the only other one on PyPI.
KEYRING_PASS = "keyring-pass>=0.9.3,<0.10"
# keyring-pass's name for keyring.get_password(service, user): python-keyring/SERVICE/USER in the store.
PASS_PREFIX = "python-keyring"
# The caller's session: a bus with Secret Service or KWallet on it, or a backend chosen already.
SESSION_VARIABLES = ("DBUS_SESSION_BUS_ADDRESS", "GNOME_KEYRING_CONTROL", "PYTHON_KEYRING_BACKEND", "SSH_AUTH_SOCK")


@pytest.fixture(scope="module")
def pass_backend(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """keyring-pass, installed as a user would with pip; keyring and jaraco.classes, which it needs,
    are the project's own (--no-deps, so that none is shadowed by another version)."""
    target = tmp_path_factory.mktemp("keyring-pass")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), KEYRING_PASS]
    subprocess.run(pip, check=True, timeout=300)
    return target


@pytest.fixture(scope="module")
def password_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private pass store (`pass init`) encrypted to a GnuPG key made for it; its gpg-agent is stopped after."""
    home = tmp_path_factory.mktemp("pass-user")
    store = {"GNUPGHOME": str(home / "gnupg"), "PASSWORD_STORE_DIR": str(home / "password-store")}
    Path(store["GNUPGHOME"]).mkdir(mode=0o700)
    env = {**os.environ, **store}
    gpg = ["gpg", "--batch", "--quiet", "--passphrase", ""]  # the empty passphrase: no secret on the line
    subprocess.run([*gpg, "--quick-gen-key", "nullclient lab <lab@example.net>", "future-default", "default", "never"],
                   env=env, check=True, capture_output=True, timeout=60)  # fmt: skip
    keys = subprocess.run(["gpg", "--list-keys", "--with-colons"], env=env, check=True, capture_output=True, text=True)
    fingerprint = next(line.split(":")[9] for line in keys.stdout.splitlines() if line.startswith("fpr:"))
    subprocess.run(["pass", "init", fingerprint], env=env, check=True, capture_output=True, timeout=60)
    try:
        yield store
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False, timeout=30)


@pytest.fixture(scope="module")
def workstation(make_workstations) -> Workstation:
    """One lab host; make_workstations also puts a password into the gnome keyring, which pass's must beat."""
    (made,) = make_workstations(["kp1"])
    return made


def pass_env(store: dict[str, str], backend: Path, home: Path) -> dict[str, str]:
    """As over SSH: no session bus, so no Secret Service nor KWallet; pass's store, and keyring-pass importable."""
    env = {key: value for key, value in os.environ.items() if key not in SESSION_VARIABLES}
    env = {key: value for key, value in env.items() if not key.startswith("XDG_")}
    return {**env, **store, "HOME": str(home), "PYTHONPATH": str(backend)}


def pass_entry(user: str) -> str:
    return f"{PASS_PREFIX}/{SERVICE}/{user}"


def viable_backends(env: dict[str, str]) -> str:
    """`keyring --list-backends`: every backend keyring finds viable in this environment."""
    keyring_cli = Path(sys.executable).parent / "keyring"
    return subprocess.run([keyring_cli, "--list-backends"], env=env, check=True, capture_output=True, text=True).stdout


def new_relay_password(workstation: Workstation) -> str:
    """A fresh password, known to the smarthost as the workstation's login from now on."""
    password = f"pass-{uuid.uuid4().hex}"
    smarthost.set_account(STATE_DIR, workstation.smtp_user, password)
    return password


def assert_mail_arrives_authenticated(workstation: Workstation) -> None:
    subject = f"pass {uuid.uuid4().hex[:10]}"
    workstation.run(f"echo 'through pass' | mail -s {shlex.quote(subject)} root")
    (message,) = smarthost.wait_for_messages(STATE_DIR, 1, timeout=60, predicate=lambda m: m["subject"] == subject)
    assert message["auth_user"] == workstation.smtp_user and message["tls"] is True


@contextlib.contextmanager
def command_lines_watched(secret: str) -> Iterator[list[str]]:
    """The programs whose command line holds `secret`, seen while the block runs: every process's,
    the lab hosts' included (their PIDs show in this machine's /proc too). A scan takes 5-30 ms here,
    so any process that lives longer is seen: pass, gpg, pyinfra's and Postfix's commands."""
    holders: list[str] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as command_line:
                    words = command_line.read().split(b"\0")  # OSError: the process has ended
                    if any(secret.encode() in word for word in words):
                        holders.append(words[0].decode(errors="replace"))  # its program, never the secret
            done.wait(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield holders
    finally:
        done.set()
        sampler.join()


def relay_password_on_the_host(workstation: Workstation) -> str:
    lookup = "postmap -q '[mail.example.net]:587' \"$(postconf -h default_database_type):/etc/postfix/sasl_passwd\""
    return workstation.run(lookup).stdout.strip().split(":", 1)[1]


def test_the_deploy_reads_the_password_from_pass_chosen_with_PYTHON_KEYRING_BACKEND_and_no_secret_service(
    workstation, password_store, pass_backend, tmp_path
):
    password = new_relay_password(workstation)
    env = {**pass_env(password_store, pass_backend, tmp_path / "home"), "PYTHON_KEYRING_BACKEND": PASS_BACKEND}
    backends = viable_backends(env)
    assert PASS_BACKEND in backends and "SecretService" not in backends, backends

    with command_lines_watched(password) as holders:
        # pass reads the entry from stdin (-m: until its end), as a user pastes it.
        subprocess.run(["pass", "insert", "-m", pass_entry(workstation.smtp_user)], input=f"{password}\n",
                       text=True, env=env, check=True, capture_output=True)  # fmt: skip
        run = deploy(env, [workstation], "-vvv")

    assert run.returncode == 0, run.output
    assert holders == []
    assert password not in run.output
    assert relay_password_on_the_host(workstation) == password
    assert_mail_arrives_authenticated(workstation)


def test_pass_chosen_in_keyringrc_cfg_wins_over_a_secret_service_that_holds_another_password(
    workstation, password_store, pass_backend, keyring_env, tmp_path
):
    config = tmp_path / "config"
    (config / "python_keyring").mkdir(parents=True)
    (config / "python_keyring" / "keyringrc.cfg").write_text(f"[backend]\ndefault-keyring={PASS_BACKEND}\n")
    # The lab's gnome-keyring is on the bus, viable, and holds make_workstations' password for the entry.
    env = {key: value for key, value in keyring_env.items() if key != "PYTHON_KEYRING_BACKEND"}
    env |= {**password_store, "XDG_CONFIG_HOME": str(config), "PYTHONPATH": str(pass_backend)}
    assert "SecretService" in viable_backends(env)
    password = new_relay_password(workstation)
    nullclient = [sys.executable, "-m", "postfix_nullclient.nullclient"]
    with command_lines_watched(password) as holders:
        stored = subprocess.run([*nullclient, "secret", "set", "--stdin", workstation.fqdn], input=f"{password}\n",
                                cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert stored.returncode == 0, stored.stderr
        entry = pass_entry(workstation.smtp_user)
        shown = subprocess.run(["pass", "show", entry], env=env, capture_output=True, text=True, timeout=60)
        run = deploy(env, [workstation])

    assert password not in stored.stdout + stored.stderr
    assert shown.stdout == f"{password}\n", "nullclient secret set stores where the README says pass keeps it"
    assert run.returncode == 0, run.output
    assert holders == []
    assert password not in run.output and workstation.password not in run.output
    assert relay_password_on_the_host(workstation) == password != workstation.password
    assert_mail_arrives_authenticated(workstation)


def test_pass_chosen_without_a_store_is_refused_in_one_line_that_says_pass_init(pass_backend, tmp_path):
    env = pass_env({"PASSWORD_STORE_DIR": str(tmp_path / "no-store")}, pass_backend, tmp_path / "home")
    env["PYTHON_KEYRING_BACKEND"] = PASS_BACKEND
    nullclient = [sys.executable, "-m", "postfix_nullclient.nullclient"]
    shown = subprocess.run([*nullclient, "secret", "show", "kp0.example.net"], cwd=PROJECT, env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert shown.returncode == 2
    (line,) = [line for line in shown.stderr.splitlines() if line.startswith("nullclient secret: kp0.example.net:")]
    assert "the keyring backend chosen with PYTHON_KEYRING_BACKEND or keyringrc.cfg cannot read the password" in line
    assert "CalledProcessError: Command '['pass', 'ls']' returned non-zero exit status 1;" in line
    assert "a store made with `pass init GPG-ID`" in line
