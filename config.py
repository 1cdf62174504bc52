"""pyinfra reads this before it connects to any host (`pyinfra inventory.py deploy.py`)."""

from pyinfra import state

from tasks.summary import report_failures_at_exit

# Unreachable hosts and failed deploys, listed together at the end of the run. State.init() starts
# with no callback handlers and runs after this file, just before pyinfra connects: hook in there.
_init = state.init


def _init_and_report(*args, **kwargs):
    _init(*args, **kwargs)
    report_failures_at_exit(state)


state.init = _init_and_report
