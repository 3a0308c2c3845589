"""The images of a JSON report as text, made in blocks, on every core where the system forks.

A report can list millions of images, and a Python object made per field of each costs
more than the rest: a block's text is one ``%`` over its images' templates (by place, see
:func:`_templates`), fed by columns made at once (:func:`images_text`).

Where the system forks and this process may use several cores, forked helpers make the
blocks and send each as its length and its bytes, while this process writes them in order
(:func:`write_blocks`); a block a helper did not send whole is made here, so the text is the
same however the work was shared.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import io
import itertools
import operator
import os
import signal
import threading
from json.encoder import encode_basestring_ascii
from typing import IO

import numpy as np
import numpy.typing as npt

from .storage import ImageTable

#: Images made at a time (their text is held until written).
BLOCK = 50_000
#: Processes that make the blocks of a report of several blocks, where the system forks
#: (they read the report as this process holds it, copying nothing), while this one writes
#: what they send: None for one a core this process may use, at most 4, none on one core or
#: while other threads run here (see :func:`helpers_for`).
JSON_HELPERS: int | None = None
_MAX_HELPERS = 4


def _templates(near: bool) -> tuple[str, ...]:
    """The text of one listed image, by its place and whether it has a perceptual hash
    (``2 * place + has_hash``), with eight ``%s`` (or ``%.0s``, which writes nothing) for its
    fields: path, path_b64 part, sha256, phash, url part, then width, height and size for a kept
    image, the distance for a duplicate. The places (see :func:`write_json
    <imgindex.formats.write_json>`): 0 a group's kept image, 1 a duplicate, 2 the last
    duplicate, 3 a kept image alone."""
    out = []
    for place in range(4):
        for has_hash in (False, True):
            phash = '"phash": "%s"' if has_hash else '"phash": null%.0s'
            fields = '"path": %s, %s"sha256": "%s", ' + phash + "%s"
            if place in (0, 3):
                closing = ', "width": %s, "height": %s, "size": %s, "duplicates": [' + ("]}" if place == 3 else "")
                out.append(",\n{" + fields + closing)
            else:
                distance = ', "distance": %s}' if near else "}%.0s"
                out.append("{" + fields + distance + "%.0s%.0s" + (", " if place == 1 else "]}"))
    return tuple(out)


TEMPLATES_NEAR = _templates(near=True)
TEMPLATES_EXACT = _templates(near=False)

#: What the blocks are made of: the table, the listed rows, their places and distances, and
#: the templates (:data:`TEMPLATES_NEAR` or :data:`TEMPLATES_EXACT`).
Blocks = tuple[ImageTable, npt.NDArray[np.int64], npt.NDArray[np.int8], npt.NDArray[np.uint8], tuple[str, ...]]


def b64(path: bytes) -> str:
    return base64.b64encode(path).decode("ascii")


def _utf8(text: str) -> bool:
    """Was ``text`` decoded from valid UTF-8 (no byte was escaped as a surrogate)?"""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _hex(values: npt.NDArray[np.uint8]) -> list[str]:
    """Each row of bytes ``(n, k)`` as hexadecimal text: one text, a space after every row's
    ``k`` bytes, split (numpy's strings would drop trailing NUL bytes; slicing in Python costs
    twice as much)."""
    return values.tobytes().hex(" ", values.shape[1]).split(" ") if len(values) else []


def _url_part(url: str | None) -> str:
    return "" if url is None else f', "url": {encode_basestring_ascii(url)}'


def images_text(
    t: ImageTable,
    members: npt.NDArray[np.int64],
    place: npt.NDArray[np.int8],
    distance: npt.NDArray[np.uint8],
    templates: tuple[str, ...],
) -> str:
    """The JSON text of listed images (rows ``members``), each after a comma when it starts a
    group (the caller drops the report's first). Paths are decoded at once (no path holds a
    NUL byte) and quoted by the C encoder json.dumps uses; the few that are not UTF-8 also get
    their raw bytes."""
    rows = members.tolist()
    paths = list(map(operator.add, map(t.dirs.__getitem__, rows), map(t.names.__getitem__, rows)))
    joined = b"\0".join(paths)
    try:
        texts = joined.decode("utf-8").split("\0") if paths else []
        raw = [""] * len(rows)
    except UnicodeDecodeError:
        texts = joined.decode("utf-8", "surrogateescape").split("\0")
        raw = ["" if _utf8(text) else f'"path_b64": "{b64(path)}", ' for text, path in zip(texts, paths, strict=True)]
    urls = list(map(t.urls.__getitem__, rows))
    url = [""] * len(rows) if urls.count(None) == len(urls) else [_url_part(u) for u in urls]
    has_hash = t.has_hash[members]
    phash = _hex(t.phash[members].astype(">u8").view(np.uint8).reshape(-1, 8))
    kept = (place == 0) | (place == 3)
    width, height = t.width[members], t.height[members]
    first = np.where(kept, width, distance).astype(object)
    first[kept & (width < 0)] = "null"
    second = np.where(kept, height, 0).astype(object)
    second[kept & (height < 0)] = "null"
    third = np.where(kept, t.size[members], 0).tolist()
    code = (2 * place + has_hash).tolist()
    fields = zip(
        map(encode_basestring_ascii, texts),
        raw,
        _hex(t.sha256[members]),
        phash,
        url,
        first.tolist(),
        second.tolist(),
        third,
        strict=True,
    )
    return "".join(map(templates.__getitem__, code)) % tuple(itertools.chain.from_iterable(fields))


def _block_text(blocks: Blocks, a: int) -> str:
    """The text of the listed images from ``a`` (a block's worth)."""
    t, members, place, distance, templates = blocks
    text = images_text(t, members[a : a + BLOCK], place[a : a + BLOCK], distance[a : a + BLOCK], templates)
    return text[1:] if a == 0 else text  # the first image has no comma before it


def helpers_for(blocks: int) -> int:
    """How many helpers make ``blocks`` blocks: none from a process where other threads run
    (``watch``'s observer): a forked child has only the thread that forked, and a lock another
    thread held stays held in it. (:data:`JSON_HELPERS`, when set, is taken as it is.)"""
    if blocks < 2 or not hasattr(os, "fork"):
        return 0
    if JSON_HELPERS is not None:
        return min(JSON_HELPERS, blocks)
    if threading.active_count() > 1:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 0 if cores < 2 else min(cores, _MAX_HELPERS, blocks)


def write_blocks(blocks: Blocks, out: IO[str]) -> None:
    """Write the blocks' texts in order. With helpers (:func:`helpers_for`), forked with the
    report as it is held here, helper ``i`` makes the blocks ``k`` with ``k % helpers == i``
    and sends each through a pipe as it is made, while this process reads them in order and
    writes them: each helper is at most a block ahead of what is written, and nothing here
    competes with them for the interpreter (a thread reading pipes beside formatting here kept
    them waiting). A block is read whole into one buffer and written to ``out``'s bytes where
    it has them (the text is ASCII): no decoding and encoding again here. A block a helper
    did not send whole (it failed, or was killed) is made here: the same text, and nothing of
    the part sent is written."""
    starts = list(range(0, len(blocks[1]), BLOCK))
    raw = _bytes_of(out)
    readers: list[io.FileIO | None] = []
    pids: list[int] = []
    try:
        _fork_helpers(blocks, starts, readers, pids)
        for k, a in enumerate(starts):
            reader = readers[k % len(readers)] if readers else None
            data = None if reader is None else _received(reader)
            if data is None:
                if reader is not None:
                    reader.close()
                    readers[k % len(readers)] = None
                out.write(_block_text(blocks, a))
            elif raw is None:
                out.write(data.decode("utf-8", "surrogateescape"))
            else:
                out.flush()
                raw.write(data)
    finally:
        for reader in readers:
            if reader is not None:
                reader.close()
        _stop(pids)


def _fork_helpers(blocks: Blocks, starts: list[int], readers: list[io.FileIO | None], pids: list[int]) -> None:
    """Fork the helpers for the blocks from ``starts``: in ``readers`` the pipe each sends down
    (None for one the system would not fork: its blocks are made here), in ``pids`` their
    process ids, each as it is made (the caller stops them, whatever happens)."""
    helpers = helpers_for(len(starts))
    for i in range(helpers):
        reading, sending = os.pipe()
        _widen(reading)
        try:
            pid = os.fork()
        except OSError:  # (no more processes: the blocks of helpers not made are made here)
            os.close(reading)
            os.close(sending)
            readers.extend([None] * (helpers - i))
            break
        if pid == 0:  # the helper: its blocks, then out at once (no exit handlers, no flushing)
            try:
                for other in readers:
                    if other is not None:
                        other.close()
                os.close(reading)
                _help(blocks, starts[i::helpers], sending)
            finally:
                os._exit(0)
        pids.append(pid)
        os.close(sending)
        readers.append(io.FileIO(reading, "r"))


def _help(blocks: Blocks, run: list[int], sending: int) -> None:
    """A helper's work: the texts of the blocks from ``run``'s starts, each sent as it is made."""
    with open(sending, "wb") as pipe:
        for a in run:
            data = _block_text(blocks, a).encode("utf-8", "surrogateescape")
            pipe.write(len(data).to_bytes(8, "big"))
            pipe.write(data)
            pipe.flush()


def _stop(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # (done by now, unless the writing stopped early)
        with contextlib.suppress(ChildProcessError):  # (reaped already, where SIGCHLD is ignored)
            os.waitpid(pid, 0)


def _bytes_of(out: IO[str]) -> IO[bytes] | None:
    """The byte stream under ``out`` when what it writes of ASCII text is that text's bytes."""
    if not isinstance(out, io.TextIOWrapper):
        return None
    try:
        utf8 = codecs.lookup(out.encoding).name == "utf-8"
    except LookupError:
        return None
    return out.buffer if utf8 else None


def _widen(pipe: int) -> None:
    """Let the pipe hold a megabyte where the system allows (fewer turns between the two ends)."""
    with contextlib.suppress(ImportError, AttributeError, OSError):
        import fcntl  # (only where the system forks)

        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, 1 << 20)


def _received(reader: io.FileIO) -> bytearray | None:
    """A block a helper sent (its length, then its bytes), or None when it sent no whole block."""
    header = _read_whole(reader, bytearray(8))
    return None if header is None else _read_whole(reader, bytearray(int.from_bytes(header, "big")))


def _read_whole(reader: io.FileIO, buffer: bytearray) -> bytearray | None:
    view, got = memoryview(buffer), 0
    with view:
        while got < len(buffer):
            try:
                n = reader.readinto(view[got:])
            except OSError:
                return None
            if not n:
                return None
            got += n
    return buffer
