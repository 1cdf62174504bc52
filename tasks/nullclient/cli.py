"""`nullclient COMMAND ...`: argument parsing; the commands themselves are in nullclient.commands."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from importlib import metadata
from pathlib import Path

from postfix_nullclient.nullclient import commands
from postfix_nullclient.nullclient.exit_codes import ExitCode, exit_status_text
from postfix_nullclient.nullclient.remove_plan import DISCARD_FLAG, KEEP_FLAG, MODES
from postfix_nullclient.nullclient.targets import Target, UsageError, parse_data
from postfix_nullclient.spec import HOSTNAME

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
TEST_MAIL_TIMEOUT = 60
# The longest --test-mail wait: a day. The host's shell adds it to the clock, and a number past 64 bits
# wraps around there: the wait would end at once, with the test mail "not left".
TEST_MAIL_MAX = 86400
DISTRIBUTION = "postfix-nullclient"  # pyproject.toml's project name: its version is the installed one's


def version_text() -> str:
    try:
        return f"nullclient {metadata.version(DISTRIBUTION)}"
    except metadata.PackageNotFoundError:
        return f"nullclient (version unknown: the {DISTRIBUTION} distribution is not installed; pip install it)"


def seconds(text: str) -> int:
    """--test-mail's SECONDS: a whole number, 0 for no test mail."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (e.g. --test-mail 60; 0: no test mail)")
    if int(text) > TEST_MAIL_MAX:
        raise argparse.ArgumentTypeError(f"{text} seconds is longer than a day; give at most {TEST_MAIL_MAX}")
    return int(text)


def _target_options(parser: argparse.ArgumentParser, hosts: str = "*", ssh_options: bool = True) -> None:
    """HOST, -i and --data; and, for the commands that connect to a host (ssh_options), its SSH access."""
    one = hosts == "?"
    parser.add_argument(
        "hosts",
        nargs=hosts,
        metavar="HOST",
        help="the host's name; with -i, a host of that inventory"
        if one
        else "host names; with -i, hosts of that inventory (default: all)",
    )
    parser.add_argument("-i", "--inventory", help="pyinfra inventory file; without it, HOST is in no inventory")
    parser.add_argument("--data", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    if not ssh_options:
        return
    ssh = parser.add_argument_group("SSH, for a host in no inventory")
    ssh.add_argument("--address", help="address or DNS name to connect to, if not HOST (ssh_hostname)")
    ssh.add_argument("--ssh-user", help="login user (ssh_user); not root: sudo is used")
    ssh.add_argument("--ssh-port", type=int, help="SSH port (ssh_port)")
    ssh.add_argument("--ssh-key", help="private key file (ssh_key)")
    ssh.add_argument("--known-hosts", help=f"known_hosts file (default {DEFAULT_KNOWN_HOSTS})")
    ssh.add_argument(
        "--trust-on-first-use",
        action="store_true",
        help="accept and record an unknown host key (default: ask on a terminal, else refuse)",
    )


def _test_mail_option(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument(
        "--test-mail",
        nargs="?",
        type=seconds,
        const=TEST_MAIL_TIMEOUT,
        default=default,
        metavar="SECONDS",
        help=f"send a test mail to root and wait until it leaves the queue (default wait {TEST_MAIL_TIMEOUT} s; 0: no "
        "test mail)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nullclient",
        description="The operator's commands around the null-client deploy.",
        epilog=exit_status_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the table as it is laid out
    )
    parser.add_argument("--version", action="version", version=version_text(), help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    bootstrap = sub.add_parser("bootstrap", help="password, account, deploy and test mail for one new host")
    _target_options(bootstrap, hosts="?")
    bootstrap.add_argument("-y", "--yes", action="store_true", help="do not wait for the account to be created")
    _test_mail_option(bootstrap, TEST_MAIL_TIMEOUT)

    secret = sub.add_parser("secret", help="the relay passwords in the OS keyring")
    secret_sub = secret.add_subparsers(dest="action", required=True, metavar="ACTION")
    secret_set = secret_sub.add_parser("set", help="store a password (prompted without echo, or --stdin)")
    _target_options(secret_set, ssh_options=False)
    secret_set.add_argument(
        "--stdin", action="store_true", help="read the password from stdin: exactly one line, more are refused"
    )
    secret_show = secret_sub.add_parser("show", help="whether a password is stored (--reveal: the value)")
    _target_options(secret_show, ssh_options=False)
    secret_show.add_argument("--reveal", action="store_true", help="print the password itself (one host)")
    secret_delete = secret_sub.add_parser("delete", help="delete a host's password")
    _target_options(secret_delete, ssh_options=False)
    secret_missing = secret_sub.add_parser("missing", help="list the inventory hosts that have no password")
    _target_options(secret_missing, ssh_options=False)

    verify = sub.add_parser("verify", help="check configuration, password map, relay, queue; exit 1 if not all well")
    _target_options(verify)
    _test_mail_option(verify, 0)
    verify.add_argument(
        "--json", action="store_true", help="a JSON list, one object per host with its checks, for monitoring"
    )

    status = sub.add_parser(
        "status",
        help="queue, oldest stuck mail, watchdog, configuration: one line per host; exit 1 if mail is stuck, the "
        "configuration is not current or a host did not answer",
    )
    _target_options(status)
    status.add_argument("--json", action="store_true", help="a JSON list, one object per host, for monitoring")

    rotate = sub.add_parser("rotate", help="new password: keyring, deploy, then mail server, then flush")
    _target_options(rotate)
    rotate.add_argument(
        "--stdin",
        action="store_true",
        help="take the new password from stdin's first line (e.g. an app password); a second line answers its question",
    )
    rotate.add_argument("-y", "--yes", action="store_true", help="the mail server has the new password already")
    _test_mail_option(rotate, TEST_MAIL_TIMEOUT)

    remove = sub.add_parser("remove", help="take the null client off hosts, restore the original files")
    _target_options(remove)
    remove.add_argument("--postfix", choices=MODES, required=True, help="stop and disable postfix, or purge it")
    remove.add_argument("--forget-password", action="store_true", help="delete the keyring entries too")
    remove.add_argument("--all", action="store_true", help="with -i and no HOST: every host of the inventory")
    remove.add_argument("--dry", action="store_true", help="say per host what would be done; change nothing")
    queued = remove.add_mutually_exclusive_group()
    queued.add_argument(
        KEEP_FLAG, metavar="DIR", help="at a purge, copy the queued mail to DIR on each host first (to put back later)"
    )
    queued.add_argument(DISCARD_FLAG, action="store_true", help="at a purge, delete the queued mail")
    return parser


def make_target(args: argparse.Namespace) -> Target:
    """The hosts and their --data; for a host in no inventory, also its SSH data and host key decision."""
    hosts = args.hosts if isinstance(args.hosts, list) else [args.hosts] if args.hosts else []
    data = parse_data(args.data)
    ssh_given = any(
        (args.address, args.ssh_user, args.ssh_port, args.ssh_key, args.known_hosts, args.trust_on_first_use)
    )
    if args.inventory:
        if ssh_given:
            raise UsageError("the SSH options are for a host in no inventory; with -i, set them in the inventory")
        return Target(args.inventory, tuple(hosts), data)
    _check_single_host(hosts)
    if args.ssh_port is not None and not 0 < args.ssh_port < 65536:
        raise UsageError(f"--ssh-port {args.ssh_port} is not a TCP port")
    if args.ssh_key and not Path(args.ssh_key).expanduser().is_file():
        raise UsageError(f"--ssh-key {args.ssh_key}: no such file")
    known_hosts = Path(args.known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()
    address = args.address or hosts[0]
    port = args.ssh_port or 22
    ssh = {
        "ssh_hostname": args.address,
        "ssh_user": args.ssh_user,
        "ssh_port": str(args.ssh_port) if args.ssh_port else None,
        "ssh_key": str(Path(args.ssh_key).expanduser()) if args.ssh_key else None,
        "ssh_known_hosts_file": str(known_hosts),
    }
    data = {**{k: v for k, v in ssh.items() if v}, **data}
    target = Target(None, (hosts[0],), data)
    # The settings before the network: readable, and for a command that deploys, all of them right.
    if args.command in ("bootstrap", "rotate"):
        commands.account(target, hosts[0], deploys=True)
    else:
        commands.host_data(target)
    check_resolves(address, "--address" if args.address else "HOST")  # before the host key: say which failed
    strict = commands.ensure_host_key(address, port, known_hosts, args.trust_on_first_use)
    return Target(None, (hosts[0],), {**data, "ssh_strict_host_key_checking": strict})


def check_resolves(address: str, given_as: str) -> None:
    """The address ssh will connect to resolves, as ssh resolves it (the system's resolver)."""
    try:
        socket.getaddrinfo(address, None)
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else str(error)
        raise UsageError(
            f"{address} ({given_as}) does not resolve: {reason}; nothing was contacted. Give the host's "
            "address with --address, or add the name to DNS or /etc/hosts"
        ) from error


def _check_single_host(hosts: list[str]) -> None:
    """A host in no inventory: exactly one, named like a host (inventory names are checked against the inventory)."""
    if len(hosts) != 1:
        raise UsageError("name one HOST, or give an inventory with -i INVENTORY")
    if not HOSTNAME.fullmatch(hosts[0]):
        raise UsageError(f"{hosts[0]!r} is not a host name like torres.example.net")


def run(args: argparse.Namespace) -> int:
    if args.command == "secret":
        # The keyring only: no host is contacted, so no host key question.
        target = _local_target(args)
        if args.action == "set":
            return commands.secret_set(target, args.stdin)
        if args.action == "show":
            return commands.secret_show(target, args.reveal)
        if args.action == "delete":
            return commands.secret_delete(target)
        return commands.secret_missing(target)
    if args.command == "remove" and args.all and (args.hosts or not args.inventory):
        raise UsageError("--all is for -i INVENTORY without host names: every host of that inventory")
    target = make_target(args)
    if args.command == "bootstrap":
        return commands.bootstrap(target, args.yes, args.test_mail)
    if args.command == "verify":
        return commands.verify(target, args.test_mail or 0, args.json)
    if args.command == "status":
        return commands.status(target, args.json)
    if args.command == "rotate":
        return commands.rotate(target, args.stdin, args.yes, args.test_mail or 0)
    return commands.remove(
        target, args.postfix, args.forget_password, args.all, args.keep_queue, args.discard_queued_mail, args.dry
    )


def _local_target(args: argparse.Namespace) -> Target:
    hosts = tuple(args.hosts)
    if not args.inventory and args.action != "missing":
        _check_single_host(list(hosts))
    return Target(args.inventory, hosts, parse_data(args.data))


def main(argv: list[str] | None = None) -> int:
    """The command's exit status, one of exit_codes.ExitCode; argparse exits with 2 by itself."""
    args = build_parser().parse_args(argv)
    if sys.stdin is None:  # started with stdin closed (`<&-`): as empty as /dev/null, and refused as that is
        sys.stdin = open(os.devnull)  # noqa: SIM115  (for the whole run)
    try:
        return run(args)
    except UsageError as error:
        print(f"nullclient {args.command}: {error}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print(f"nullclient {args.command}: interrupted; run it again to finish", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout is gone (`nullclient status | head -1`): it has what it wanted. Python's
        # documented way out: stdout to /dev/null, so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.NOT_WELL


if __name__ == "__main__":
    sys.exit(main())
