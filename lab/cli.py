"""`python -m lab up [N] [--suite S] | down | status`: the lab from the command line."""

import argparse
import signal
import sys
import time

from lab import hosts
from lab.config import DEFAULT_SUITE, MAX_HOSTS, SUITES
from lab.tools import LabError


def _interrupted(signum: int, frame: object) -> None:
    # SIGTERM behaves like Ctrl-C, so that `up` removes what it made on the way out.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description="Throwaway Debian workstations.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the lab with N workstations ws1..wsN (default 1)")
    up.add_argument("count", nargs="?", type=int, default=1, help=f"1 to {MAX_HOSTS}")
    up.add_argument("--suite", choices=SUITES, default=DEFAULT_SUITE)
    commands.add_parser("down", help="tear the whole lab down")
    commands.add_parser("status", help="tell what of the lab runs")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    started = time.monotonic()
    try:
        if args.command == "up":
            for host in hosts.up(args.count, args.suite):
                print(f"{host.name}\t{host.address}\t{host.suite}\t{hosts.ssh_command(host)}")
        elif args.command == "down":
            hosts.down()
        else:
            print("\n".join(hosts.status()))
    except LabError as error:
        print(f"lab: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
    if args.command != "status":
        print(f"lab {args.command}: done in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0
