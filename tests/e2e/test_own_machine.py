"""End to end: the owner configures their own workstation from itself, `pyinfra @local deploy.py`.

The workstation rw12 gets what an owner has: the project's wheel and its dependencies (downloaded
on this machine with `pip download`, copied over with scp, installed with `pip install --no-index`:
lab hosts reach nothing but the apt proxy), a keyring session (gnome-keyring, unlocked in a D-Bus
session, as a desktop login does) holding the relay password, and a deploy file of their own. As
root on the host, in that session: `pyinfra @local deploy.py -y --data forward_to=...`. Then the
host sends mail through the relay as rw12@example.net, a second local run changes nothing, and an
SSH deploy from this machine finds nothing to change either: the same configuration.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from lab import hosts, smarthost
from lab.config import FORWARD_TO, STATE_DIR
from tests.conftest import PROJECT
from tests.e2e.conftest import NO_CHANGE_OPERATIONS, Workstation, deploy
from tests.e2e.test_package import build  # noqa: F401  (a fixture, which the wheel fixture uses)
from tests.e2e.test_package import wheel as package_wheel  # noqa: F401  (a fixture: built from a copy)

WHEELS = "/root/wheels"
VENV = "/opt/postfix-nullclient"
OWNER_DIR = "/root/mail-setup"
KEYRING_UNLOCK = "rw-login-password"  # the desktop login's password, which unlocks the keyring


@pytest.fixture(scope="module")
def wheels(package_wheel: Path, tmp_path_factory) -> Path:  # noqa: F811  (the fixture imported above)
    """The project's wheel and every dependency's, for the lab host's Python (3.11, like this one)."""
    directory = tmp_path_factory.mktemp("wheels")
    shutil.copy2(package_wheel, directory)
    subprocess.run(
        [str(PROJECT / ".venv" / "bin" / "pip"), "download", "-q", "-d", str(directory), "--only-binary=:all:",
         str(package_wheel)],
        check=True,
        timeout=300,
    )  # fmt: skip
    return directory


def scp_options() -> list[str]:
    """The lab's ssh options less `-l root` (scp's -l is a bandwidth limit; the user is in the target)."""
    options = hosts.ssh_options()
    at = options.index("-l")
    return options[:at] + options[at + 2 :]


def in_keyring_session(script: str) -> str:
    """`script` run by root on the host inside a D-Bus session with an unlocked gnome-keyring."""
    unlock = f"printf %s {KEYRING_UNLOCK} | gnome-keyring-daemon --unlock --components=secrets >/dev/null"
    return f"dbus-run-session -- sh -c {shlex.quote(unlock + chr(10) + script)}"


@pytest.fixture(scope="module")
def rw12(make_workstations, wheels) -> Workstation:
    [made] = make_workstations(["rw12"])
    packages = "python3-venv gnome-keyring"  # gnome-keyring's first install takes minutes: more than run() waits
    hosts.ssh(made.name, f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q {packages} >/dev/null", timeout=600)
    made.run(f"mkdir -p {WHEELS} {OWNER_DIR}")
    subprocess.run(
        ["scp", "-q", *scp_options(), *map(str, wheels.glob("*.whl")), f"root@{made.address}:{WHEELS}/"],
        check=True,
        timeout=120,
    )
    # pip compiles every module of pyinfra and its dependencies: 60 s was not enough on a loaded CI machine.
    install = f"python3 -m venv {VENV} && {VENV}/bin/pip install -q --no-index --find-links {WHEELS} postfix-nullclient"
    made.run(install, timeout=600)
    made.run(f"cat > {OWNER_DIR}/deploy.py", input=(PROJECT / "deploy.py").read_text())
    # The owner stores the password once (keyring set prompts; here it comes on stdin).
    store = (
        f"{VENV}/bin/python -c 'import keyring, sys; keyring.set_password(sys.argv[1], sys.argv[2], sys.stdin.read())'"
    )
    made.run(in_keyring_session(f"{store} postfix-nullclient {made.smtp_user}"), input=made.password)
    return made


def local_deploy(workstation: Workstation) -> subprocess.CompletedProcess:
    pyinfra = (
        f"cd {OWNER_DIR} && PYINFRA_PROGRESS=off {VENV}/bin/pyinfra @local deploy.py -y --data forward_to={FORWARD_TO}"
    )
    return workstation.run(in_keyring_session(pyinfra), check=False, timeout=600)  # a first deploy installs Postfix


def test_pyinfra_at_local_configures_the_machine_like_an_ssh_deploy(rw12, keyring_env):
    first = local_deploy(rw12)
    output = first.stdout + first.stderr
    print(output)
    assert first.returncode == 0, output
    assert "[@local] Success" in output
    assert rw12.password not in output

    subject = f"from the owners own machine {uuid.uuid4().hex[:8]}"
    sent = rw12.run(f"echo local | mail -s '{subject}' root", check=False)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    [message] = smarthost.wait_for_messages(STATE_DIR, 1, 60, lambda m: m["subject"] == subject)
    assert message["auth_user"] == rw12.smtp_user and message["mail_from"] == rw12.smtp_user
    assert message["rcpt_tos"] == [FORWARD_TO]

    again = local_deploy(rw12)
    assert (
        again.returncode == 0 and (again.stdout + again.stderr).count("[@local] No changes") == NO_CHANGE_OPERATIONS
    ), again.stdout
    over_ssh = deploy(keyring_env, [rw12])
    assert over_ssh.returncode == 0, over_ssh.output
    assert over_ssh.output.count(f"[{rw12.fqdn}] No changes") == NO_CHANGE_OPERATIONS, over_ssh.output
