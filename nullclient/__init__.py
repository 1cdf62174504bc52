"""The operator's commands around the deploy: bootstrap, secret, verify, rotate, remove.

Run as `python -m nullclient COMMAND ...` or `nullclient COMMAND ...`. Everything that touches a
host runs the pyinfra CLI (deploy.py or a deploy file of this package), so SSH options, sudo and
parallelism are the deploy's own.
"""
