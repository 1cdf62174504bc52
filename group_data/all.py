"""Your settings for every host; per-host data in inventory.py overrides them.

Every setting and its default is documented in postfix_nullclient/defaults.py (tasks/defaults.py
in the repository) and in the README's settings table. Uncomment and change what differs for you.
"""

# relay_host = "mail.example.net"      # the mail server that relays everything
# relay_port = 587                     # 587 (STARTTLS) or 465 (implicit TLS)
# mail_domain = "example.net"          # domain of the per-machine accounts
# smtp_user = None                     # None: <short host name>@<mail_domain>
# forward_to = None                    # required: where mail for root and every local user goes
# keyring_service = "postfix-nullclient"
# sender_address = None                # None: smtp_user
# extra_aliases = {}                   # e.g. {"bob": "bob@example.org"}
# ca_file = None                       # None: the distribution's CA bundle
# myhostname = None                    # None: the host's FQDN
# ipv6 = None                          # None: auto
# mail_package = None                  # None: the distribution's (bsd-mailx on Debian)
# unattended_upgrades_mail = "only-on-error"  # or "on-change", "always"; "off": leave it as it is
# watchdog_threshold = "1h"            # warn when a message has waited longer (seconds, or s/m/h/d)
# watchdog_interval = "5m"             # how often the watchdog looks (systemd timer)
