"""Example inventory: the owner's workstations. Per-host data overrides group_data/all.py."""

workstations = [
    # smtp_user defaults to torres@example.net; its password is in the keyring under
    # service "postfix-nullclient", user "torres@example.net".
    ("torres.example.net", {"forward_to": "alice@example.org"}),
    (
        "kirk.example.net",
        {
            "ssh_user": "admin",
            "_sudo": True,
            "forward_to": "alice@example.org",
            "extra_aliases": {"bob": "bob@example.org"},
        },
    ),
]
