"""Turn each host into a Postfix null client: `pyinfra inventory.py deploy.py`.

The flow, per host: check every host's settings and keyring entry (tasks/settings.py), look at
the host once (tasks/facts.py) and know its distribution (tasks/distro.py), install what is
missing (tasks/packages.py), render the files (tasks/render.py, templates/) and put them in place
with a check and a reload, or not at all (tasks/postfix.py, tasks/apply_config.sh).
"""

from pyinfra import host, state

from tasks import packages, postfix
from tasks.distro import ALL_PACKAGES, family_of
from tasks.facts import NullClientHost
from tasks.render import LAYOUT, render_files
from tasks.settings import settings_for

settings = settings_for(state, host)

found = host.get_fact(
    NullClientHost,
    plain_files=[f.name for f in LAYOUT if not f.secret],
    secret_files=[f.name for f in LAYOUT if f.secret],
    maps=[f.name for f in LAYOUT if f.hashed_map],
    packages=sorted({*ALL_PACKAGES, settings.mail_package or ALL_PACKAGES[0]}),
)
family = family_of(host.name, found)

packages.install(settings, family, found)
postfix.apply(render_files(settings, found.fqdn, found.ipv6, family.ca_file), found)
