"""The one declared model of a null-client host: Postfix's layout, the files the deploy owns, and
each distribution family with its package manager and service manager.

Everything that runs on a host is rendered from templates/ with this model (render.render_script
gives every script `script_context()`): the fact, the apply and remove scripts, verify's checks and
the benchmark's commands. Each path, suffix, mode, tag or command of the host is written once: here,
or beside its only user (the alert sources' files in alerts.py, the queues of other mail systems in
mail_systems.py), which passes it to the templates. No template spells one of them itself
(tests/test_render.py checks it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

# --- Postfix's layout --------------------------------------------------------------------------------

CONFIG_DIR = "/etc/postfix"
# What the first deploy found, kept root-only so that `nullclient remove` can put it back.
STATE_DIR = "/var/lib/postfix-nullclient"
ORIGINALS_DIR = f"{STATE_DIR}/original"
# Exists while an apply runs between moving files in and postfix's reload: left behind, it means the
# run was killed there, and the next deploy applies and restarts again (the apply script).
APPLYING_MARK = f"{STATE_DIR}/applying"
# The apply command stages new files in CONFIG_DIR/<prefix>XXXXXX (same file system: mv is atomic).
STAGING_PREFIX = ".nullclient."
# A secret map and its database: owner, group and mode, as `stat -c %U:%G:%a` prints them.
SECRET_OWNER = "root"
SECRET_GROUP = "root"
SECRET_MODE = "600"
SECRET_STAT = f"{SECRET_OWNER}:{SECRET_GROUP}:{SECRET_MODE}"
# `postmap` writes NAME.SUFFIX for the host's `postconf -h default_database_type`.
DATABASE_SUFFIXES = {"hash": "db", "btree": "db", "lmdb": "lmdb", "cdb": "cdb"}
DEFAULT_DATABASE_SUFFIX = "db"
# The one spelling of the project's tag on a host: the journal's identifier (syslog tag) of what the
# watchdog says, and, with a colon, the start of every line the deploy's scripts print, by which the
# deploy finds them (summary.py).
TAG = "postfix-nullclient"
MESSAGE_TAG = f"{TAG}:"
# Postfix's sendmail command (its sendmail_path default), which the scripts hand mail to.
SENDMAIL = "/usr/sbin/sendmail"
# main.cf settings that a reload does not apply: the master daemon must restart.
RESTART_SETTINGS = ("inet_interfaces", "inet_protocols")


@dataclass(frozen=True)
class ManagedFile:
    """One file under CONFIG_DIR that the deploy owns."""

    name: str
    content: str = field(default="", repr=False)  # a repr, e.g. in pyinfra's operation arguments, never shows it
    mode: str = "0644"
    secret: bool = False  # never read back, printed or diffed; root-only from its first byte
    hashed_map: bool = False  # needs postmap into a database of default_database_type

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


# Names and kinds of the managed files, for the fact, which runs before anything is rendered.
LAYOUT = (
    ManagedFile("main.cf"),
    ManagedFile("virtual_alias"),
    ManagedFile("sender_canonical"),
    ManagedFile("sasl_passwd", mode=f"0{SECRET_MODE}", secret=True, hashed_map=True),
)
PLAIN_FILES = tuple(f.name for f in LAYOUT if not f.secret)
SECRET_FILES = tuple(f.name for f in LAYOUT if f.secret)
HASHED_MAPS = tuple(f.name for f in LAYOUT if f.hashed_map)


# --- service managers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InitSystem:
    """How postfix is started, reloaded and enabled at boot under one service manager."""

    name: str
    reload: str
    restart: str
    enabled_test: str
    enable: str
    stop: str
    disable: str


INIT_SYSTEMS = {
    "systemd": InitSystem(
        "systemd",
        reload="systemctl reload postfix",
        restart="systemctl restart postfix",
        enabled_test="systemctl is-enabled -q postfix",
        enable="systemctl enable -q postfix",
        stop="systemctl stop postfix",
        disable="systemctl disable -q postfix",
    ),
    "openrc": InitSystem(
        "openrc",
        reload="rc-service postfix reload",
        restart="rc-service postfix restart",
        enabled_test="test -e /etc/runlevels/default/postfix",
        enable="rc-update -q add postfix default",
        stop="rc-service postfix stop",
        disable="rc-update -q del postfix default",
    ),
}


# --- package managers ------------------------------------------------------------------------------

# debconf's answer for postfix on Debian: "No configuration", so the installer writes no main.cf and
# asks nothing; the deploy writes its own.
DEBCONF_PRESEED = "postfix postfix/main_mailer_type select No configuration\n"

# One command, the preseed on its stdin: the deploy's fact knows already what is missing, so no
# package fact and no separate update. The install waits up to 5 minutes for the dpkg lock that
# unattended-upgrades holds on a freshly booted workstation (apt 2.6 waits so for the install only,
# not for the update's lists lock: seen in the lab).
APT_INSTALL = (
    "debconf-set-selections"
    " && apt-get update -q"
    " && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300"
    " -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
)


@dataclass(frozen=True)
class PackageManager:
    name: str
    install: str  # refreshes the package lists and installs the packages named after it, without a prompt
    purge_postfix: str  # takes postfix off the host with its configuration (nullclient remove --postfix purge)
    package_name: str  # a regular expression for a whole package name, as the package manager defines it
    install_stdin: str | None = None  # what the install command reads first (apt: the debconf answer)


# Package names: Debian Policy 5.6.1 (apt); RPM's and Arch's naming rules; Alpine's apk. None starts
# with "-", so no name is ever read as an option.
RPM_NAME = r"[A-Za-z0-9_+][A-Za-z0-9._+-]*"
PACKAGE_MANAGERS = {
    "apt": PackageManager(
        "apt",
        APT_INSTALL,
        "env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q -o DPkg::Lock::Timeout=300 postfix",
        r"[a-z0-9][a-z0-9+.-]+",
        DEBCONF_PRESEED,
    ),
    "dnf": PackageManager("dnf", "dnf install -y", "dnf remove -y postfix", RPM_NAME),
    "pacman": PackageManager(
        "pacman", "pacman -Sy --noconfirm --needed", "pacman -Rns --noconfirm postfix", r"[a-z0-9@_+][a-z0-9@._+-]*"
    ),
    "apk": PackageManager("apk", "apk add --update-cache", "apk del postfix", r"[a-z0-9_+][a-z0-9._+-]*"),
    "zypper": PackageManager(
        "zypper",
        "zypper --non-interactive --gpg-auto-import-keys refresh"
        " && zypper --non-interactive --gpg-auto-import-keys install -y",
        "zypper -n remove postfix",
        RPM_NAME,
    ),
}


# --- distribution families ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    name: str
    os_ids: tuple[str, ...]  # /etc/os-release ID or ID_LIKE values
    package_manager: str  # a key of PACKAGE_MANAGERS
    packages: tuple[str, ...]  # postfix, the SASL modules for AUTH PLAIN/LOGIN, CA certificates
    mail_package: str  # provides the `mail` command
    ca_file: str
    init: str  # a key of INIT_SYSTEMS: the service manager the family boots with

    @property
    def init_system(self) -> InitSystem:
        return INIT_SYSTEMS[self.init]

    @property
    def packager(self) -> PackageManager:
        return PACKAGE_MANAGERS[self.package_manager]


FAMILIES = (
    Family(
        "debian", ("debian", "ubuntu"), "apt",
        ("postfix", "libsasl2-modules", "ca-certificates"), "bsd-mailx",
        "/etc/ssl/certs/ca-certificates.crt", "systemd",
    ),
    Family(
        "fedora", ("fedora", "rhel", "centos", "rocky", "almalinux"), "dnf",
        ("postfix", "cyrus-sasl-plain", "ca-certificates"), "s-nail",
        "/etc/pki/tls/certs/ca-bundle.crt", "systemd",
    ),
    Family(
        "arch", ("arch",), "pacman",
        ("postfix", "cyrus-sasl", "ca-certificates"), "s-nail",
        "/etc/ssl/certs/ca-certificates.crt", "systemd",
    ),
    Family(
        "alpine", ("alpine",), "apk",
        ("postfix", "cyrus-sasl-login", "ca-certificates"), "s-nail",
        "/etc/ssl/certs/ca-certificates.crt", "openrc",
    ),
    Family(
        "suse", ("opensuse", "opensuse-leap", "opensuse-tumbleweed", "sles", "suse"), "zypper",
        ("postfix", "cyrus-sasl-plain", "ca-certificates"), "mailx",
        "/etc/ssl/ca-bundle.pem", "systemd",
    ),
)  # fmt: skip

# Every package any family may need: the fact asks for all of them, before it knows the family.
ALL_PACKAGES = tuple(dict.fromkeys(name for f in FAMILIES for name in (*f.packages, f.mail_package)))


def script_context() -> dict[str, object]:
    """What every script template gets: the layout above, by name."""
    return {
        "conf": CONFIG_DIR,
        "state_dir": STATE_DIR,
        "originals": ORIGINALS_DIR,
        "applying_mark": APPLYING_MARK,
        "staging_prefix": STAGING_PREFIX,
        "secret_owner": f"{SECRET_OWNER}:{SECRET_GROUP}",
        "secret_mode": f"0{SECRET_MODE}",
        "database_suffixes": DATABASE_SUFFIXES,
        "default_suffix": DEFAULT_DATABASE_SUFFIX,
        "all_suffixes": sorted(set(DATABASE_SUFFIXES.values())),
        "tag": TAG,
        "sendmail": SENDMAIL,
        "layout": LAYOUT,
        "plain_files": PLAIN_FILES,
        "secret_files": SECRET_FILES,
        "hashed_maps": HASHED_MAPS,
        "init_systems": INIT_SYSTEMS,
    }
