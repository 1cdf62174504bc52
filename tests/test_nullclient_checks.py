"""nullclient's judgements on what a host reports: pure functions, fed with real tool output."""

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postfix_nullclient.nullclient.checks import (
    CERTIFICATE_FIX,
    RELAY_SETTINGS_FIX,
    ROTATE_COMMAND,
    RUN_THE_DEPLOY,
    Check,
    Health,
    MailProbe,
    NullClientHealth,
    check_login,
    check_password_map,
    check_queue,
    check_relay,
    check_test_mail,
    client_mechanisms,
)
from postfix_nullclient.nullclient.commands import fix_text, say, verify_lines, verify_report
from postfix_nullclient.nullclient.passwords import PASSWORD_LENGTH, account_of, generate_password, password_problem
from postfix_nullclient.nullclient.targets import Target
from postfix_nullclient.settings import auth_plain_line_length, check_host
from tests.test_deploy_fake import host_settings

# posttls-finger -l secure against the lab's smarthost on port 587, as a Debian 12 host printed it.
VERIFIED = """posttls-finger: Connected to mail.example.net[10.213.0.1]:587
posttls-finger: < 220 mail.example.net ESMTP
posttls-finger: > EHLO op9.example.net
posttls-finger: < 250-mail.example.net
posttls-finger: < 250-AUTH LOGIN PLAIN
posttls-finger: < 250-STARTTLS
posttls-finger: < 250 HELP
posttls-finger: > STARTTLS
posttls-finger: < 220 Ready to start TLS
posttls-finger: mail.example.net[10.213.0.1]:587: matched peername: mail.example.net
posttls-finger: Verified TLS connection established to mail.example.net[10.213.0.1]:587: TLSv1.3 with cipher X
posttls-finger: > EHLO op9.example.net
posttls-finger: < 250-mail.example.net
posttls-finger: < 250-AUTH CRAM-MD5 PLAIN
posttls-finger: < 250 HELP""".splitlines()
DEBIAN_SASL_MODULES = ["anonymous", "crammd5", "digestmd5", "login", "ntlm", "plain", "sasldb", "scram"]


def health(**changes) -> Health:
    values = {"relayhost": "[mail.example.net]:587", "finger": VERIFIED, "sasl_modules": DEBIAN_SASL_MODULES}
    return Health(**(values | changes))


def test_relay_is_ok_only_with_a_verified_certificate_and_a_usable_mechanism_offered_after_tls():
    check = check_relay(host_settings("torres", "pw"), health())
    assert check.ok, check.detail
    assert "AUTH CRAM-MD5 PLAIN, usable here: CRAM-MD5 PLAIN" in check.detail  # not the LOGIN offered in clear


def test_relay_without_a_module_for_its_mechanisms_fails_and_says_what_to_install():
    check = check_relay(host_settings("torres", "pw"), health(sasl_modules=["anonymous", "sasldb"]))
    assert not check.ok
    assert "offers AUTH CRAM-MD5 PLAIN and the installed SASL modules do nothing" in check.detail
    assert "libsasl2-modules" in check.fix


def test_each_fallback_relay_is_checked_as_the_relay_is_from_what_the_host_reports():
    from dataclasses import replace

    from postfix_nullclient.nullclient.checks import check_fallback_relays

    settings = replace(
        host_settings("torres", "pw"), fallback_relays=(("backup.example.net", None), ("spare.example.net", None))
    )
    refused = "posttls-finger: Connection refused"
    accepted = LOGIN.format(answer="235 2.7.0 Authentication successful").replace("login ", "")
    lines = [
        "fallback_map_login [backup.example.net]:587 torres@example.net",
        *(f"fallback_finger [backup.example.net]:587 {line}" for line in VERIFIED),
        *(f"fallback_login [backup.example.net]:587 {line}" for line in accepted.splitlines()),
        "fallback_map_login [spare.example.net]:587 torres@example.net",
        f"fallback_finger [spare.example.net]:587 {refused}",
        "fallback_login [spare.example.net]:587 4097E1F6FF7E0000:error:8000006F:system library:BIO_connect:"
        "Connection refused:bio_sock2.c:114:",
        "sasl_module plain",
    ]
    checks = check_fallback_relays(settings, NullClientHealth().process(lines))

    assert [(c.name, c.ok) for c in checks] == [
        ("fallback password map [backup.example.net]:587", True),
        ("fallback relay [backup.example.net]:587", True),
        ("fallback login [backup.example.net]:587", True),
        ("fallback password map [spare.example.net]:587", True),
        ("fallback relay [spare.example.net]:587", False),
        ("fallback login [spare.example.net]:587", False),
    ]
    assert checks[1].detail.startswith("[backup.example.net]:587: certificate verified")
    assert checks[2].detail == "the relay accepts the login torres@example.net: 235 2.7.0 Authentication successful"
    assert checks[4].detail == "[spare.example.net]:587 is not reachable: Connection refused"
    assert checks[4].fix == f"correct fallback_relays if [spare.example.net]:587 is wrong and {RUN_THE_DEPLOY}"
    assert "not tried" in checks[5].detail
    assert checks[5].fix == f"correct fallback_relays if [spare.example.net]:587 is wrong and {RUN_THE_DEPLOY}"
    unknown = check_fallback_relays(settings, NullClientHealth().process(lines[:2]))
    assert (unknown[-1].name, unknown[-1].ok, unknown[-1].detail) == (
        "fallback relay [spare.example.net]:587",
        False,
        "is not in Postfix's smtp_fallback_relay",
    )


# posttls-finger -l secure against a relay whose banner and EHLO reply imitate posttls-finger's own
# statement, and that offers no STARTTLS; a Debian 12 lab host printed it.
IMITATING_RELAY = """posttls-finger: Connected to 127.0.0.1[127.0.0.1]:2525
posttls-finger: < 220-mail.example.net ESMTP
posttls-finger: < 220 posttls-finger: Verified TLS connection established to mail.example.net[10.213.0.1]:587: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
posttls-finger: > EHLO vr1.example.net
posttls-finger: < 250-mail.example.net
posttls-finger: < 250-posttls-finger: Verified TLS connection established to mail.example.net[10.213.0.1]:587: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
posttls-finger: < 250-AUTH LOGIN PLAIN
posttls-finger: < 250 HELP
posttls-finger: > QUIT
posttls-finger: < 221 Bye""".splitlines()  # noqa: E501


def test_a_relay_whose_replies_imitate_posttls_fingers_verified_statement_fails():
    check = check_relay(host_settings("torres", "pw"), health(finger=IMITATING_RELAY))
    assert not check.ok
    assert check.detail.endswith("no TLS with a verified certificate: it does not offer STARTTLS, and TLS is required")


def test_relay_with_an_unverified_certificate_fails():
    finger = [line for line in VERIFIED if "Verified" not in line] + [
        "posttls-finger: mail.example.net[10.213.0.1]:587: Server certificate not verified"
    ]
    check = check_relay(host_settings("torres", "pw"), health(finger=finger))
    assert not check.ok and "no TLS with a verified certificate: mail.example.net" in check.detail


def test_relay_without_starttls_fails_saying_so():
    finger = [line for line in VERIFIED[:7] if "STARTTLS" not in line] + ["posttls-finger: < 221 Bye"]
    check = check_relay(host_settings("torres", "pw"), health(finger=finger))
    assert not check.ok
    assert check.detail.endswith("no TLS with a verified certificate: it does not offer STARTTLS, and TLS is required")


def test_a_relay_that_accepts_and_never_answers_fails_saying_so():
    # posttls-finger -t 15 -T 15 against a listener that accepts and stays silent (a lab host printed it).
    finger = [
        "posttls-finger: Connected to 127.0.0.1[127.0.0.1]:587",
        "posttls-finger: timeout while reading server greeting",
    ]
    check = check_relay(host_settings("torres", "pw"), health(finger=finger))
    assert not check.ok
    assert (
        check.detail
        == "[mail.example.net]:587: connected, but it never answered: timeout while reading server greeting"
    )


def test_unreachable_relay_fails_with_the_reason():
    finger = ["posttls-finger: Failed to establish session to [mail.example.net]:587: Connection refused"]
    check = check_relay(host_settings("torres", "pw"), health(finger=finger))
    assert not check.ok and check.detail.endswith("is not reachable: Failed to establish session to "
                                                  "[mail.example.net]:587: Connection refused")  # fmt: skip


def test_anonymous_is_never_counted_as_usable():
    assert client_mechanisms(["anonymous", "plain"]) == ["PLAIN"]


def test_password_map_with_another_login_fails_naming_both():
    check = check_password_map(host_settings("torres", "pw"), health(map_login="kirk@example.net"))
    assert not check.ok
    assert check.detail == (
        "key [mail.example.net]:587 holds login 'kirk@example.net', the deploy wants 'torres@example.net'"
    )
    assert check_password_map(host_settings("torres", "pw"), health(map_login="torres@example.net")).ok
    assert not check_password_map(host_settings("torres", "pw"), health(map_login="")).ok


def test_queue_shows_what_is_stuck_and_why():
    entry = {  # one line of `postqueue -j`
        "queue_name": "deferred",
        "queue_id": "4F1A21860A5",
        "sender": "torres@example.net",
        "recipients": [{"address": "alice@example.org", "delay_reason": "SASL authentication failed; 535 5.7.8"}],
    }
    check = check_queue(Health(queue=[json.loads(json.dumps(entry))]))
    assert not check.ok
    assert check.detail == (
        "1 message(s) queued: 4F1A21860A5 (deferred) from 'torres@example.net' to 'alice@example.org': "
        "SASL authentication failed; 535 5.7.8"
    )
    assert check_queue(Health()).ok


@pytest.mark.parametrize(
    "mail, ok, detail",
    [
        (MailProbe(True, "A1", True, ["A1: to=<a@b.c>, relay=r, status=sent (250 ok)"]), True, "A1 left the queue"),
        (MailProbe(True, "A1", False, ["A1: to=<a@b.c>, status=deferred (TLS)"]), False, "A1 is still queued"),
        (MailProbe(True, "A1", True, ["A1: to=<a@b.c>, status=bounced (550)"]), False, "but was not sent"),
        # The relay's reply is its own text: "status=sent" in it is not Postfix's status.
        (MailProbe(True, "A1", True, ["A1: to=<a@b.c>, status=bounced (said: 550 status=sent)"]), False, "not sent"),
        # A bounce is final: a "sent" line after it is no delivery of this mail.
        (MailProbe(True, "A1", True, ["A1: to=<a>, status=bounced", "A1: to=<a>, status=sent"]), False, "not sent"),
        # Lines of other queue ids say nothing about this mail.
        (MailProbe(True, "A1", True, ["B2: to=<a@b.c>, status=sent (250 ok)"]), False, "not sent: no status"),
        (MailProbe(True, "", False, []), False, "never appeared"),
        (MailProbe(False), False, "sendmail failed"),
    ],
)
def test_test_mail_is_ok_only_once_sent_and_gone(mail, ok, detail):
    check = check_test_mail(mail)
    assert check.ok is ok and detail in check.detail


def test_what_a_command_prints_has_its_escape_sequences_and_control_characters_shown_escaped(capsys):
    # A relay's reply with an ANSI sequence that clears the screen, a carriage return, a right-to-left override.
    say("  FAIL  queue: 451 \x1b[2J\x1b[Hall is well\r\u202egood\tok")
    assert capsys.readouterr().out == "  FAIL  queue: 451 \\x1b[2J\\x1b[Hall is well\\x0d\\u202egood\tok\n"


def test_generated_passwords_are_32_letters_and_digits_and_differ():
    passwords = {generate_password() for _ in range(20)}
    assert len(passwords) == 20
    assert all(len(p) == PASSWORD_LENGTH and p.isalnum() and p.isascii() for p in passwords)


@pytest.mark.parametrize("password", ["", "two\nlines", " padded", "nul\0", "x" * 10_000_000])
def test_passwords_the_deploy_would_refuse_are_refused(password):
    assert password_problem(password, "torres@example.net")


def test_the_longest_password_is_the_one_whose_auth_plain_line_is_12288_octets():
    login = "torres@example.net"
    assert password_problem("p" * 9184, login) is None
    assert password_problem("p" * 9185, login) == (
        "the password is too long: the login with it makes an AUTH PLAIN line of 12289 octets, and a mail "
        "server need not take more than 12288 (RFC 4954)"
    )


@given(st.text(max_size=40), st.text(max_size=200))
def test_the_auth_plain_line_length_is_that_of_the_line_postfix_sends(login, password):
    line = b"AUTH PLAIN " + base64.b64encode(b"\0" + login.encode() + b"\0" + password.encode()) + b"\r\n"
    assert auth_plain_line_length(login, password) == len(line)


# What health.sh.j2's login printed on a Debian 12 host against the lab's smarthost (openssl s_client
# -quiet -starttls smtp, then EHLO, AUTH PLAIN, QUIT), as NullClientHealth reads it.
LOGIN = """login depth=1 CN = nullclient lab CA
login verify return:1
login depth=0 CN = mail.example.net
login verify return:1
login 250 HELP\r
login 250-mail.example.net\r
login 250-AUTH LOGIN PLAIN\r
login 250 HELP\r
login {answer}\r
login 221 Bye\r"""
UNVERIFIED_LOGIN = """login depth=0 CN = mail.example.net
login verify error:num=62:hostname mismatch
login 407776E7F27F0000:error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed"""


def login_health(output: str) -> Health:
    return NullClientHealth().process(["map_login torres@example.net", *output.splitlines()])


def test_login_is_ok_only_when_the_relay_accepts_it():
    check = check_login(
        host_settings("torres", "pw"), login_health(LOGIN.format(answer="235 2.7.0 Authentication successful"))
    )
    assert (
        check.ok
        and check.detail == "the relay accepts the login torres@example.net: 235 2.7.0 Authentication successful"
    )


def test_a_login_the_relay_refuses_fails_with_its_words_and_names_rotate():
    answer = "535 5.7.8 Authentication credentials invalid"
    check = check_login(host_settings("torres", "pw"), login_health(LOGIN.format(answer=answer)))
    assert not check.ok and check.detail.endswith(f"with the password in the host's map: {answer}")
    assert ROTATE_COMMAND in check.fix


def backup_relay_login(answer: str) -> Check:
    """The login check of the one fallback relay backup.example.net, whose answer to AUTH is `answer`."""
    from dataclasses import replace

    from postfix_nullclient.nullclient.checks import check_fallback_relays

    settings = replace(host_settings("torres", "pw"), fallback_relays=(("backup.example.net", None),))
    lines = [
        "fallback_map_login [backup.example.net]:587 torres@example.net",
        *(f"fallback_finger [backup.example.net]:587 {line}" for line in VERIFIED),
        *(
            f"fallback_login [backup.example.net]:587 {line.removeprefix('login ')}"
            for line in LOGIN.format(answer=answer).splitlines()
        ),
    ]
    [_, _, login] = check_fallback_relays(settings, NullClientHealth().process(lines))
    return login


def test_a_fallback_relay_that_refuses_the_login_fails_naming_the_account_it_lacks_not_rotate():
    answer = "535 5.7.8 Authentication credentials invalid"
    login = backup_relay_login(answer)

    assert (login.name, login.ok) == ("fallback login [backup.example.net]:587", False)
    assert login.detail.endswith(f"with the password in the host's map: {answer}")
    assert login.fix.startswith("give torres@example.net on [backup.example.net]:587 the keyring entry's password")
    assert ROTATE_COMMAND not in login.fix


def test_without_openssl_no_login_is_tried_on_the_relay_or_a_fallback_and_both_say_why():
    from dataclasses import replace

    from postfix_nullclient.nullclient.checks import check_fallback_relays

    settings = replace(host_settings("torres", "pw"), fallback_relays=(("backup.example.net", None),))
    found = NullClientHealth().process([
        "map_login torres@example.net",
        "login_tool_missing openssl or base64",
        "fallback_map_login [backup.example.net]:587 torres@example.net",
    ])  # fmt: skip
    [*_, fallback_login] = check_fallback_relays(settings, found)
    for check in (check_login(settings, found), fallback_login):
        assert not check.ok and check.detail == "not tried: openssl or base64 is not installed on the host"


@pytest.mark.parametrize(
    "answer",
    ["502 5.5.1 Command not implemented", "504 5.5.4 Unrecognized authentication type", "534 5.7.9 Mechanism too weak"],
)
def test_a_relay_that_does_not_take_auth_plain_is_not_said_to_refuse_the_password(answer):
    check = check_login(host_settings("torres", "pw"), login_health(LOGIN.format(answer=answer)))
    assert (
        not check.ok
        and check.detail == f"the relay does not take AUTH PLAIN for the login torres@example.net: {answer}"
    )
    assert "password" not in check.detail and ROTATE_COMMAND not in check.fix
    assert check.fix == f"the relay check shows what the relay offers after TLS; {RELAY_SETTINGS_FIX}"


def test_a_login_is_not_tried_without_a_verified_certificate():
    check = check_login(host_settings("torres", "pw"), login_health(UNVERIFIED_LOGIN))
    assert not check.ok
    assert "the password was not sent: verify error:num=62:hostname mismatch" in check.detail
    assert check.fix == CERTIFICATE_FIX


@pytest.mark.parametrize(
    "output",
    [
        "login 40C7E1F6FF7E0000:error:8000006F:system library:BIO_connect:Connection refused:bio_sock2.c:114:",
        "login connect:errno=110",
        "",  # nothing within the time limit: a relay that never answers
    ],
)
def test_a_login_not_tried_because_the_relay_is_unreachable_names_the_relays_settings_not_a_certificate(output):
    check = check_login(host_settings("torres", "pw"), login_health(output))
    assert not check.ok and "not tried" in check.detail
    assert check.fix == RELAY_SETTINGS_FIX


def test_a_queue_that_cannot_be_read_fails_and_says_what_remains():
    found = NullClientHealth().process([
        "queue_error postqueue: fatal: open /etc/postfix/main.cf: No such file or directory",
        "queue_error (1 message(s) remain in /var/spool/postfix/hold)",
    ])  # fmt: skip
    check = check_queue(found)
    assert not check.ok
    assert check.detail == (
        "the queue cannot be read: postqueue: fatal: open /etc/postfix/main.cf: No such file or directory "
        "(1 message(s) remain in /var/spool/postfix/hold)"
    )


def test_a_fix_names_the_hosts_own_command_line():
    inventory = Target("inventory.py", ("torres.example.net",), {"relay_port": "465"})
    assert fix_text(inventory, "torres.example.net", f"run {ROTATE_COMMAND}") == (
        "run nullclient rotate -i inventory.py torres.example.net --data relay_port=465"
    )
    ssh = {"ssh_hostname": "10.0.0.5", "ssh_user": "root", "ssh_known_hosts_file": "/tmp/k h"}
    alone = Target(None, ("kirk.example.net",), {**ssh, "ssh_strict_host_key_checking": "yes"})
    assert fix_text(alone, "kirk.example.net", ROTATE_COMMAND) == (
        "nullclient rotate kirk.example.net --address 10.0.0.5 --ssh-user root --known-hosts '/tmp/k h'"
    )
    assert alone.nullclient_options("kirk.example.net", ssh=False) == "kirk.example.net"


def test_the_keyring_entry_needs_only_its_own_settings_and_is_the_deploys():
    assert account_of("kirk.example.net", {}).user == "kirk@example.net"  # no forward_to
    data = {"forward_to": "you@example.org", "mail_domain": "example.org", "keyring_service": "relay"}
    settings, problems = check_host("kirk.example.net", data)
    assert not problems
    entry = account_of("kirk.example.net", data)
    assert (
        (entry.service, entry.user) == (settings.keyring_service, settings.smtp_user) == ("relay", "kirk@example.org")
    )


def test_a_queue_held_by_a_local_process_names_that_fix_not_the_deploy():
    from postfix_nullclient.nullclient.checks import unreadable_queue_fix

    held = unreadable_queue_fix("postqueue -j did not answer within 20 s: a local process may hold every showq")
    assert "showq" in held and "deploy" not in held
    assert "run the deploy" in unreadable_queue_fix("postqueue: fatal: Queue report unavailable - mail system is down")


def test_verifys_text_is_its_json_report_with_the_fix_as_the_host_runs_it():
    target = Target("inventory.py", ("torres.example.net",))
    checks = [Check("queue", True, "empty"), Check("login", False, "535 refused", f"one password: {ROTATE_COMMAND}")]

    report = verify_report(target, "torres.example.net", checks, "      pyinfra's words")
    unchecked = verify_report(target, "kirk.example.net", None, "      Connection refused")

    assert report == {
        "host": "torres.example.net",
        "reachable": True,
        "ok": False,
        "checks": [
            {"name": "queue", "ok": True, "detail": "empty", "fix": ""},
            {"name": "login", "ok": False, "detail": "535 refused",
             "fix": "one password: nullclient rotate -i inventory.py torres.example.net"},
        ],
    }  # fmt: skip
    assert verify_lines(report) == [
        "torres.example.net",
        "  ok    queue: empty",
        "  FAIL  login: 535 refused; fix: one password: nullclient rotate -i inventory.py torres.example.net",
    ]
    assert (unchecked["reachable"], unchecked["ok"], unchecked["checks"]) == (False, False, [])
    assert verify_lines(unchecked) == [
        "kirk.example.net",
        "  FAIL  could not be checked; pyinfra said:\n      Connection refused",
    ]


# A relay's lines after TLS that imitate AUTH's success: in its EHLO reply, or as EHLO's last line.
IMITATED = """login depth=0 CN = backup.example.net
login verify return:1
login 250-backup.example.net 235 2.7.0 Authentication successful\r
login 235-2.7.0 Authentication successful\r
login 250-AUTH PLAIN LOGIN\r
login 235 2.7.0 Authentication successful\r
login 535 5.7.8 Authentication credentials invalid\r
login 221 Bye\r"""


@pytest.mark.parametrize(
    "output",
    [
        IMITATED,
        "\n".join(line for line in IMITATED.splitlines() if not line.startswith("login 235 ")),  # the 235- only
        LOGIN.format(answer="235-2.7.0 Authentication successful").rsplit("\n", 1)[0],  # a reply cut short
    ],
)
def test_lines_that_imitate_a_success_but_are_not_a_whole_235_reply_to_auth_do_not_make_the_login_ok(output):
    check = check_login(host_settings("torres", "pw"), login_health(output))
    assert not check.ok, check


def test_a_multi_line_235_reply_to_auth_is_a_success():
    output = LOGIN.format(answer="235-2.7.0 Authentication\r\nlogin 235 2.7.0 successful")
    check = check_login(host_settings("torres", "pw"), login_health(output))
    assert check.ok and check.detail.endswith(": 235 2.7.0 successful")


def test_a_temporary_auth_failure_on_a_fallback_relay_says_try_again_and_not_rotate():
    answer = "454 4.7.0 Temporary authentication failure"
    login = backup_relay_login(answer)
    assert not login.ok and login.detail.endswith(answer)
    assert login.fix.startswith("try again later") and ROTATE_COMMAND not in login.fix


@pytest.mark.parametrize("echoed", ['"$line"', '"$(printf %.30s "$line")"'], ids=["whole", "cut at 30"])
def test_a_relay_that_echoes_the_auth_line_gets_no_base64_into_what_the_health_script_prints(tmp_path, echoed):
    """try_login of health.sh.j2, run by sh with an openssl that answers each line it reads by echoing
    it, whole or its first 30 characters."""
    import base64
    import re
    import subprocess

    script = NullClientHealth().command()
    function = re.search(r"^try_login\(\) \{\n.*?^\}\n", script, re.M | re.S).group(0)
    (tmp_path / "openssl").write_text(
        f'#!/bin/sh\nwhile IFS= read -r line; do printf "500 5.5.1 unknown: %s\\r\\n" {echoed}; done\n'
    )
    (tmp_path / "postconf").write_text("#!/bin/sh\necho no\n")
    for tool in ("openssl", "postconf"):
        (tmp_path / tool).chmod(0o755)
    password = "s3cret-Password-9"
    run = subprocess.run(
        ["sh", "-c", f"{function}ca=\ntry_login '[backup.example.net]:587' \"$1\" 'fallback_login x'",
         "sh", f"torres@example.net:{password}"],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    plain = base64.b64encode(f"\0torres@example.net\0{password}".encode()).decode()
    assert "fallback_login x 500 5.5.1 unknown: AUTH PLAIN (the AUTH line's base64, not shown)" in run.stdout
    assert "fallback_login x 500 5.5.1 unknown: EHLO " in run.stdout  # the other lines come through
    assert plain not in run.stdout and plain[:12] not in run.stdout and password not in run.stdout
