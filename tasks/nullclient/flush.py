"""The deploy of `nullclient rotate`'s last step: flush the queue and wait, at most a minute, until it is empty."""

from pyinfra.api import deploy
from pyinfra.operations import server

from postfix_nullclient.render import render_script


@deploy("nullclient flush")
def flush() -> None:
    server.shell(name="Flush the mail queue and wait until it is empty", commands=[render_script("flush", timeout=60)])
