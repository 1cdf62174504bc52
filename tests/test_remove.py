"""`nullclient remove` without a lab host: what it refuses before touching any host, and the script
it sends, per family. What the script does on a host: tests/e2e/test_remove.py."""

import pytest

from postfix_nullclient.model import APT_INSTALL, FAMILIES, PACKAGE_MANAGERS
from postfix_nullclient.nullclient.cli import main
from postfix_nullclient.nullclient.remove_plan import remove_script
from tests.conftest import PROJECT

APT_WAITS = "-o DPkg::Lock::Timeout=300"


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "inventory.py"
    path.write_text(
        'workstations = [("@fake/sulu", {"forward_to": "alice@example.org"}),'
        ' ("@fake/uhura", {"forward_to": "alice@example.org"})]\n'
    )
    return str(path)


def exit_status(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as stop:  # argparse exits by itself
        return stop.code


def test_remove_without_host_names_or_all_is_refused_naming_every_host_it_would_touch(inventory, capsys, monkeypatch):
    monkeypatch.chdir(PROJECT)
    assert exit_status(["remove", "-i", inventory, "--postfix", "stop"]) == 2
    assert capsys.readouterr().err == (
        f"nullclient remove: no host named: this would remove the null client from every host of {inventory} "
        "(2: @fake/sulu, @fake/uhura); name the hosts, or add --all (--dry shows what it would do)\n"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["@fake/sulu", "--all", "--postfix", "stop"], "--all is for -i INVENTORY without host names"),
        (["@fake/sulu", "--postfix", "stop", "--keep-queue", "/root/q"], "--keep-queue and --discard-queued-mail are"),
        (["@fake/sulu", "--postfix", "stop", "--discard-queued-mail"], "are for --postfix purge; with stop, queued"),
        (["@fake/sulu", "--postfix", "purge", "--keep-queue", "q"], "--keep-queue q: name an absolute directory"),
        (
            ["@fake/sulu", "--postfix", "purge", "--keep-queue", "/q", "--discard-queued-mail"],
            "argument --discard-queued-mail: not allowed with argument --keep-queue",
        ),
    ],
)
def test_remove_options_that_do_not_go_together_are_refused(inventory, args, message, capsys, monkeypatch):
    monkeypatch.chdir(PROJECT)
    assert exit_status(["remove", "-i", inventory, *args]) == 2
    assert message in capsys.readouterr().err


def test_remove_all_without_an_inventory_is_refused(capsys, monkeypatch):
    monkeypatch.chdir(PROJECT)
    assert exit_status(["remove", "torres.example.net", "--all", "--postfix", "stop"]) == 2
    assert "--all is for -i INVENTORY" in capsys.readouterr().err


def test_apt_purge_waits_for_the_dpkg_lock_as_the_install_does():
    assert APT_WAITS in APT_INSTALL
    assert APT_WAITS in PACKAGE_MANAGERS["apt"].purge_postfix


@pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.name)
def test_remove_script_uses_the_familys_own_commands_and_restores_every_file(family):
    script = remove_script("purge", family, "keep", "/root/q")
    assert "mode=purge\ndry=no\nqueued_mail=keep\nkeep_dir=/root/q\n" in script
    assert f"run {family.init_system.stop} >/dev/null 2>&1 || true\n" in script
    assert f"run {family.init_system.disable} >/dev/null 2>&1 || true\n" in script
    assert f"elif purge_output=$({family.packager.purge_postfix} 2>&1); then\n" in script
    assert "for name in main.cf virtual_alias sender_canonical sasl_passwd; do\n" in script
    every_file = '"$conf/sasl_passwd" "$conf/sasl_passwd.cdb" "$conf/sasl_passwd.db" "$conf/sasl_passwd.lmdb"'
    assert f"for path in {every_file}; do\n" in script
    assert '"$conf"/.nullclient.* /var/lib/postfix-nullclient/applying; do\n' in script, "leftovers of a killed apply"
    assert "systemctl disable --now -q postfix-nullclient-watchdog.timer" in script or family.init != "systemd"
    assert "/usr/local/lib/postfix-nullclient/watchdog" in script, "the watchdog goes too"
    assert "dry=yes\n" in remove_script("stop", family, dry=True)


def test_remove_script_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="not one of stop, purge"):
        remove_script("uninstall", FAMILIES[0])
    with pytest.raises(ValueError, match="not one of refuse, keep, discard"):
        remove_script("purge", FAMILIES[0], "forward")
    with pytest.raises(ValueError, match="goes with keep, and only with keep"):
        remove_script("purge", FAMILIES[0], "keep")
