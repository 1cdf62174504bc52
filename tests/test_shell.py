"""Every script that the deploy, the operator's commands and the benchmark send to a host, rendered
from the model for every distribution family, passes shellcheck as POSIX sh."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from postfix_nullclient.distro import fact_arguments
from postfix_nullclient.facts import NullClientHost
from postfix_nullclient.model import ALL_PACKAGES, FAMILIES, LAYOUT, ManagedFile
from postfix_nullclient.nullclient.checks import NullClientHealth
from postfix_nullclient.nullclient.queue_status import NullClientStatus
from postfix_nullclient.nullclient.remove_plan import MODES, remove_script
from postfix_nullclient.postfix import Plan, apply_script
from postfix_nullclient.render import render_script
from tests.support.settings import make_meaning


def shellcheck(script: str) -> subprocess.CompletedProcess:
    if not shutil.which("shellcheck"):
        pytest.skip("needs shellcheck: apt-get install shellcheck (scripts/setup does it as root)")
    return subprocess.run(["shellcheck", "-s", "sh", "-"], input=script, capture_output=True, text=True)


def every_script() -> list[tuple[str, str]]:
    changed = [ManagedFile(f.name, "content\n", f.mode, f.secret, f.hashed_map) for f in LAYOUT]
    scripts = [
        ("fact", NullClientHost().command(packages=list(ALL_PACKAGES))),
        ("health", NullClientHealth().command()),
        ("status", NullClientStatus().command(**fact_arguments())),
        ("test_mail", render_script("test_mail", timeout=60)),
        ("map_password", render_script("map_password")),
        ("flush", render_script("flush", timeout=60)),
    ]
    for family in FAMILIES:
        for enable in (True, False):
            todo = Plan(changed, ["sasl_passwd"], "restart", enable, True)
            scripts.append(
                (f"apply_config/{family.name}/enable={enable}", apply_script(todo, family.init, make_meaning()))
            )
        scripts += [(f"remove/{family.name}/{mode}", remove_script(mode, family)) for mode in MODES]
    from bench.__main__ import APPLY_STEPS, HASH_AND_STATE

    return [*scripts, ("bench/hash_and_state", HASH_AND_STATE), ("bench/apply_steps", APPLY_STEPS)]


@pytest.mark.parametrize(("name", "script"), every_script(), ids=[name for name, _ in every_script()])
def test_rendered_script_passes_shellcheck(name, script):
    checked = shellcheck(script)
    assert checked.returncode == 0, checked.stdout + checked.stderr
