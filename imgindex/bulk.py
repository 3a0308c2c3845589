"""Bulk work over millions of rows: Python's cyclic garbage collector paused meanwhile.

Reading a million rows, or writing a million report entries, makes millions of
small objects that can never form a cycle; the collector would still walk the
ones already made (every list of a million names) each time enough new ones
pile up, which cost a report over a million images a third of its time.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def without_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector (reference counting still frees everything)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
