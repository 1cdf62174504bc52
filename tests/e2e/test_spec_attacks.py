"""End to end on the lab: attacks on the settings and faults during the apply that the deploy withstands.

One workstation, ak2, deployed as it should be. The host's own Postfix reads back values at the limits
of the spec and every case of an address as the deploy meant them; a full /etc/postfix while the
second wall's view is copied, a missing postconf and a failing postmap each refuse the change and
leave the old configuration live; a kill -9 of the apply during the check leaves the old
configuration live, and the next deploy of the change removes the stage it left (which holds the
password map).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
from collections.abc import Iterator

import pytest
from pyinfra.api import HiddenValue

from postfix_nullclient.model import STAGING_PREFIX
from postfix_nullclient.postfix import Plan, apply_script
from postfix_nullclient.render import Meaning
from postfix_nullclient.settings import check_host
from tests.e2e.conftest import Workstation
from tests.e2e.test_hostile_settings import deploy_with, deployed_settings, read_back, whole_configuration

BOB = {"bob": "bob@example.org"}
NAME_253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57, "net"])
# postmap, except where the second wall asks it about its view of the staged configuration: there it
# kills the whole apply (its process group, at once) with SIGKILL, as the OOM killer or an admin would.
KILL_THE_APPLY_IN_THE_CHECK = r"""#!/bin/sh
case "$*" in
  *"/whole/"*)
    pid=$PPID
    while [ "$(tr '\0' ' ' < "/proc/$(cut -d' ' -f4 "/proc/$pid/stat")/cmdline")" = "sh -s " ]; do
      pid=$(cut -d' ' -f4 "/proc/$pid/stat")
    done
    kill -9 "-$(ps -o pgid= -p "$pid" | tr -d ' ')"
    ;;
esac
exec /usr/sbin/postmap "$@"
"""
FAILING_POSTMAP = "#!/bin/sh\necho 'postmap: fatal: out of memory' >&2\nexit 1\n"


@pytest.fixture(scope="module")
def ak2(make_workstations, keyring_env, tmp_path_factory) -> Workstation:
    [workstation] = make_workstations(["ak2"])
    run = deploy_with(keyring_env, workstation, tmp_path_factory.mktemp("ak2"))
    assert run.returncode == 0, run.output
    return workstation


def live_configuration(workstation: Workstation) -> str:
    """What a refused or killed apply must leave as it was: Postfix's settings, the maps, the master's PID,
    and no mark of an apply cut between moving files in and the reload."""
    return workstation.run(
        "postconf -n; cd /etc/postfix && sha256sum main.cf virtual_alias sender_canonical sasl_passwd sasl_passwd.db; "
        "cat /var/spool/postfix/pid/master.pid; ls -A /var/lib/postfix-nullclient; postfix status && echo running"
    ).stdout


def stages(workstation: Workstation) -> list[str]:
    """The apply's staging directories in /etc/postfix: each holds a copy of the password map."""
    return [name for name in workstation.run("ls -A /etc/postfix").stdout.split() if name.startswith(STAGING_PREFIX)]


@contextlib.contextmanager
def in_front_of(workstation: Workstation, tool: str, script: str) -> Iterator[None]:
    """`script` as /usr/local/sbin/TOOL, which the apply script's PATH finds before Postfix's own."""
    workstation.run(f"cat > /usr/local/sbin/{tool} && chmod 755 /usr/local/sbin/{tool}", input=script)
    try:
        yield
    finally:
        workstation.run(f"rm -f /usr/local/sbin/{tool}")


@contextlib.contextmanager
def etc_postfix_with_room(workstation: Workstation, kib: int) -> Iterator[None]:
    """/etc/postfix as a small tmpfs holding a copy of its files, with `kib` KiB (whole 4 KiB pages) left free."""
    workstation.run(
        "cp -a /etc/postfix /root/ak-postfix && mount -t tmpfs -o size=2m,mode=755 tmpfs /etc/postfix && "
        "cp -a /root/ak-postfix/. /etc/postfix/ && rm -rf /root/ak-postfix"
    )
    try:
        workstation.run(
            "free=$(df -k --output=avail /etc/postfix | tail -n 1) && "
            f"head -c $(( (free - {kib}) * 1024 )) /dev/zero > /etc/postfix/.filler && "
            f"[ $(df -k --output=avail /etc/postfix | tail -n 1) -eq {kib} ]"
        )
        yield
    finally:
        workstation.run("umount -l /etc/postfix && postfix reload 2>/dev/null")


def test_names_at_the_limits_of_the_spec_are_read_back_by_the_hosts_postfix_as_meant(ak2):
    """253 characters, labels of 63: the longest myhostname, relay_host and mail_domain the spec takes."""
    found, problems = check_host(
        ak2.fqdn,
        {"forward_to": "x" * 64 + "@example.org", "myhostname": NAME_253, "relay_host": NAME_253,
         "mail_domain": NAME_253, "smtp_user": ak2.smtp_user, "extra_aliases": {"a" * 32: "y" * 64 + "@example.org"}},
    )  # fmt: skip
    assert found, problems
    files, meant = whole_configuration(dataclasses.replace(found, password=HiddenValue(ak2.password)), ak2)
    assert NAME_253 in meant.parameters["myhostname"] and NAME_253 in meant.parameters["relayhost"]

    result = read_back(ak2, files, meant)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_every_case_of_an_address_gets_the_answer_meant_for_it(ak2):
    """Postfix's regexp: tables ignore case: ROOT@HOST, Bob@Host and the login in capitals get the
    answers meant for them in lower case; a bounce sender keeps its own spelling."""
    files, meant = whole_configuration(deployed_settings(ak2, extra_aliases=BOB), ak2)
    cases = []
    for table, address, answer in meant.lookups:
        for spelled in (address.upper(), address.title(), address.swapcase()):
            kept = spelled if answer == address else answer  # the $1 rule answers the address as given
            cases.append((table, spelled, kept))
    assert len(cases) >= 3 * 6

    result = read_back(ak2, files, Meaning(meant.parameters, cases, meant.login))

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_a_full_etc_postfix_while_the_view_is_copied_refuses_the_change_and_leaves_no_stage(ak2):
    files, meant = whole_configuration(deployed_settings(ak2, extra_aliases=BOB), ak2)
    changed = [managed for managed in files if managed.name == "virtual_alias"]
    script = apply_script(Plan(changed, [], "reload", False, True), "systemd", meant)
    with etc_postfix_with_room(ak2, 8):  # the staged map fits, the view of the whole configuration not
        before = live_configuration(ak2)

        result = ak2.run("sh -s", input=script, check=False)

        assert result.returncode != 0
        assert "No space left on device" in result.stderr, result.stderr
        assert live_configuration(ak2) == before
        assert stages(ak2) == []


@pytest.mark.parametrize(
    ("tool", "script", "said"),
    [
        ("postconf", None, "differs: main.cf cannot be read by postconf"),
        ("postmap", FAILING_POSTMAP, "differs: virtual_alias answers nothing for root@"),
    ],
    ids=["postconf-missing", "postmap-failing"],
)
def test_a_missing_or_failing_postfix_tool_refuses_the_change_and_the_old_configuration_stays_live(
    ak2, keyring_env, tmp_path, tool, script, said
):
    before = live_configuration(ak2)
    if script is None:
        ak2.run(f"mv /usr/sbin/{tool} /usr/sbin/{tool}.away")
        shadow = contextlib.nullcontext()
    else:
        shadow = in_front_of(ak2, tool, script)
    try:
        with shadow:
            run = deploy_with(keyring_env, ak2, tmp_path, extra_aliases=BOB)
    finally:
        if script is None:
            ak2.run(f"mv /usr/sbin/{tool}.away /usr/sbin/{tool}")

    assert run.returncode != 0, run.output
    assert "Postfix would not use what the deploy meant; nothing was changed" in run.output, run.output
    assert said in run.output, run.output
    assert "Traceback" not in run.output
    assert live_configuration(ak2) == before
    assert stages(ak2) == []


def test_a_kill_9_of_the_apply_during_the_check_leaves_the_old_configuration_and_the_next_deploy_its_stage(
    ak2, keyring_env, tmp_path
):
    before = live_configuration(ak2)
    with in_front_of(ak2, "postmap", KILL_THE_APPLY_IN_THE_CHECK):
        killed = deploy_with(keyring_env, ak2, tmp_path, extra_aliases=BOB)

    assert killed.returncode != 0, killed.output
    assert len(stages(ak2)) == 1, "the apply was not killed in the check: the test would prove nothing"
    assert live_configuration(ak2) == before, "a kill during the check changed the live configuration"

    again = deploy_with(keyring_env, ak2, tmp_path, extra_aliases=BOB)

    assert again.returncode == 0, again.output
    assert stages(ak2) == []
    assert (
        "bob@example.org"
        in ak2.run(f"postmap -q {shlex.quote('bob@' + ak2.fqdn)} regexp:/etc/postfix/virtual_alias").stdout
    )
