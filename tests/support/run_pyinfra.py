"""Run the pyinfra CLI like a user, and record what each @fake host was asked to run.

Usage: python tests/support/run_pyinfra.py RECORD.json PYINFRA-ARGS...
RECORD.json gets {host name: [{"command": ..., "stdin": ...}, ...]} for every @fake host,
even when the run fails; the exit code is the CLI's.
"""

import json
import sys

import pyinfra_cli  # noqa: F401  (patches the standard library for gevent, as the CLI does)
from pyinfra.connectors.fake import FakeConnector
from pyinfra_cli.main import main as pyinfra_main

record: dict[str, list[dict]] = {}
_run_shell_command = FakeConnector.run_shell_command


def _stdin_text(stdin) -> str | None:
    if stdin is None:
        return None
    if hasattr(stdin, "readlines"):
        stdin = stdin.readlines()
    return "".join(stdin) if isinstance(stdin, list | tuple) else str(stdin)


def _recording(self, command, print_output=False, print_input=False, **arguments):
    record.setdefault(self.host.name, []).append(
        {
            "command": command if isinstance(command, str) else command.get_masked_value(),
            "stdin": _stdin_text(arguments.get("_stdin")),
        }
    )
    return _run_shell_command(self, command, print_output=print_output, print_input=print_input, **arguments)


FakeConnector.run_shell_command = _recording


def main() -> int:
    record_file, args = sys.argv[1], sys.argv[2:]
    sys.argv = ["pyinfra", *args]
    try:
        pyinfra_main()  # the `pyinfra` command's own entry point
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    finally:
        with open(record_file, "w") as out:
            json.dump(record, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
