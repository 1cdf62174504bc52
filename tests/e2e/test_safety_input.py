"""Bad input is refused before any host is touched, each problem with a clear message.

Through the pyinfra CLI, with the real keyring and @fake hosts that record every command they are
sent: "no command" is then a fact, not a guess. What tests/test_deploy_fake.py covers already (an
absent keyring entry, no keyring backend, a password with a newline, relay_port 25, a malformed
forward_to, an empty relay_host) is not repeated here.
"""

import pytest

from tests.conftest import run_pyinfra, store_password
from tests.test_deploy_fake import SERVICE, write_inventory

USER = "torres@example.net"


@pytest.fixture
def env(keyring_env):
    store_password(keyring_env, SERVICE, USER, "a fine password")
    try:
        yield keyring_env
    finally:
        store_password(keyring_env, SERVICE, USER, None)


def test_an_empty_keyring_entry_is_refused(env, tmp_path):
    store_password(env, SERVICE, USER, "")
    run = run_pyinfra(env, tmp_path, write_inventory(tmp_path / "inventory.py", {"torres": None}), "-y")
    assert run.returncode != 0
    assert f"@fake/torres: the keyring entry for service '{SERVICE}', user '{USER}' is empty" in run.output
    assert f"keyring set {SERVICE} {USER}" in run.output
    assert run.commands == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("relay_port=0", "relay_port 0 is not supported: use 587 (submission, STARTTLS) or 465 (implicit TLS)"),
        ("relay_port=65536", "relay_port 65536 is not supported: use 587"),
        ("relay_port=submission", "relay_port 'submission' is not a port number"),
        ("smtp_user=torres", "smtp_user 'torres' is not a mail address"),
        ("sender_address=a@b@example.net", "sender_address 'a@b@example.net' is not a mail address"),
        ("forward_to=alice@", "forward_to 'alice@' is not a mail address"),
        ("relay_host=mail..example.net", "relay_host 'mail..example.net' is not a host name"),
        ("myhostname=10.1.2.3", "myhostname '10.1.2.3' is an address, not a host name"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message_and_no_command(env, tmp_path, data, message):
    run = run_pyinfra(env, tmp_path, write_inventory(tmp_path / "inventory.py", {"torres": None}), "-y", "--data", data)
    assert run.returncode != 0
    assert f"@fake/torres: {message}" in run.output, run.output
    assert "refusing to deploy, no host was touched" in run.output
    assert "Traceback" not in run.output
    assert run.commands == {}
