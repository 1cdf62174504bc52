"""The Jinja templates of the files that the deploy writes under /etc/postfix (package data)."""
