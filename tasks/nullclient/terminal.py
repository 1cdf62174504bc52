"""Text from a host, made safe for the operator's terminal.

A host's output (a relay's reply in the queue, a status line of the mail log, a file's content) can
hold control characters and ANSI escape sequences, which a terminal would obey: move the cursor,
rewrite earlier lines, set the title. Every command prints through printable(), so such a character
is shown as its escape (ESC as \\x1b), never sent to the terminal as itself.
"""

from __future__ import annotations

KEPT = "\n\t"  # line breaks and tabs move nothing a reader cannot see


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """`text` with every non-printable character (control, escape, format such as U+202E) escaped."""
    return "".join(char if char.isprintable() or char in KEPT else _escaped(char) for char in text)
