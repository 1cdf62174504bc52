"""What a careless admin or a closed pipe does to `nullclient` and the keyring lookup, without a lab host."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT


def write_inventory(path: Path, hosts: int = 1) -> Path:
    """An inventory of @fake hosts @fake/h0, @fake/h1, ...: the secret commands touch no host."""
    entries = [(f"@fake/h{i}", {"forward_to": "alice@example.org"}) for i in range(hosts)]
    path.write_text(f"workstations = {entries!r}\n")
    return path


def nullclient(command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`nullclient ...` through a shell, as typed: redirections and pipes included."""
    python = f"{sys.executable} -m postfix_nullclient.nullclient"
    return subprocess.run(
        ["bash", "-c", command.replace("nullclient", python, 1)],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(run: subprocess.CompletedProcess) -> str:
    assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr, run.stderr
    return run.stderr


def test_a_test_mail_wait_past_64_bits_is_refused_not_wrapped_around_on_the_host():
    run = nullclient("nullclient verify a.example.net --test-mail 99999999999999999999")

    assert run.returncode == 2
    assert "--test-mail: 99999999999999999999 seconds is longer than a day; give at most 86400" in run.stderr
    assert "Traceback" not in run.stderr


def test_secret_set_with_stdin_closed_is_refused_in_one_line(keyring_env, tmp_path: Path):
    inventory = write_inventory(tmp_path / "inventory.py")
    for stdin in ("--stdin", ""):
        run = nullclient(f"nullclient secret set -i {inventory} @fake/h0 {stdin} <&-", env=keyring_env)

        assert run.returncode == 2, run.stderr
        assert "nothing was stored" in one_line(run) or "the password is empty" in one_line(run)


def test_output_cut_short_by_head_ends_quietly(keyring_env, tmp_path: Path):
    inventory = write_inventory(tmp_path / "inventory.py", hosts=300)  # more than a pipe holds

    run = nullclient(f"nullclient secret missing -i {inventory} | head -1; exit ${{PIPESTATUS[0]}}", env=keyring_env)

    assert run.stdout.startswith("@fake/h0: NO password")
    assert run.returncode == 1 and run.stderr == ""


def test_a_keyringrc_that_is_not_ini_is_named_in_one_line(keyring_env, tmp_path: Path):
    config = tmp_path / "config" / "python_keyring"
    config.mkdir(parents=True)
    (config / "keyringrc.cfg").write_text("[backend\ndefault-keyring=keyring_pass.PasswordStoreBackend\n")
    inventory = write_inventory(tmp_path / "inventory.py")
    env = {k: v for k, v in keyring_env.items() if k != "PYTHON_KEYRING_BACKEND"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")

    run = nullclient(f"nullclient secret show -i {inventory}", env=env)

    assert run.returncode == 2
    assert "chosen with PYTHON_KEYRING_BACKEND or keyringrc.cfg cannot read the password" in one_line(run)
    assert "MissingSectionHeaderError: File contains no section headers. file: " in run.stderr
