"""pyinfra deploy file of `nullclient rotate`: does the host's password map hold the keyring's password?

Run by nullclient.commands with `--data nullclient_report=DIR` (one JSON file per host there). The
keyring is read as the deploy reads it; the password goes to the host on stdin and is compared
there (NullClientMapPassword): neither it nor a digest of it leaves the host or is on a command line.
Changes nothing.
"""

import hashlib
import json
from pathlib import Path

from pyinfra import host, state

from postfix_nullclient.nullclient.checks import NullClientMapPassword
from postfix_nullclient.settings import Refusal, SettingsError, settings_for

REPORT = Path(host.data.get("nullclient_report")) / f"{hashlib.sha256(host.name.encode()).hexdigest()[:16]}.json"

try:
    settings = settings_for(state, host)
except SettingsError as error:  # the only host, refused: nothing to compare with
    settings = Refusal(host.name, [str(error)])
if isinstance(settings, Refusal):
    answer, problem = "", str(settings)
else:
    answer = host.get_fact(NullClientMapPassword, _stdin=settings.password.unmask())
    problem = "" if answer else "the host did not answer"
REPORT.write_text(json.dumps({"host": host.name, "map_password": answer, "problem": problem}))
