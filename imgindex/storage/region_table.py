"""The regions' hashes of every file (``regions``), read as columns: kept chunks and live ones.

Every update of the verified matches searches a new picture's hashes among every
stored region's (and at ten million files, each pass of a full verification
reads them all), and a million rows handed from SQLite cost half a second
however they are read. So, as for the image table (:mod:`.table`), the rows are
read a chunk of :data:`~.table.CHUNK_IDS` file ids at a time, two ways:

- **kept**: ``region_columns`` holds a chunk's ids and hashes as two blobs, made
  by :func:`keep_regions` (each scan and watch, at the end) for the chunks below
  the one of the highest file id (new files take higher ids). Triggers on
  ``regions`` drop a chunk in the same transaction as any write to one of its
  rows, so a kept chunk is never stale;
- **live**: any other chunk, SQLite joins its rows (``group_concat``: the ids as
  one text, the hashes' bytes as one blob), a value costing a tenth of a row's.

A kept chunk that does not hold what it says (damage) is read live instead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from imgindex.errors import ImgindexError
from imgindex.hashing import REGION_BYTES, REGIONS, region_rows

from . import table
from .database import Database, ints_of
from .shapes import GOOD_REGIONS
from .table import chunk_bounds, file_chunks

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


def read_regions(db: Database) -> tuple[I64, U64]:
    """Every file that has the hashes of its regions: file ids (ascending), and the hashes as
    rows of ``len(REGIONS)``, in the same order. One read transaction; a seek of the ids and
    a read a chunk that holds a file with regions (:func:`.table.file_chunks`), however far
    apart the ids lie."""
    ids: list[I64] = []
    rows: list[U64] = []
    with db.snapshot():
        kept = {int(c) for (c,) in db.execute("SELECT chunk FROM region_columns")}
        for chunk in file_chunks(db, "regions", "file_id"):
            part = None
            if chunk in kept:  # (its blobs read as it comes: at ten million files, 500 MB in all)
                found = db.execute("SELECT rows, ids, hashes FROM region_columns WHERE chunk = ?", (chunk,)).fetchone()
                part = _kept(int(found[0]), bytes(found[1]), bytes(found[2]))
            if part is None:
                part = _live(db, *chunk_bounds(chunk))
            ids.append(part[0])
            rows.append(part[1])
    if not ids:
        return np.empty(0, np.int64), np.empty((0, len(REGIONS)), np.uint64)
    return np.concatenate(ids), np.concatenate(rows)


def _kept(count: int, id_blob: bytes, hash_blob: bytes) -> tuple[I64, U64] | None:
    """A kept chunk's columns, or None if its blobs do not hold ``count`` rows."""
    if count < 0 or len(id_blob) != 8 * count or len(hash_blob) != REGION_BYTES * count:
        return None
    return np.frombuffer(id_blob, dtype="<i8").astype(np.int64), region_rows([hash_blob])


def _live(db: Database, lo: int, hi: int) -> tuple[I64, U64]:
    """The rows of file ids ``lo`` to ``hi`` (those of the right length), joined by SQLite."""
    text, joined, count = db.execute(
        "SELECT group_concat(file_id, ' '), CAST(group_concat(hashes, '') AS BLOB), count(*)"
        f" FROM (SELECT file_id, hashes FROM regions WHERE file_id BETWEEN ? AND ? AND {GOOD_REGIONS}"
        " ORDER BY file_id)",
        (lo, hi),
    ).fetchone()
    what = f"the regions of files {lo} to {hi}"
    if count and len(joined) != count * REGION_BYTES:  # one row feeds both
        raise ImgindexError(f"{what} read out of step")
    return ints_of(text, count, what), region_rows([joined or b""])


def keep_regions(db: Database, stop: Callable[[], bool] | None = None) -> int:
    """Make the kept chunks that are missing: those that hold a file with regions and whose
    ids are all below the highest file id; each in a write transaction of its own (short:
    another process's scan waits for one chunk at most). How many were made."""
    with db.snapshot():
        (highest,) = db.execute("SELECT max(id) FROM files").fetchone()
        kept = {int(c) for (c,) in db.execute("SELECT chunk FROM region_columns")}
        chunks = file_chunks(db, "regions", "file_id")
    made = 0
    for chunk in chunks:
        if chunk in kept or highest is None or chunk >= highest >> table.CHUNK_BITS:
            continue  # (the chunk of the highest id: new files join it)
        if stop is not None and stop():
            break
        with db.write() as c:
            try:
                ids, hashes = _live(db, *chunk_bounds(chunk))
            except ImgindexError:  # a damaged row: left to be read live (and reported) by the reader
                continue
            c.execute(
                "INSERT OR REPLACE INTO region_columns (chunk, rows, ids, hashes) VALUES (?, ?, ?, ?)",
                (chunk, len(ids), ids.astype("<i8").tobytes(), hashes.astype(">u8").tobytes()),
            )
        made += 1
    return made
