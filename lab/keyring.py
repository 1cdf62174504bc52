"""A real OS keyring without a desktop: a private D-Bus session bus and gnome-keyring's Secret Service.

The `keyring` package then uses its SecretService backend, exactly as on the owner's workstation,
instead of a plaintext file or nothing. The keyring lives in HOME/.local/share/keyrings and persists
from one session to the next with the same home.

This is a lab-only keyring: it is unlocked with a fixed, published password (LAB_KEYRING_PASSWORD),
so it protects nothing. Never point `home` at a real user's home.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

LAB_KEYRING_PASSWORD = "nullclient-lab-keyring"  # lab only: see the module's docstring
BACKEND = "keyring.backends.SecretService.Keyring"
SECRETS_BUS_NAME = "org.freedesktop.secrets"
LOG_NAME = "secret-service.log"

# Variables of the caller's desktop session that would lead clients to another bus or keyring.
_FOREIGN_VARIABLES = ("DBUS_SESSION_BUS_ADDRESS", "GNOME_KEYRING_CONTROL", "SSH_AUTH_SOCK", "PYTHON_KEYRING_BACKEND")

# No <standard_session_servicedirs/>: the bus must not start anything by itself (a locked
# gnome-keyring, a prompter), so every process of the session is one we started and know by PID.
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class SecretServiceError(RuntimeError):
    pass


def _private_directory(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _home_variables(home: Path) -> dict[str, str]:
    home = _private_directory(home.absolute())
    return {
        "HOME": str(home),
        "XDG_DATA_HOME": str(_private_directory(_private_directory(home / ".local") / "share")),
        "XDG_CONFIG_HOME": str(_private_directory(home / ".config")),
        "XDG_CACHE_HOME": str(_private_directory(home / ".cache")),
    }


def _daemon_environment(variables: dict[str, str]) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if key not in _FOREIGN_VARIABLES}
    return {**environment, **variables}


def _start_bus(runtime: Path, environment: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    config = runtime / "bus.conf"
    config.write_text(_BUS_CONFIG.format(socket=escape(str(runtime / "bus"))))
    with open(log, "ab") as log_file:
        bus = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=environment,
            start_new_session=True,
        )
    assert bus.stdout is not None
    address = bus.stdout.readline().decode().strip()  # or "" once it has exited
    bus.stdout.close()
    return bus, address


def _start_keyring_daemon(environment: dict[str, str], log: Path) -> subprocess.Popen:
    # --unlock reads the password from stdin: without it gnome-keyring would want to prompt for one,
    # and with no one to answer every call fails with "Prompt dismissed". --foreground keeps the PID
    # the one we started.
    with open(log, "ab") as log_file:
        daemon = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE,
            stdout=log_file,
            stderr=log_file,
            env=environment,
            start_new_session=True,
        )
    assert daemon.stdin is not None
    daemon.stdin.write(LAB_KEYRING_PASSWORD.encode())
    daemon.stdin.close()
    return daemon


def _name_has_owner(environment: dict[str, str], name: str) -> bool:
    reply = subprocess.run(
        ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
         "org.freedesktop.DBus.NameHasOwner", f"string:{name}"],
        env=environment, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return reply.returncode == 0 and "boolean true" in reply.stdout


def _wait_for_secrets(environment: dict[str, str], daemon: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _name_has_owner(environment, SECRETS_BUS_NAME):
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise SecretServiceError(f"gnome-keyring-daemon did not come up on the private bus; see {log}")
        time.sleep(0.05)


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def secret_service(home: Path, timeout: float = 10.0) -> Iterator[dict[str, str]]:
    """Run a private Secret Service for `home`; yield the variables that lead clients to it.

    Merge them into a subprocess's environment: DBUS_SESSION_BUS_ADDRESS, HOME, XDG_* and
    PYTHON_KEYRING_BACKEND (so that `keyring` fails loudly rather than fall back to another backend).
    On exit, the daemons started here, and only they, are stopped.
    """
    missing = [tool for tool in ("dbus-daemon", "dbus-send", "gnome-keyring-daemon") if not shutil.which(tool)]
    if missing:
        raise SecretServiceError(f"missing {', '.join(missing)}: apt-get install dbus gnome-keyring")
    variables = _home_variables(home)
    log = Path(variables["HOME"]) / LOG_NAME
    # A runtime directory of its own per session: no stale sockets from a session that was killed.
    runtime = Path(tempfile.mkdtemp(prefix="run-", dir=_private_directory(Path(variables["HOME"]) / "run")))
    processes: list[subprocess.Popen] = []
    try:
        variables["XDG_RUNTIME_DIR"] = str(runtime)
        bus, address = _start_bus(runtime, _daemon_environment(variables), log)
        processes.append(bus)
        if not address:
            raise SecretServiceError(f"dbus-daemon did not start; see {log}")
        variables["DBUS_SESSION_BUS_ADDRESS"] = address
        environment = _daemon_environment(variables)
        daemon = _start_keyring_daemon(environment, log)
        processes.append(daemon)
        _wait_for_secrets(environment, daemon, log, timeout)
        variables["GNOME_KEYRING_CONTROL"] = str(runtime / "keyring")
        variables["PYTHON_KEYRING_BACKEND"] = BACKEND
        yield variables
    finally:
        for process in reversed(processes):
            _terminate(process)
        shutil.rmtree(runtime, ignore_errors=True)


def run(home: Path, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run `argv` in a Secret Service session for `home`; return its exit status.

    `env` replaces os.environ as the base environment; the session's variables go on top of it.
    """
    with secret_service(home) as variables:
        base = dict(os.environ if env is None else env)
        for name in _FOREIGN_VARIABLES:
            base.pop(name, None)
        return subprocess.run(argv, env={**base, **variables}, check=False).returncode
