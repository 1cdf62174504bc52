"""Turn each host of the inventory into a Postfix null client: `pyinfra inventory.py deploy.py`.

The whole flow is the package's deploy function, postfix_nullclient.deploy_null_client
(tasks/__init__.py in this repository). Your own pyinfra deploy can call it the same way,
among its own operations.
"""

from postfix_nullclient import deploy_null_client

deploy_null_client()
