"""pyinfra deploy file: flush the queue and wait, at most a minute, until it is empty (after a rotation)."""

from pyinfra.operations import server

FLUSH = (
    "postqueue -f; "
    'for _ in $(seq 60); do [ -z "$(postqueue -j 2>/dev/null)" ] && exit 0; sleep 1; done; '
    "echo 'postfix-nullclient: the queue did not empty within 60 s:'; postqueue -p; exit 1"
)

server.shell(name="Flush the mail queue and wait until it is empty", commands=[FLUSH])
