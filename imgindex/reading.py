"""Reading one item: bytes in, a :class:`Reading` out (status, exact hash, perceptual hashes, thumbnails).

Runs in worker processes. Knows the source interface and the hashing
pipeline, nothing of the index: the scan turns a reading into a row.
Never raises for a bad item: every failure is a status with a reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from . import hashing
from .bulk import keep_freed_memory
from .errors import WorkerVersionError
from .hashing import HashSettings, ImageError
from .sources import DamagedEntry, FileStat, Source

#: Files larger than this are hashed exactly but never decoded.
MAX_READ_BYTES = 512 * 1024 * 1024
#: How often a file that changes while being read is tried again.
READ_ATTEMPTS = 3

#: The reason recorded for an item on which a worker process died twice (its status: corrupt).
#: A later scan reads such an item again: a decoder that crashed may have been mended since.
CRASHED = "the decoder crashed on this file (its worker process died)"

#: The reason recorded for an item whose worker was killed each time it read it (four times).
KILLED = "its worker process was killed each time it read this file (by the out-of-memory killer?)"
#: The reason recorded for an item that kept a worker busy past the time limit, twice.
TOO_SLOW = "reading it took longer than the time limit, twice (its worker process was stopped)"

#: "full": everything; "phash": the perceptual hashes only (the exact hash is known and unchanged).
Mode = Literal["full", "phash"]


@dataclass(frozen=True)
class Reading:
    """What was read from one item, and its identity when it was read."""

    stat: FileStat
    read_ns: int
    status: str
    error: str | None = None
    format: str | None = None
    sha256: bytes | None = None
    width: int | None = None
    height: int | None = None
    phash: int | None = None
    trim_hash: int | None = None
    descriptor: bytes | None = None  # hashing.descriptor of the picture (with phash)
    trim_descriptor: bytes | None = None  # ... and of the picture inside its border (with trim_hash)
    regions: bytes | None = None  # hashing.regions: the hashes of the inside's regions ...
    grid: bytes | None = None  # ... and its grey grid


def read_item(source: Source, path: bytes, expected: FileStat, mode: Mode, settings: HashSettings) -> Reading | None:
    """Read one item of ``source`` and describe it. None when it has vanished."""
    st = expected
    read_ns = time.time_ns()
    for _attempt in range(READ_ATTEMPTS):
        read_ns = time.time_ns()
        try:
            opened = source.open(path)
        except FileNotFoundError:
            return None
        except DamagedEntry as e:
            return Reading(st, read_ns, e.status, str(e))
        except OSError as e:
            return Reading(st, read_ns, "unreadable", e.strerror or str(e))
        try:
            with opened as f:
                st, regular = f.stat()
                if not regular:
                    return Reading(st, read_ns, "unreadable", "not a regular file")
                if st.size == 0:
                    return Reading(st, read_ns, "empty", "zero-byte file")
                head = f.read(hashing.SNIFF_BYTES)
                fmt = hashing.sniff_format(head)
                if fmt is None:
                    return Reading(st, read_ns, "not_image")
                if st.size > MAX_READ_BYTES:
                    digest = hashlib.sha256(head)
                    while block := f.read(1 << 20):
                        digest.update(block)
                    too_large = f"{st.size:,} bytes, above {MAX_READ_BYTES:,}"
                    return Reading(st, read_ns, "too_large", too_large, format=fmt, sha256=digest.digest())
                data = head + f.read()
                after, _ = f.stat()
        except OSError as e:
            return Reading(st, read_ns, "unreadable", e.strerror or str(e))
        if after != st:
            continue  # changed while being read: try again
        return describe(data, fmt, st, read_ns, mode, settings)
    return Reading(st, read_ns, "unreadable", f"kept changing while being read ({READ_ATTEMPTS} attempts)")


def describe(data: bytes, fmt: str, st: FileStat, read_ns: int, mode: Mode, settings: HashSettings) -> Reading:
    """The reading of an image's bytes."""
    digest = None if mode == "phash" else hashing.sha256(data)
    try:
        info = hashing.image_info(data, fmt, settings)
    except ImageError as e:
        width, height = e.size or (None, None)
        return Reading(st, read_ns, e.status, e.reason, format=fmt, sha256=digest, width=width, height=height)
    return Reading(
        st, read_ns, "ok", None, format=fmt, sha256=digest, width=info.width, height=info.height,
        phash=info.phash, trim_hash=info.trim_hash, descriptor=info.descriptor, trim_descriptor=info.trim_descriptor,
        regions=info.regions, grid=info.grid,
    )  # fmt: skip


def read_items(
    source: Source, settings: HashSettings, key: str, items: list[tuple[bytes, FileStat, Mode]]
) -> list[Reading | None]:
    """Read a few items (runs in a worker process). ``key``: the settings key of the process that
    writes the rows (:meth:`HashSettings.key`); this process refuses to read when its own differs."""
    refuse_other_versions(settings, key)
    keep_freed_memory()
    Image.MAX_IMAGE_PIXELS = max(settings.max_pixels, hashing.DEFAULT_MAX_PIXELS)
    return [read_item(source, path, st, mode, settings) for path, st, mode in items]


def refuse_other_versions(settings: HashSettings, key: str) -> None:
    """Raise :class:`WorkerVersionError` when this process would hash ``settings`` with other
    library versions than those of ``key`` (the writer's): its hashes would go into the index
    under the writer's settings. Checked by every chunk of work, so that a worker that joins a
    cluster after the check at connect (or a library upgraded during a scan) writes nothing."""
    here = settings.key()
    if here == key:
        return
    ours, theirs = json.loads(here), json.loads(key)
    differ = "; ".join(
        f"{name} {ours.get(name)} here, {theirs.get(name)} there"
        for name in sorted(ours.keys() | theirs.keys())
        if ours.get(name) != theirs.get(name)
    )
    raise WorkerVersionError(
        f"a worker process (pid {os.getpid()} on {socket.gethostname()}) would hash with other library versions"
        f" than the process that writes the index ({differ}): install the same imgindex, Pillow and imagehash"
        " on every worker; it read nothing, and what was written before is kept"
    )


def crashed(source: Source, path: bytes, st: FileStat, reason: str = CRASHED) -> Reading:
    """An item on which a worker process died (a decoder crash) or was stopped (too slow):
    corrupt, with its exact hash."""
    fmt = digest = None
    try:
        with source.open(path) as f:
            data = f.read(MAX_READ_BYTES)
        fmt, digest = hashing.sniff_format(data[: hashing.SNIFF_BYTES]), hashing.sha256(data)
    except OSError:
        pass
    return Reading(st, time.time_ns(), "corrupt", reason, format=fmt, sha256=digest)
