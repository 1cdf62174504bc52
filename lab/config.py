"""Names, addresses and paths of the lab, in one place."""

from pathlib import Path

# Runtime state (hosts, pid files, spool): gone after a reboot, like the lab itself.
STATE_DIR = Path("/run/nullclient-lab")
# What is slow to make and safe to keep: base root filesystems, the CA, the apt cache.
CACHE_DIR = Path("/var/cache/nullclient-lab")

BRIDGE = "nclab0"
# Set, so that it stays: a bridge left to itself takes the lowest MAC among its ports and changes it as
# hosts come and go, and the hosts' ARP entries for the gateway (DNS, apt proxy, smarthost) go stale:
# their connections time out until ARP finds the new one. Locally administered, 0a:d5 for 10.213.
BRIDGE_MAC = "02:00:0a:d5:00:01"
NETWORK_PREFIX = "10.213.0"  # a /24 used by nothing but the lab's own hosts
GATEWAY = f"{NETWORK_PREFIX}.1"  # the machine itself on the bridge: DNS, apt proxy, smarthost
APT_PROXY_PORT = 3142

DOMAIN = "example.net"
RELAY_NAME = f"mail.{DOMAIN}"
RELAY_SUBMISSION_PORT = 587
RELAY_SMTPS_PORT = 465
FORWARD_TO = "owner@example.org"  # the lab owner's real address: all mail ends up here
REJECTING_DOMAIN = "rejected.example.org"  # the smarthost refuses every recipient there (550)

DEFAULT_SUITE = "bookworm"

# Lab hosts: wsK lives at NETWORK_PREFIX.(WS_ADDRESS_OFFSET + K); other names (create_host) get one
# of the addresses from EXTRA_ADDRESS_FIRST upwards, so the two kinds never collide.
WS_ADDRESS_OFFSET = 10
MAX_HOSTS = 50
EXTRA_ADDRESS_FIRST = 100
EXTRA_ADDRESS_LAST = 250
# Further addresses of this machine on the bridge, for relays of the tests' own (network.claim_address):
# between the gateway and the wsK hosts, and between those and the other hosts.
SPARE_ADDRESSES = (*range(2, WS_ADDRESS_OFFSET), *range(WS_ADDRESS_OFFSET + MAX_HOSTS + 1, EXTRA_ADDRESS_FIRST))
SUITES = ("bookworm", "trixie")
CGROUP_NAME = "nclab"  # /sys/fs/cgroup/{systemd,unified}/nclab/<host>
