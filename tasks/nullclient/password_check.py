"""The deploy of `nullclient rotate`'s check: does the host's password map hold the keyring's password?

Run by nullclient.commands as `pyinfra INVENTORY postfix_nullclient.nullclient.password_check.map_password`
with `--data nullclient_report=DIR` (one JSON file per host there). The
keyring is read as the deploy reads it; the password goes to the host on stdin and is compared
there (NullClientMapPassword): neither it nor a digest of it leaves the host or is on a command line.
Changes nothing.
"""

import json

from pyinfra import host, state
from pyinfra.api import deploy

from postfix_nullclient.facts import HiddenStdin
from postfix_nullclient.nullclient.checks import NullClientMapPassword
from postfix_nullclient.nullclient.reports import report_path
from postfix_nullclient.settings import Refusal, SettingsError, settings_for


@deploy("nullclient map password")
def map_password() -> None:
    """Whether the host's password map holds the keyring's password: same, differs or none."""
    try:
        settings = settings_for(state, host)
    except SettingsError as error:  # the only host, refused: nothing to compare with
        settings = Refusal(host.name, [str(error)])
    if isinstance(settings, Refusal):
        answer, problem = "", str(settings)
    else:
        answer = host.get_fact(NullClientMapPassword, _stdin=HiddenStdin([settings.password.unmask()]))
        problem = "" if answer else "the host did not answer"
    report_path().write_text(json.dumps({"host": host.name, "map_password": answer, "problem": problem}))
