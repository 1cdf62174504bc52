"""A smarthost that behaves like a real mail provider's submission service, for the lab.

Port 587 wants STARTTLS before AUTH, port 465 is implicit TLS; both want AUTH, and the envelope
sender must be the login. Every accepted message and every AUTH attempt is written to a spool
directory as JSON, so tests (and the lab CLI) can see what the null clients really sent.

`--mode no-starttls` turns it into an impostor that offers AUTH in clear and notes any password it
is given: a correctly configured client must never send one.

Run in the foreground with `python -m lab.smarthost ...`, or manage a background instance with
start(), stop() and the helpers below.
"""

import argparse
import asyncio
import contextlib
import email.parser
import email.policy
import fcntl
import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.ca import ensure_ca, issue_certificate
from lab.config import GATEWAY, REJECTING_DOMAIN, RELAY_NAME, RELAY_SMTPS_PORT, RELAY_SUBMISSION_PORT

AUTH_LOG = "auth-log.jsonl"
MODES = ("real", "no-starttls")
# Postfix retries a 4xx later; a 5xx would bounce the mail back to the workstation's user.
TEMPORARY_FAILURE = "451 4.3.0 Error: internal error, please try again later"


# ---------------------------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------------------------


def _write_json_atomically(path: Path, data: Any, mode: int = 0o644) -> None:
    # Readers poll the directory: they must never see half a file.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def _read_accounts(path: Path) -> dict[str, str]:
    return json.loads(path.read_text()) if path.exists() else {}


def _password_matches(accounts: dict[str, str], login: str, password: str) -> bool:
    # Logins are mail addresses: providers compare them case-insensitively.
    for known_login, known_password in accounts.items():
        if known_login.casefold() == login.casefold():
            return hmac.compare_digest(known_password.encode(), password.encode())
    return False


def _tls_details(server: Any) -> dict[str, Any]:
    # After STARTTLS aiosmtpd swaps in the TLS transport, and on port 465 the transport is TLS
    # from the start: either way the transport knows.
    transport = server.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return {"tls": False, "tls_version": None, "tls_cipher": None}
    cipher = ssl_object.cipher()
    return {"tls": True, "tls_version": ssl_object.version(), "tls_cipher": cipher[0] if cipher else None}


def _local_port(server: Any) -> int | None:
    transport = server.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    return sockname[1] if sockname else None


def _decode(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Smarthost:
    """The aiosmtpd handler and authenticator: checks accounts and senders, writes the spool."""

    def __init__(self, accounts: Path, spool: Path, mode: str) -> None:
        self.accounts = accounts
        self.spool = spool
        self.mode = mode

    def _log_auth_attempt(self, entry: dict[str, Any]) -> None:
        with open(self.spool / AUTH_LOG, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        login, password = _decode(auth_data.login), _decode(auth_data.password)
        if self.mode == "no-starttls":
            # An impostor wants the mail and the password, so it says yes to anything.
            success = True
        else:
            # Read on every attempt so that a test can rotate a password while the server runs.
            success = _password_matches(_read_accounts(self.accounts), login, password)
        entry: dict[str, Any] = {
            "time": time.time(),
            "login": login,
            "mechanism": mechanism,
            "success": success,
            "port": _local_port(server),
            "peer": list(session.peer) if session.peer else None,
            "password_received": bool(password),
            **_tls_details(server),
        }
        if self.mode == "no-starttls":
            # Never the password itself, but enough for a test to prove which one leaked.
            entry["password_sha256"] = hashlib.sha256(password.encode()).hexdigest()
        self._log_auth_attempt(entry)
        if not success:
            return AuthResult(success=False, handled=False)
        # handled=False and auth_data set, or aiosmtpd leaves session.auth_data as None.
        return AuthResult(success=True, handled=False, auth_data=login)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        login = session.auth_data or ""
        sender = "" if address == "<>" else address  # aiosmtpd passes the null sender as "<>"
        # Like a provider's submission service with Postfix's reject_sender_login_mismatch: only mail
        # whose sender is the login (case-insensitive). The null sender (bounces, DSNs) is owned by
        # nobody: some providers take it, others do not. We take the strict side on purpose, so the
        # deploy is tested against the worst case: a null client must not depend on sending it.
        if not sender or sender.casefold() != login.casefold():
            return f"553 5.7.1 <{sender}>: Sender address rejected: not owned by user {login}"
        envelope.mail_from = sender
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        # A domain whose mailboxes all "do not exist", so that tests can make the relay bounce mail.
        if address.casefold().endswith(f"@{REJECTING_DOMAIN}"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        try:
            message_id = self._store(server, session, envelope)
        except Exception as error:
            print(f"smarthost: could not store a message: {error!r}", file=sys.stderr, flush=True)
            return TEMPORARY_FAILURE
        return f"250 2.0.0 Ok: queued as {message_id}"

    async def handle_exception(self, error: Exception) -> str:
        # Without this, aiosmtpd answers 500 and Postfix would bounce instead of retrying.
        print(f"smarthost: session error: {error!r}", file=sys.stderr, flush=True)
        return TEMPORARY_FAILURE

    def _store(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or b""
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
        received = time.time()
        message_id = f"{time.time_ns()}-{uuid.uuid4().hex[:12]}"
        record = {
            "id": message_id,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_user": session.auth_data,
            "port": _local_port(server),
            "peer": list(session.peer) if session.peer else None,
            "helo": session.host_name,
            "received": received,
            "received_at": datetime.fromtimestamp(received, UTC).isoformat(),
            "from": _header(headers, "From"),
            "to": _header(headers, "To"),
            "subject": _header(headers, "Subject"),
            "data": raw.decode("utf-8", "replace"),
            **_tls_details(server),
        }
        _write_json_atomically(self.spool / f"{message_id}.json", record)
        return message_id


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else str(value)


def _server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def _smtp_factory(args: argparse.Namespace, handler: Smarthost, port: int) -> Callable[[], Any]:
    from aiosmtpd.smtp import SMTP

    real = args.mode == "real"
    tls_context = _server_tls_context(args.cert, args.key) if real else None
    implicit_tls = port == args.smtps_port

    def factory() -> Any:
        return SMTP(
            handler,
            hostname=args.hostname,
            ident="ESMTP",
            # STARTTLS on 587 only: on 465 the connection is TLS before the first byte.
            tls_context=tls_context if real and not implicit_tls else None,
            require_starttls=real and not implicit_tls,
            auth_required=True,
            # aiosmtpd only counts STARTTLS as TLS: on 465 it must not ask again. The impostor
            # offers AUTH in clear on purpose.
            auth_require_tls=real and not implicit_tls,
            authenticator=handler.authenticate,
            enable_SMTPUTF8=True,
            loop=asyncio.get_running_loop(),
        )

    return factory


async def _serve(args: argparse.Namespace) -> None:
    handler = Smarthost(args.accounts, args.spool, args.mode)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    servers = []
    # 465 first: start() waits for 587 to answer, which then means that both are bound.
    for port in (args.smtps_port, args.submission_port):
        # The impostor has no TLS at all: on 465 a TLS client then fails its handshake.
        ssl_context = (
            _server_tls_context(args.cert, args.key) if args.mode == "real" and port == args.smtps_port else None
        )
        servers.append(
            await loop.create_server(_smtp_factory(args, handler, port), host=args.listen, port=port, ssl=ssl_context)
        )
    print(
        f"smarthost ({args.mode}) listening on {args.listen} ports {args.submission_port} and {args.smtps_port}",
        flush=True,
    )
    await stopping.wait()
    for server in servers:
        server.close()
    for server in servers:
        await server.wait_closed()
    print("smarthost stopped", flush=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab.smarthost", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default=GATEWAY)
    parser.add_argument("--submission-port", type=int, default=RELAY_SUBMISSION_PORT)
    parser.add_argument("--smtps-port", type=int, default=RELAY_SMTPS_PORT)
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    parser.add_argument("--accounts", type=Path, required=True)
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--mode", choices=MODES, default="real")
    parser.add_argument("--hostname", default=RELAY_NAME)
    args = parser.parse_args(argv)
    if args.mode == "real" and not (args.cert and args.key):
        parser.error("--mode real needs --cert and --key")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    args.spool.mkdir(parents=True, exist_ok=True)
    # aiosmtpd warns, once per connection, that AUTH without STARTTLS is unsafe: on 465 the connection
    # is TLS already, and the impostor means it. And it warns about its own use of login_data.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
    logging.getLogger("mail.log").addFilter(lambda record: "auth_require_tls == False" not in record.getMessage())
    asyncio.run(_serve(args))
    return 0


# ---------------------------------------------------------------------------------------------
# Management: a background instance under state_dir/name
# ---------------------------------------------------------------------------------------------

# Popen objects of the instances this process started, so that stop() can reap them.
_children: dict[int, subprocess.Popen] = {}


def _directory(state_dir: Path, name: str) -> Path:
    # Absolute: the paths go on the server's command line, and it runs in another directory.
    return (state_dir / name).absolute()


def _spool(state_dir: Path, name: str) -> Path:
    return _directory(state_dir, name) / "spool"


def _accounts_file(state_dir: Path, name: str) -> Path:
    return _directory(state_dir, name) / "accounts.json"


def _pid_file(state_dir: Path, name: str) -> Path:
    return _directory(state_dir, name) / "pid"


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    # A zombie has an empty command line: it is no longer running.
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_ours(pid: int, state_dir: Path, name: str) -> bool:
    # A pid file can outlive its process and the pid be reused: check what the process runs.
    cmdline = _cmdline(pid)
    return "lab.smarthost" in cmdline and str(_spool(state_dir, name)) in cmdline


def _running_pid(state_dir: Path, name: str) -> int | None:
    try:
        pid = int(_pid_file(state_dir, name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_ours(pid, state_dir, name) else None


def _ensure_certificate(ca_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    ca_cert = ensure_ca(ca_dir)
    cert, key = out_dir / f"{RELAY_NAME}.crt", out_dir / f"{RELAY_NAME}.key"
    # A CA made again after the certificate was signed would not trust it any more.
    if cert.exists() and key.exists() and cert.stat().st_mtime >= ca_cert.stat().st_mtime:
        return cert, key
    return issue_certificate(ca_dir, RELAY_NAME, out_dir)


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as connection:
            connection.settimeout(2)
            return connection.recv(4).startswith(b"220")
    except OSError:
        return False


def _log_tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(
    state_dir: Path,
    ca_dir: Path,
    mode: str = "real",
    ports: tuple[int, int] = (RELAY_SUBMISSION_PORT, RELAY_SMTPS_PORT),
    cert: tuple[Path, Path] | None = None,
    name: str = "smarthost",
    listen: str = GATEWAY,
    timeout: float = 15.0,
) -> None:
    """Start a smarthost in the background unless the same one already runs; wait until it answers."""
    if mode not in MODES:
        raise ValueError(f"unknown smarthost mode {mode!r}, expected one of {MODES}")
    directory = _directory(state_dir, name)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    spool, accounts = _spool(state_dir, name), _accounts_file(state_dir, name)
    spool.mkdir(exist_ok=True)
    if not accounts.exists():
        _write_json_atomically(accounts, {}, mode=0o600)
    cert_path, key_path = (
        (cert[0].absolute(), cert[1].absolute()) if cert is not None else _ensure_certificate(ca_dir, directory)
    )
    argv = [
        sys.executable, "-m", "lab.smarthost", "--listen", listen,
        "--submission-port", str(ports[0]), "--smtps-port", str(ports[1]),
        "--cert", str(cert_path), "--key", str(key_path),
        "--accounts", str(accounts), "--spool", str(spool), "--mode", mode, "--hostname", RELAY_NAME,
    ]  # fmt: skip
    pid = _running_pid(state_dir, name)
    if pid is not None:
        if _cmdline(pid)[1:] == argv[1:]:
            return
        stop(state_dir, name)  # running, but with another mode, port or certificate
    log = directory / "log"
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the lab CLI must not kill it half-way
            cwd=Path(__file__).resolve().parent.parent,  # so that `-m lab.smarthost` is found
        )
    _children[process.pid] = process
    _pid_file(state_dir, name).write_text(f"{process.pid}\n")
    deadline = time.monotonic() + timeout
    while not _answers(listen, ports[0]):
        if process.poll() is not None or time.monotonic() > deadline:
            _abandon(process)
            _pid_file(state_dir, name).unlink(missing_ok=True)
            raise RuntimeError(
                f"smarthost {name!r} did not answer on {listen}:{ports[0]}; see {log}:\n{_log_tail(log)}"
            )
        time.sleep(0.05)


def _abandon(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()
    _children.pop(process.pid, None)


def _reap(pid: int) -> bool:
    """Return True once `pid` is gone (reaping it if it is our child)."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return False
        del _children[pid]
        return True
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # Only a zombie has surely closed its sockets; the command line empties earlier in the exit.
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _reap(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop(state_dir: Path, name: str = "smarthost") -> None:
    """Stop the smarthost `name` if it runs (SIGTERM, then SIGKILL); idempotent."""
    pid = _running_pid(state_dir, name)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, 5):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5)
    _pid_file(state_dir, name).unlink(missing_ok=True)


def is_running(state_dir: Path, name: str = "smarthost") -> bool:
    return _running_pid(state_dir, name) is not None


@contextlib.contextmanager
def _accounts_locked(path: Path) -> Iterator[dict[str, str]]:
    """The accounts, to change and write back; tests that run side by side change them at once."""
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        accounts = _read_accounts(path)
        yield accounts
        _write_json_atomically(path, accounts, mode=0o600)


def set_account(state_dir: Path, login: str, password: str, name: str = "smarthost") -> None:
    """Add an account or change its password; the server sees it at the next AUTH."""
    with _accounts_locked(_accounts_file(state_dir, name)) as accounts:
        accounts[login] = password


def remove_account(state_dir: Path, login: str, name: str = "smarthost") -> None:
    with _accounts_locked(_accounts_file(state_dir, name)) as accounts:
        accounts.pop(login, None)


def messages(state_dir: Path, name: str = "smarthost") -> list[dict]:
    """Every message accepted so far, oldest first."""
    found = []
    for path in _spool(state_dir, name).glob("*.json"):
        with contextlib.suppress(FileNotFoundError):  # clear() may run at the same time
            found.append(json.loads(path.read_text()))
    return sorted(found, key=lambda message: (message["received"], message["id"]))


def auth_attempts(state_dir: Path, name: str = "smarthost") -> list[dict]:
    """Every AUTH attempt so far, oldest first (no passwords: see Smarthost.authenticate)."""
    try:
        text = (_spool(state_dir, name) / AUTH_LOG).read_text()
    except FileNotFoundError:
        return []
    # The server may be half-way through the last line: only lines with their newline are whole.
    return [json.loads(line) for line in text.split("\n")[:-1] if line]


def wait_for_messages(
    state_dir: Path,
    count: int,
    timeout: float,
    predicate: Callable[[dict], bool] | None = None,
    name: str = "smarthost",
) -> list[dict]:
    """Wait until at least `count` messages (matching `predicate`) have arrived; return them."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in messages(state_dir, name) if predicate is None or predicate(m)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            summary = [(m["mail_from"], m["rcpt_tos"], m["subject"]) for m in found]
            raise TimeoutError(
                f"expected {count} message(s) at smarthost {name!r} within {timeout}s, got {len(found)}: {summary}"
            )
        time.sleep(0.1)


def clear(state_dir: Path, name: str = "smarthost") -> None:
    """Forget the messages and AUTH attempts received so far."""
    spool = _spool(state_dir, name)
    for path in spool.glob("*.json"):
        path.unlink(missing_ok=True)
    (spool / AUTH_LOG).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
