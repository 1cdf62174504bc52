"""nullclient's commands without a lab host: what they refuse, and the secret commands on the real keyring.

The secret commands touch no host, so an inventory of @fake hosts and the real Secret Service
keyring (keyring_env) are their whole world.
"""

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
from importlib import metadata
from pathlib import Path

import pytest

from postfix_nullclient.nullclient.cli import main
from postfix_nullclient.nullclient.exit_codes import MEANINGS, ExitCode
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


def test_secret_set_refuses_a_password_too_long_for_auth_plain_and_stores_nothing(env, inventory):
    run = nullclient(env, "secret", "set", "-i", str(inventory), "@fake/sulu", "--stdin", input="x" * 1_000_000)
    assert run.returncode == 2, run.stdout
    assert "the password is too long: the login with it makes an AUTH PLAIN line of" in run.stderr
    assert "x" * 100 not in run.stdout + run.stderr
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


def one_line_of_stderr(run: subprocess.CompletedProcess) -> str:
    """What a refused command said: one line on stderr, no traceback."""
    assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr, run.stderr
    return run.stderr


def on_a_terminal(env: dict[str, str], *args: str, keys: list[tuple[str, bytes]]) -> tuple[int, str]:
    """nullclient on a terminal of its own (its controlling terminal, as from a shell), each key typed
    once its prompt shows: its exit status and what the terminal showed."""
    terminal, its_side = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "postfix_nullclient.nullclient", *args],
        cwd=PROJECT,
        env=env,
        stdin=its_side,
        stdout=its_side,
        stderr=its_side,
        start_new_session=True,  # then the terminal becomes the session's: getpass opens it as /dev/tty
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(its_side)
    shown = b""

    def read() -> bool:
        nonlocal shown
        if not select.select([terminal], [], [], 60)[0]:
            raise TimeoutError(shown.decode())
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the command ended and closed the terminal
            chunk = b""
        shown += chunk
        return bool(chunk)

    for prompt, key in keys:
        while prompt.encode() not in shown:
            assert read(), shown.decode()
        os.write(terminal, key)
    while read():
        pass
    os.close(terminal)
    return process.wait(timeout=60), shown.decode()


def test_version_is_the_installed_distributions(env):
    run = nullclient(env, "--version")

    assert run.returncode == 0, run.stderr
    assert run.stdout == f"nullclient {metadata.version('postfix-nullclient')}\n"


def test_help_ends_with_the_table_of_exit_statuses(env):
    run = nullclient(env, "--help")

    assert run.returncode == 0
    table = run.stdout[run.stdout.index("\nexit status:\n") :]
    for code in ExitCode:
        assert f"\n  {code.value:<5}{MEANINGS[code].split()[0]}" in table, table
    assert "130  interrupted (Ctrl-C)" in table


def test_a_password_piped_without_stdin_is_refused_naming_stdin(env, inventory):
    run = nullclient(env, "secret", "set", "-i", str(inventory), "@fake/sulu", input="pw-piped\n")

    assert run.returncode == 2
    assert "stdin is not a terminal, so there is no prompt for the password; nothing was stored" in (
        one_line_of_stderr(run)
    )
    assert "add --stdin" in run.stderr
    assert nullclient(env, "secret", "show", "-i", str(inventory), "@fake/sulu").stdout.startswith("@fake/sulu: NO")


def test_ctrl_c_at_the_password_prompt_ends_with_one_line_and_status_130(env, inventory):
    status, shown = on_a_terminal(
        env, "secret", "set", "-i", str(inventory), "@fake/sulu", keys=[("(not shown): ", b"\x03")]
    )

    assert status == 130, shown
    assert shown.endswith("nullclient secret: interrupted; run it again to finish\r\n"), shown
    assert "Traceback" not in shown
    assert nullclient(env, "secret", "show", "-i", str(inventory), "@fake/sulu").stdout.startswith("@fake/sulu: NO")


def test_end_of_input_at_the_password_prompt_stores_nothing_and_says_so(env, inventory):
    status, shown = on_a_terminal(
        env, "secret", "set", "-i", str(inventory), "@fake/sulu", keys=[("(not shown): ", b"\x04")]
    )

    assert status == 2, shown
    assert "nullclient secret: no password was typed (end of input); nothing was stored" in shown
    assert "Traceback" not in shown


def test_a_password_typed_twice_on_the_terminal_is_stored(env, inventory):
    status, shown = on_a_terminal(
        env,
        "secret", "set", "-i", str(inventory), "@fake/sulu",
        keys=[("(not shown): ", b"typed-on-a-tty\n"), ("The same again: ", b"typed-on-a-tty\n")],
    )  # fmt: skip

    assert status == 0, shown
    assert "typed-on-a-tty" not in shown
    assert nullclient(env, "secret", "show", "-i", str(inventory), "@fake/sulu", "--reveal").stdout == (
        "typed-on-a-tty\n"
    )


@pytest.mark.parametrize("locale", ["C.UTF-8", "C"])
def test_a_password_on_stdin_that_is_not_utf8_is_refused(env, inventory, locale):
    command = ["secret", "set", "-i", str(inventory), "@fake/sulu", "--stdin"]
    run = subprocess.run(
        [sys.executable, "-m", "postfix_nullclient.nullclient", *command],
        cwd=PROJECT, env={**env, "LC_ALL": locale}, input=b"caf\xe9\n", capture_output=True, timeout=60,
    )  # fmt: skip
    refused = subprocess.CompletedProcess(run.args, run.returncode, run.stdout.decode(), run.stderr.decode())

    assert run.returncode == 2, refused.stderr
    assert "the password on stdin is not UTF-8 text; nothing was stored" in (one_line_of_stderr(refused))


def test_a_missing_inventory_is_refused_naming_the_option(env, tmp_path):
    run = nullclient(env, "status", "-i", str(tmp_path / "inventroy.py"))

    assert run.returncode == 2
    assert f"inventory file '{tmp_path / 'inventroy.py'}' does not exist; give the path of your pyinfra inventory" in (
        one_line_of_stderr(run)
    )


def test_an_inventory_with_a_syntax_error_is_refused_with_its_line(env, tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text('workstations = [\n    ("@fake/sulu", {"forward_to": "alice@example.org"),\n]\n')

    run = nullclient(env, "verify", "-i", str(inventory))

    assert run.returncode == 2
    assert (
        f"nullclient verify: the inventory {inventory} is not valid Python: line 2: closing parenthesis ')' does not "
        "match opening parenthesis '{'; correct it there"
    ) in one_line_of_stderr(run)


def test_an_inventory_that_fails_when_run_is_refused_with_its_error(env, tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text('workstations = [("@fake/sulu", {"forward_to": FORWARD_TO})]\n')

    run = nullclient(env, "secret", "show", "-i", str(inventory))

    assert run.returncode == 2
    assert f"cannot read the inventory '{inventory}': NameError: name 'FORWARD_TO' is not defined; correct" in (
        one_line_of_stderr(run)
    )


def test_a_test_mail_wait_must_be_a_number_of_seconds(env):
    for wait in ("-5", "1m", "²"):
        run = nullclient(env, "verify", "a.example.net", "--test-mail", wait)

        assert run.returncode == 2
        assert f"argument --test-mail: {wait!r} is not a number of seconds (e.g. --test-mail 60; 0: no test mail)" in (
            run.stderr
        )
        assert "Traceback" not in run.stderr
