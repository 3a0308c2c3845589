"""Bulk work: Python's cyclic garbage collector paused over millions of rows, and the C
allocator told to keep the memory that hashing image after image reuses.

Reading a million rows, or writing a million report entries, makes millions of
small objects that can never form a cycle; the collector would still walk the
ones already made (every list of a million names) each time enough new ones
pile up, which cost a report over a million images a third of its time.

Hashing an image allocates and frees arrays of a few hundred kilobytes to a
few megabytes. glibc's malloc gives such blocks back to the system at once
(mmap, or trimming the heap) unless its thresholds have risen, which depends
on what else the process did: then every image pays for fresh pages (page
faults: a tenth of a scan's time, and a scan of web archives' records paid it
where one of files did not). Fixed thresholds keep up to 64 MiB for reuse; a
block over 32 MiB (a huge picture's decode) still goes back at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: glibc's mallopt parameters (malloc.h) and the values set.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD = 64 * 1024 * 1024
MMAP_THRESHOLD = 32 * 1024 * 1024


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


@functools.cache
def keep_freed_memory() -> bool:
    """Set the allocator's thresholds, once per process (a worker's first items); False where
    the C library is not glibc (nothing is done there)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return False
    if not name or not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
