"""Every setting of the null-client deploy, with its default: the one place where defaults live.

`deploy_null_client` passes these to pyinfra as `data_defaults`, so they apply from any directory
and from an installed wheel. Override them as with any pyinfra data: per run (`--data relay_port=465`),
per host (inventory), per group (group_data/<group>.py), or for all hosts (group_data/all.py).
The settings table in the README says the same as the comments here.
"""

from typing import Any

DEFAULTS: dict[str, Any] = {
    # Mail server that relays every mail; the workstation logs in there like a mail client.
    "relay_host": "mail.example.net",
    # 587: submission with STARTTLS. 465: implicit TLS (smtps). Nothing else is accepted.
    "relay_port": 587,
    # Domain of the per-machine accounts on the mail server.
    "mail_domain": "example.net",
    # Login on the relay. None: "<short inventory host name>@<mail_domain>", e.g. torres@example.net.
    "smtp_user": None,
    # The real address that receives mail for root and every local user. Required, no default.
    "forward_to": None,
    # Keyring service that holds the password: keyring.get_password(keyring_service, smtp_user).
    "keyring_service": "postfix-nullclient",
    # Envelope and From: sender of every outgoing mail. None: smtp_user, the only one a strict relay accepts.
    "sender_address": None,
    # Local names re-routed elsewhere than forward_to, e.g. {"alice": "alice@example.org"}.
    "extra_aliases": {},
    # CA bundle that the relay's certificate is verified against (by name, always). None: the
    # distribution's bundle (/etc/ssl/certs/ca-certificates.crt on Debian, Arch, Alpine;
    # /etc/pki/tls/certs/ca-bundle.crt on Fedora/RHEL; /etc/ssl/ca-bundle.pem on openSUSE).
    "ca_file": None,
    # Postfix myhostname. None: the host's FQDN (hostname -f); "<name>.<mail_domain>" if it has no dot.
    "myhostname": None,
    # Send over IPv6 too. None: only where the host has IPv6 on its loopback (else Postfix fails on ::1).
    "ipv6": None,
    # Package that provides the `mail` command. None: bsd-mailx on Debian, mailx on openSUSE, else s-nail.
    "mail_package": None,
    # Mail of unattended-upgrades, where it is installed (it is never installed for this): sent to
    # root, so to forward_to. "only-on-error" (a run that failed), "on-change" (also every run that
    # upgraded something), "always" (every run). "off" or None: its configuration is left as it is.
    # Written as /etc/apt/apt.conf.d/51postfix-nullclient-mail (Unattended-Upgrade::Mail and ::MailReport).
    # cron needs no setting: it mails a job's output to the crontab's owner (MAILTO), which the
    # deploy sends to forward_to like every local user; sudo mails its "SECURITY information" to
    # root by default (mail_badpass, mail_no_user) and the deploy changes nothing of sudo.
    "unattended_upgrades_mail": "only-on-error",
    # The queue watchdog warns (journal, login message, desktop) when a message has waited longer
    # than this: seconds, or a number with s, m (minutes), h or d, e.g. "90m".
    "watchdog_threshold": "1h",
    # How often the watchdog looks at the queue (its systemd timer; every 15 minutes on OpenRC,
    # from /etc/periodic/15min). Seconds or a number with s, m, h or d.
    "watchdog_interval": "5m",
}
