"""The package as a pyinfra user gets it, and one host refused while the others deploy.

A wheel built from this repository goes into a fresh virtual environment; the user's own inventory
and deploy file live in a directory of their own, far from the checkout, with no group_data/ and no
config.py. Their deploy calls `deploy_null_client()` among its own operations and reads `.changed`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the repository's files (the build leaves its build/ there, not here)."""
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
    subprocess.run(
        [str(PROJECT / ".venv" / "bin" / "pip"), "wheel", "--quiet", "--no-deps", "-w", str(dist), str(source)],
        check=True,
        timeout=600,
    )
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with nothing but the wheel and its declared dependencies."""
    path = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True, timeout=120)
    subprocess.run([str(path / "bin" / "pip"), "install", "--quiet", str(wheel)], check=True, timeout=600)
    return path


def run_in(directory: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    """A command as the user runs it in their own directory: no PYTHONPATH, nothing of the checkout."""
    clean = {key: value for key, value in env.items() if key != "PYTHONPATH"}
    return subprocess.run(
        command,
        cwd=directory,
        env={**clean, "PYINFRA_PROGRESS": "off"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_the_wheel_holds_one_namespaced_package_with_its_templates_scripts_and_defaults(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"postfix_nullclient"}, "no top-level tasks, lab, bench or nullclient package"
    for packaged in (
        "postfix_nullclient/__init__.py",
        "postfix_nullclient/defaults.py",
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
    subject = f"package {uuid.uuid4().hex[:10]}"
    workstation.run(f"echo from-the-wheel | mail -s '{subject}' root")
    message = smarthost.wait_for_messages(STATE_DIR, 1, timeout=60, predicate=lambda m: m["subject"] == subject)[0]
    assert message["rcpt_tos"] == [FORWARD_TO] and message["auth_user"] == workstation.smtp_user

    again = run_in(directory, keyring_env, pyinfra, "inventory.py", "deploy.py", "-y")

    output = again.stdout + again.stderr
    assert again.returncode == 0, output
    assert workstation.run(f"wc -l < {MARKER}").stdout.strip() == "1", "nothing changed, so .changed was False"
    assert output.count(f"[{workstation.fqdn}] No changes") >= 3, output  # theirs, and both of the deploy
    results = output[output.index("--> Results:") :]
    assert re.search(r"Postfix null client \| Apply null-client configuration\s+1\s+-\s+-\s+1\s", results), results


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
