"""What `nullclient verify` looks at on a host, and how it judges it: facts and pure functions.

Every check runs on the host itself, with Postfix's own tools: `postconf -n`, `postmap -q`,
`posttls-finger` (the relay, its certificate and AUTH, with the live CA file and wrapper mode),
the SASL modules on disk and `postqueue -j`; the login on the relay with `openssl s_client` and the
password map's own entry. The password never leaves the host: the map lookup is cut to the login
there, and the login's AUTH line goes to openssl on stdin.

A check that fails says how to fix it (Check.fix), with placeholders that nullclient.commands fills
in with the command lines for the host: ROTATE_COMMAND, DEPLOY_COMMAND and FLUSH_COMMAND.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from dataclasses import asdict, dataclass, field, replace

from pyinfra.api import FactBase, operation

from postfix_nullclient.facts import HostState
from postfix_nullclient.model import SECRET_STAT, ManagedFile
from postfix_nullclient.postfix import Plan, main_cf_values
from postfix_nullclient.render import render_script
from postfix_nullclient.settings import Settings

# Cyrus SASL client plugin (lib<name>.so) -> the mechanisms it implements.
SASL_MECHANISMS = {
    "plain": ["PLAIN"],
    "login": ["LOGIN"],
    "crammd5": ["CRAM-MD5"],
    "digestmd5": ["DIGEST-MD5"],
    "scram": ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"],
    "ntlm": ["NTLM"],
    "gssapiv2": ["GSSAPI"],
    "gs2": ["GS2-KRB5"],
    "otp": ["OTP"],
    "anonymous": ["ANONYMOUS"],
}


@dataclass
class Health:
    relayhost: str = ""
    postconf: dict[str, str] = field(default_factory=dict)
    map_login: str | None = None  # None: not looked up (no relayhost)
    finger: list[str] = field(default_factory=list)
    sasl_modules: list[str] = field(default_factory=list)
    login: list[str] = field(default_factory=list)  # what openssl and the relay said to the login
    login_tool_missing: str = ""  # why the login could not be tried
    queue: list[dict] = field(default_factory=list)
    queue_error: list[str] = field(default_factory=list)  # postqueue failed: its words, what remains
    fallbacks: dict[str, Health] = field(default_factory=dict)  # each fallback relay: its map_login, finger, login


class NullClientHealth(FactBase[Health]):
    """The live Postfix configuration, the password map's login, the relay as seen from the host, the queue."""

    def command(self) -> str:
        return render_script("health")

    @staticmethod
    def default() -> Health:
        return Health()

    def process(self, output: list[str]) -> Health:
        health = Health()
        for line in output:
            key, _, value = line.partition(" ")
            if key == "relayhost":
                health.relayhost = value.strip()
            elif key == "postconf":
                name, _, setting = value.partition("=")
                health.postconf[name.strip()] = setting.strip()
            elif key == "map_login":
                health.map_login = value.strip()
            elif key == "finger":
                health.finger.append(value)
            elif key in ("fallback_map_login", "fallback_finger", "fallback_login"):
                endpoint, _, rest = value.partition(" ")
                fallback = health.fallbacks.setdefault(endpoint, Health(relayhost=endpoint))
                if key == "fallback_map_login":
                    fallback.map_login = rest.strip()
                elif key == "fallback_finger":
                    fallback.finger.append(rest)
                else:
                    fallback.login.append(rest.rstrip("\r"))
            elif key == "sasl_module":
                health.sasl_modules.append(value.strip())
            elif key == "login":
                health.login.append(value.rstrip("\r"))
            elif key == "login_tool_missing":
                health.login_tool_missing = value.strip()
            elif key == "queue_error":
                health.queue_error.append(value.strip())
            elif key == "queue" and value.strip():
                try:
                    health.queue.append(json.loads(value))
                except json.JSONDecodeError:
                    health.queue.append({"queue_id": "?", "unparsed": value})
        return health


@dataclass
class MailProbe:
    sent: bool = False
    queue_id: str = ""
    left_queue: bool = False
    log: list[str] = field(default_factory=list)


def read_mail_probe(output: list[str]) -> MailProbe:
    """What the test mail script printed: sent, its queue id, whether it left the queue, its log."""
    mail = MailProbe()
    for line in output:
        key, _, value = line.partition(" ")
        if key == "sent":
            mail.sent = value == "yes"
        elif key == "queue_id":
            mail.queue_id = value.strip()
        elif key == "left":
            mail.left_queue = value == "yes"
        elif key == "log":
            mail.log.append(value)
    return mail


@operation(is_idempotent=False)
def send_test_mail(timeout: int) -> Generator[str, None, None]:
    """
    Send one mail to root (so to forward_to) and wait, at most ``timeout`` seconds, until it leaves
    the queue. An operation, not a fact: a ``--dry`` run sends nothing.

    + timeout: seconds to wait for the mail to leave the queue
    """
    yield render_script("test_mail", timeout=timeout)


# Placeholders in Check.fix, filled in by nullclient.commands with the command line for the host.
ROTATE_COMMAND = "{rotate}"  # nullclient rotate with the host's options
DEPLOY_COMMAND = "{deploy}"  # the deploy of the host
FLUSH_COMMAND = "{flush}"  # postqueue -f on the host
RUN_THE_DEPLOY = f"run the deploy: {DEPLOY_COMMAND}"


# The names of verify's checks, as its lines and its --json show them (one check per relay, fallbacks too).
SETTINGS = "settings"
CONFIGURATION = "configuration"
PASSWORD_MAP = "password map"
RELAY = "relay"
LOGIN = "login"
QUEUE = "queue"
TEST_MAIL = "test mail"


def fallback_name(check: str, endpoint: str) -> str:
    """A check of a fallback relay: "fallback relay [backup.example.net]:587"."""
    return f"fallback {check} {endpoint}"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""  # the command that fixes a failure, with the placeholders above


def _normalized(value: str) -> str:
    return " ".join(value.split())


def parameter_differences(files: list[ManagedFile], live: dict[str, str]) -> list[str]:
    """Each Postfix parameter whose live value is not the one the deploy writes, in a sentence."""
    wanted = main_cf_values(next(f.content for f in files if f.name == "main.cf"))
    differences = [
        f"{key} is {live.get(key, '(unset)')!r}, the deploy writes {wanted.get(key, '(unset)')!r}"
        for key in sorted(set(wanted) | set(live))
        if _normalized(wanted.get(key, "")) != _normalized(live.get(key, ""))
    ]
    if len(differences) > 3:
        differences[3:] = [f"and {len(differences) - 3} more parameters differ"]
    return differences


def service_problems(files: list[ManagedFile], found: HostState) -> list[str]:
    """Why Postfix does not run as deployed: stopped, not started at boot, a map's database not built."""
    problems = [
        f"the database of {f.name} is missing, older than the map or not root-only"
        for f in files
        if f.hashed_map and found.fresh_maps.get(f.name) != SECRET_STAT
    ]
    if not found.running:
        problems.append("postfix is not running")
    if not found.enabled:
        problems.append("postfix is not enabled at boot")
    return problems


def check_configuration(files: list[ManagedFile], found: HostState, todo: Plan, health: Health) -> Check:
    """postconf -n equals the wanted main.cf, and the deploy would change nothing."""
    problems = []
    if "main.cf" not in found.contents:
        problems.append("main.cf is missing")
    else:
        problems += [f"postconf -n: {difference}" for difference in parameter_differences(files, health.postconf)]
    for changed in todo.changed:
        if changed.secret:
            problems.append(f"{changed.name} differs from the keyring's password or is not root-only (not shown)")
        elif changed.name != "main.cf":
            problems.append(f"{changed.name} differs from what the deploy writes")
        elif not problems:
            problems.append("main.cf differs from what the deploy writes (comments or layout)")
    problems += service_problems(files, found)
    if problems:
        return Check(CONFIGURATION, False, "; ".join(problems), RUN_THE_DEPLOY)
    return Check(CONFIGURATION, True, f"postconf -n and the {len(files)} managed files match the deploy")


def check_password_map(settings: Settings, health: Health) -> Check:
    if health.map_login is None:
        return Check(PASSWORD_MAP, False, "no relayhost is set, so no key to look up", RUN_THE_DEPLOY)
    if not health.map_login:
        return Check(
            PASSWORD_MAP, False, f"postmap -q {health.relayhost!r} finds nothing in sasl_passwd", RUN_THE_DEPLOY
        )
    if health.map_login != settings.smtp_user:
        return Check(
            PASSWORD_MAP,
            False,
            f"key {health.relayhost} holds login {health.map_login!r}, the deploy wants {settings.smtp_user!r}",
            RUN_THE_DEPLOY,
        )
    return Check(PASSWORD_MAP, True, f"key {health.relayhost} -> login {health.map_login}")


def client_mechanisms(modules: list[str]) -> list[str]:
    """What the installed SASL modules can do, less ANONYMOUS (smtp_sasl_security_options = noanonymous)."""
    found = {mech for module in modules for mech in SASL_MECHANISMS.get(module, [])}
    return sorted(found - {"ANONYMOUS"})


FINGER = "posttls-finger: "
# posttls-finger's own statement, and only it, that the relay's certificate was verified.
VERIFIED_TLS = "Verified TLS connection established to "


def finger_statements(finger: list[str]) -> list[tuple[str, str]]:
    """posttls-finger's output as (who, text): "server" for a reply it shows (`< `), "client" for a
    command it sent (`> `), "finger" for its own statements. A relay (or anyone on the path before
    TLS) chooses the text of its replies, so only "finger" lines can say what posttls-finger saw."""
    statements = []
    for line in finger:
        text = line.removeprefix(FINGER)
        if text == line:  # not posttls-finger's line at all
            statements.append(("other", line))
        elif text.startswith("< "):
            statements.append(("server", text[2:]))
        elif text.startswith("> "):
            statements.append(("client", text[2:]))
        else:
            statements.append(("finger", text))
    return statements


def relay_findings(finger: list[str]) -> tuple[bool, bool, list[str], str]:
    """From posttls-finger's output: (connected, certificate verified, AUTH mechanisms after TLS, the key line)."""
    statements = finger_statements(finger)
    own = [text for who, text in statements if who == "finger"]
    connected = any(text.startswith("Connected to ") for text in own)
    verified_line = next((text for text in own if text.startswith(VERIFIED_TLS)), "")
    tls_started = False
    mechanisms: list[str] = []
    for who, text in statements:
        if who == "finger" and re.match(r"\w+ TLS connection established to ", text):
            tls_started = True
        match = re.match(r"250[- ]AUTH[ =](.*)$", text)
        if who == "server" and match and tls_started:
            mechanisms = match.group(1).upper().split()
    problem = next(
        (
            text
            for _, text in statements
            if re.search(r"fail|not verified|untrusted|refused|timed out|not supported|error|mismatch", text, re.I)
        ),
        statements[-1][1] if statements else "posttls-finger printed nothing",
    )
    silent = next((text for text in own if re.search(r"timed out|timeout", text, re.I)), "")
    offered_starttls = any(who == "server" and re.match(r"250[- ]STARTTLS\b", text, re.I) for who, text in statements)
    if connected and not tls_started and not offered_starttls:
        # A relay that never answers (a black hole) offers nothing either: say which it is.
        problem = silent or "it does not offer STARTTLS, and TLS is required"
    return connected, bool(verified_line), mechanisms, verified_line or problem


RELAY_SETTINGS_FIX = f"correct relay_host or relay_port if they are wrong and {RUN_THE_DEPLOY}"
CERTIFICATE_FIX = (
    f"give ca_file the CA that signed the relay's certificate (or fix the relay's certificate) and {RUN_THE_DEPLOY}"
)


def check_relay(settings: Settings, health: Health, settings_fix: str = RELAY_SETTINGS_FIX) -> Check:
    """posttls-finger's view of the relay; settings_fix: the fix for a relay that cannot be reached."""
    if not health.relayhost:
        return Check(RELAY, False, "no relayhost is set", RUN_THE_DEPLOY)
    if not health.finger:
        return Check(
            RELAY, False, "posttls-finger is missing or printed nothing (is postfix installed?)", RUN_THE_DEPLOY
        )
    connected, verified, server_mechs, line = relay_findings(health.finger)
    if not connected:
        return Check(RELAY, False, f"{health.relayhost} is not reachable: {line}", settings_fix)
    if not verified and re.search(r"timed out|timeout", line, re.I):  # a black hole, not a refusal
        return Check(RELAY, False, f"{health.relayhost}: connected, but it never answered: {line}", settings_fix)
    if not verified:
        return Check(
            RELAY,
            False,
            f"{health.relayhost}: no TLS with a verified certificate: {line}",
            CERTIFICATE_FIX,
        )
    ours = client_mechanisms(health.sasl_modules)
    usable = [mech for mech in server_mechs if mech in ours]
    if not usable:
        return Check(
            RELAY,
            False,
            f"{health.relayhost}: TLS verified, but it offers AUTH {' '.join(server_mechs) or 'nothing'} and the "
            f"installed SASL modules do {' '.join(ours) or 'nothing'}",
            f"{RUN_THE_DEPLOY} (it installs libsasl2-modules or cyrus-sasl-plain)",
        )
    tls = line.split(": ", 1)[-1] if ": " in line else line
    return Check(
        RELAY,
        True,
        f"{health.relayhost}: certificate verified ({tls}); AUTH {' '.join(server_mechs)}, usable here: "
        f"{' '.join(usable)}",
    )


def check_fallback_relays(settings: Settings, health: Health) -> list[Check]:
    """The password map, relay and login checks of each fallback relay, as of the relay: a fallback
    relay is used with the relay's login and password, so it must accept them too."""
    checks = []
    for endpoint in settings.fallback_relayhosts:
        if endpoint not in health.fallbacks:
            checks.append(
                Check(fallback_name(RELAY, endpoint), False, "is not in Postfix's smtp_fallback_relay", RUN_THE_DEPLOY)
            )
            continue
        found = replace(
            health.fallbacks[endpoint],
            sasl_modules=health.sasl_modules,
            login_tool_missing=health.login_tool_missing,
        )
        settings_fix = f"correct fallback_relays if {endpoint} is wrong and {RUN_THE_DEPLOY}"
        login = check_login(
            settings,
            found,
            refused_fix=(
                f"give {settings.smtp_user} on {endpoint} the keyring entry's password, as on relay_host (a fallback "
                f"relay is used with the same login), or take it out of fallback_relays and {RUN_THE_DEPLOY}"
            ),
            settings_fix=settings_fix,
        )
        for check in (check_password_map(settings, found), check_relay(settings, found, settings_fix), login):
            checks.append(replace(check, name=fallback_name(check.name, endpoint)))
    return checks


def smtp_replies(lines: list[str]) -> list[list[str]]:
    """The relay's replies in what openssl printed, each as its lines: a reply ends at the line whose
    code is not followed by a dash (RFC 5321 4.2.1); a reply cut short ends the list."""
    replies: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if not re.match(r"\d{3}(?:[ -]|$)", line):
            continue
        current.append(line)
        if line[3:4] != "-":
            replies.append(current)
            current = []
    return [*replies, current] if current else replies


ONE_PASSWORD_FIX = f"give the host and the relay one password: {ROTATE_COMMAND}"


def check_login(
    settings: Settings, health: Health, refused_fix: str = ONE_PASSWORD_FIX, settings_fix: str = RELAY_SETTINGS_FIX
) -> Check:
    """The relay's answer to AUTH PLAIN with the password map's entry, tried on the host (health.sh.j2).

    Its reply code is the relay's word, after openssl verified the relay's certificate; the first
    reply that is not part of EHLO's (250) is the answer to AUTH. The fixes: for a login the relay
    refuses, and for a relay that could not be reached."""
    if health.map_login is None or not health.map_login:
        return Check(LOGIN, False, "not tried: the password map has no entry for the relay", RUN_THE_DEPLOY)
    if health.login_tool_missing:
        return Check(LOGIN, False, f"not tried: {health.login_tool_missing} is not installed on the host",
                     "install openssl on the host and run verify again")  # fmt: skip
    # The greeting (implicit TLS) and EHLO's reply are one code each; the first other reply is AUTH's.
    # A reply whose lines do not share one code is no SMTP reply at all, so not a success either.
    replies = [r for r in smtp_replies(health.login) if {line[:3] for line in r} not in ({"220"}, {"250"})]
    reply = replies[0] if replies else []
    answer = reply[-1] if reply else ""
    if len({line[:3] for line in reply}) > 1:
        return Check(LOGIN, False, f"the relay's answer to the login {health.map_login} is no SMTP reply, its "
                     f"lines have different codes: {' | '.join(reply[:4])}", settings_fix)  # fmt: skip
    if answer.startswith("235") and answer[3:4] != "-":  # a reply cut short is not a success
        return Check(LOGIN, True, f"the relay accepts the login {health.map_login}: {answer}")
    if answer.startswith("535"):  # RFC 4954: the credentials are invalid
        return Check(
            LOGIN,
            False,
            f"the relay refuses the login {health.map_login} with the password in the host's map: {answer}",
            refused_fix,
        )
    if answer.startswith("5"):  # AUTH itself not taken (500-504, 534, 538, 554): no word on the password
        return Check(
            LOGIN,
            False,
            f"the relay does not take AUTH PLAIN for the login {health.map_login}: {answer}",
            f"the relay check shows what the relay offers after TLS; {settings_fix}",
        )
    if answer:
        return Check(LOGIN, False, f"the relay did not accept the login {health.map_login}: {answer}",
                     f"try again later; if it persists: {refused_fix}")  # fmt: skip
    said = [line for line in health.login if not line.startswith(("depth=", "verify return:"))]
    problem = next((line for line in said if re.search(r"error|refused|unknown|timed out", line, re.I)), "")
    # No session because of the certificate, or because the relay could not be reached or said nothing.
    certificate = re.search(r"verify|certificate", problem, re.I)
    return Check(
        LOGIN,
        False,
        f"not tried: no TLS session with a verified certificate, so the password was not sent: "
        f"{problem or (said[-1] if said else 'openssl printed nothing (no answer within 15 s)')}",
        CERTIFICATE_FIX if certificate else settings_fix,
    )


def queue_fix(reasons: list[str]) -> str:
    """The fix for mail that waits, from Postfix's reasons: the login (rotate), else the relay's side."""
    if any("SASL authentication failed" in reason or " 535 " in reason for reason in reasons):
        return f"the relay refuses the host's login: {ROTATE_COMMAND} (it flushes the queue)"
    return f"once the cause is fixed (on the relay, or in the settings): {FLUSH_COMMAND}"


def unreadable_queue_fix(error: str) -> str:
    """The fix for a queue postqueue could not list: a held showq is a local process's doing, else Postfix must run."""
    if "did not answer within" in error:
        return "find and end the processes that hold Postfix's showq on the host (ps -C showq, and who runs postqueue)"
    return f"Postfix must run to read and send it: {RUN_THE_DEPLOY}"


def check_queue(health: Health) -> Check:
    if health.queue_error:
        error = " ".join(health.queue_error)
        return Check(QUEUE, False, f"the queue cannot be read: {error}", unreadable_queue_fix(error))
    if not health.queue:
        return Check(QUEUE, True, "empty")
    lines = []
    for entry in health.queue[:5]:
        for recipient in entry.get("recipients", [])[:3]:
            reason = recipient.get("delay_reason") or "waiting for delivery"
            lines.append(
                f"{entry.get('queue_id')} ({entry.get('queue_name')}) from {entry.get('sender')!r} "
                f"to {recipient.get('address')!r}: {reason}"
            )
    more = f"; and {len(health.queue) - 5} more" if len(health.queue) > 5 else ""
    reasons = [r.get("delay_reason") or "" for entry in health.queue for r in entry.get("recipients", [])]
    return Check(
        QUEUE, False, f"{len(health.queue)} message(s) queued: " + " | ".join(lines) + more, queue_fix(reasons)
    )


def delivery_status(queue_id: str, line: str) -> str:
    """The status of a delivery line of this queue id ("sent", "deferred", "bounced", "expired"), or "".

    The first `, status=`: the reply of the relay follows it in parentheses, and its text is the relay's."""
    if not line.startswith(f"{queue_id}: "):
        return ""
    match = re.search(r", status=([a-z]+)\b", line)
    return match.group(1) if match else ""


def check_test_mail(mail: MailProbe) -> Check:
    """Sent, gone from the queue, and Postfix logged it sent and never bounced or expired.

    The lines come from Postfix's own processes only (test_mail.sh.j2), matched by the queue id of
    this very mail; whether it left the queue is postqueue's word, not the log's."""
    if not mail.sent:
        return Check(TEST_MAIL, False, "sendmail failed on the host", RUN_THE_DEPLOY)
    if not mail.queue_id:
        return Check(TEST_MAIL, False, "sent, but its queue id never appeared in the mail log", RUN_THE_DEPLOY)
    ours = [(delivery_status(mail.queue_id, line), line) for line in mail.log]
    ours = [(status, line) for status, line in ours if status]
    last = ours[-1][1] if ours else ""
    if not mail.left_queue:
        return Check(
            TEST_MAIL,
            False,
            f"{mail.queue_id} is still queued: {last or 'no delivery attempt yet'}",
            queue_fix([last]),
        )
    failed = next((line for status, line in ours if status in ("bounced", "expired")), "")
    sent = next((line for status, line in ours if status == "sent"), "")
    if failed or not sent:
        reason = failed or last or "no status"
        return Check(
            TEST_MAIL,
            False,
            f"{mail.queue_id} left the queue but was not sent: {reason}",
            "the bounce went to root (forward_to): fix what the relay said, then verify --test-mail again",
        )
    return Check(TEST_MAIL, True, f"{mail.queue_id} left the queue: {sent.split(': ', 1)[-1]}")


def report_json(host_name: str, checks: list[Check]) -> str:
    return json.dumps({"host": host_name, "checks": [asdict(check) for check in checks]})


class NullClientMapPassword(FactBase[str]):
    """Whether the password map holds the password given to the fact on stdin (`_stdin=`): "same",
    "differs" or "none" (no relayhost, no entry); "" if the host did not answer. The comparison is
    made on the host (templates/scripts/map_password.sh.j2): only the answer comes back."""

    def command(self) -> str:
        return render_script("map_password")

    @staticmethod
    def default() -> str:
        return ""

    def process(self, output: list[str]) -> str:
        answers = [line.split(" ", 1)[1].strip() for line in output if line.startswith("map_password ")]
        return answers[-1] if answers else ""
