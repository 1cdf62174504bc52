"""End to end on the lab: hostile settings never reach a host, and Postfix itself reads back what the
deploy meant before anything moves into place.

One workstation, hs1, deployed as it should be. Then: one deploy per hostile value (each refused by
name, the host exactly as before); a staged configuration whose meaning differs from the intent
(made here, sent as the deploy sends it: refused on the host, the old configuration keeps running);
and, for settings that Hypothesis draws from what the spec must accept, the host's own postconf and
postmap read the rendered files back as the deploy meant them (the apply script's check, rendered
alone). Last, the password map against a local user and pyinfra's own output: a rotation at
-vvv --debug shows nothing derived from the password, and a database that an earlier setup left
readable, held open by a local user, never gets the new one.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import shlex
import uuid

import pytest
from hypothesis import HealthCheck, example, given, settings
from pyinfra.api import HiddenValue

from postfix_nullclient.model import ManagedFile
from postfix_nullclient.postfix import Plan, apply_script
from postfix_nullclient.render import meaning, render_files, render_script, render_secret_files
from postfix_nullclient.settings import Settings, check_host, shown
from tests.conftest import store_password
from tests.e2e.conftest import SERVICE, Workstation, lab_host_data, run_deploy, write_inventory
from tests.support.strategies import host_data, passwords

DEBIAN_CA = "/etc/ssl/certs/ca-certificates.crt"
# What a careless admin or a templated inventory may write, in every setting where it once got through.
HOSTILE = [
    ("ca_file", "/etc/ssl/certs/ca-certificates.crt\nsmtp_tls_security_level = may"),
    ("mail_package", "-oDPkg::Pre-Invoke::=touch /tmp/hs-pwned"),
    ("mail_package", ["bsd-mailx"]),
    ("mail_domain", "example.net\n"),
    ("watchdog_threshold", "99999999999999999999d"),
    ("forward_to", "owner@example.org\nrelayhost = [evil.example]:25"),
    ("myhostname", "hs1.example.net\nmydestination = $myhostname"),
    ("relay_port", 10**30),
    ("extra_aliases", {"bob": "bob@example.org\n"}),
]


@pytest.fixture(scope="module")
def hs1(make_workstations, keyring_env, tmp_path_factory) -> Workstation:
    [workstation] = make_workstations(["hs1"])
    run = deploy_with(keyring_env, workstation, tmp_path_factory.mktemp("hs"))
    assert run.returncode == 0, run.output
    return workstation


def deploy_with(env: dict[str, str], workstation: Workstation, directory, *args: str, **data: object):
    inventory = write_inventory(directory / "inventory.py", [(workstation.fqdn, lab_host_data(workstation, **data))])
    return run_deploy(env, str(inventory), *args)


def host_state(workstation: Workstation) -> str:
    """Everything a refused deploy must leave as it was: Postfix's settings, every map, the master's PID."""
    return workstation.run(
        "postconf -n; cd /etc/postfix && sha256sum virtual_alias sender_canonical sasl_passwd sasl_passwd.db; "
        "ls -A /etc/postfix; cat /var/spool/postfix/pid/master.pid; ls /tmp"
    ).stdout


@pytest.mark.parametrize(("setting", "value"), HOSTILE, ids=lambda item: repr(item)[:30])
def test_a_hostile_setting_is_refused_by_name_and_the_host_stays_exactly_as_it_was(
    hs1, keyring_env, tmp_path, setting, value
):
    before = host_state(hs1)

    run = deploy_with(keyring_env, hs1, tmp_path, **{setting: value})

    assert run.returncode != 0, run.output
    assert f"{hs1.fqdn}: {setting} {shown(value)} " in run.output, run.output
    assert "Traceback" not in run.output
    assert host_state(hs1) == before


def whole_configuration(settings_: Settings, workstation: Workstation) -> tuple[list[ManagedFile], object]:
    fqdn = workstation.run("hostname -f").stdout.strip()
    ipv6 = workstation.run("postconf -h inet_protocols").stdout.strip() == "all"
    return render_files(settings_, fqdn, ipv6, DEBIAN_CA), meaning(settings_, fqdn, ipv6, DEBIAN_CA)


def deployed_settings(workstation: Workstation, **data: object) -> Settings:
    from lab.config import FORWARD_TO

    found, problems = check_host(workstation.fqdn, {"forward_to": FORWARD_TO, **data})
    assert found, problems
    return dataclasses.replace(found, password=HiddenValue(workstation.password))


@pytest.mark.parametrize(
    ("name", "change", "differs"),
    [
        ("main.cf", "smtp_tls_security_level = may\n", "differs: smtp_tls_security_level = may (meant: secure)"),
        ("main.cf", "smtpd_relay_restrictions = permit\n", "differs: smtpd_relay_restrictions = permit is set"),
        ("sender_canonical", "", "differs: sender_canonical answers nothing for root@"),
    ],
)
def test_a_staged_configuration_that_means_something_else_is_refused_and_the_old_one_keeps_running(
    hs1, name, change, differs
):
    files, meant = whole_configuration(deployed_settings(hs1), hs1)
    changed = []
    for wanted in files:
        if wanted.name == name:
            # The main.cf gets one line more; the sender map loses its rules (the comments stay).
            content = wanted.content + change if change else "# no rules\n"
            changed.append(dataclasses.replace(wanted, content=content))
    before = host_state(hs1)
    script = apply_script(Plan(changed, [], "reload", False, True), "systemd", meant)

    result = hs1.run("sh -s", input=script, check=False)

    assert result.returncode == 1
    assert "Postfix would not use what the deploy meant; nothing was changed" in result.stderr, result.stderr
    assert differs in result.stderr, result.stderr
    assert host_state(hs1) == before
    assert hs1.run("ls -A /etc/postfix").stdout.count(".nullclient.") == 0


def test_the_configuration_as_deployed_passes_the_check_on_the_host(hs1):
    files, meant = whole_configuration(deployed_settings(hs1), hs1)
    live = {f.name: hs1.run(f"cat /etc/postfix/{f.name}").stdout for f in files}
    assert live == {f.name: f.content for f in files}, "the fixture's host is not as deployed"
    assert read_back(hs1, files, meant).returncode == 0


def read_back(workstation: Workstation, files: list[ManagedFile], meant) -> object:
    """The apply script's check (templates/scripts/meaning.sh.j2) on `files`, by the host's own Postfix."""
    check = render_script("meaning", parameters="".join(f"{k} = {v}\n" for k, v in meant.parameters.items()),
                          lookups=meant.lookups, login=meant.login)  # fmt: skip
    writes = "".join(
        f"printf '%s' {shlex.quote(base64.b64encode(f.content.encode()).decode())} | base64 -d > \"$dir/{f.name}\"\n"
        for f in files
    )
    script = (
        "set -eu\numask 077\ndir=$(mktemp -d)\ntrap 'rm -rf \"$dir\"' EXIT\n"
        'say() { echo "$*" >&2; }\n'
        f'{check}\n{writes}cp /etc/postfix/master.cf "$dir/"\ncheck_meaning "$dir"\n'
    )
    return workstation.run("sh -s", input=script, check=False)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=host_data(), password=passwords)
@example(
    data={
        "forward_to": "o$1wner@example.org",
        "sender_address": "o/ps$1@example.net",
        "extra_aliases": {"bob": "b/o$$b@example.org", "root": "r{o}o|t@example.org"},
        "mail_domain": "example.net",
    },
    password="pa$$ w#rd:x",
)
def test_any_settings_the_spec_accepts_mean_to_the_hosts_postfix_what_the_deploy_meant(hs1, data, password):
    found, problems = check_host(hs1.fqdn, data)
    assert found, problems
    found = dataclasses.replace(found, password=HiddenValue(password))
    files, meant = whole_configuration(found, hs1)

    result = read_back(hs1, files, meant)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def new_password(workstation: Workstation, env: dict[str, str]) -> str:
    """A new password for the workstation, in the keyring and on the relay, as the owner rotates it."""
    from lab import smarthost
    from lab.config import STATE_DIR

    password = f"pw-new-{uuid.uuid4().hex}"
    store_password(env, SERVICE, workstation.smtp_user, password)
    smarthost.set_account(STATE_DIR, workstation.smtp_user, password)
    workstation.password = password
    return password


def test_no_value_derived_from_the_password_is_in_pyinfras_output_at_any_verbosity(hs1, keyring_env, tmp_path):
    password = new_password(hs1, keyring_env)
    [secret_map] = render_secret_files(deployed_settings(hs1))
    login = f"{hs1.smtp_user}:{password}".encode()

    run = deploy_with(keyring_env, hs1, tmp_path, "-vvv", "--debug")

    assert run.returncode == 0, run.output
    assert "sasl_passwd (secret)" in run.output, "the map changed, so its content travelled"
    content = secret_map.content.encode()
    derived = [password, base64.b64encode(password.encode()).decode(), base64.b64encode(login).decode()]
    derived += [base64.b64encode(content).decode()]
    derived += [hashlib.new(kind, data).hexdigest() for kind in ("sha256", "sha1", "md5") for data in (content, login)]
    for value in derived:
        assert value not in run.output, f"{value[:12]}... is in the output"


def test_a_database_left_readable_and_held_open_never_gets_the_new_password(hs1, keyring_env, tmp_path):
    database = "/etc/postfix/sasl_passwd.db"
    hs1.run(f"chmod 0644 {database}; rm -f /tmp/hs-go /tmp/hs-read")
    inode = hs1.run(f"stat -c %i {database}").stdout
    # A local user opens the database while it is readable, and reads it through that descriptor later.
    reader = f"exec 3<{database}; while [ ! -e /tmp/hs-go ]; do sleep 0.1; done; cat <&3 > /tmp/hs-read"
    hs1.run(f"setsid -f setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c {shlex.quote(reader)} "
            "</dev/null >/dev/null 2>&1")  # fmt: skip
    password = new_password(hs1, keyring_env)

    run = deploy_with(keyring_env, hs1, tmp_path)
    hs1.run("touch /tmp/hs-go; for _ in $(seq 50); do [ -s /tmp/hs-read ] && break; sleep 0.1; done")

    assert run.returncode == 0, run.output
    assert hs1.run("stat -c %U:%G:%a /etc/postfix/sasl_passwd.db").stdout.strip() == "root:root:600"
    assert hs1.run(f"stat -c %i {database}").stdout != inode, "a new database, not the old one rewritten"
    assert int(hs1.run("wc -c < /tmp/hs-read").stdout) > 0, "the reader read nothing: the test would prove nothing"
    found = f"grep -c -a -F -e {shlex.quote(password)}"
    assert hs1.run(f"{found} /tmp/hs-read", check=False).stdout.strip() == "0"
    assert hs1.run(f"{found} {database}").stdout.strip() == "1"
