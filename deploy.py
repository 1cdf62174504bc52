"""Turn each host into a Postfix null client: `pyinfra inventory.py deploy.py`.

The flow, per host: check every host's settings and read every keyring entry in one go
(tasks/settings.py, tasks/keyring_lookup.py), look at the host once (tasks/facts.py) and know its
distribution (tasks/distro.py), install what is missing (tasks/packages.py), render the files
(tasks/render.py, templates/) and put them in place with a check and a reload, or not at all
(tasks/postfix.py, tasks/apply_config.sh).
"""

from pyinfra import host, state

from tasks import packages, postfix
from tasks.distro import look_at
from tasks.render import render_files
from tasks.settings import settings_for

settings = settings_for(state, host)
found, family = look_at(host, settings.mail_package)

packages.install(settings, family, found)
postfix.apply(render_files(settings, found.fqdn, found.ipv6, family.ca_file), found)
