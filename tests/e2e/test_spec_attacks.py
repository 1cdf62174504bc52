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
import math
import shlex
import subprocess
import sys
from collections.abc import Iterator

import pytest
from pyinfra.api import HiddenValue

from postfix_nullclient.model import STAGING_PREFIX
from postfix_nullclient.postfix import Plan, apply_script
from postfix_nullclient.render import Meaning
from postfix_nullclient.settings import check_host
from tests.e2e.conftest import Workstation, lab_host_data, write_inventory
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
        ("postmap", FAILING_POSTMAP, "differs: virtual_alias cannot be read by postmap: out of memory"),
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


PAGE_KIB = 4  # tmpfs gives files whole pages


def test_the_second_wall_refuses_a_main_cf_that_means_something_else_on_a_full_etc_postfix(ak2):
    """Room for the staged main.cf and the view of the whole configuration, none for more: the check
    once wrote notes of its own there, and a write error ended it before it said anything, which was
    taken as no difference, so the main.cf that turns TLS to `may` went live. It writes none now, and a
    check that does not run to its end is a difference."""
    files, meant = whole_configuration(deployed_settings(ak2), ak2)
    [main_cf] = [managed for managed in files if managed.name == "main.cf"]
    weakened = dataclasses.replace(main_cf, content=main_cf.content + "smtp_tls_security_level = may\n")
    script = apply_script(Plan([weakened], [], "reload", False, True), "systemd", meant)
    sizes = ak2.run("cd /etc/postfix && stat -c %s virtual_alias sender_canonical sasl_passwd master.cf").stdout
    pages = 2 * math.ceil(len(weakened.content) / 4096) + sum(math.ceil(int(s) / 4096) for s in sizes.split())
    with etc_postfix_with_room(ak2, pages * PAGE_KIB):
        result = ak2.run("sh -s", input=script, check=False)
        live = ak2.run("postconf -h smtp_tls_security_level").stdout.strip()

    # The check wrote nothing of its own; postmap, building the password map's database in the view, found no room.
    assert "differs: sasl_passwd cannot be built by postmap" in result.stderr, "the file system was not full"
    assert result.returncode == 1, result.stderr
    assert "differs: smtp_tls_security_level = may (meant: secure)" in result.stderr, result.stderr
    assert live == "secure"


def test_a_deploy_that_changes_nothing_after_a_kill_9_in_the_check_leaves_no_stage_holding_the_password(
    ak2, keyring_env, tmp_path
):
    """A change killed in the check, then the deploy of what the host already has: the fact sees the
    stage of the killed one, with its copy of sasl_passwd, and the apply runs to remove it."""
    assert deploy_with(keyring_env, ak2, tmp_path).returncode == 0  # the host as the last deploy leaves it
    with in_front_of(ak2, "postmap", KILL_THE_APPLY_IN_THE_CHECK):
        killed = deploy_with(keyring_env, ak2, tmp_path, extra_aliases=BOB)
    assert killed.returncode != 0 and len(stages(ak2)) == 1, "the apply was not killed in the check"
    [stage] = stages(ak2)
    assert ak2.run(f"grep -c -F {ak2.smtp_user} /etc/postfix/{stage}/whole/sasl_passwd").stdout.strip() == "1"

    unchanged = deploy_with(keyring_env, ak2, tmp_path)

    assert unchanged.returncode == 0, unchanged.output
    assert stages(ak2) == [], "the stage with the password map is still there after the next deploy"


def test_a_ca_file_that_is_a_directory_is_refused_naming_ca_file(ak2, keyring_env, tmp_path):
    """/etc/ssl/certs, the CA directory (smtp_tls_CApath's kind) where the CA bundle is meant: the spec
    takes any absolute path, and the apply's check_ca_file asks only `-r`, which a directory passes.
    The deploy succeeds; every mail then waits: "cannot load Certification Authority data ... TLS is
    required, but our TLS engine is unavailable"."""
    before = live_configuration(ak2)
    try:
        run = deploy_with(keyring_env, ak2, tmp_path, ca_file="/etc/ssl/certs")
        after = live_configuration(ak2)
    finally:
        deploy_with(keyring_env, ak2, tmp_path)

    assert run.returncode != 0, "deployed: smtp_tls_CAfile = /etc/ssl/certs, no mail leaves"
    assert "ca_file '/etc/ssl/certs'" in run.output or "ca_file: " in run.output, run.output
    assert after == before


def test_nullclient_status_names_a_mail_package_it_cannot_use_without_an_internal_exception(ak2, keyring_env, tmp_path):
    """status passes the host data's mail_package to the fact unparsed: a list (or an int) there is
    "An internal exception occurred ... TypeError" in the report instead of the deploy's refusal."""
    inventory = write_inventory(tmp_path / "inventory.py", [(ak2.fqdn, lab_host_data(ak2, mail_package=["bsd-mailx"]))])

    status = subprocess.run(
        [sys.executable, "-m", "postfix_nullclient.nullclient", "status", "-i", str(inventory)],
        cwd=tmp_path,  # pyinfra writes its pyinfra-debug.log into the working directory
        env=keyring_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )

    output = status.stdout + status.stderr
    assert "internal exception" not in output and "TypeError" not in output, output
    assert "mail_package ['bsd-mailx'] is a list, not a package name" in output, output


def test_a_myhostname_too_long_once_qualified_is_refused_naming_myhostname(ak2, keyring_env, tmp_path):
    """63 characters without a dot get .mail_domain (253): 317 characters, which Postfix's valid_hostname
    refuses. The spec takes both; the host's check then says "virtual_alias answers nothing ..." and
    "sasl_passwd cannot be built by postmap", and no word of myhostname or mail_domain."""
    mail_domain = ".".join(["b" * 63, "c" * 63, "d" * 63, "e" * 57, "net"])

    run = deploy_with(keyring_env, ak2, tmp_path, myhostname="a" * 63, mail_domain=mail_domain, smtp_user=ak2.smtp_user)

    assert run.returncode != 0
    assert "myhostname 'aaaa" in run.output, run.output[-3000:]


def test_extra_aliases_that_lead_to_each_other_are_refused_naming_extra_aliases(ak2, keyring_env, tmp_path):
    """a -> b@HOST, b -> a@HOST: the spec takes both, the check asks one level of each and passes, and
    the deploy succeeds. Postfix's cleanup then says "unreasonable virtual_alias_maps map nesting for
    a@HOST -- message not accepted, try again later": mail to a or b waits for ever."""
    loop = {"a": f"b@{ak2.fqdn}", "b": f"a@{ak2.fqdn}"}
    try:
        run = deploy_with(keyring_env, ak2, tmp_path, extra_aliases=loop)
    finally:
        deploy_with(keyring_env, ak2, tmp_path)

    assert run.returncode != 0, "deployed: mail to a or b never leaves the queue"
    assert "extra_aliases" in run.output, run.output[-3000:]
