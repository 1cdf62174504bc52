"""pyinfra inventory of the running lab: `pyinfra lab/inventory.py deploy.py`.

NULLCLIENT_LAB_HOSTS=ws1,ws3 limits it to those hosts. Start the lab first with `python -m lab up`.
"""

import json as _json
import os as _os

from lab.config import FORWARD_TO as _FORWARD_TO
from lab.config import STATE_DIR as _STATE_DIR


def _lab_hosts() -> list[dict]:
    try:
        records = _json.loads((_STATE_DIR / "hosts.json").read_text())
    except FileNotFoundError:
        records = []
    if not records:
        raise RuntimeError(f"the lab is not up ({_STATE_DIR / 'hosts.json'} lists no host): run `python -m lab up`")
    wanted = [name.strip() for name in _os.environ.get("NULLCLIENT_LAB_HOSTS", "").split(",") if name.strip()]
    if wanted:
        unknown = sorted(set(wanted) - {record["name"] for record in records})
        if unknown:
            raise RuntimeError(f"NULLCLIENT_LAB_HOSTS names hosts the lab does not run: {', '.join(unknown)}")
        records = [record for record in records if record["name"] in wanted]
    return records


def _host_data(record: dict) -> dict:
    return {
        "ssh_hostname": record["address"],
        "ssh_user": "root",
        "ssh_key": str(_STATE_DIR / "ssh" / "id_ed25519"),
        "ssh_known_hosts_file": str(_STATE_DIR / "ssh" / "known_hosts"),
        "ssh_strict_host_key_checking": "yes",
        "ssh_look_for_keys": False,
        "ssh_allow_agent": False,
        "forward_to": _FORWARD_TO,
        "lab_name": record["name"],
        "lab_suite": record["suite"],
    }


workstations = [(record["fqdn"], _host_data(record)) for record in _lab_hosts()]
