"""Attacks on `nullclient remove` that need no lab host: careless host names and --keep-queue paths.
What they do on a host: tests/e2e/test_remove_attacks.py."""

import subprocess

import pytest

from postfix_nullclient.model import FAMILIES
from postfix_nullclient.nullclient.cli import main
from postfix_nullclient.nullclient.remove_plan import remove_script
from tests.conftest import PROJECT


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


@pytest.mark.parametrize(
    "name",
    [
        "@fake/chekov",  # in no inventory
        "@fake/*",  # a pattern pyinfra's --limit would match every host with
        "workstations",  # the inventory's group, which --limit would also take
    ],
)
def test_remove_of_a_host_not_in_the_inventory_is_refused_before_any_host_is_looked_at(
    inventory, name, capsys, monkeypatch
):
    monkeypatch.chdir(PROJECT)
    assert exit_status(["remove", "-i", inventory, name, "--postfix", "purge", "--discard-queued-mail"]) == 2
    err = capsys.readouterr().err
    assert f"{name} not in the inventory {inventory}; its hosts: " in err
    assert "Traceback" not in err


@pytest.mark.parametrize("path", ["kept", "../root/kept", "~/kept", "$HOME/kept"])
def test_keep_queue_that_is_not_an_absolute_path_is_refused(inventory, path, capsys, monkeypatch):
    monkeypatch.chdir(PROJECT)
    assert exit_status(["remove", "-i", inventory, "@fake/sulu", "--postfix", "purge", "--keep-queue", path]) == 2
    assert f"--keep-queue {path}: name an absolute directory on the hosts" in capsys.readouterr().err


@pytest.mark.parametrize(
    "path",
    ["/root/kept queue", "/root/$(touch pwned)", "/root/`touch pwned`", "/root/it's", "/root/new\nline", "/root/-rf *"],
)
@pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.name)
def test_keep_queue_reaches_the_hosts_shell_as_exactly_the_directory_named(family, path, tmp_path):
    script = remove_script("purge", family, "keep", path)
    assignments = script.split("\nsay() {")[0]  # the script's settings, before any command

    shell = subprocess.run(
        ["sh", "-c", assignments + '\nprintf %s "$keep_dir"'], capture_output=True, text=True, check=True, cwd=tmp_path
    )

    assert shell.stdout == path
    assert list(tmp_path.iterdir()) == [], "nothing the path spells was run"
    assert not subprocess.run(["sh", "-n", "-c", script], capture_output=True).returncode
