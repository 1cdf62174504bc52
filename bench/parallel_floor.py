"""The floor of a no-change run on many lab hosts: one command on each, all at once, from one process.

Usage: python bench/parallel_floor.py KEY KNOWN_HOSTS COMMAND ADDRESS...

It does what a no-change deploy cannot do with less: a new SSH connection to every host (key
exchange, public-key login as root, host keys checked against KNOWN_HOSTS) and one command on each,
side by side, with the libraries pyinfra uses (paramiko, gevent), in one Python process. It prints
the seconds from the first connect to the last answer: no interpreter start, no imports, no pyinfra.
On the lab all hosts share this machine's CPUs, so the figure grows with the number of hosts even
though nothing here is done one host after another.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import paramiko  # noqa: E402


def run_one(address: str, key: paramiko.PKey, known_hosts: str, command: str) -> None:
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(address, username="root", pkey=key, look_for_keys=False, allow_agent=False, timeout=30)
        _, stdout, _ = client.exec_command(command)
        stdout.read()
        if stdout.channel.recv_exit_status() != 0:
            raise RuntimeError(f"{address}: the command failed")
    finally:
        client.close()


def main() -> int:
    key_file, known_hosts, command, *addresses = sys.argv[1:]
    key = paramiko.Ed25519Key.from_private_key_file(key_file)
    start = time.perf_counter()
    gevent.joinall([gevent.spawn(run_one, a, key, known_hosts, command) for a in addresses], raise_error=True)
    print(time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
