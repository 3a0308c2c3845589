"""What reports, queries and the matcher read: the indexed images, their hashes and thumbnails.

Reads only; results come as named columns (numpy arrays and lists), never as
rows whose meaning hangs on the order of a SELECT.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from imgindex.arrays import union
from imgindex.bulk import without_gc
from imgindex.errors import ImgindexError
from imgindex.hashing import PILLOW_FORMATS, REGION_BYTES

from .database import Database, below, ints_of, record_array
from .shapes import GOOD_DESCRIPTORS, GOOD_REGIONS


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


@dataclass(frozen=True)
class Pictures:
    """Distinct pictures (by SHA-256) as columns: one file of each, and its hashes."""

    file_id: npt.NDArray[np.int64]
    sha256: npt.NDArray[np.uint8]  # (n, 32)
    phash: npt.NDArray[np.int64]
    has_trim: npt.NDArray[np.bool_]
    trim_hash: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.file_id)


#: Distinct pictures hashed under some settings (one parameter), as :func:`_pictures` reads them.
_PICTURES = (
    "SELECT min(id), sha256, phash, coalesce(trim_hash, 0), trim_hash IS NOT NULL FROM files"
    " WHERE params_id = ? AND phash IS NOT NULL AND sha256 IS NOT NULL AND length(sha256) = 32"
)


_PICTURE_ROW = np.dtype(
    [("file_id", np.int64), ("sha256", "V32"), ("phash", np.int64), ("trim_hash", np.int64), ("has_trim", np.int64)]
)


def _pictures(rows: Iterable[tuple[int, bytes, int, int, int]]) -> Pictures:
    """Rows of :data:`_PICTURES` (whose SHA-256s are 32 bytes) as columns."""
    table = record_array(rows, _PICTURE_ROW)
    return Pictures(
        file_id=np.ascontiguousarray(table["file_id"]),
        sha256=np.ascontiguousarray(table["sha256"]).view(np.uint8).reshape(len(table), 32),
        phash=np.ascontiguousarray(table["phash"]),
        has_trim=table["has_trim"].astype(bool),
        trim_hash=np.ascontiguousarray(table["trim_hash"]),
    )


def _starting_with(prefix: bytes) -> tuple[str, tuple[bytes, ...]]:
    """An SQL condition (and its parameters): ``sha256`` starts with ``prefix``, as a range."""
    stem = prefix.rstrip(b"\xff")  # the first string after every one that starts with prefix
    if not stem:
        return "sha256 >= ?", (prefix,)
    return "sha256 >= ? AND sha256 < ?", (prefix, stem[:-1] + bytes([stem[-1] + 1]))


#: :meth:`Images.all_regions` reads the regions of this many file ids at a time.
_REGION_RANGE = 250_000
#: Past this many ids, :meth:`Images.regions` reads the whole table rather than look each up.
_SCAN_BEYOND = 20_000


#: Formats the image table reads as a code (``_TABLE_FORMATS[code]``); any other is read again
#: by id, as are sizes past 31 bits (each value a row hands to Python costs as much as the
#: rest of the row's work, so small ones are packed into one number).
_TABLE_FORMATS: tuple[str | None, ...] = (None, *PILLOW_FORMATS)
_FORMAT_CODE = (
    "CASE WHEN files.format IS NULL THEN 0 ELSE CASE files.format "
    + " ".join(f"WHEN '{f}' THEN {k}" for k, f in enumerate(_TABLE_FORMATS) if f)
    + f" ELSE {len(_TABLE_FORMATS)} END END"
)
_SIDE = "coalesce(files.{0}, -1) BETWEEN -1 AND 2147483646"
#: The image table's numbers, each joined by SQLite over a range of directories into one text
#: that numpy reads (:func:`~imgindex.storage.database.ints_of`): handing Python a value a row
#: costs more than SQLite's own work on the row.
_TABLE_NUMBERS = (
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
        f"((coalesce(files.params_id, -1) + 1) << 10) | ((files.url IS NOT NULL) << 9)"
        f" | (({_FORMAT_CODE}) << 2) | (files.phash IS NOT NULL) | ((files.trim_hash IS NOT NULL) << 1)",
    ),
)
#: Files (images or not) whose rows the image table asks SQLite for at a time.
_TABLE_CHUNK = 100_000
#: The image table over the files of a range of keys (dir_id, name) (and, with ``under``, of the
#: directories that condition keeps), along the index of UNIQUE (dir_id, name) (named where the
#: query is made): by directory id, each one's files by name. NULLs are left out of a
#: group_concat, so a SHA-256 that is not 32 bytes shortens the digests (and an error is
#: raised), and only the URLs there are (marked in ``packed``) are joined.
_TABLE_SQL = (
    "SELECT count(*), "
    + ", ".join(f"group_concat({expr}, ' ')" for _, expr in _TABLE_NUMBERS)
    + ", CAST(group_concat(CASE WHEN length(files.sha256) = 32 THEN files.sha256 END, '') AS BLOB)"
    + ", CAST(group_concat(files.name, X'00') AS BLOB), CAST(group_concat(files.url, X'00') AS BLOB)"
    + " FROM files INDEXED BY {index} WHERE +files.sha256 IS NOT NULL{where}"
)
#: Names (or URLs) of a range of keys by their lengths, when one holds a NUL.
_LENGTHS_SQL = (
    "SELECT group_concat(length(CAST(files.{column} AS BLOB)), ' ')"
    " FROM files INDEXED BY {index} WHERE +files.sha256 IS NOT NULL{where}"
)


class _TableRead:
    """The image table's rows, a range of keys (dir_id, name) at a time, as columns
    (:data:`_TABLE_SQL`)."""

    def __init__(self, db: Database, index: str, under: str, params: Sequence[bytes]) -> None:
        self.db = db
        self.index = index
        self.under = f" AND files.dir_id IN (SELECT id FROM dirs WHERE {under})" if under else ""
        self.params = tuple(params)

    def chunks(self) -> list[dict[str, Any]]:
        """Every row, by ranges of :data:`_TABLE_CHUNK` files: each range's end is found by
        walking that many entries of the index from its start (a directory of millions of
        files is cut too: SQLite's texts stay small, and below its limit on a value's length)."""
        chunks, start = [], None
        while True:
            where, params = (" AND (files.dir_id, files.name) >= (?, ?)", start) if start else ("", ())
            end = self.db.execute(
                f"SELECT files.dir_id, files.name FROM files INDEXED BY {self.index} WHERE 1{where}"
                " ORDER BY files.dir_id, files.name LIMIT 1 OFFSET ?",
                (*params, _TABLE_CHUNK),
            ).fetchone()
            if end is not None:
                where += " AND (files.dir_id, files.name) < (?, ?)"
                params += tuple(end)
            chunks.append(self.range(where + self.under, params + self.params))
            if end is None:
                return chunks
            start = tuple(end)

    def range(self, where: str, params: tuple[Any, ...]) -> dict[str, Any]:
        """The rows of a range of keys: the condition ``where`` and its parameters."""
        n, *numbers, digests, names, urls = self.db.execute(
            _TABLE_SQL.format(index=self.index, where=where), params
        ).fetchone()
        chunk: dict[str, Any] = {
            name: ints_of(text, n, "the image table") for (name, _), text in zip(_TABLE_NUMBERS, numbers, strict=True)
        }
        if len(digests or b"") != 32 * n:  # (the SQL above leaves out such a digest)
            raise ImgindexError("an image's row in the index is damaged: its SHA-256 is not 32 bytes long")
        chunk["sha256"] = np.frombuffer(digests or b"", np.uint8).reshape(n, 32)
        if np.any(np.diff(chunk["dir"]) < 0):  # not along the index: names would be out of order
            raise ImgindexError("the image table read out of order")
        chunk["names"] = self._split(names, n, "name", where, params) if n else []
        has_url = np.flatnonzero(chunk["packed"] & (1 << 9))
        chunk["urls"] = [None] * n
        if len(has_url):
            found = self._split(urls, len(has_url), "url", where, params)
            for k, url in zip(has_url.tolist(), found, strict=True):
                chunk["urls"][k] = url.decode()
        return chunk

    def _split(self, joined: bytes, count: int, column: str, where: str, params: tuple[Any, ...]) -> list[bytes]:
        """``count`` values joined by NULs, split; by their lengths when one holds a NUL."""
        parts = joined.split(b"\0")
        if len(parts) == count:
            return parts
        (text,) = self.db.execute(_LENGTHS_SQL.format(column=column, index=self.index, where=where), params).fetchone()
        lengths = ints_of(text, count, f"the {column}s of the image table")
        ends = np.cumsum(lengths + 1) - 1  # each value's end, a NUL joining it to the next
        starts = ends - lengths
        return [joined[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


class Images:
    def __init__(self, db: Database) -> None:
        self.db = db

    def table(self, under: Sequence[bytes] = (), prefer: Sequence[bytes] = ()) -> ImageTable:
        """Every file recognised as an image (it has an exact hash), ordered by directory and name.

        ``under`` keeps only images below those directories; ``prefer`` marks
        images below those directories.
        """
        where, params = below("path", under)
        flag, flag_params = below("path", prefer)
        with self.db.snapshot():  # every range of directories and the few read again by id alike
            # The directories' parts, by directory: paths, roots, whether below one to prefer.
            dir_rows = self.db.execute(
                f"SELECT id, root_id, path, {flag if prefer else '0'}, archives.dir_id IS NOT NULL"
                " FROM dirs LEFT JOIN archives ON archives.dir_id = dirs.id ORDER BY id",
                flag_params,
            ).fetchall()
            in_path_order = np.fromiter((i for (i,) in self.db.execute("SELECT id FROM dirs ORDER BY path")), np.int64)
            read = _TableRead(self.db, self._by_dir_and_name(), where if under else "", params)
            chunks = read.chunks()
            columns = {
                name: np.concatenate([c[name] for c in chunks]) if chunks else np.empty(0, np.int64)
                for name, _ in _TABLE_NUMBERS
            }
            digests: npt.NDArray[np.uint8] = (
                np.concatenate([c["sha256"] for c in chunks]) if chunks else np.empty((0, 32), np.uint8)
            )
            names = [name for c in chunks for name in c["names"]]
            urls = [url for c in chunks for url in c["urls"]]
            shape, packed = columns["shape"], columns["packed"]
            width, height = (shape >> 32) - 1, (shape & 0xFFFF_FFFF) - 1
            code = (packed >> 2) & 0x7F
            formats = np.array(_TABLE_FORMATS, dtype=object)[np.minimum(code, len(_TABLE_FORMATS) - 1)]
            odd = np.flatnonzero((shape < 0) | (code >= len(_TABLE_FORMATS)))
            if len(odd):  # sizes past 31 bits, formats not in _TABLE_FORMATS: read as stored
                odd_ids = columns["id"][odd].tolist()
                again = self._read_again(odd_ids)
                for k, file_id in zip(odd.tolist(), odd_ids, strict=True):
                    width[k], height[k], formats[k] = again[file_id]
        n = len(names)
        ids, root, path, preferred, archive = zip(*dir_rows, strict=True) if dir_rows else ((),) * 5
        dir_ids = np.array(ids, dtype=np.int64)
        # Rows come by directory id, each directory's by name: in path order once the
        # directories are (a stable sort keeps each one's names in order).
        rank = np.empty(len(dir_ids), np.int64)
        rank[np.searchsorted(dir_ids, in_path_order)] = np.arange(len(dir_ids))
        at = np.searchsorted(dir_ids, columns["dir"])  # each image's directory
        order = np.argsort(rank[at], kind="stable")
        at = at[order]
        names = np.array(names, dtype=object)[order].tolist() if n else []
        # A directory's path with what joins a name to it: "/" or, for a web archive, "#".
        joined = [
            bytes(p) + b"#" if a else (b"/" if p == b"/" else bytes(p) + b"/")
            for p, a in zip(path, archive, strict=True)
        ]
        packed = packed[order]
        return ImageTable(
            id=columns["id"][order],
            root_id=np.array(root, dtype=np.int64)[at],
            sha256=digests[order],
            has_hash=(packed & 1).astype(bool),
            phash=columns["phash"][order],
            has_trim=(packed & 2).astype(bool),
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
            dirs=np.array(joined, dtype=object)[at].tolist(),
            names=names,
            urls=np.array(urls, dtype=object)[order].tolist() if n else [],
            archived=np.array(archive, dtype=bool)[at],
        )

    def _by_dir_and_name(self) -> str:
        """The name of the index of UNIQUE (dir_id, name), quoted, along which the table reads."""
        for (name,) in self.db.execute(
            "SELECT name FROM pragma_index_list('files') WHERE \"unique\" AND origin = 'u'"
        ).fetchall():
            columns = [c for (c,) in self.db.execute("SELECT name FROM pragma_index_info(?) ORDER BY seqno", (name,))]
            if columns == ["dir_id", "name"]:
                return '"' + str(name).replace('"', '""') + '"'
        raise ImgindexError("the index's files table has lost its UNIQUE (dir_id, name) constraint")

    def _read_again(self, ids: Sequence[int]) -> dict[int, tuple[int, int, str | None]]:
        """Width, height (-1 for none) and format of these files, as stored."""
        sql = "SELECT id, coalesce(width, -1), coalesce(height, -1), format FROM files WHERE id IN ({marks})"
        return {i: (w, h, f) for i, w, h, f in self.db.select_in(sql, ids)}

    def hashes(self) -> npt.NDArray[np.int64]:
        """Every distinct perceptual hash of an indexed image (of the whole picture or of
        what is inside its border), sorted (as signed integers)."""
        # Each column's values in order along its index, merged here: an SQL UNION of the two
        # builds a temporary B-tree of a million values, twice as slow.
        with self.db.snapshot():
            whole = self.db.sorted_ints(
                "SELECT DISTINCT phash AS x FROM files WHERE phash IS NOT NULL AND phash BETWEEN {lo} AND {hi}"
            )
            inside = self.db.sorted_ints(
                "SELECT DISTINCT trim_hash AS x FROM files"
                " WHERE trim_hash IS NOT NULL AND trim_hash BETWEEN {lo} AND {hi}"
            )
        return union(whole, inside)

    def pictures(self, params_id: int, only: Sequence[bytes] | None = None) -> Pictures:
        """Every distinct picture (SHA-256) hashed under the settings ``params_id`` (of those
        with the digests ``only``, when given), with the id of one of its files (the lowest)
        and its hashes."""
        if only is None:
            return _pictures(self.db.execute(_PICTURES + " GROUP BY sha256", (params_id,)))
        sql = _PICTURES + " AND sha256 IN ({marks}) GROUP BY sha256"
        return _pictures(list(self.db.select_in(sql, only, params=(params_id,))))

    def pictures_with_keys(self, params_id: int, keys: Sequence[int]) -> Pictures:
        """The pictures (as :meth:`pictures`) whose picture keys (the first 8 bytes of the SHA-256,
        a signed integer) are ``keys``."""
        rows = []
        for key in keys:
            where, bounds = _starting_with((key & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big"))
            rows += self.db.execute(_PICTURES + f" AND {where} GROUP BY sha256", (params_id, *bounds)).fetchall()
        return _pictures(rows)

    def pictures_near(self, params_id: int, values: Sequence[int]) -> Pictures:
        """The pictures (as :meth:`pictures`) whose hash, of the whole or of the inside, is one of ``values``."""
        sql = _PICTURES + " AND (phash IN ({marks}) OR trim_hash IN ({marks})) GROUP BY sha256"
        return _pictures(list(self.db.select_in(sql, values, repeat=2, params=(params_id,))))

    def digests_with_prefix(self, prefix: bytes) -> list[bytes]:
        """The distinct SHA-256s of indexed files that start with ``prefix``."""
        where, bounds = _starting_with(prefix)
        return [bytes(r[0]) for r in self.db.execute(f"SELECT DISTINCT sha256 FROM files WHERE {where}", bounds)]

    def with_hashes(self, hashes: Sequence[int]) -> list[tuple[int, int | None, int | None]]:
        """``(file id, phash, trim_hash)`` of the indexed images with one of these hashes as either."""
        sql = "SELECT id, phash, trim_hash FROM files WHERE phash IN ({marks}) OR trim_hash IN ({marks})"
        return [(int(i), h, t) for i, h, t in self.db.select_in(sql, hashes, repeat=2)]

    def hashes_of(self, ids: Sequence[int]) -> list[tuple[int, int, int | None]]:
        """``(file id, phash, trim_hash)`` of the files by id that have a perceptual hash."""
        sql = "SELECT id, phash, trim_hash FROM files WHERE phash IS NOT NULL AND id IN ({marks})"
        return [(int(i), int(h), t) for i, h, t in self.db.select_in(sql, ids)]

    def hashed_files(self) -> list[tuple[int, int, int | None]]:
        """``(file id, phash, trim_hash)`` of every indexed image with a perceptual hash."""
        rows = self.db.execute("SELECT id, phash, trim_hash FROM files WHERE phash IS NOT NULL ORDER BY id")
        return [(int(i), int(h), t) for i, h, t in rows]

    def with_sha256(self, digests: Sequence[bytes]) -> list[tuple[int, bytes]]:
        """``(file id, sha256)`` of the indexed files with one of these exact hashes."""
        sql = "SELECT id, sha256 FROM files WHERE sha256 IN ({marks})"
        return [(int(i), bytes(d)) for i, d in self.db.select_in(sql, digests)]

    def descriptors(self, ids: Sequence[int]) -> dict[int, tuple[bytes, bytes | None]]:
        """The descriptors of files by id (of the whole picture, and of its inside when
        trimmed): files without (not hashed yet by this version) are left out."""
        sql = f"SELECT file_id, picture, trimmed FROM descriptors WHERE {GOOD_DESCRIPTORS} AND file_id IN ({{marks}})"
        return {int(i): (bytes(p), None if t is None else bytes(t)) for i, p, t in self.db.select_in(sql, ids)}

    def regions(self, ids: Sequence[int]) -> tuple[list[int], list[bytes]]:
        """The files of ``ids`` that have the hashes of their regions (``regions``), and those:
        ``(ids, blobs)``, in the same order (every file's at once: :meth:`all_regions`)."""
        if len(ids) > _SCAN_BEYOND:
            # Past some thousands of ids, one pass over the table beats looking each up.
            with without_gc():
                found = self.db.execute(f"SELECT file_id, hashes FROM regions WHERE {GOOD_REGIONS}").fetchall()
            wanted = set(ids)
            found = [row for row in found if row[0] in wanted]
        else:
            sql = f"SELECT file_id, hashes FROM regions WHERE {GOOD_REGIONS} AND file_id IN ({{marks}})"
            found = list(self.db.select_in(sql, ids))
        if not found:
            return [], []
        file_ids, blobs = zip(*found, strict=True)
        return list(file_ids), list(blobs)

    def all_regions(self) -> tuple[npt.NDArray[np.int64], bytes]:
        """Every file that has the hashes of its regions: file ids, and the hashes' blobs joined
        in the same order. SQLite joins them (``group_concat``, which keeps a blob's bytes, and
        the ids as one text), a range of ids at a time: a row and two Python objects a file cost
        three times as much."""
        ids, blobs = [], []
        with self.db.snapshot():
            (top,) = self.db.execute("SELECT coalesce(max(file_id), 0) FROM regions").fetchone()
            for lo in range(0, top + 1, _REGION_RANGE):
                text, joined, count = self.db.execute(
                    "SELECT group_concat(file_id, ' '), CAST(group_concat(hashes, '') AS BLOB), count(*)"
                    f" FROM regions WHERE file_id BETWEEN ? AND ? AND {GOOD_REGIONS}",
                    (lo, lo + _REGION_RANGE - 1),
                ).fetchone()
                if count:
                    what = f"the regions of files {lo} to {lo + _REGION_RANGE - 1}"
                    ids.append(ints_of(text, count, what))
                    blobs.append(joined)
                    if len(joined) != count * REGION_BYTES:  # one row feeds both
                        raise ImgindexError(f"{what} read out of step")
        return (np.concatenate(ids) if ids else np.empty(0, np.int64)), b"".join(blobs)

    def grids(self, ids: Sequence[int]) -> dict[int, tuple[bytes, bytes]]:
        """By file id, the grey grid of a file's inside (``descriptors.grid``) and its inside's
        descriptor (the whole picture's without a border), for the files that have a grid."""
        sql = (
            "SELECT file_id, grid, coalesce(trimmed, picture) FROM descriptors"
            f" WHERE grid IS NOT NULL AND {GOOD_DESCRIPTORS} AND file_id IN ({{marks}})"
        )
        return {int(i): (bytes(g), bytes(d)) for i, g, d in self.db.select_in(sql, ids)}

    def pictures_of_files(self, params_id: int, ids: Sequence[int]) -> Pictures:
        """The pictures (as :meth:`pictures`) of the files by id."""
        sql = _PICTURES + " AND sha256 IN (SELECT sha256 FROM files WHERE id IN ({marks})) GROUP BY sha256"
        return _pictures(list(self.db.select_in(sql, ids, params=(params_id,))))

    def file_info(self, ids: Sequence[int]) -> dict[int, tuple[bytes, int | None, int | None, str | None]]:
        """Full path, width, height and URL (None where unknown) of files by id."""
        sql = "SELECT id, path, width, height, url FROM file_paths WHERE id IN ({marks})"
        return {int(i): (bytes(p), w, h, u) for i, p, w, h, u in self.db.select_in(sql, ids)}
