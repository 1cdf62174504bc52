"""nullclient's commands without a lab host: what they refuse, and the secret commands on the real keyring.

The secret commands touch no host, so an inventory of @fake hosts and the real Secret Service
keyring (keyring_env) are their whole world.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from postfix_nullclient.nullclient.cli import main
from tests.conftest import PROJECT, store_password

SERVICE = "postfix-nullclient"


def nullclient(env: dict[str, str], *args: str, input: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "postfix_nullclient.nullclient", *args],
        cwd=PROJECT,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


def exit_status(args: list[str]) -> int:
    """main()'s exit status, also when argparse exits by itself."""
    try:
        return main(args)
    except SystemExit as stop:
        return stop.code


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.py"
    path.write_text(
        'workstations = [("@fake/sulu", {"forward_to": "alice@example.org"}),'
        ' ("@fake/uhura", {"forward_to": "alice@example.org", "smtp_user": "nyota@example.net"})]\n'
    )
    return path


@pytest.fixture
def env(keyring_env):
    for user in ("sulu@example.net", "nyota@example.net"):
        store_password(keyring_env, SERVICE, user, None)
    yield keyring_env
    for user in ("sulu@example.net", "nyota@example.net"):
        store_password(keyring_env, SERVICE, user, None)


def test_secret_lifecycle_uses_the_deploys_service_and_user(env, inventory):
    i = ["-i", str(inventory)]
    missing = nullclient(env, "secret", "missing", *i)
    assert missing.returncode == 1
    assert "@fake/uhura: NO password (keyring service 'postfix-nullclient', user 'nyota@example.net')" in missing.stdout

    stored = nullclient(env, "secret", "set", *i, "@fake/uhura", "--stdin", input="S3cret with spaces#:\n")
    assert stored.returncode == 0, stored.stderr
    assert "S3cret" not in stored.stdout + stored.stderr
    shown = nullclient(env, "secret", "show", *i)
    assert shown.returncode == 1  # sulu still has none
    assert shown.stdout.splitlines() == [
        "@fake/sulu: NO password (keyring service 'postfix-nullclient', user 'sulu@example.net')",
        "@fake/uhura: a password is stored (keyring service 'postfix-nullclient', user 'nyota@example.net')",
    ]
    assert nullclient(env, "secret", "show", *i, "@fake/uhura", "--reveal").stdout == "S3cret with spaces#:\n"

    nullclient(env, "secret", "set", *i, "@fake/sulu", "--stdin", input="another\n")
    assert nullclient(env, "secret", "missing", *i).returncode == 0
    deleted = nullclient(env, "secret", "delete", *i, "@fake/sulu")
    assert (
        deleted.stdout
        == "@fake/sulu: password deleted (keyring service 'postfix-nullclient', user 'sulu@example.net')\n"
    )
    assert nullclient(env, "secret", "missing", *i).stdout.startswith("@fake/sulu: NO password")


def test_secret_set_refuses_what_the_deploy_would_refuse(env, inventory):
    for password, reason in [("\n", "the password is empty"), (" padded\n", "starts or ends with white space")]:
        run = nullclient(env, "secret", "set", "-i", str(inventory), "@fake/sulu", "--stdin", input=password)
        assert run.returncode == 2 and reason in run.stderr
    assert nullclient(env, "secret", "show", "-i", str(inventory), "@fake/sulu").stdout.startswith("@fake/sulu: NO")


@pytest.mark.parametrize(
    "args, message",
    [
        (["verify", "-i", "no-such-inventory.py"], "inventory file 'no-such-inventory.py' does not exist"),
        (["verify", "-bad-"], "unrecognized arguments"),
        (["verify", "torres_example!net"], "'torres_example!net' is not a host name"),
        (["verify"], "name one HOST, or give an inventory with -i INVENTORY"),
        (["verify", "a.example.net", "b.example.net"], "name one HOST"),
        (["verify", "-i", "inventory.py", "--ssh-user", "root"], "the SSH options are for a host in no inventory"),
        (["verify", "-i", "inventory.py", "--data", "relay_port"], "--data 'relay_port' is not KEY=VALUE"),
        (["verify", "-i", "inventory.py", "nosuch.example.net"], "nosuch.example.net not in the inventory"),
        (["remove", "-i", "inventory.py"], "the following arguments are required: --postfix"),
        (["remove", "-i", "inventory.py", "--postfix", "delete"], "invalid choice: 'delete'"),
        (["rotate", "-i", "inventory.py"], "rotate works on exactly one host, got 0"),
        (["bootstrap", "t.example.net", "--ssh-port", "70000"], "--ssh-port 70000 is not a TCP port"),
        (["bootstrap", "t.example.net", "--ssh-key", "/no/such/key"], "--ssh-key /no/such/key: no such file"),
        (["secret", "missing"], "secret missing needs an inventory"),
        (["secret", "show", "a.example.net", "b.example.net"], "name one HOST"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_status_2(args, message, capsys, monkeypatch):
    monkeypatch.chdir(PROJECT)
    assert exit_status(args) == 2
    assert message in capsys.readouterr().err


def test_bootstrap_refuses_bad_settings_before_touching_the_host_or_the_keyring(keyring_env, monkeypatch, capsys):
    monkeypatch.chdir(PROJECT)
    monkeypatch.setattr("os.environ", keyring_env)
    status = main(["bootstrap", "torres.example.net", "--trust-on-first-use", "--data", "relay_port=25"])
    assert status == 2
    err = capsys.readouterr().err
    assert "refusing, the settings are not right:" in err
    assert "forward_to is not set" in err and "relay_port 25 is not supported" in err


def test_host_keys_known_trusted_on_first_use_or_refused(tmp_path, monkeypatch):
    from postfix_nullclient.nullclient.commands import ensure_host_key
    from postfix_nullclient.nullclient.targets import UsageError, known_host_name

    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        "[10.0.0.5]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEjN/xa4bcSo2xcaq7U67aTEDan8+Nm1AjU4oWwdK04T\n"
    )
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert known_host_name("10.0.0.5", 22) == "10.0.0.5" and known_host_name("10.0.0.5", 2222) == "[10.0.0.5]:2222"
    assert ensure_host_key("10.0.0.5", 2222, known_hosts, trust_on_first_use=False) == "yes"
    assert ensure_host_key("10.0.0.5", 22, known_hosts, trust_on_first_use=True) == "accept-new"
    with pytest.raises(UsageError, match=r"refusing: the SSH host key of 10\.0\.0\.5 \(port 22\) is not in"):
        ensure_host_key("10.0.0.5", 22, known_hosts, trust_on_first_use=False)


def test_secret_commands_need_only_the_login_and_the_service(env, tmp_path):
    # No inventory, no group_data, no forward_to: the keyring entry's names are all these commands use.
    def secret(*args: str, input: str = "") -> subprocess.CompletedProcess:
        run = subprocess.run(
            [sys.executable, "-m", "postfix_nullclient.nullclient", "secret", *args],
            cwd=tmp_path, env=env, input=input, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        return run

    secret("set", "sulu.example.net", "--stdin", input="only-the-login\n")
    shown = secret("show", "sulu.example.net")
    assert shown.stdout == (
        "sulu.example.net: a password is stored (keyring service 'postfix-nullclient', user 'sulu@example.net')\n"
    )
    assert secret("show", "sulu.example.net", "--reveal").stdout == "only-the-login\n"
    other = nullclient(env, "secret", "show", "sulu.example.net", "--data", "smtp_user=nyota@example.net")
    assert other.returncode == 1 and "user 'nyota@example.net'" in other.stdout
    secret("delete", "sulu.example.net")


def test_secret_commands_take_no_ssh_options(capsys):
    assert exit_status(["secret", "show", "sulu.example.net", "--address", "10.0.0.5"]) == 2
    assert "unrecognized arguments: --address" in capsys.readouterr().err


def test_secret_set_stdin_refuses_two_lines_and_stores_nothing(env, inventory):
    run = nullclient(env, "secret", "set", "-i", str(inventory), "@fake/sulu", "--stdin", input="a\nb")
    assert run.returncode == 2, run.stdout
    assert "--stdin takes exactly one line, the password; got 2 lines, nothing was stored" in run.stderr
    assert "pass show NAME | head -n 1" in run.stderr
    assert nullclient(env, "secret", "show", "-i", str(inventory), "@fake/sulu").stdout.startswith("@fake/sulu: NO")


def test_a_name_that_does_not_resolve_is_reported_before_any_host_key(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(PROJECT)
    known_hosts = ["--known-hosts", str(tmp_path / "known_hosts")]
    for trust in ([], ["--trust-on-first-use"]):
        assert exit_status(["status", "kirk.invalid", *known_hosts, *trust]) == 2
        said = capsys.readouterr()
        assert "nullclient status: kirk.invalid (HOST) does not resolve:" in said.err
        assert "host key" not in said.err + said.out and "trusting" not in said.out
    assert exit_status(["status", "kirk.example.net", "--address", "kirk.invalid", *known_hosts]) == 2
    assert "kirk.invalid (--address) does not resolve" in capsys.readouterr().err
