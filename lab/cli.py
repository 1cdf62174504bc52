"""`python -m lab up [N] [--suite S] | down | status | shell | demo | tools`: the lab from the command line."""

import argparse
import os
import signal
import sys
import time

from lab import demo, hosts
from lab.config import DEFAULT_SUITE, MAX_HOSTS, SUITES
from lab.keyring import run as run_with_keyring
from lab.tools import LabError, ensure_tools, require_root


def _interrupted(signum: int, frame: object) -> None:
    # SIGTERM behaves like Ctrl-C, so that `up` removes what it made on the way out.
    raise KeyboardInterrupt


def _shell(argv: list[str]) -> int:
    argv = argv[1:] if argv[:1] == ["--"] else argv
    print("lab: keyring session of the lab (lab only; its unlock password is public)", file=sys.stderr)
    return run_with_keyring(demo.KEYRING_HOME, argv or [os.environ.get("SHELL", "/bin/sh")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description="Throwaway Debian workstations.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the lab with N workstations ws1..wsN (default 1)")
    up.add_argument("count", nargs="?", type=int, default=1, help=f"1 to {MAX_HOSTS}")
    up.add_argument("--suite", choices=SUITES, default=DEFAULT_SUITE)
    commands.add_parser("down", help="tear the whole lab down")
    commands.add_parser("status", help="tell what of the lab runs")
    shell = commands.add_parser("shell", help="run a shell (or COMMAND) with the lab's keyring, e.g. to run pyinfra")
    shell.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND")
    commands.add_parser("demo", help="deploy a lab workstation, send it a mail, show the mail arrive")
    commands.add_parser("tools", help="install the Debian packages the lab needs, if missing")
    args = parser.parse_args(argv)
    if args.command == "shell":
        return _shell(args.argv)
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    started = time.monotonic()
    try:
        require_root()
        if args.command == "tools":
            ensure_tools()
        elif args.command == "demo":
            return demo.main()
        elif args.command == "up":
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
