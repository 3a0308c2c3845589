"""How paths from strangers are shown to people.

Names in crawl dumps are not always UTF-8; they are shown with ``\\xNN``
escapes for the bytes that are not. (Machine-readable outputs keep the
original bytes instead: see :mod:`imgindex.formats`.)
"""

from __future__ import annotations


def display_path(path: bytes) -> str:
    """A path for people: bytes that are not UTF-8 are shown as ``\\xNN`` escapes."""
    return path.decode("utf-8", "backslashreplace")
