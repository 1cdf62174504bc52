"""The product code (the package: tasks/ and templates/) uses public APIs of pyinfra, keyring and
secretstorage only: no private attribute, no CLI internals, no cipher code of its own."""

import re

from tests.conftest import PROJECT

FORBIDDEN = re.compile(r"\._[a-z]|_inner|pyinfra_cli|cryptography|Cipher")


def test_no_private_attribute_cli_internal_or_cipher_in_the_package():
    found = [
        f"{path.relative_to(PROJECT)}:{number}: {line.strip()}"
        for directory in ("tasks", "templates")
        for path in sorted((PROJECT / directory).rglob("*"))
        if path.suffix in (".py", ".j2")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert found == []
