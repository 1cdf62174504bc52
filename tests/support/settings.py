"""Settings for tests, made the way the deploy makes them: through spec's parsers (settings.check_host)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pyinfra.api import HiddenValue

from postfix_nullclient.render import Meaning, meaning
from postfix_nullclient.settings import Settings, check_host


def make_settings(host_name: str = "torres.example.net", password: str = "s3cret", **data: Any) -> Settings:
    """The settings of `host_name` for host data `data` (forward_to alice@example.org unless given)."""
    settings, problems = check_host(host_name, {"forward_to": "alice@example.org", **data})
    assert settings, problems
    return replace(settings, password=HiddenValue(password))


def make_meaning(fqdn: str = "torres.example.net", **data: Any) -> Meaning:
    """What the deploy means for `make_settings(**data)` on a Debian host named `fqdn`, without IPv6."""
    return meaning(make_settings(**data), fqdn, False, "/etc/ssl/certs/ca-certificates.crt")
