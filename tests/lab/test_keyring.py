"""The lab's headless Secret Service, used through the real `keyring` package in subprocesses."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.keyring import BACKEND, SecretServiceError, run, secret_service

MISSING = [tool for tool in ("dbus-daemon", "dbus-send", "gnome-keyring-daemon") if not shutil.which(tool)]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}: apt-get install dbus gnome-keyring")

SERVICE = "nullclient-lab-test"
USER = "ws1@example.net"
PASSWORD = "a pass # with : all @ the $ awkward % bits "

# The password travels on stdin and back on stdout: never on a command line.
KEYRING_SCRIPT = """
import sys, keyring
action, service, user = sys.argv[1:4]
if action == "backend":
    kr = keyring.get_keyring()
    print(f"{type(kr).__module__}.{type(kr).__name__}", end="")
elif action == "set":
    keyring.set_password(service, user, sys.stdin.read())
elif action == "get":
    print(keyring.get_password(service, user) or "", end="")
"""


def keyring_call(env: dict[str, str], action: str, password: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "-c", KEYRING_SCRIPT, action, SERVICE, USER],
        input=password, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def bus_pid(env: dict[str, str], name: str) -> int:
    """The PID of the process that owns `name` on the session's bus, as the bus itself knows it."""
    result = subprocess.run(
        ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
         "org.freedesktop.DBus.GetConnectionUnixProcessID", f"string:{name}"],
        env={**os.environ, **env}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(result.stdout.split()[-1])


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""  # a zombie has an empty one
    except OSError:
        return False


def test_round_trip_and_persistence(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with secret_service(home) as env:
        assert env["PYTHON_KEYRING_BACKEND"] == BACKEND
        assert env["HOME"] == str(home)
        assert Path(env["XDG_RUNTIME_DIR"]).is_relative_to(home)
        assert Path(env["XDG_DATA_HOME"]).is_relative_to(home)
        assert Path(env["XDG_RUNTIME_DIR"]).stat().st_mode & 0o777 == 0o700
        assert keyring_call(env, "backend") == BACKEND
        keyring_call(env, "set", PASSWORD)
        assert keyring_call(env, "get") == PASSWORD
        daemons = [bus_pid(env, "org.freedesktop.DBus"), bus_pid(env, "org.freedesktop.secrets")]
        assert all(running(pid) for pid in daemons)
    assert not any(running(pid) for pid in daemons), "a daemon of the session is still running"
    assert (home / ".local" / "share" / "keyrings").is_dir()

    # A new session over the same home: the same keyring, still unlocked by --unlock.
    with secret_service(home) as env:
        assert keyring_call(env, "get") == PASSWORD
        daemons = [bus_pid(env, "org.freedesktop.DBus"), bus_pid(env, "org.freedesktop.secrets")]
    assert not any(running(pid) for pid in daemons)


def test_another_home_is_another_keyring(tmp_path: Path) -> None:
    with secret_service(tmp_path / "one") as env:
        keyring_call(env, "set", PASSWORD)
    with secret_service(tmp_path / "two") as env:
        assert keyring_call(env, "get") == ""


def test_daemons_stop_when_the_body_fails(tmp_path: Path) -> None:
    daemons: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), secret_service(tmp_path / "home") as env:
        daemons = [bus_pid(env, "org.freedesktop.DBus"), bus_pid(env, "org.freedesktop.secrets")]
        raise RuntimeError("boom")
    assert len(daemons) == 2
    assert not any(running(pid) for pid in daemons)


def test_run_gives_the_command_the_session(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with secret_service(home) as env:
        keyring_call(env, "set", PASSWORD)
    check = f"import keyring, sys; sys.exit(0 if keyring.get_password({SERVICE!r}, {USER!r}) == {PASSWORD!r} else 3)"
    assert run(home, [sys.executable, "-c", check]) == 0
    assert run(home, [sys.executable, "-c", "import sys; sys.exit(7)"]) == 7


def test_run_ignores_the_callers_bus(tmp_path: Path) -> None:
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent", "PYTHON_KEYRING_BACKEND": "x"}
    check = "import keyring, sys; keyring.get_keyring(); sys.exit(0)"
    assert run(tmp_path / "home", [sys.executable, "-c", check], env=env) == 0


def test_missing_daemon_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # none of the tools can be found
    with pytest.raises(SecretServiceError, match="gnome-keyring"), secret_service(tmp_path / "home"):
        pass
