"""Output formats of a report: one writer per format, in one table.

A writer streams a :class:`imgindex.report.Report` to a text file; a new
format is a function here and a line in :data:`WRITERS`. Files are written
whole or not at all (:func:`atomic_text_file`).
"""

from __future__ import annotations

import base64
import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import IO

import numpy as np

from . import __version__
from .bulk import without_gc
from .errors import UsageError
from .report import Report
from .storage import ImageTable

#: Images formatted at a time by the JSON writer (their text is held until written).
_BLOCK = 50_000


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
    # Entries are formatted directly from plain lists: a report can list millions of
    # images, and a dict (or numpy scalar) per value costs more than the rest. A block of
    # images at a time, each image's text made in one pass: its paths decoded at once (no path
    # holds a NUL byte) and quoted by the C encoder json.dumps uses (the few that are not UTF-8
    # also get their raw bytes); what comes before and after an image (the opening of its
    # group, or of its place in the duplicates, and their closing) follows from its position.
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
    first = "\n"
    for a in range(0, len(members), _BLOCK):
        rows = members[a : a + _BLOCK].tolist()
        places = place[a : a + _BLOCK].tolist()
        # "distance" of duplicates; width, height and size of kept images (where they are read).
        if near:
            closings = [f', "distance": {d}}}' for d in distance[a : a + _BLOCK].tolist()]
        else:
            closings = ["}"] * len(rows)
        widths, heights, sizes_ = (c[rows].tolist() for c in (t.width, t.height, t.size))
        parts: list[str] = []
        listed = zip(_entries(t, rows), places, closings, widths, heights, sizes_, strict=True)
        for text, where, closing, w, h, size in listed:
            if where == 1:
                parts += ("{", text, closing, ", ")
            elif where == 2:
                parts += ("{", text, closing, "]}")
            else:
                parts += (
                    first,
                    "{",
                    text,
                    f', "width": {w if w >= 0 else "null"}, "height": {h if h >= 0 else "null"}, '
                    f'"size": {size}, "duplicates": [',
                    "]}" if where == 3 else "",
                )
                first = ",\n"
        out.write("".join(parts))
    out.write("\n]}\n")


def _entries(t: ImageTable, rows: list[int]) -> list[str]:
    """The fields every listed image has (path, sha256, phash, url), as JSON text, for ``rows``."""
    paths = [t.dirs[r] + t.names[r] for r in rows]
    texts = b"\0".join(paths).decode("utf-8", "surrogateescape").split("\0") if paths else []
    sha_hex = t.sha256[rows].tobytes().hex()
    phash_hex = t.phash[rows].astype(">u8").tobytes().hex()
    has_hash = t.has_hash[rows].tolist()
    return [
        f'"path": {encode_basestring_ascii(text)}, '
        + ("" if text.isascii() or _utf8(text) else f'"path_b64": "{_b64(path)}", ')
        + f'"sha256": "{sha_hex[64 * k : 64 * k + 64]}", '
        + (f'"phash": "{phash_hex[16 * k : 16 * k + 16]}"' if has_hash[k] else '"phash": null')
        + ("" if url is None else f', "url": {encode_basestring_ascii(url)}')
        for k, (text, path, url) in enumerate(zip(texts, paths, [t.urls[r] for r in rows], strict=True))
    ]


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
