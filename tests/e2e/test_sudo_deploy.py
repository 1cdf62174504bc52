"""End to end: deploying as the owner's own account with sudo, without and with a sudo password.

rw8's account `deployer` has passwordless sudo (the safe way: the README's recipe) and is deployed
with `--sudo`; rw9's `deployer` needs a password for sudo, given as inventory data read from the
keyring (`_sudo_password`). While each deploy runs, an unprivileged user on the workstation reads
every process's command line, as `ps` does, looking for the SMTP password and the sudo password.

Measured: the SMTP password is on no command line in either case, and in no file but the map. The
sudo password is on the command line of the remote shell of every command pyinfra sends
(`env SUDO_ASKPASS=... PYINFRA_SUDO_PASSWORD=... sudo -A -k ...`, pyinfra 3.10), readable by any
local user for as long as that shell runs before it executes `env`: about a millisecond. rw9's
login shell is made to wait 0.3 s first, so that the watcher sees each such command line for
certain; the deploy names the exposure and the safe way.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import uuid

from lab import hosts, smarthost
from lab.config import FORWARD_TO, STATE_DIR
from tests.conftest import PROJECT, store_password
from tests.e2e.conftest import NO_CHANGE_OPERATIONS, Workstation, lab_host_data

SUDO_SERVICE = "rw-sudo-test"
STOP_FILE = "/run/rw-cmdline-watch.stop"
# Runs as `nobody` on the workstation: what any local user can see of other users' processes.
WATCHER = r"""
import json, os, sys, time
tokens = [line.strip().encode() for line in sys.stdin if line.strip()]
seen, rounds, known = {t.decode(): [] for t in tokens}, 0, set()
print("ready", flush=True)
deadline = time.monotonic() + 300
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    pids = set(os.listdir("/proc"))
    for pid in pids:
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        for token in tokens:
            if token in cmdline:
                for each in tokens:  # what ps shows, without the secrets themselves
                    cmdline = cmdline.replace(each, b"<" + each[:6] + b">")
                entry = cmdline.replace(b"\0", b" ").decode(errors="replace")[:160]
                if (pid, entry) not in known:
                    known.add((pid, entry))
                    seen[token.decode()].append(entry)
    rounds += 1
    time.sleep(0.001)  # a tight loop may starve sshd on a busy lab (ssh exit 255 seen in a full run)
print(json.dumps({"seen": seen, "rounds": rounds}), flush=True)
"""
# Waits before it is the login shell: widens the moment the sudo password is on its command line.
SLOW_SHELL = '#!/bin/sh\nsleep 0.3\nexec /bin/bash "$@"\n'


def make_deployer(workstation: Workstation, sudo_password: str | None) -> None:
    workstation.run("DEBIAN_FRONTEND=noninteractive apt-get install -y -q sudo >/dev/null", timeout=600)
    workstation.run(
        "useradd -m -s /bin/bash deployer && install -d -m 700 -o deployer -g deployer /home/deployer/.ssh"
        " && install -m 600 -o deployer -g deployer /root/.ssh/authorized_keys /home/deployer/.ssh/"
    )
    if sudo_password is None:
        rule = "deployer ALL=(root) NOPASSWD: ALL"
    else:
        workstation.run("chpasswd", input=f"deployer:{sudo_password}\n")
        rule = "deployer ALL=(ALL:ALL) ALL"
        workstation.run(
            "cat > /usr/local/bin/rw-slow-shell && chmod 755 /usr/local/bin/rw-slow-shell", input=SLOW_SHELL
        )
        workstation.run("usermod -s /usr/local/bin/rw-slow-shell deployer")
    workstation.run(f"echo '{rule}' > /etc/sudoers.d/deployer && chmod 440 /etc/sudoers.d/deployer && visudo -c -q")
    passwordless = workstation.run("runuser -u deployer -- sudo -n true", check=False).returncode == 0
    assert passwordless == (sudo_password is None)


class CommandLineWatch:
    def __init__(self, workstation: Workstation, tokens: list[str]) -> None:
        self.workstation, self.tokens, self.result = workstation, tokens, {}

    def __enter__(self) -> CommandLineWatch:
        self.workstation.run(f"rm -f {STOP_FILE}")
        command = f"nice -n 19 runuser -u nobody -- python3 -c {shlex.quote(WATCHER)} {STOP_FILE}"
        self.process = subprocess.Popen(
            ["ssh", *hosts.ssh_options(), self.workstation.address, command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.process.stdin.write("".join(f"{token}\n" for token in self.tokens))
        self.process.stdin.close()
        assert self.process.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.workstation.run(f"touch {STOP_FILE}")
            self.process.wait(timeout=60)
            self.result = json.loads(self.process.stdout.read())
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.workstation.run(f"rm -f {STOP_FILE}", check=False)


def sudo_inventory(path, workstation: Workstation, sudo: bool) -> None:
    """A user's inventory: SSH as deployer; with `sudo`, the sudo password comes from the keyring."""
    data = lab_host_data(workstation, ssh_user="deployer")
    lines = ["import keyring", f"data = {data!r}"]
    if sudo:
        lines.append('data["_sudo"] = True')
        lines.append(f'data["_sudo_password"] = keyring.get_password({SUDO_SERVICE!r}, "deployer@{workstation.fqdn}")')
    lines.append(f"workstations = [({workstation.fqdn!r}, data)]")
    path.write_text("\n".join(lines) + "\n")


def watched_deploy(env, inventory, workstation: Workstation, tokens: list[str], *args: str):
    with CommandLineWatch(workstation, tokens) as watch:
        process = subprocess.run(
            [str(PROJECT / ".venv" / "bin" / "pyinfra"), str(inventory), "deploy.py", "-y", *args],
            cwd=PROJECT,
            env={**env, "PYINFRA_PROGRESS": "off"},
            capture_output=True,
            text=True,
            timeout=600,
        )
    return process.returncode, process.stdout + process.stderr, watch.result


def assert_is_a_null_client(workstation: Workstation) -> None:
    subject = f"sudo deploy {workstation.name} {uuid.uuid4().hex[:8]}"
    workstation.run(f"echo sudo | mail -s '{subject}' root")
    [message] = smarthost.wait_for_messages(STATE_DIR, 1, 60, lambda m: m["subject"] == subject)
    assert message["auth_user"] == workstation.smtp_user and message["rcpt_tos"] == [FORWARD_TO]
    places = "/etc /tmp /run /var/tmp /home /var/lib/postfix-nullclient"
    holders = workstation.run(f"grep -rlF {shlex.quote(workstation.password)} {places}", check=False).stdout.split()
    assert set(holders) == {"/etc/postfix/sasl_passwd", "/etc/postfix/sasl_passwd.db"}, holders


def test_passwordless_sudo_deploys_and_exposes_nothing(make_workstations, keyring_env, tmp_path):
    smtp_token = f"rwsmtp{uuid.uuid4().hex[:12]}"
    [rw8] = make_workstations(["rw8"], passwords={"rw8": f"{smtp_token} pw"})
    make_deployer(rw8, sudo_password=None)
    inventory = tmp_path / "inventory.py"
    sudo_inventory(inventory, rw8, sudo=False)

    code, output, watch = watched_deploy(keyring_env, inventory, rw8, [smtp_token], "--sudo")

    assert code == 0, output
    assert watch["seen"] == {smtp_token: []}, watch
    assert watch["rounds"] > 100, watch
    assert "sudo password" not in output
    assert_is_a_null_client(rw8)
    code, output, _ = watched_deploy(keyring_env, inventory, rw8, [smtp_token], "--sudo")
    assert code == 0 and output.count(f"[{rw8.fqdn}] No changes") == NO_CHANGE_OPERATIONS, output


def test_a_sudo_password_is_on_the_remote_command_line_and_the_deploy_says_so(make_workstations, keyring_env, tmp_path):
    smtp_token, sudo_token = f"rwsmtp{uuid.uuid4().hex[:12]}", f"rwsudo{uuid.uuid4().hex[:12]}"
    [rw9] = make_workstations(["rw9"], passwords={"rw9": f"{smtp_token} pw"})
    sudo_password = f"{sudo_token}-x"
    make_deployer(rw9, sudo_password=sudo_password)
    store_password(keyring_env, SUDO_SERVICE, f"deployer@{rw9.fqdn}", sudo_password)
    inventory = tmp_path / "inventory.py"
    sudo_inventory(inventory, rw9, sudo=True)
    try:
        code, output, watch = watched_deploy(keyring_env, inventory, rw9, [smtp_token, sudo_token])
    finally:
        store_password(keyring_env, SUDO_SERVICE, f"deployer@{rw9.fqdn}", None)

    assert code == 0, output
    assert sudo_token not in output and smtp_token not in output
    assert watch["seen"][smtp_token] == [], watch
    exposed = watch["seen"][sudo_token]
    print(f"\nsudo password seen by user nobody on {len(exposed)} command line(s): {exposed}")
    assert exposed, "the remote shell's command line holds the sudo password (pyinfra 3.10)"
    # The login shell (widened), then bash and env themselves: each holds the password in its argv.
    assert all("env SUDO_ASKPASS=/tmp/pyinfra-sudo-askpass-" in entry for entry in exposed), exposed
    assert all("PYINFRA_SUDO_PASSWORD=<rwsudo>" in entry for entry in exposed), exposed
    assert any(entry.startswith("/bin/sh /usr/local/bin/rw-slow-shell -c env ") for entry in exposed), exposed
    assert "the sudo password travels on the remote command line" in output, output
    assert "echo 'deployer ALL=(root) NOPASSWD: ALL' | sudo tee /etc/sudoers.d/postfix-nullclient-deploy" in output
    assert_is_a_null_client(rw9)
