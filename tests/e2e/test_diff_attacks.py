"""End to end: --diff and pyinfra's output with passwords that look like diff syntax or are not ASCII,
on real workstations: a first deploy with -y --diff -vvv shows every file it writes, a second
--dry --diff -vvv shows none, and neither prints the password, its base64 or the map's digest."""

from __future__ import annotations

import base64
import hashlib
import re

from tests.e2e.conftest import lab_host_data, run_deploy, write_inventory

PASSWORDS = {"df1": "-@@ +1,3 @@\tpässwörd€\\", "df2": "+- yes"}
WRITTEN = [
    "main.cf",
    "virtual_alias",
    "sender_canonical",
    "sasl_passwd: a secret (content not shown)",
    "/usr/local/lib/postfix-nullclient/watchdog",
    "/etc/systemd/system/postfix-nullclient-watchdog.service",
    "/etc/systemd/system/postfix-nullclient-watchdog.timer",
]


def traces(workstation, password: str) -> list[str]:
    """The password and what could be derived from it, as they would show in pyinfra's output."""
    line = f"[mail.example.net]:587 {workstation.smtp_user}:{password}\n"
    login = f"{workstation.smtp_user}:{password}"
    return [
        password,
        password.encode("unicode_escape").decode(),
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(login.encode()).decode(),
        base64.b64encode(f"\0{workstation.smtp_user}\0{password}".encode()).decode(),
        base64.b64encode(line.encode()).decode(),
        hashlib.sha256(line.encode()).hexdigest(),
    ]


def test_passwords_like_diff_syntax_show_nowhere_and_a_second_dry_diff_shows_no_file(
    make_workstations, keyring_env, tmp_path
):
    workstations = make_workstations(list(PASSWORDS), passwords=PASSWORDS)
    inventory = write_inventory(tmp_path / "inventory.py", [(ws.fqdn, lab_host_data(ws)) for ws in workstations])

    first = run_deploy(keyring_env, str(inventory), "--diff", "-vvv")
    second = run_deploy(keyring_env, str(inventory), "--dry", "--diff", "-vvv")

    assert first.returncode == 0, first.output
    assert second.returncode == 0, second.output
    for ws in workstations:
        shown = re.findall(rf"\[{re.escape(ws.fqdn)}\] Will (?:create|change|remove) (.*)", first.output)
        assert shown[: len(WRITTEN)] == WRITTEN, first.output
        assert not re.search(rf"\[{re.escape(ws.fqdn)}\] Will ", second.output), second.output
        for trace in traces(ws, PASSWORDS[ws.name]):
            assert trace not in first.output and trace not in second.output, trace
