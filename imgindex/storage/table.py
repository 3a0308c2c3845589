"""The image table: every indexed image as columns, what every report, review and export reads.

A million images' rows cost seconds to hand from SQLite to Python, a value at a
time. So the table is read a chunk of file ids at a time, two ways:

- **kept**: ``image_columns`` holds a chunk's columns as a few blobs, made by
  :func:`keep_columns` (each scan and watch, at the end) for the chunks of
  :data:`CHUNK_IDS` ids below the one of the highest id (new files take higher
  ids). Triggers on ``files`` drop a chunk in the same transaction as
  any write to a column the table reads of one of its files, so a kept chunk is
  never stale: the last chunk, and one written since, is simply not there;
- **live**: any other chunk, SQLite joins each column of its rows into one text
  (``group_concat``) that numpy reads, a value costing a tenth of a row's.

Rows come in file id order; the order of the report (directory path, then
name) comes from the ids along the index of UNIQUE (dir_id, name) (a covering
index: no row is read) and the directories' paths. All in one read
transaction.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from imgindex.arrays import distinct, lex_order
from imgindex.errors import ImgindexError
from imgindex.hashing import PILLOW_FORMATS

from .database import Database, below, ints_of


@dataclass(frozen=True)
class ImageTable:
    """Every indexed image (a file with an exact hash) as columns, in path order.

    Missing values are flagged (``has_hash``, ``has_trim``) or -1 (``width``,
    ``height``); ``dirs`` holds each image's directory with what joins it to
    the name (``b"/dir/"``, ``b"/"`` for the root, ``b"/dir/crawl.warc.gz#"``
    for a web archive's record), so a path is ``dirs[i] + names[i]``.
    """

    id: npt.NDArray[np.int64]
    root_id: npt.NDArray[np.int64]
    sha256: npt.NDArray[np.uint8]  # (n, 32): raw bytes (numpy's "S32" would drop trailing NULs)
    has_hash: npt.NDArray[np.bool_]
    phash: npt.NDArray[np.int64]  # the whole picture's perceptual hash, 0 without one
    has_trim: npt.NDArray[np.bool_]
    trim_hash: npt.NDArray[np.int64]  # the hash of what is inside its border, 0 without one
    width: npt.NDArray[np.int64]
    height: npt.NDArray[np.int64]
    size: npt.NDArray[np.int64]
    mtime_ns: npt.NDArray[np.int64]
    path_length: npt.NDArray[np.int64]
    preferred: npt.NDArray[np.bool_]  # below one of the directories to prefer
    params_id: npt.NDArray[np.int64]  # the hash settings of its hashes (-1 without)
    format: list[str | None]
    dirs: list[bytes]
    names: list[bytes]
    urls: list[str | None]  # where each was fetched from, when the index knows it
    archived: npt.NDArray[np.bool_]  # a record in a web archive (not a file of its own)

    def __len__(self) -> int:
        return len(self.id)

    def path(self, row: int) -> bytes:
        return self.dirs[row] + self.names[row]


#: File ids a chunk holds (``id >> CHUNK_BITS`` is its number), kept or read live.
CHUNK_BITS = 16
CHUNK_IDS = 1 << CHUNK_BITS
#: The layout of a kept chunk's blobs, below; a chunk of another layout is made again.
LAYOUT = 1
#: Entries of the (dir_id, name) index whose ids are joined into one text at a time.
_ORDER_CHUNK = 1_000_000

#: Formats read as a code (``_FORMATS[code]``); any other is read again by id, as are sizes
#: past 31 bits (each value a row hands over costs as much as the rest of the row's work,
#: so small ones are packed into one number).
_FORMATS: tuple[str | None, ...] = (None, *PILLOW_FORMATS)
_FORMAT_CODE = (
    "CASE WHEN files.format IS NULL THEN 0 ELSE CASE files.format "
    + " ".join(f"WHEN '{f}' THEN {k}" for k, f in enumerate(_FORMATS) if f)
    + f" ELSE {len(_FORMATS)} END END"
)
_SIDE = "coalesce(files.{0}, -1) BETWEEN -1 AND 2147483646"
#: The table's numbers: as SQL, and in this order in a kept chunk's ``numbers`` (int64,
#: little-endian, a column after another).
_NUMBERS = (
    ("id", "files.id"),
    ("phash", "coalesce(files.phash, 0)"),
    ("trim_hash", "coalesce(files.trim_hash, 0)"),
    # Width and height (-1: none) each plus one, in 32 bits each; -1 when one does not fit
    # (a stranger's header may claim up to 2**32 - 1).
    (
        "shape",
        f"CASE WHEN {_SIDE.format('width')} AND {_SIDE.format('height')}"
        " THEN ((coalesce(files.width, -1) + 1) << 32) | (coalesce(files.height, -1) + 1) ELSE -1 END",
    ),
    ("size", "files.size"),
    ("mtime_ns", "files.mtime_ns"),
    ("dir", "files.dir_id"),
    # The hash settings (-1: none) plus one; whether it has a URL; the format's code; whether
    # each hash is there.
    (
        "packed",
        "((coalesce(files.params_id, -1) + 1) << 10) | ((files.url IS NOT NULL) << 9)"
        f" | (({_FORMAT_CODE}) << 2) | (files.phash IS NOT NULL) | ((files.trim_hash IS NOT NULL) << 1)",
    ),
)
_HAS_URL = 1 << 9
_HAS_HASH, _HAS_TRIM = 1, 2  # ``packed``'s bits: the whole picture's hash, the inside's
#: The rows of a range of file ids, each column joined into one text or blob. NULLs are left
#: out of a group_concat: a SHA-256 that is not 32 bytes shortens the digests (an error is
#: raised), and only the URLs there are (marked in ``packed``) are joined.
_LIVE = (
    "SELECT count(*), "
    + ", ".join(f"group_concat({expr}, ' ')" for _, expr in _NUMBERS)
    + ", CAST(group_concat(CASE WHEN length(files.sha256) = 32 THEN files.sha256 END, '') AS BLOB)"
    + ", CAST(group_concat(files.name, X'00') AS BLOB), CAST(group_concat(files.url, X'00') AS BLOB)"
    + " FROM files WHERE files.id BETWEEN ? AND ? AND +files.sha256 IS NOT NULL"
)
#: The byte lengths of names (or URLs) of a range of file ids, when one holds a NUL.
_LENGTHS = (
    "SELECT group_concat(length(CAST(files.{0} AS BLOB)), ' ')"
    " FROM files WHERE files.id BETWEEN ? AND ? AND +files.sha256 IS NOT NULL"
)


def chunk_bounds(chunk: int) -> tuple[int, int]:
    """The first and last file id of a chunk (``id >> CHUNK_BITS``, as :func:`file_chunks`
    counts them); the last chunk ends at SQLite's highest id."""
    return chunk << CHUNK_BITS, min(((chunk + 1) << CHUNK_BITS) - 1, (1 << 63) - 1)


@dataclass
class _Chunk:
    """The rows of a chunk of file ids, in id order."""

    numbers: npt.NDArray[np.int64]  # (len(_NUMBERS), n)
    digests: npt.NDArray[np.uint8]  # (n, 32)
    names: list[bytes]
    urls: list[bytes]  # of the rows with _HAS_URL, in order

    def column(self, name: str) -> npt.NDArray[np.int64]:
        values: npt.NDArray[np.int64] = self.numbers[[k for k, _ in _NUMBERS].index(name)]
        return values


def _live(db: Database, chunk: int) -> _Chunk:
    """A chunk's rows as they are in the index."""
    lo, hi = chunk_bounds(chunk)
    n, *texts, digests, names, urls = db.execute(_LIVE, (lo, hi)).fetchone()
    what = f"the image table of files {lo} to {hi}"
    numbers = np.stack([ints_of(text, n, what) for text in texts]) if n else np.empty((len(_NUMBERS), 0), np.int64)
    if len(digests or b"") != 32 * n:
        raise ImgindexError("an image's row in the index is damaged: its SHA-256 is not 32 bytes long")
    part = _Chunk(numbers, np.frombuffer(digests or b"", np.uint8).reshape(n, 32), [], [])
    part.names = _split(db, names, n, "name", lo, hi) if n else []
    with_url = int(np.count_nonzero(part.column("packed") & _HAS_URL))
    part.urls = _split(db, urls, with_url, "url", lo, hi) if with_url else []
    return part


def _split(db: Database, joined: bytes, count: int, column: str, lo: int, hi: int) -> list[bytes]:
    """``count`` values joined by NULs, split; cut by their lengths when one holds a NUL."""
    parts = joined.split(b"\0")
    if len(parts) == count:
        return parts
    (text,) = db.execute(_LENGTHS.format(column), (lo, hi)).fetchone()
    return _cut(joined, ints_of(text, count, f"the {column}s of files {lo} to {hi}"))


def _cut(joined: bytes, lengths: npt.NDArray[np.int64]) -> list[bytes]:
    """Values of these lengths, joined by NULs."""
    ends = np.cumsum(lengths + 1) - 1
    starts = ends - lengths
    return [joined[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def _joined(values: list[bytes]) -> tuple[bytes, bytes | None]:
    """Values joined by NULs, and their lengths (int64) only when one holds a NUL."""
    joined = b"\0".join(values)
    if joined.count(b"\0") == max(len(values) - 1, 0):
        return joined, None
    return joined, np.fromiter(map(len, values), np.int64, len(values)).astype("<i8").tobytes()


def _kept(row: tuple[Any, ...]) -> _Chunk | None:
    """A chunk from its row of ``image_columns`` (rows, numbers, digests, names, name_lengths,
    urls, url_lengths); None when the row does not hold what it says (damaged: the chunk is
    read live instead, and made again by the next scan)."""
    n, numbers, digests, names, name_lengths, urls, url_lengths = row
    blobs, lengths = (numbers, digests, names, urls), (name_lengths, url_lengths)
    if not all(isinstance(b, bytes) for b in blobs) or not all(x is None or isinstance(x, bytes) for x in lengths):
        return None  # (a value of another type: damage)
    if len(numbers) != 8 * len(_NUMBERS) * n or len(digests) != 32 * n:
        return None
    part = _Chunk(
        np.frombuffer(numbers, "<i8").astype(np.int64, copy=False).reshape(len(_NUMBERS), n),
        np.frombuffer(digests, np.uint8).reshape(n, 32),
        [],
        [],
    )
    found_names = _unjoined(names, name_lengths, n)
    found_urls = _unjoined(urls, url_lengths, int(np.count_nonzero(part.column("packed") & _HAS_URL)))
    if found_names is None or found_urls is None:
        return None
    part.names, part.urls = found_names, found_urls
    return part


def _unjoined(joined: bytes, lengths: bytes | None, count: int) -> list[bytes] | None:
    """``count`` values joined by NULs (cut by ``lengths``, int64, when given); None when
    they are not that many."""
    if lengths is None:
        values = joined.split(b"\0") if count else []
    elif len(lengths) == 8 * count:
        sizes = np.frombuffer(lengths, "<i8").astype(np.int64)
        if int(sizes.sum()) + max(count - 1, 0) != len(joined) or np.any(sizes < 0):
            return None
        values = _cut(joined, sizes)
    else:
        return None
    return values if len(values) == count else None


def file_chunks(db: Database, table: str = "files", column: str = "id") -> list[int]:
    """The chunks of file ids that hold a row of ``table`` (its file ids in ``column``: a
    file's row, or the regions' of a file), ascending: one query each (a seek of the ids),
    however far apart the ids lie."""
    chunks: list[int] = []
    found = db.execute(f"SELECT min({column}) FROM {table}").fetchone()[0]
    while found is not None:
        chunks.append(found >> CHUNK_BITS)
        after = (chunks[-1] + 1) << CHUNK_BITS
        if after >= 1 << 63:  # the last chunk of SQLite's ids
            break
        found = db.execute(f"SELECT min({column}) FROM {table} WHERE {column} >= ?", (after,)).fetchone()[0]
    return chunks


def keep_columns(db: Database, stop: Callable[[], bool] | None = None) -> int:
    """Make the kept chunks (see the module docstring) that are missing: those that hold a
    file and whose ids are all below the highest file id; each in a write transaction of its
    own (short: another process's scan waits for one chunk at most). How many were made."""
    with db.snapshot():
        chunks = file_chunks(db)
        kept = {c for (c,) in db.execute("SELECT chunk FROM image_columns WHERE layout = ?", (LAYOUT,))}
    made = 0
    for chunk in chunks[:-1]:  # the last holds the highest id: new files join it
        if chunk in kept:
            continue
        if stop is not None and stop():
            break
        with db.write() as c:
            try:
                part = _live(db, chunk)
            except ImgindexError:  # a damaged row: left to be read live (and reported) by a report
                continue
            names, name_lengths = _joined(part.names)
            urls, url_lengths = _joined(part.urls)
            c.execute(
                "INSERT OR REPLACE INTO image_columns"
                " (chunk, layout, rows, numbers, digests, names, name_lengths, urls, url_lengths)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    chunk,
                    LAYOUT,
                    len(part.names),
                    part.numbers.astype("<i8").tobytes(),
                    part.digests.tobytes(),
                    names,
                    name_lengths,
                    urls,
                    url_lengths,
                ),
            )
        made += 1
    return made


def read_table(db: Database, under: Sequence[bytes] = (), prefer: Sequence[bytes] = ()) -> ImageTable:
    """Every file recognised as an image (it has an exact hash), ordered by directory and name.

    ``under`` keeps only images below those directories; ``prefer`` marks
    images below those directories.
    """
    flag, flag_params = below("path", prefer)
    within, within_params = below("path", under)
    with db.snapshot():  # the chunks, the order, the directories and the rows read again alike
        # The directories' parts, by directory: paths, roots, whether below one to prefer.
        dir_rows = db.execute(
            f"SELECT id, root_id, path, {flag if prefer else '0'}, archives.dir_id IS NOT NULL,"
            f" {within if under else '1'} FROM dirs LEFT JOIN archives ON archives.dir_id = dirs.id ORDER BY id",
            (*flag_params, *within_params),
        ).fetchall()
        path_order = np.fromiter((i for (i,) in db.execute("SELECT id FROM dirs ORDER BY path")), np.int64)
        kept = {
            row[0]: part
            for row in db.execute(
                "SELECT chunk, rows, numbers, digests, names, name_lengths, urls, url_lengths"
                " FROM image_columns WHERE layout = ?",
                (LAYOUT,),
            )
            if (part := _kept(row[1:])) is not None
        }
        parts = [kept[chunk] if chunk in kept else _live(db, chunk) for chunk in file_chunks(db)]
        key_order = _key_order(db)
        empty = np.empty((len(_NUMBERS), 0), np.int64)
        numbers = np.concatenate([p.numbers for p in parts], axis=1) if parts else empty
        columns = {name: numbers[k] for k, (name, _) in enumerate(_NUMBERS)}
        shape, packed = columns["shape"], columns["packed"]
        width, height = (shape >> 32) - 1, (shape & 0xFFFF_FFFF) - 1
        code = (packed >> 2) & 0x7F
        formats = np.array(_FORMATS, dtype=object)[np.minimum(code, len(_FORMATS) - 1)]
        odd = np.flatnonzero((shape < 0) | (code >= len(_FORMATS)))
        if len(odd):  # sizes past 31 bits, formats not in _FORMATS: read as stored
            odd_ids = columns["id"][odd].tolist()
            sql = "SELECT id, coalesce(width, -1), coalesce(height, -1), format FROM files WHERE id IN ({marks})"
            again = {i: (w, h, f) for i, w, h, f in db.select_in(sql, odd_ids)}
            for k, file_id in zip(odd.tolist(), odd_ids, strict=True):
                width[k], height[k], formats[k] = again[file_id]
    ids = columns["id"]
    names = list(itertools.chain.from_iterable(p.names for p in parts))
    urls = np.full(len(ids), None, dtype=object)
    urls[np.flatnonzero(packed & _HAS_URL)] = [u.decode() for p in parts for u in p.urls]

    # Rows by id, put in the order of the (dir_id, name) index, then the directories by path
    # (a stable sort keeps each one's names in order); below ``under`` only.
    if np.any(np.diff(ids) <= 0):
        raise ImgindexError("the image table read out of order")
    at = np.searchsorted(ids, key_order)
    found = at < len(ids)
    found[found] = ids[at[found]] == key_order[found]
    order = at[found]
    if len(order) != len(ids):
        raise ImgindexError("the image table and the index of its names read out of step")
    dir_id, root, path, preferred, archive, inside = zip(*dir_rows, strict=True) if dir_rows else ((),) * 6
    dir_ids = np.array(dir_id, dtype=np.int64)
    rank = np.empty(len(dir_ids), np.int64)
    rank[np.searchsorted(dir_ids, path_order)] = np.arange(len(dir_ids))
    dirs_of_rows = columns["dir"][order]
    if np.any(np.diff(dirs_of_rows) < 0):  # directory ids ascend along the index
        raise ImgindexError("the index of names read out of order")
    at = np.minimum(np.searchsorted(dir_ids, dirs_of_rows), max(len(dir_ids) - 1, 0))
    # Only files in a directory the index knows (a file in none is damage, which 'check' finds),
    # below ``under`` when given.
    shown = dir_ids[at] == dirs_of_rows if len(dir_ids) else np.zeros(len(order), bool)
    if under:
        shown &= np.array(inside, dtype=bool)[at]
    order, at = order[shown], at[shown]
    by_path = lex_order([rank[at]])  # (a stable sort: each directory's names stay in order)
    order, at = order[by_path], at[by_path]
    n = len(order)
    rows = order.tolist()
    names = list(map(names.__getitem__, rows))
    # A directory's path with what joins a name to it: "/" or, for a web archive, "#".
    joined = [
        bytes(p) + b"#" if a else (b"/" if p == b"/" else bytes(p) + b"/") for p, a in zip(path, archive, strict=True)
    ]
    packed = packed[order]
    return ImageTable(
        id=ids[order],
        root_id=np.array(root, dtype=np.int64)[at],
        sha256=(np.concatenate([p.digests for p in parts]) if parts else np.empty((0, 32), np.uint8))[order],
        has_hash=(packed & _HAS_HASH).astype(bool),
        phash=columns["phash"][order],
        has_trim=(packed & _HAS_TRIM).astype(bool),
        trim_hash=columns["trim_hash"][order],
        width=width[order],
        height=height[order],
        size=columns["size"][order],
        mtime_ns=columns["mtime_ns"][order],
        path_length=np.fromiter(map(len, joined), np.int64, len(joined))[at]
        + np.fromiter(map(len, names), np.int64, n),
        preferred=np.array(preferred, dtype=bool)[at] if prefer else np.zeros(n, bool),
        params_id=(packed >> 10) - 1,
        format=formats[order].tolist(),
        dirs=np.array(joined, dtype=object)[at].tolist() if n else [],
        names=names,
        urls=urls[order].tolist(),
        archived=np.array(archive, dtype=bool)[at],
    )


def _key_order(db: Database) -> npt.NDArray[np.int64]:
    """The ids of every file (image or not) along the index of UNIQUE (dir_id, name): by
    directory id, each one's by name. The index holds both and the id, so no row is read;
    :data:`_ORDER_CHUNK` entries are joined at a time, each range's end found by a walk of the
    index (a directory of millions of files is cut too: SQLite's texts stay small)."""
    index = _by_dir_and_name(db)
    parts, start = [], None
    while True:
        where, params = (" WHERE (dir_id, name) >= (?, ?)", start) if start else ("", ())
        end = db.execute(
            f"SELECT dir_id, name FROM files INDEXED BY {index}{where} ORDER BY dir_id, name LIMIT 1 OFFSET ?",
            (*params, _ORDER_CHUNK),
        ).fetchone()
        if end is not None:
            where += (" AND" if where else " WHERE") + " (dir_id, name) < (?, ?)"
            params += tuple(end)
        (text,) = db.execute(f"SELECT group_concat(id, ' ') FROM files INDEXED BY {index}{where}", params).fetchone()
        parts.append(ints_of(text, -1, "the index of names"))
        if end is None:
            return np.concatenate(parts)
        start = tuple(end)


def _by_dir_and_name(db: Database) -> str:
    """The name of the index of UNIQUE (dir_id, name), quoted."""
    unique = "SELECT name FROM pragma_index_list('files') WHERE \"unique\" AND origin = 'u'"
    for (name,) in db.execute(unique).fetchall():
        columns = [c for (c,) in db.execute("SELECT name FROM pragma_index_info(?) ORDER BY seqno", (name,))]
        if columns == ["dir_id", "name"]:
            return '"' + str(name).replace('"', '""') + '"'
    raise ImgindexError("the index's files table has lost its UNIQUE (dir_id, name) constraint")


#: Where a kept chunk's ``numbers`` blob holds the columns :func:`image_hashes` reads (the
#: k-th column's bytes start at ``8 * rows * k``).
_COLUMN = {name: k for k, (name, _) in enumerate(_NUMBERS)}
#: A chunk's whole and inside hashes (NULLs left out by ``group_concat``), live.
_LIVE_HASHES = (
    "SELECT group_concat(phash, ' '), group_concat(trim_hash, ' ')"
    " FROM files WHERE id BETWEEN ? AND ? AND +sha256 IS NOT NULL"
)


def image_hashes(db: Database) -> npt.NDArray[np.int64]:
    """Every distinct perceptual hash of an image (a file with an exact hash), of the whole
    picture or of what is inside its border, sorted (signed). Kept chunks give their two
    columns (and the flags of which are there) as byte ranges of their ``numbers`` blob, read
    by SQLite's incremental blob I/O; the other chunks are read live, by their ids. At a
    million images 0.09 s in all, the ranges 0.03 s of it (the whole blobs took 0.1 s), where
    a walk of the two columns' indexes took 0.39-0.48 s."""
    whole, inside = [], []
    with db.snapshot():
        kept = dict(db.execute("SELECT chunk, rows FROM image_columns WHERE layout = ?", (LAYOUT,)).fetchall())
        for chunk in file_chunks(db):
            columns = _kept_columns(db, chunk, kept[chunk], ("phash", "trim_hash", "packed")) if chunk in kept else None
            if columns is not None:
                phash, trim_hash, packed = columns
                whole.append(phash[(packed & _HAS_HASH) != 0])
                inside.append(trim_hash[(packed & _HAS_TRIM) != 0])
                continue
            lo, hi = chunk_bounds(chunk)
            texts = db.execute(_LIVE_HASHES, (lo, hi)).fetchone()
            what = f"the hashes of files {lo} to {hi}"
            whole.append(ints_of(texts[0], -1, what))
            inside.append(ints_of(texts[1], -1, what))
    if not whole:
        return np.empty(0, np.int64)
    return distinct(np.concatenate([*whole, *inside]))


def _kept_columns(db: Database, chunk: int, rows: int, names: Sequence[str]) -> list[npt.NDArray[np.int64]] | None:
    """Columns of a kept chunk's ``numbers``, read from its blob by byte ranges (in the
    caller's read transaction); None when the row does not hold what it says (damage: not a
    blob, a count of rows that is not one, a blob not as long as its rows say)."""
    try:
        opened = db.conn.blobopen("image_columns", "numbers", chunk, readonly=True)
    except sqlite3.OperationalError:  # not a blob (damage: a number written there, say)
        return None
    with opened as blob:
        if not isinstance(rows, int) or rows < 0 or len(blob) != 8 * len(_NUMBERS) * rows:
            return None
        columns = []
        for name in names:
            blob.seek(8 * rows * _COLUMN[name])
            columns.append(np.frombuffer(blob.read(8 * rows), "<i8").astype(np.int64))
    return columns
