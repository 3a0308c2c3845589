"""Output formats of a report: one writer per format, in one table.

A writer streams a :class:`imgindex.report.Report` to a text file; a new
format is a function here and a line in :data:`WRITERS`. Files are written
whole or not at all (:func:`atomic_text_file`).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import itertools
import json
import operator
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from json.encoder import encode_basestring_ascii
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from . import __version__
from .bulk import without_gc
from .errors import UsageError
from .report import Report
from .storage import ImageTable

#: Images formatted at a time by the JSON writer (their text is held until written).
_BLOCK = 50_000
#: Processes that format the blocks of a JSON report of several blocks, where the system forks
#: (they read the report as this process holds it, copying nothing), while this one writes
#: what they send: None for one a core this process may use, at most 4, none on one core or
#: while other threads run here (see :func:`_helpers`).
JSON_HELPERS: int | None = None
_MAX_HELPERS = 4


def path_fields(path: bytes) -> dict[str, str]:
    """A path for JSON: ``path`` decodes with surrogateescape (``os.fsencode`` gives the bytes back);
    names that are not UTF-8 also get ``path_b64``, the raw bytes, for other languages."""
    fields = {"path": os.fsdecode(path)}
    try:
        path.decode("utf-8")
    except UnicodeDecodeError:
        fields["path_b64"] = _b64(path)
    return fields


def _b64(path: bytes) -> str:
    return base64.b64encode(path).decode("ascii")


def _utf8(text: str) -> bool:
    """Was ``text`` decoded from valid UTF-8 (no byte was escaped as a surrogate)?"""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def write_json(report: Report, out: IO[str]) -> None:
    """Stream the report as JSON: the header first, then one image at a time."""
    with without_gc():
        _write_json(report, out)


def _write_json(report: Report, out: IO[str]) -> None:
    near = report.options.mode == "near"
    header = {
        "imgindex_version": __version__,
        "mode": report.options.mode,
        "hash": report.hash_kind,
        "threshold": report.options.effective_threshold,
        "rotations": report.options.rotations,
        "roots": [os.fsdecode(r) for r in report.roots],
        "initial_image_count": report.initial_image_count,
        "final_image_count": report.final_image_count,
        "group_count": report.group_count,
        "duplicate_count": report.duplicate_count,
    }
    out.write(json.dumps(header)[:-1] + ', "images": [')
    t = report.table
    members, distance, starts = report.layout()
    sizes = np.diff(starts)
    if report.options.duplicates_only:
        shown = np.repeat(sizes > 1, sizes)
        members, distance = members[shown], distance[shown]
        sizes = sizes[sizes > 1]
    ends = np.cumsum(sizes)
    # Where each listed image stands: 0 a group's kept image, 1 a duplicate, 2 the last duplicate;
    # a kept image without duplicates is 3.
    place = np.ones(len(members), dtype=np.int8)
    place[ends - 1] = 2
    place[ends - sizes] = np.where(sizes > 1, 0, 3)
    templates = _TEMPLATES_NEAR if near else _TEMPLATES_EXACT
    for k, text in enumerate(_block_texts((t, members, place, distance, templates))):
        out.write(text[1:] if k == 0 else text)  # the first image has no comma before it
    out.write("\n]}\n")


_Blocks = tuple[ImageTable, npt.NDArray[np.int64], npt.NDArray[np.int8], npt.NDArray[np.uint8], tuple[str, ...]]


def _block_text(blocks: _Blocks, a: int) -> str:
    """The text of the listed images from ``a`` (a block's worth)."""
    t, members, place, distance, templates = blocks
    return _images_text(t, members[a : a + _BLOCK], place[a : a + _BLOCK], distance[a : a + _BLOCK], templates)


def _helpers(blocks: int) -> int:
    """How many helpers format ``blocks`` blocks: none from a process where other threads run
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


def _block_texts(blocks: _Blocks) -> Iterator[str]:
    """The blocks' texts in order. With helpers (:data:`JSON_HELPERS`), forked with the report
    as it is held here, helper ``i`` formats the blocks ``k`` with ``k % helpers == i`` and sends
    each through a pipe as it is made, while this process reads them in order and writes them:
    each helper is at most a block ahead of what is written, and nothing here competes with
    them for the interpreter (a thread reading pipes beside formatting here kept them waiting).
    A block a helper did not send (it failed, or was killed) is formatted here: the same text."""
    starts = list(range(0, len(blocks[1]), _BLOCK))
    helpers = _helpers(len(starts))
    if not helpers:
        yield from (_block_text(blocks, a) for a in starts)
        return
    pids: list[int] = []
    readers: list[Connection | None] = []
    try:
        for i in range(helpers):
            reading, sending = Pipe(duplex=False)
            try:
                pid = os.fork()
            except OSError:  # (no more processes: the blocks of helpers not made are formatted here)
                reading.close()
                sending.close()
                readers.extend([None] * (helpers - i))
                break
            if pid == 0:  # the helper: its blocks, then out at once (no exit handlers, no flushing)
                try:
                    for other in readers:
                        if other is not None:
                            other.close()
                    reading.close()
                    _help(blocks, starts[i::helpers], sending)
                finally:
                    os._exit(0)
            pids.append(pid)
            sending.close()
            readers.append(reading)
        for k, a in enumerate(starts):
            reader = readers[k % helpers]
            text = None
            if reader is not None:
                try:
                    text = reader.recv_bytes().decode("utf-8", "surrogateescape")
                except (EOFError, OSError):
                    reader.close()
                    readers[k % helpers] = None
            yield _block_text(blocks, a) if text is None else text
    finally:
        for reader in readers:
            if reader is not None:
                reader.close()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # (done by now, unless the writing stopped early)
            with contextlib.suppress(ChildProcessError):  # (reaped already, where SIGCHLD is ignored)
                os.waitpid(pid, 0)


def _help(blocks: _Blocks, run: list[int], sending: Connection) -> None:
    """A helper's work: the texts of the blocks from ``run``'s starts, each sent as it is made."""
    with sending:
        for a in run:
            sending.send_bytes(_block_text(blocks, a).encode("utf-8", "surrogateescape"))


def _templates(near: bool) -> tuple[str, ...]:
    """The text of one listed image, by its place and whether it has a perceptual hash
    (``2 * place + has_hash``), with eight ``%s`` (or ``%.0s``, which writes nothing) for its
    fields: path, path_b64 part, sha256, phash, url part, then width, height and size for a kept
    image, the distance for a duplicate."""
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


_TEMPLATES_NEAR = _templates(near=True)
_TEMPLATES_EXACT = _templates(near=False)


def _hex(values: npt.NDArray[np.uint8]) -> list[str]:
    """Each row of bytes ``(n, k)`` as hexadecimal text: one text, a space after every row's
    ``k`` bytes, split (numpy's strings would drop trailing NUL bytes; slicing in Python costs
    twice as much)."""
    return values.tobytes().hex(" ", values.shape[1]).split(" ") if len(values) else []


def _images_text(
    t: ImageTable,
    members: npt.NDArray[np.int64],
    place: npt.NDArray[np.int8],
    distance: npt.NDArray[np.uint8],
    templates: tuple[str, ...],
) -> str:
    """The JSON text of a block of listed images, each after a comma (the caller drops the
    first). A report can list millions of images, and a Python object made per field of each
    costs more than the rest: the text is one ``%`` over the images' templates (by place, see
    :func:`_templates`), fed by columns made at once. Paths are decoded at once (no path holds
    a NUL byte) and quoted by the C encoder json.dumps uses; the few that are not UTF-8 also
    get their raw bytes."""
    rows = members.tolist()
    paths = list(map(operator.add, map(t.dirs.__getitem__, rows), map(t.names.__getitem__, rows)))
    joined = b"\0".join(paths)
    try:
        texts = joined.decode("utf-8").split("\0") if paths else []
        b64 = [""] * len(rows)
    except UnicodeDecodeError:
        texts = joined.decode("utf-8", "surrogateescape").split("\0")
        b64 = ["" if _utf8(text) else f'"path_b64": "{_b64(path)}", ' for text, path in zip(texts, paths, strict=True)]
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
        b64,
        _hex(t.sha256[members]),
        phash,
        url,
        first.tolist(),
        second.tolist(),
        third,
        strict=True,
    )
    return "".join(map(templates.__getitem__, code)) % tuple(itertools.chain.from_iterable(fields))


def _url_part(url: str | None) -> str:
    return "" if url is None else f', "url": {encode_basestring_ascii(url)}'


def write_csv(report: Report, out: IO[str]) -> None:
    """One row per duplicate: group number, kept path, duplicate path, distance (empty in exact
    mode), and the URLs of the two where the index knows them."""
    with without_gc():
        _write_csv(report, out)


def _write_csv(report: Report, out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    # The csv module quotes a field holding "\n" but not one holding a lone "\r", which
    # readers take for a line break: rows with one are quoted whole.
    quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(["group", "kept_path", "duplicate_path", "distance", "kept_url", "duplicate_url"])
    near = report.options.mode == "near"
    number = 0
    for group in report.groups():
        if not group.duplicates:
            continue
        number += 1
        for image, distance in group.duplicates:
            kept_url, url = group.kept.url or "", image.url or ""
            row = [
                number,
                os.fsdecode(group.kept.path),
                os.fsdecode(image.path),
                distance if near else "",
                kept_url,
                url,
            ]
            lone_cr = b"\r" in group.kept.path + image.path or "\r" in kept_url + url
            (quoted if lone_cr else writer).writerow(row)


@contextmanager
def atomic_text_file(path: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """Write a text file whole or not at all: a temp file beside it, renamed into place.

    Names that are not UTF-8 are written back as their original bytes
    (surrogateescape), so CSV output round-trips.
    """
    target = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


Writer = Callable[[Report, IO[str]], None]

#: The output formats by name.
WRITERS: dict[str, Writer] = {"json": write_json, "csv": write_csv}


def writer(name: str) -> Writer:
    try:
        return WRITERS[name]
    except KeyError:
        raise UsageError(f"--format must be {' or '.join(WRITERS)}") from None
