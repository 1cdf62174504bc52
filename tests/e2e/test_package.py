"""The package as a pyinfra user gets it, and one host refused while the others deploy.

The sdist and the wheel are built from this repository's files as a release builds them (the wheel
from the sdist); the wheel goes into a fresh virtual environment; the user's own inventory and
deploy file live in a directory of their own, far from the checkout, with no group_data/ and no
config.py. Their deploy calls `deploy_null_client()` among its own operations and reads `.changed`.
The same wheel deploys again with every dependency at the lowest version its range allows.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import tarfile
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from lab import smarthost
from lab.config import FORWARD_TO, STATE_DIR
from tests.conftest import PROJECT, store_password
from tests.e2e.conftest import SERVICE, Workstation, lab_host_data, run_deploy, write_inventory

USER_DEPLOY = """\
from pyinfra.operations import files, server

from postfix_nullclient import deploy_null_client

files.directory(name="Their own operation, before", path="/var/lib/their-deploy")
null_client = deploy_null_client()
server.shell(
    name="Their own operation, only when the null client changed",
    commands=["date >> /var/lib/their-deploy/null-client-changed"],
    _if=null_client.did_change,
)
"""
MARKER = "/var/lib/their-deploy/null-client-changed"


@dataclass(frozen=True)
class Build:
    source: Path  # the repository's files, as git would commit them
    sdist: Path
    wheel: Path  # built from the unpacked sdist
    output: str  # what the build printed


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The sdist, and the wheel from it, built from a copy of the repository's files (the build
    leaves its build/ and egg-info there, not here)."""
    source = tmp_path_factory.mktemp("source") / "postfix-nullclient"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, files.split("\0")):
        if (PROJECT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    # Without PYTHONDONTWRITEBYTECODE, which some shells set: setuptools warns of it, not of the project.
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    built = subprocess.run(
        [str(PROJECT / ".venv" / "bin" / "python"), "-m", "build", "--outdir", str(dist), str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    return Build(source, sdist, wheel, built.stdout + built.stderr)


@pytest.fixture(scope="module")
def wheel(build: Build) -> Path:
    return build.wheel


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        return email.message_from_string(archive.read(name).decode())  # UTF-8, as the core metadata is


def floors(requirements: list[str], extra: str = "") -> dict[str, str]:
    """The lower bound of each requirement that applies here (to `extra`, or to no extra)."""
    lowest = {}
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
            (floor,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
            lowest[requirement.name.lower()] = floor
    return lowest


def make_venv(path: Path, *install: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True, timeout=120)
    subprocess.run([str(path / "bin" / "pip"), "install", "--quiet", *install], check=True, timeout=600)
    return path


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with nothing but the wheel and its declared dependencies, the test
    extra's included (the sdist's tests are collected with them)."""
    return make_venv(tmp_path_factory.mktemp("venv"), f"{wheel}[test]")


@pytest.fixture(scope="module")
def lowest_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel and each dependency at the lowest version its
    range allows."""
    constraints = tmp_path_factory.mktemp("floors") / "constraints.txt"
    pins = floors(wheel_metadata(wheel).get_all("Requires-Dist"))
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    path = make_venv(tmp_path_factory.mktemp("lowest-venv"), str(wheel), "-c", str(constraints))
    script = "import sys\nfrom importlib.metadata import version\nprint(*(version(n) for n in sys.argv[1:]))"
    installed = subprocess.run(
        [str(path / "bin" / "python"), "-c", script, *pins], capture_output=True, text=True, check=True
    ).stdout.split()
    assert [Version(v) for v in installed] == [Version(v) for v in pins.values()], (pins, installed)
    return path


def without_checkout(env: Mapping[str, str]) -> dict[str, str]:
    """env without PYTHONPATH and VIRTUAL_ENV: pyinfra adds the site-packages of an activated virtual
    environment (the checkout's .venv) to its own, whatever environment it was installed in."""
    return {key: value for key, value in env.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}


def run_in(directory: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    """A command as the user runs it in their own directory, with nothing of the checkout."""
    clean = without_checkout(env)
    return subprocess.run(
        command,
        cwd=directory,
        env={**clean, "PYINFRA_PROGRESS": "off"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_the_build_of_the_sdist_and_the_wheel_warns_of_nothing(build):
    warnings = [line for line in build.output.splitlines() if "warn" in line.lower()]

    assert not warnings, "\n".join(warnings)


def test_the_wheel_metadata_gives_the_licence_the_readme_and_the_classifiers(build):
    metadata = wheel_metadata(build.wheel)
    with zipfile.ZipFile(build.wheel) as archive:
        (licence,) = [name for name in archive.namelist() if name.endswith(".dist-info/licenses/LICENSE")]
        licence_text = archive.read(licence).decode()

    assert metadata["License-Expression"] == "MIT"
    assert metadata["License-File"] == "LICENSE"
    assert licence_text.startswith("MIT License") and "the postfix-nullclient authors" in licence_text
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload() == (build.source / "README.md").read_text()
    classifiers = metadata.get_all("Classifier")
    for classifier in (
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3.11",
        "Typing :: Typed",
    ):
        assert classifier in classifiers, classifiers
    assert metadata["Requires-Python"] == ">=3.11"
    requirements = [Requirement(line) for line in metadata.get_all("Requires-Dist")]
    pinned = [str(requirement) for requirement in requirements if len(requirement.specifier) < 2]
    assert not pinned, "every dependency, the test extra's too, is a range with both ends"


def collect_tests(python: Path, directory: Path) -> list[str]:
    """The tests that `pytest --collect-only` finds in directory, as module::function, one per
    parameter set (whose ids may hold an object's address); a collection error fails."""
    collected = subprocess.run(
        [str(python), "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=directory,
        env=without_checkout(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert collected.returncode == 0, collected.stdout + collected.stderr
    return [line.split("[", 1)[0] for line in collected.stdout.splitlines() if "::" in line]


def test_the_sdist_ships_every_test_and_they_collect_from_it(build, venv, tmp_path):
    with tarfile.open(build.sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()

    from_sdist = collect_tests(venv / "bin" / "python", unpacked)

    # With the same package, the wheel's, so that only the tests' own files can differ.
    assert from_sdist == collect_tests(venv / "bin" / "python", build.source)
    assert any(test.startswith("tests/e2e/") for test in from_sdist)
    assert any(test.startswith("tests/lab/") for test in from_sdist)


def test_the_lowest_constraints_of_the_fast_tests_are_the_floors_of_the_ranges(wheel):
    requirements = wheel_metadata(wheel).get_all("Requires-Dist")
    lowest = floors(requirements)
    for name, floor in floors(requirements, extra="test").items():  # the test extra's floor, where higher
        if name not in lowest or Version(floor) > Version(lowest[name]):
            lowest[name] = floor
    constraints = (PROJECT / "tests" / "constraints-lowest.txt").read_text().splitlines()
    pinned = dict(line.lower().split("==") for line in constraints if line and not line.startswith("#"))

    for name in ("pyinfra", "jinja2", "keyring", "secretstorage", "pytest", "pytest-xdist", "hypothesis", "aiosmtpd"):
        assert Version(pinned[name]) == Version(lowest[name]), (name, pinned.get(name), lowest[name])


def test_the_wheel_holds_one_namespaced_package_with_its_templates_scripts_and_defaults(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"postfix_nullclient"}, "no top-level tasks, lab, bench or nullclient package"
    for packaged in (
        "postfix_nullclient/__init__.py",
        "postfix_nullclient/py.typed",
        "postfix_nullclient/spec.py",
        "postfix_nullclient/model.py",
        "postfix_nullclient/templates/scripts/apply_config.sh.j2",
        "postfix_nullclient/templates/scripts/remove.sh.j2",
        "postfix_nullclient/templates/scripts/fact.sh.j2",
        "postfix_nullclient/templates/main.cf.j2",
        "postfix_nullclient/templates/sasl_passwd.j2",
        "postfix_nullclient/templates/virtual_alias.j2",
        "postfix_nullclient/templates/sender_canonical.j2",
    ):
        assert packaged in names, packaged


@pytest.fixture(scope="module")
def user_directory(tmp_path_factory, make_workstations) -> tuple[Path, Workstation]:
    (workstation,) = make_workstations(["pk1"])
    directory = tmp_path_factory.mktemp("their-infra")
    write_inventory(directory / "inventory.py", [(workstation.fqdn, lab_host_data(workstation))])
    (directory / "deploy.py").write_text(USER_DEPLOY)
    return directory, workstation


def test_a_user_deploy_elsewhere_calls_the_function_among_its_operations_and_reads_changed(
    venv, user_directory, keyring_env
):
    directory, workstation = user_directory
    pyinfra = str(venv / "bin" / "pyinfra")

    first = run_in(directory, keyring_env, pyinfra, "inventory.py", "deploy.py", "-y")

    assert first.returncode == 0, first.stdout + first.stderr
    assert workstation.run(f"wc -l < {MARKER}").stdout.strip() == "1", "the first run changed the host"
    assert_mail_goes_through_the_relay(workstation)

    again = run_in(directory, keyring_env, pyinfra, "inventory.py", "deploy.py", "-y")

    output = again.stdout + again.stderr
    assert again.returncode == 0, output
    assert workstation.run(f"wc -l < {MARKER}").stdout.strip() == "1", "nothing changed, so .changed was False"
    assert output.count(f"[{workstation.fqdn}] No changes") >= 3, output  # theirs, and both of the deploy
    assert_configuration(output, changed=False)


def assert_mail_goes_through_the_relay(workstation: Workstation, forward_to: str = FORWARD_TO) -> None:
    subject = f"package {uuid.uuid4().hex[:10]}"
    workstation.run(f"echo from-the-wheel | mail -s '{subject}' root")
    message = smarthost.wait_for_messages(STATE_DIR, 1, timeout=60, predicate=lambda m: m["subject"] == subject)[0]
    assert message["rcpt_tos"] == [forward_to] and message["auth_user"] == workstation.smtp_user


def assert_configuration(output: str, changed: bool) -> None:
    """The results table's row of the configuration operation: one host, changed or not."""
    counts = r"1\s+1\s+-\s+-" if changed else r"1\s+-\s+-\s+1"
    results = output[output.index("--> Results:") :]
    assert re.search(rf"Postfix null client \| Configure Postfix\s+{counts}\s", results), results


def test_the_operator_commands_of_the_wheel_work_in_the_user_directory(venv, user_directory, keyring_env):
    directory, workstation = user_directory
    nullclient = str(venv / "bin" / "nullclient")

    listed = run_in(directory, keyring_env, nullclient, "secret", "show", "-i", "inventory.py")
    verified = run_in(directory, keyring_env, nullclient, "verify", "-i", "inventory.py")

    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert f"{workstation.fqdn}: a password is stored (keyring service '{SERVICE}'" in listed.stdout
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "ok    configuration: postconf -n and the 4 managed files match the deploy" in verified.stdout
    assert "all 1 host(s) OK" in verified.stdout


def test_the_wheels_nullclient_says_the_wheels_version(venv, wheel, tmp_path):
    shown = run_in(tmp_path, dict(os.environ), str(venv / "bin" / "nullclient"), "--version")

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"nullclient {wheel_metadata(wheel)['Version']}\n"


def test_the_wheel_deploys_with_every_dependency_at_the_lowest_version_its_range_allows(
    lowest_venv, user_directory, keyring_env, tmp_path
):
    _, workstation = user_directory  # deployed above with the newest versions, or new if this test runs alone
    # Another forward_to, so that this run changes the host's configuration: applied and reloaded.
    entry = lab_host_data(workstation, forward_to="floor@example.org")
    write_inventory(tmp_path / "inventory.py", [(workstation.fqdn, entry)])
    (tmp_path / "deploy.py").write_text(USER_DEPLOY)
    pyinfra = str(lowest_venv / "bin" / "pyinfra")

    first = run_in(tmp_path, keyring_env, pyinfra, "inventory.py", "deploy.py", "-y")

    assert first.returncode == 0, first.stdout + first.stderr
    assert_configuration(first.stdout + first.stderr, changed=True)
    assert_mail_goes_through_the_relay(workstation, "floor@example.org")
    again = run_in(tmp_path, keyring_env, pyinfra, "inventory.py", "deploy.py", "-y")
    assert again.returncode == 0, again.stdout + again.stderr
    assert_configuration(again.stdout + again.stderr, changed=False)
    verified = run_in(tmp_path, keyring_env, str(lowest_venv / "bin" / "nullclient"), "verify", "-i", "inventory.py")
    assert verified.returncode == 0 and "all 1 host(s) OK" in verified.stdout, verified.stdout + verified.stderr


def test_a_host_without_keyring_entry_is_left_untouched_while_the_other_deploys(
    make_workstations, keyring_env, tmp_path
):
    ready, new = make_workstations(["pk2", "pk3"])
    store_password(keyring_env, SERVICE, new.smtp_user, None)  # a new laptop whose password is not stored yet
    inventory = write_inventory(
        tmp_path / "inventory.py", [(ready.fqdn, lab_host_data(ready)), (new.fqdn, lab_host_data(new))]
    )

    run = run_deploy(keyring_env, str(inventory))

    assert run.returncode != 0, run.output
    assert ready.run("postconf -h relayhost").stdout.strip() == "[mail.example.net]:587"
    assert new.run("test -e /etc/postfix || dpkg-query -W postfix", check=False).returncode != 0, "untouched"
    summary = run.output[run.output.rindex("host(s) failed; the others went on:") :]
    assert (
        f"{new.fqdn}: refused, nothing was run on it: no password in the keyring for service '{SERVICE}', "
        f"user '{new.smtp_user}'; store it with: keyring set {SERVICE} {new.smtp_user}"
    ) in summary, summary
    assert ready.fqdn not in summary
