"""How names from strangers are shown to people.

Names in crawl dumps come from URLs: they may not be UTF-8, and may hold
control characters (ESC, BEL, CR, BS, newlines, tabs) that would move a
terminal's cursor, hide parts of a line or split a line-based output, and
characters that turn the rest of a line around (bidirectional overrides).
All of those are shown as escapes: ``\\xNN`` for bytes that are not UTF-8 and
for control characters, ``\\uNNNN`` for the others. (Machine-readable outputs
keep the original bytes instead: see :mod:`imgindex.formats`.)
"""

from __future__ import annotations

import re

#: C0 and C1 control characters, DEL, and the bidirectional controls (U+061C, U+200E,
#: U+200F, U+202A-U+202E, U+2066-U+2069).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def display_text(text: str) -> str:
    """Text for one line of a terminal: control and direction characters escaped."""
    return _UNSAFE.sub(_escape, text)


def display_path(path: bytes) -> str:
    """A path for people: bytes that are not UTF-8, and control characters, as escapes."""
    return display_text(path.decode("utf-8", "backslashreplace"))


def display_bytes(path: bytes) -> bytes:
    """A path for a line-based file: its bytes as they are, but control bytes as ``\\xNN``."""
    return re.sub(rb"[\x00-\x1f\x7f]", lambda m: b"\\x%02x" % m.group()[0], path)
