"""pyinfra deploy file of `nullclient remove`: take the null client off each host, in one command.

Run by nullclient.commands with `--data nullclient_remove=stop|purge`. The script is
templates/scripts/remove.sh.j2, sent on stdin like the deploy's own apply command.
"""

import shlex

from pyinfra import host
from pyinfra.operations import server

from postfix_nullclient.distro import look_at
from postfix_nullclient.nullclient.remove_plan import remove_script

found, family = look_at(host)
mode = host.data.get("nullclient_remove")
server.shell(
    name=f"Remove the null client: delete the password map, restore the original files, {shlex.quote(mode)} postfix",
    commands=["sh -s"],
    _stdin=remove_script(mode, family),
)
