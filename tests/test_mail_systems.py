"""What the deploy says and does about the mail systems it replaces, and the scripts it sends for them."""

from __future__ import annotations

import subprocess

from postfix_nullclient.facts import HostState
from postfix_nullclient.mail_systems import HELD_DIR, held_mail_script, replacement
from postfix_nullclient.model import FAMILIES, SECRET_STAT, ManagedFile
from postfix_nullclient.nullclient.remove_plan import remove_script
from postfix_nullclient.postfix import Plan, apply_script, foreign_configuration, plan
from tests.support.settings import make_meaning


def test_each_replaced_system_is_named_with_what_becomes_of_its_queue():
    found = replacement({"postfix", "exim4-daemon-light", "msmtp-mta", "dma"}, {"exim4": 3, "dma": 2})
    assert [system.name for system in found.systems] == ["exim4", "msmtp-mta", "dma"]
    assert found.hold
    assert found.report == [
        "replacing exim4 (exim4-daemon-light), which postfix's install removes; the 3 message(s) in its queue "
        f"/var/spool/exim4/input are kept in {HELD_DIR} and sent through the relay once postfix is configured",
        "replacing msmtp-mta (msmtp-mta), which postfix's install removes; it keeps no queue",
        "replacing dma (dma), which postfix's install removes; 2 message(s) stay in its queue /var/spool/dma: "
        "the deploy cannot send them; read them there, or send them with dma before the deploy",
    ]
    assert not replacement({"postfix", "nullmailer"}, {}).hold


def test_a_main_cf_the_deploy_did_not_write_is_named():
    internet_site = HostState(contents={"main.cf": "inet_interfaces = all\nmydestination = $myhostname\n"})
    internet_site.queued["postfix"] = 4
    line = foreign_configuration(internet_site)
    assert line is not None and "(inet_interfaces = all, mydestination = $myhostname)" in line
    assert line.endswith("the 4 message(s) in postfix's queue leave through the relay")
    ours = HostState(contents={"main.cf": "# ... Written by postfix-nullclient (pyinfra); ...\n"})
    assert foreign_configuration(ours) is None


def test_the_scripts_pass_shellcheck_and_the_apply_runs_only_once_whole(tmp_path):
    scripts = {"held_all": held_mail_script("hold", "hold_postfix", "requeue_postfix", "send")}
    scripts["remove"] = remove_script("stop", FAMILIES[0])  # it keeps unsent held mail
    scripts["apply"] = apply_script(
        Plan([ManagedFile("main.cf", "x")], ["sasl_passwd"], "reload", False, True), "systemd", make_meaning()
    )
    assert "\n{\nset -eu\n" in scripts["apply"] and scripts["apply"].endswith("\n}\n")
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
        result = subprocess.run(["shellcheck", "-s", "sh", str(tmp_path / name)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
    # Cut anywhere before its closing brace, the apply command runs nothing at all.
    cut = scripts["apply"][: scripts["apply"].rindex("apply reload")]
    result = subprocess.run(["sh", "-s"], input=cut, capture_output=True, text=True)
    assert result.returncode != 0 and "mktemp" not in result.stderr and result.stdout == ""


def test_an_interrupted_apply_is_applied_again_with_a_restart():
    files = [ManagedFile("main.cf", "x")]
    found = HostState(contents={"main.cf": "x"}, running=True, enabled=True)
    assert not plan(files, found).needed
    found.interrupted = True
    todo = plan(files, found)
    assert todo.needed and todo.action == "restart"


def test_an_interrupted_apply_builds_every_map_again_even_where_the_dates_say_fresh():
    # Killed between moving the new sasl_passwd in and building its database: the database holds the
    # previous password, and its date is no older than the staged file, which is dated back.
    secret = ManagedFile("sasl_passwd", "new", mode="0600", secret=True, hashed_map=True)
    files = [ManagedFile("main.cf", "x"), secret, ManagedFile("virtual_alias", "v", hashed_map=True)]
    found = HostState(contents={"main.cf": "x", "virtual_alias": "v"}, running=True, enabled=True)
    found.secrets_same.add("sasl_passwd")
    found.modes = {"sasl_passwd": SECRET_STAT}
    found.fresh_maps = {"sasl_passwd": SECRET_STAT, "virtual_alias": SECRET_STAT}
    assert not plan(files, found).needed
    found.interrupted = True
    assert plan(files, found).maps_to_build == ["sasl_passwd", "virtual_alias"]


def test_at_local_takes_the_login_from_this_machines_name():
    import socket

    from postfix_nullclient.settings import short_name

    assert short_name("@local") == socket.gethostname().split(".")[0]
    assert short_name("@fake/torres") == "torres" and short_name("torres.example.net") == "torres"


def test_packages_installed_on_a_running_postfix_reload_it_and_flush_the_queue():
    files = [ManagedFile("main.cf", "x")]
    found = HostState(contents={"main.cf": "x"}, running=True, enabled=True)
    assert not plan(files, found, installing=False).needed
    todo = plan(files, found, installing=True)
    assert todo.needed and todo.flush and todo.action == "reload"
    assert "\n  postqueue -f || true" in apply_script(todo, "systemd", make_meaning())
    assert "postqueue -f" not in apply_script(plan(files, HostState(), installing=True), "systemd", make_meaning())
