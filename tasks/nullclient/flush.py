"""pyinfra deploy file: flush the queue and wait, at most a minute, until it is empty (after a rotation)."""

from pyinfra.operations import server

from postfix_nullclient.render import render_script

server.shell(name="Flush the mail queue and wait until it is empty", commands=[render_script("flush", timeout=60)])
