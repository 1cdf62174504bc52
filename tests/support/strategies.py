"""Hypothesis strategies: settings that the spec must accept, built by hand from the rules they
follow (RFC 5322's dot-atom, host name labels), not from the spec's own patterns."""

from __future__ import annotations

import string

from hypothesis import strategies as st

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
LDH = string.ascii_lowercase + string.digits + "-"

atoms = st.text(ATEXT, min_size=1, max_size=8)
local_parts = st.lists(atoms, min_size=1, max_size=3).map(".".join).filter(lambda local: len(local) <= 64)
labels = st.builds(
    lambda first, middle, last: first + middle + last if middle or last else first,
    st.sampled_from(string.ascii_lowercase + string.digits),
    st.text(LDH, max_size=6),
    st.text(string.ascii_lowercase + string.digits, max_size=1),
).filter(lambda label: not label.endswith("-"))
top_labels = st.text(string.ascii_lowercase, min_size=2, max_size=6)
domains = st.builds(lambda names, top: ".".join([*names, top]), st.lists(labels, min_size=1, max_size=3), top_labels)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)
local_names = st.from_regex(r"[a-z_][a-z0-9_.-]{0,10}", fullmatch=True)
paths = st.lists(st.text(string.ascii_letters + string.digits + "._+@=:-", min_size=1, max_size=10), min_size=1).map(
    lambda parts: "/" + "/".join(parts)
)
# Whatever a keyring may hold and the password map can carry: no line break or NUL, no white space
# at the ends (password_problem refuses those, with a message of its own).
passwords = (
    st.text(st.characters(blacklist_characters="\n\r\0", blacklist_categories=("Cs",)), min_size=1, max_size=40)
    .map(str.strip)
    .filter(bool)
)


@st.composite
def host_data(draw: st.DrawFn) -> dict:
    """The data of one host, with every setting the spec has at a value it must accept."""
    return {
        "relay_host": draw(domains),
        "relay_port": draw(st.sampled_from([587, 465, "587", "465"])),
        "mail_domain": draw(domains),
        "smtp_user": draw(st.none() | addresses),
        "forward_to": draw(addresses),
        "keyring_service": draw(st.text(string.ascii_letters + string.digits + "-_. ", min_size=1).map(str.strip))
        or "postfix-nullclient",
        "sender_address": draw(st.none() | addresses),
        "extra_aliases": draw(st.dictionaries(local_names, addresses, max_size=3)),
        "ca_file": draw(st.none() | paths),
        "myhostname": draw(st.none() | domains),
        "ipv6": draw(st.sampled_from([None, True, False, "auto", "yes", "no", "true", "false"])),
        "mail_package": draw(st.none() | st.from_regex(r"[a-z0-9][a-z0-9+.-]{1,20}", fullmatch=True)),
        "unattended_upgrades_mail": draw(st.sampled_from(["only-on-error", "on-change", "always", "off", None])),
        "watchdog_threshold": draw(st.integers(1, 365 * 86400) | st.sampled_from(["90s", "30m", "2h", "7d"])),
        "watchdog_interval": draw(st.integers(1, 86400) | st.sampled_from(["10s", "5m", "1h", "1d"])),
    }
