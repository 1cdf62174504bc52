"""Fixtures shared by the tests: a real Secret Service keyring and the pyinfra CLI runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
RUN_PYINFRA = PROJECT / "tests" / "support" / "run_pyinfra.py"


@pytest.fixture(scope="session")
def keyring_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment of a private, unlocked gnome-keyring (the real Secret Service backend)."""
    missing = [tool for tool in ("gnome-keyring-daemon", "dbus-daemon") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)}: apt-get install gnome-keyring dbus")
    from lab.keyring import secret_service

    with secret_service(tmp_path_factory.mktemp("keyring-home")) as env:
        yield {**os.environ, **env}


def store_password(env: dict[str, str], service: str, user: str, password: str | None) -> None:
    """Set (or with None, delete) a keyring entry through the keyring package, as a user would."""
    script = (
        "import keyring, sys\n"
        "service, user = sys.argv[1:3]\n"
        "password = sys.stdin.read()\n"
        "if sys.argv[3] == 'set': keyring.set_password(service, user, password)\n"
        "elif keyring.get_password(service, user) is not None: keyring.delete_password(service, user)\n"
    )
    action = "delete" if password is None else "set"
    subprocess.run(
        [sys.executable, "-c", script, service, user, action], input=password or "", env=env, check=True, text=True
    )


@dataclass
class PyinfraRun:
    returncode: int
    output: str  # stdout and stderr, as a user sees them
    commands: dict[str, list[dict]]  # per @fake host: {"command", "stdin"}


def run_pyinfra(env: dict[str, str], tmp_path: Path, inventory: Path, *args: str) -> PyinfraRun:
    """Run `pyinfra INVENTORY deploy.py ARGS` from the project directory, recording @fake commands."""
    record = tmp_path / "record.json"
    process = subprocess.run(
        [sys.executable, str(RUN_PYINFRA), str(record), str(inventory), "deploy.py", *args],
        cwd=PROJECT,
        env={**env, "PYTHONPATH": str(PROJECT), "PYINFRA_PROGRESS": "off", "PYINFRA_FAKE_DELAY": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    commands = json.loads(record.read_text()) if record.exists() else {}
    return PyinfraRun(process.returncode, process.stdout + process.stderr, commands)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The lab's test modules first, the fast ones last: beside each other (scripts/test runs them with
    pytest-xdist, a module per worker), the many short fast modules fill the end of the long lab ones."""
    items.sort(key=lambda item: 0 if "tests/e2e/" in item.nodeid else 1 if "tests/lab/" in item.nodeid else 2)


def distributed_controller(config: pytest.Config) -> bool:
    """True in the process that hands the tests to pytest-xdist's workers (`-n`), which run them."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """With NULLCLIENT_REQUIRE_ALL_TESTS=1 (scripts/test as root, so CI), a skipped test fails the run."""
    if os.environ.get("NULLCLIENT_REQUIRE_ALL_TESTS") != "1":
        return
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        terminalreporter.write_line(
            f"FAILED: {len(skipped)} test(s) skipped, but every test must run here (NULLCLIENT_REQUIRE_ALL_TESTS=1)",
            red=True,
        )
        for report in skipped:
            terminalreporter.write_line(f"  skipped: {report.nodeid}: {report.longrepr}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if distributed_controller(session.config) and os.geteuid() == 0:
        from lab.config import STATE_DIR
        from tests.e2e.conftest import down_if_unused

        if STATE_DIR.exists():  # the workers used the lab (tests/e2e/conftest.py: lab)
            down_if_unused()
    if os.environ.get("NULLCLIENT_REQUIRE_ALL_TESTS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter and reporter.stats.get("skipped") and session.exitstatus == 0:
        session.exitstatus = 1
