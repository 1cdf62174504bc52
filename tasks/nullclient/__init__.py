"""The operator's commands around the deploy: bootstrap, secret, verify, rotate, remove.

Run as `nullclient COMMAND ...` or `python -m postfix_nullclient.nullclient COMMAND ...`. Everything
that touches a host runs the pyinfra CLI (the deploy function or a deploy file of this package), so
SSH options, sudo and parallelism are the deploy's own.
"""
