"""Render the null client's files and the scripts that run on hosts from the Jinja2 templates:
pure functions, no host needed. Scripts get the model's layout (model.script_context)."""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import jinja2

from postfix_nullclient.model import CONFIG_DIR, LAYOUT, ManagedFile, script_context
from postfix_nullclient.settings import Settings, short_name
from postfix_nullclient.spec import duration_text

TEMPLATES = files("postfix_nullclient.templates")  # templates/ in the repository, package data in a wheel


def regex_escape(text: str) -> str:
    """A pattern of a Postfix regexp: table that matches `text` literally: POSIX extended regular
    expression characters escaped, and the pattern's delimiter / too."""
    return re.sub(r"([.\[\]()*+?{}|^$\\/])", r"\\\1", text)


def regexp_result(text: str) -> str:
    """A result of a Postfix regexp: table that is `text` literally: $ (a back-reference) as $$."""
    return text.replace("$", "$$")


_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,  # Postfix files, not HTML
)
_environment.filters["regex_escape"] = regex_escape
_environment.filters["regexp_result"] = regexp_result
_environment.filters["quote"] = shlex.quote  # a word for sh
_environment.filters["b64encode"] = lambda text: base64.b64encode(text.encode()).decode()


def render_script(name: str, **variables: Any) -> str:
    """templates/scripts/NAME.sh.j2 with the model's layout and `variables`: a POSIX sh script."""
    return _environment.get_template(f"scripts/{name}.sh.j2").render(script_context() | variables)


def render_template(name: str, **variables: object) -> str:
    """One of templates/ rendered with `variables`: the alert sources' unit and configuration files."""
    return _environment.get_template(name).render(variables)


def postfix_hostname(settings: Settings, fqdn: str) -> str:
    """myhostname: the setting, else the host's FQDN, qualified with mail_domain if it has no dot."""
    name = settings.myhostname or fqdn.strip() or short_name(settings.host_name)
    return name if "." in name else f"{name}.{settings.mail_domain}"


def local_domains(myhostname: str) -> str:
    """Regexp alternatives for the domains that mean 'this machine' in an address."""
    return "|".join(regex_escape(name) for name in local_domain_names(myhostname))


def local_domain_names(myhostname: str) -> list[str]:
    """The domains that mean 'this machine' in an address, in lower case (Postfix's tables ignore case)."""
    names = (myhostname, myhostname.split(".", 1)[0], "localhost", "localhost.localdomain")
    return list(dict.fromkeys(name.lower() for name in names))


def alias_answer(settings: Settings, myhostname: str, address: str) -> str:
    """What virtual_alias is meant to answer for `address` ("": nothing), by its rules in their order:
    an extra alias of this machine, any other name of this machine, the login's bounces."""
    local, _, domain = address.lower().rpartition("@")
    if domain in local_domain_names(myhostname):
        return settings.extra_aliases.get(local, settings.forward_to)
    if settings.sender_address != settings.forward_to and address.lower() == settings.sender_address.lower():
        return settings.forward_to
    return ""


def sender_answer(settings: Settings, myhostname: str, address: str) -> str:
    """What sender_canonical is meant to answer: Postfix's own bounce senders (of this machine) stay,
    every other sender becomes sender_address."""
    local, _, domain = address.lower().partition("@")
    if local in ("mailer-daemon", "double-bounce") and domain == myhostname.lower():
        return address
    return settings.sender_address


def _once(addresses: list[str]) -> list[str]:
    """Each address once, as Postfix's tables ignore case: the first spelling."""
    seen: dict[str, str] = {}
    for address in addresses:
        seen.setdefault(address.lower(), address)
    return list(seen.values())


def local_address_problem(settings: Settings, fqdn: str) -> str | None:
    """Why forward_to or an extra alias would send mail back to this machine, or None: aliases would then
    lead to each other or to themselves, and such mail would wait for ever."""
    local = local_domain_names(postfix_hostname(settings, fqdn))
    targets = [("forward_to", settings.forward_to)]
    targets += [(f"extra_aliases[{user!r}]", target) for user, target in sorted(settings.extra_aliases.items())]
    for name, target in targets:
        if target.lower().rpartition("@")[2] in local:
            return (
                f"{name} {target!r} is an address of this machine ({', '.join(local)}): its mail would come back "
                "to the aliases; give an address elsewhere, in the inventory (host data), group_data/all.py, or "
                "with --data"
            )
    return None


@dataclass(frozen=True)
class Meaning:
    """What the deploy means Postfix to use on one host, as Postfix itself reads it back: the apply
    script compares it with the staged configuration before anything moves into place
    (templates/scripts/meaning.sh.j2)."""

    parameters: dict[str, str]  # every parameter main.cf sets, as `postconf -n` prints it
    lookups: list[tuple[str, str, str]]  # (regexp map, address, answer as `postmap -q` prints it; "": none)
    login: tuple[str, str, str] = field(repr=False)  # (hashed map, key, "user:password"): the secret


def meaning(settings: Settings, fqdn: str, host_has_ipv6: bool, ca_file: str) -> Meaning:
    """The parameters main.cf sets and what its maps answer, for these settings on this host."""
    myhostname = postfix_hostname(settings, fqdn)
    ipv6 = host_has_ipv6 if settings.ipv6 is None else settings.ipv6
    parameters = {
        "compatibility_level": "3.6",
        "myhostname": myhostname,
        "myorigin": "$myhostname",
        "mydestination": "",
        "local_transport": "error:local delivery is disabled on this null client",
        "alias_maps": "",
        "alias_database": "",
        "biff": "no",
        "inet_interfaces": "loopback-only",
        "inet_protocols": "all" if ipv6 else "ipv4",
        "mynetworks": "127.0.0.0/8 [::1]/128" if ipv6 else "127.0.0.0/8",
        "virtual_alias_domains": "",
        "virtual_alias_maps": f"regexp:{CONFIG_DIR}/virtual_alias",
        "sender_canonical_maps": f"regexp:{CONFIG_DIR}/sender_canonical",
        "relayhost": settings.relayhost,
        "smtp_fallback_relay": ", ".join(settings.fallback_relayhosts),
        "smtp_host_lookup": "dns, native",
        "smtp_sasl_auth_enable": "yes",
        "smtp_sasl_password_maps": f"$default_database_type:{CONFIG_DIR}/sasl_passwd",
        "smtp_sasl_security_options": "noanonymous",
        "smtp_sasl_tls_security_options": "noanonymous",
        "smtp_tls_security_level": "secure",
        "smtp_tls_CAfile": settings.ca_file or ca_file,
        "smtp_tls_wrappermode": "yes" if settings.relay_port == 465 else "no",
        "smtp_tls_loglevel": "1",
        "maximal_queue_lifetime": duration_text(settings.queue_lifetime),
        "bounce_queue_lifetime": duration_text(settings.queue_lifetime),
    }
    # The addresses that matter, each asked once (Postfix's tables ignore case), with the answer the
    # deploy means: root, each extra alias, the login's bounces, an outside address, the senders.
    probes = [f"root@{myhostname}", "root@localhost"]
    probes += [f"{user}@{myhostname}" for user in sorted(settings.extra_aliases)]
    probes += [settings.sender_address, "someone@nullclient-probe.invalid"]
    lookups = [("virtual_alias", address, alias_answer(settings, myhostname, address)) for address in _once(probes)]
    lookups += [
        ("sender_canonical", address, sender_answer(settings, myhostname, address))
        for address in (f"root@{myhostname}", f"MAILER-DAEMON@{myhostname}")
    ]
    login = ("sasl_passwd", settings.relayhost, f"{settings.smtp_user}:{settings.password.unmask()}")
    return Meaning(parameters, lookups, login)


def render_files(settings: Settings, fqdn: str, host_has_ipv6: bool, ca_file: str) -> list[ManagedFile]:
    """Every managed file with its wanted content, in LAYOUT order; ca_file: the distribution's bundle.
    main.cf sets the parameters of `meaning`, with the template's comments."""
    myhostname = postfix_hostname(settings, fqdn)
    variables = {
        "main_cf": meaning(settings, fqdn, host_has_ipv6, ca_file).parameters,
        "relayhost": settings.relayhost,
        "smtp_user": settings.smtp_user,
        "forward_to": settings.forward_to,
        "sender_address": settings.sender_address,
        "extra_aliases": settings.extra_aliases,
        "local_domains": local_domains(myhostname),
        "myhostname": myhostname,
    }
    secrets = {f.name: f for f in render_secret_files(settings)}
    files = []
    for layout in LAYOUT:
        if layout.secret:
            files.append(secrets[layout.name])
            continue
        content = _environment.get_template(f"{layout.name}.j2").render(variables)
        files.append(ManagedFile(layout.name, content, layout.mode, layout.secret, layout.hashed_map))
    return files


def render_secret_files(settings: Settings) -> list[ManagedFile]:
    """The secret files alone (the password map), which need nothing of the host: the deploy sends their
    digest to the host's fact before it knows the host."""
    variables = {
        "relayhosts": [settings.relayhost, *settings.fallback_relayhosts],  # one login on every endpoint
        "smtp_user": settings.smtp_user,
        "password": settings.password.unmask(),
    }
    return [
        ManagedFile(f.name, _environment.get_template(f"{f.name}.j2").render(variables), f.mode, f.secret, f.hashed_map)
        for f in LAYOUT
        if f.secret
    ]
