"""Output formats of a report: one writer per format, in one table.

A writer streams a :class:`imgindex.report.Report` to a text file; a new
format is a function here and a line in :data:`WRITERS`. Files are written
whole or not at all (:func:`atomic_text_file`). The JSON report's images are
made in blocks by :mod:`imgindex.json_images`.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from . import __version__
from .bulk import without_gc
from .errors import UsageError
from .json_images import TEMPLATES_EXACT, TEMPLATES_NEAR, b64, write_blocks
from .report import Report


def path_fields(path: bytes) -> dict[str, str]:
    """A path for JSON: ``path`` decodes with surrogateescape (``os.fsencode`` gives the bytes back);
    names that are not UTF-8 also get ``path_b64``, the raw bytes, for other languages."""
    fields = {"path": os.fsdecode(path)}
    try:
        path.decode("utf-8")
    except UnicodeDecodeError:
        fields["path_b64"] = b64(path)
    return fields


def write_json(report: Report, out: IO[str]) -> None:
    """Stream the report as JSON: the header first, then its images a block at a time
    (:mod:`imgindex.json_images`)."""
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
    write_blocks((t, members, place, distance, TEMPLATES_NEAR if near else TEMPLATES_EXACT), out)
    out.write("\n]}\n")


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
