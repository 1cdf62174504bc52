"""The lab's smarthost, talked to with smtplib on 127.0.0.1: no root and no lab needed."""

import hashlib
import os
import shutil
import smtplib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import smarthost
from lab.ca import ensure_ca
from lab.config import RELAY_NAME

LOOPBACK = "127.0.0.1"
USER = "alice@example.net"
PASSWORD = "correct horse # : @ $ % battery"
MESSAGE = f"From: Alice <{USER}>\r\nTo: owner@example.org\r\nSubject: hello from the lab\r\n\r\nHi.\r\n"


class _ToLoopback:
    """Connect to 127.0.0.1 but check the certificate against the name given, like Postfix does."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return super()._get_socket(LOOPBACK, port, timeout)  # type: ignore[misc]


class LabSMTP(_ToLoopback, smtplib.SMTP):
    pass


class LabSMTPS(_ToLoopback, smtplib.SMTP_SSL):
    pass


@dataclass
class Smarthost:
    state_dir: Path
    ca_dir: Path
    ca_cert: Path
    submission: int
    smtps: int
    name: str

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_cert)

    def submission_client(self) -> smtplib.SMTP:
        return LabSMTP(RELAY_NAME, self.submission, timeout=10)

    def smtps_client(self) -> smtplib.SMTP_SSL:
        return LabSMTPS(RELAY_NAME, self.smtps, timeout=10, context=self.tls())

    def messages(self) -> list[dict]:
        return smarthost.messages(self.state_dir, self.name)

    def auth_attempts(self) -> list[dict]:
        return smarthost.auth_attempts(self.state_dir, self.name)


def login_plain(client: smtplib.SMTP, user: str, password: str) -> None:
    # smtplib's login() tries the next mechanism after a failure: one attempt is easier to count.
    # auth() does not say EHLO itself, and takes the "503 send EHLO first" for "503 already logged in".
    client.ehlo_or_helo_if_needed()
    client.user, client.password = user, password
    client.auth("PLAIN", client.auth_plain)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca")
    ensure_ca(directory)
    return directory


def _start(state_dir: Path, ca_dir: Path, mode: str = "real", name: str = "smarthost") -> Smarthost:
    submission, smtps = free_ports(2)
    smarthost.start(state_dir, ca_dir, mode=mode, ports=(submission, smtps), name=name, listen=LOOPBACK)
    return Smarthost(state_dir, ca_dir, ca_dir / "ca.crt", submission, smtps, name)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, ca_dir: Path) -> Iterator[Smarthost]:
    state_dir = tmp_path_factory.mktemp("state")
    try:
        yield _start(state_dir, ca_dir)
    finally:
        smarthost.stop(state_dir)


@pytest.fixture
def host(running: Smarthost) -> Smarthost:
    smarthost.clear(running.state_dir)
    smarthost.set_account(running.state_dir, USER, PASSWORD)
    return running


@pytest.fixture
def impostor(tmp_path: Path, ca_dir: Path) -> Iterator[Smarthost]:
    try:
        yield _start(tmp_path, ca_dir, mode="no-starttls", name="impostor")
    finally:
        smarthost.stop(tmp_path, name="impostor")


def test_starttls_auth_and_own_sender_is_stored(host: Smarthost) -> None:
    with host.submission_client() as client:
        client.ehlo()
        assert client.has_extn("starttls")
        client.starttls(context=host.tls())
        client.ehlo()
        client.login(USER, PASSWORD)
        client.sendmail(USER, ["owner@example.org"], MESSAGE)

    [message] = smarthost.wait_for_messages(host.state_dir, 1, timeout=5)
    assert message["auth_user"] == USER
    assert message["mail_from"] == USER
    assert message["rcpt_tos"] == ["owner@example.org"]
    assert message["tls"] is True
    assert message["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert message["tls_cipher"]
    assert message["port"] == host.submission
    assert message["peer"][0] == LOOPBACK
    assert message["subject"] == "hello from the lab"
    assert message["from"] == f"Alice <{USER}>"
    assert message["to"] == "owner@example.org"
    assert "Hi." in message["data"]
    [attempt] = host.auth_attempts()
    assert attempt["success"] and attempt["tls"] and attempt["login"] == USER
    assert attempt["port"] == host.submission
    assert PASSWORD not in (host.state_dir / "smarthost" / "spool" / smarthost.AUTH_LOG).read_text()


def test_auth_login_mechanism_and_sender_case(host: Smarthost) -> None:
    with host.submission_client() as client:
        client.starttls(context=host.tls())
        client.ehlo()
        client.user, client.password = USER, PASSWORD
        client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        client.sendmail(USER.upper(), ["owner@example.org"], MESSAGE)
    assert [m["auth_user"] for m in host.messages()] == [USER]
    assert host.auth_attempts()[0]["mechanism"] == "LOGIN"


def test_no_auth_before_starttls(host: Smarthost) -> None:
    with host.submission_client() as client:
        client.ehlo()
        assert not client.has_extn("auth")
        code, _ = client.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUubmV0AHg=")
        assert code in (530, 538)
    assert host.auth_attempts() == []


def test_mail_without_auth_is_refused(host: Smarthost) -> None:
    with host.submission_client() as client:
        client.starttls(context=host.tls())
        client.ehlo()
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail(USER, ["owner@example.org"], MESSAGE)
    assert refused.value.smtp_code == 530
    assert host.messages() == []


def test_sender_must_be_the_login(host: Smarthost) -> None:
    with host.submission_client() as client:
        client.starttls(context=host.tls())
        client.login(USER, PASSWORD)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("root@ws1.example.net", ["owner@example.org"], MESSAGE)
    assert refused.value.smtp_code == 553
    assert b"5.7.1" in refused.value.smtp_error
    assert f"not owned by user {USER}".encode() in refused.value.smtp_error
    assert host.messages() == []


def test_null_sender_is_refused(host: Smarthost) -> None:
    with host.submission_client() as client:
        client.starttls(context=host.tls())
        client.login(USER, PASSWORD)
        code, _ = client.mail("<>")
    assert code == 553


def test_wrong_password(host: Smarthost) -> None:
    with host.submission_client() as client:
        client.starttls(context=host.tls())
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            login_plain(client, USER, "wrong")
    assert refused.value.smtp_code == 535
    assert b"5.7.8" in refused.value.smtp_error
    [attempt] = host.auth_attempts()
    assert attempt["success"] is False and attempt["login"] == USER
    assert "password_sha256" not in attempt


def test_port_465_is_implicit_tls(host: Smarthost) -> None:
    with host.smtps_client() as client:
        client.ehlo()
        assert client.has_extn("auth")
        assert not client.has_extn("starttls")
        client.login(USER, PASSWORD)
        client.sendmail(USER, ["owner@example.org"], MESSAGE)
    [message] = host.messages()
    assert message["tls"] is True and message["port"] == host.smtps and message["auth_user"] == USER


def test_port_465_still_wants_auth(host: Smarthost) -> None:
    with host.smtps_client() as client, pytest.raises(smtplib.SMTPSenderRefused) as refused:
        client.sendmail(USER, ["owner@example.org"], MESSAGE)
    assert refused.value.smtp_code == 530


def test_certificate_is_checked_by_name(host: Smarthost) -> None:
    # The right name and CA pass (the tests above); another name or the system's CAs do not.
    wrong_name = pytest.raises(ssl.SSLCertVerificationError, match=r"IP address mismatch|doesn't match")
    with smtplib.SMTP(LOOPBACK, host.submission, timeout=10) as client, wrong_name:
        client.starttls(context=host.tls())
    unknown_ca = pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer")
    with LabSMTP(RELAY_NAME, host.submission, timeout=10) as client, unknown_ca:
        client.starttls(context=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        LabSMTPS("mail.example.com", host.smtps, timeout=10, context=host.tls())


def test_account_rotation(host: Smarthost) -> None:
    smarthost.set_account(host.state_dir, USER, "the new one")
    with host.submission_client() as client:
        client.starttls(context=host.tls())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            login_plain(client, USER, PASSWORD)
    with host.submission_client() as client:
        client.starttls(context=host.tls())
        login_plain(client, USER, "the new one")
    smarthost.remove_account(host.state_dir, USER)
    with host.submission_client() as client:
        client.starttls(context=host.tls())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            login_plain(client, USER, "the new one")
    assert [a["success"] for a in host.auth_attempts()] == [False, True, False]


def test_storage_failure_is_temporary(host: Smarthost) -> None:
    spool = host.state_dir / "smarthost" / "spool"
    with host.submission_client() as client:
        client.starttls(context=host.tls())
        client.login(USER, PASSWORD)
        shutil.rmtree(spool)
        try:
            with pytest.raises(smtplib.SMTPDataError) as failed:
                client.sendmail(USER, ["owner@example.org"], MESSAGE)
        finally:
            spool.mkdir()
    # 4xx: Postfix keeps the mail and retries instead of bouncing it.
    assert failed.value.smtp_code == 451


def test_wait_for_messages_times_out_with_what_it_has(host: Smarthost) -> None:
    with pytest.raises(TimeoutError, match="expected 1 message"):
        smarthost.wait_for_messages(host.state_dir, 1, timeout=0.3)


def test_impostor_offers_auth_in_clear_and_records_it(impostor: Smarthost) -> None:
    with impostor.submission_client() as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.has_extn("auth")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.starttls(context=impostor.tls())
    assert impostor.auth_attempts() == []  # a careful client stops here: nothing leaked

    with impostor.submission_client() as client:
        client.login(USER, PASSWORD)  # a careless one does not
    [attempt] = impostor.auth_attempts()
    assert attempt["tls"] is False and attempt["password_received"] is True
    assert attempt["password_sha256"] == hashlib.sha256(PASSWORD.encode()).hexdigest()
    log = impostor.state_dir / "impostor" / "spool" / smarthost.AUTH_LOG
    assert PASSWORD not in log.read_text()


def test_impostor_has_no_tls_on_465(impostor: Smarthost) -> None:
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        impostor.smtps_client()
    assert impostor.auth_attempts() == []


def _pid(state_dir: Path, name: str = "smarthost") -> int:
    return int((state_dir / name / "pid").read_text())


def _alive(pid: int) -> bool:
    try:
        return b"lab.smarthost" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_start_is_idempotent_and_stop_really_stops(tmp_path: Path, ca_dir: Path) -> None:
    try:
        started = _start(tmp_path, ca_dir)
        pid = _pid(tmp_path)
        ports = (started.submission, started.smtps)
        smarthost.start(tmp_path, ca_dir, ports=ports, listen=LOOPBACK)
        assert _pid(tmp_path) == pid  # the same one, left running
        assert smarthost.is_running(tmp_path)
        assert (tmp_path / "smarthost" / "accounts.json").stat().st_mode & 0o777 == 0o600

        smarthost.start(tmp_path, ca_dir, mode="no-starttls", ports=ports, listen=LOOPBACK)
        assert _pid(tmp_path) != pid and not _alive(pid)  # another mode: restarted
        pid = _pid(tmp_path)
    finally:
        smarthost.stop(tmp_path)
    assert not _alive(pid)
    assert not (tmp_path / "smarthost" / "pid").exists()
    assert not smarthost.is_running(tmp_path)
    with pytest.raises(OSError):
        socket.create_connection((LOOPBACK, started.submission), timeout=1).close()
    smarthost.stop(tmp_path)  # idempotent


def test_stop_leaves_a_stranger_alone(tmp_path: Path) -> None:
    # A stale pid file naming a process that is not a smarthost (here: ourselves).
    (tmp_path / "smarthost").mkdir()
    (tmp_path / "smarthost" / "pid").write_text(f"{os.getpid()}\n")
    smarthost.stop(tmp_path)
    assert not (tmp_path / "smarthost" / "pid").exists()


def test_start_failure_points_at_the_log(tmp_path: Path, ca_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        busy = taken.getsockname()[1]
        # 465 is taken: the server must exit, and start() say so rather than wait or pretend.
        with pytest.raises(RuntimeError, match=r"see .*log"):
            smarthost.start(tmp_path, ca_dir, ports=(free_ports(1)[0], busy), listen=LOOPBACK, timeout=5)
    assert not smarthost.is_running(tmp_path)
