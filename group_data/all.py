"""Your settings for every host; per-host data in inventory.py overrides them.

Every setting, its default and the parser that checks it is declared once, in postfix_nullclient/spec.py
(tasks/spec.py in the repository); this list and the README's settings table come from there.
Uncomment and change what differs for you.
"""

# the mail server that relays everything, by the name in its certificate
# relay_host = 'mail.example.net'

# 587: submission with STARTTLS; 465: implicit TLS. Nothing else
# relay_port = 587

# domain of the per-machine accounts on the mail server
# mail_domain = 'example.net'

# login on the relay; by default from the inventory name (torres.example.net ->
#   torres@example.net; @local: the machine's own host name)
# smtp_user = None

# real address that receives mail for root and every local user
# forward_to = None

# the password is keyring.get_password(keyring_service, smtp_user)
# keyring_service = 'postfix-nullclient'

# envelope and From: sender of every mail; strict relays accept only the login
# sender_address = None

# local names sent elsewhere than forward_to, e.g. {"bob": "bob@example.org"}
# extra_aliases = {}

# CA bundle the relay's certificate is verified against, by name
# ca_file = None

# Postfix's name; <name>.<mail_domain> if hostname -f has no dot
# myhostname = None

# IPv6 on/off; auto: on where the host has IPv6 on its loopback
# ipv6 = None

# the package that provides the mail command (bsd-mailx on Debian)
# mail_package = None

# where unattended-upgrades is installed (never installed for this), its report is mailed to
#   root, so to forward_to: only-on-error, on-change or always; off leaves its configuration as
#   it is
# unattended_upgrades_mail = 'only-on-error'

# the queue watchdog warns once a message has waited longer: seconds, or a number with s, m, h,
#   d (1s to 365d)
# watchdog_threshold = '1h'

# how often the watchdog looks at the queue (its systemd timer; every 15 minutes on OpenRC); 1s
#   to 1d
# watchdog_interval = '5m'

# further submission servers, tried in order when relay_host cannot be reached: host names, each
#   with :587 or :465 if you like (every one on relay_port's TLS mode: Postfix has one for all),
#   verified as relay_host is; the login and keyring entry are the same
# fallback_relays = []

# how long Postfix keeps trying a message, and the bounce that says one expired, before it gives
#   up (maximal_queue_lifetime and bounce_queue_lifetime); 1m to 100d. 30d, for laptops: offline
#   for weeks, or on networks that block the relay's port, no mail is lost, where Postfix's 5d
#   would bounce it through the same unreachable relay, and that bounce would expire too. The
#   watchdog warns by half of it at the latest, with the date the oldest message would expire
# queue_lifetime = '30d'
