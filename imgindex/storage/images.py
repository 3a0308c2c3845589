"""What reports, queries and the matcher read: the indexed images, their hashes and thumbnails.

Reads only; results come as named columns (numpy arrays and lists), never as
rows whose meaning hangs on the order of a SELECT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .database import Database, below, int_column


@dataclass(frozen=True)
class ImageTable:
    """Every indexed image (a file with an exact hash) as columns, in path order.

    Missing values are flagged (``has_hash``, ``has_trim``) or -1 (``width``,
    ``height``); ``dirs`` holds each image's directory (``b""`` for the root
    "/"), so a path is ``dirs[i] + b"/" + names[i]``.
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

    def __len__(self) -> int:
        return len(self.id)

    def path(self, row: int) -> bytes:
        return self.dirs[row] + b"/" + self.names[row]


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


class Images:
    def __init__(self, db: Database) -> None:
        self.db = db

    def table(self, under: Sequence[bytes] = (), prefer: Sequence[bytes] = ()) -> ImageTable:
        """Every file recognised as an image (it has an exact hash), ordered by directory and name.

        ``under`` keeps only images below those directories; ``prefer`` marks
        images below those directories.
        """
        where, params = below("dirs.path", under)
        flag, flag_params = below("dirs.path", prefer)
        cursor = self.db.execute(
            "SELECT files.id AS id, dirs.root_id AS root_id, files.sha256 AS sha256, files.phash AS phash,"
            " files.width AS width, files.height AS height, files.size AS size, files.mtime_ns AS mtime_ns,"
            " length(dirs.path) + 1 + length(files.name) AS path_length, files.format AS format,"
            f" {flag if prefer else '0'} AS preferred, files.dir_id AS dir_id, files.name AS name,"
            " files.trim_hash AS trim_hash, files.params_id AS params_id"
            # Directories in path order, each one's files by name through the UNIQUE (dir_id, name)
            # index: no sort; "+" keeps SQLite off the sha256 index (a random read per row).
            " FROM dirs JOIN files ON files.dir_id = dirs.id WHERE +files.sha256 IS NOT NULL"
            + (f" AND {where}" if under else "")
            + " ORDER BY dirs.path, files.name",
            (*flag_params, *params) if prefer else params,
        )
        names = [d[0] for d in cursor.description]
        raw = cursor.fetchall()
        n = len(raw)
        # Plain tuples, then columns: a million named rows cost a second.
        columns: dict[str, tuple[Any, ...]] = dict(zip(names, zip(*raw, strict=True), strict=True)) if raw else {}

        def column(name: str) -> tuple[Any, ...]:
            return columns.get(name, ())

        dir_paths = {i: b"" if p == b"/" else bytes(p) for i, p in self.db.execute("SELECT id, path FROM dirs")}
        table = ImageTable(
            id=np.array(column("id"), dtype=np.int64),
            root_id=np.array(column("root_id"), dtype=np.int64),
            sha256=np.frombuffer(b"".join(column("sha256")), dtype=np.uint8).reshape(n, 32),
            has_hash=np.array([p is not None for p in column("phash")], dtype=np.bool_),
            phash=np.array([0 if p is None else p for p in column("phash")], dtype=np.int64),
            has_trim=np.array([t is not None for t in column("trim_hash")], dtype=np.bool_),
            trim_hash=np.array([0 if t is None else t for t in column("trim_hash")], dtype=np.int64),
            width=np.array([-1 if w is None else w for w in column("width")], dtype=np.int64),
            height=np.array([-1 if h is None else h for h in column("height")], dtype=np.int64),
            size=np.array(column("size"), dtype=np.int64),
            mtime_ns=np.array(column("mtime_ns"), dtype=np.int64),
            path_length=np.array(column("path_length"), dtype=np.int64),
            preferred=np.array(column("preferred"), dtype=np.bool_),
            params_id=np.array([-1 if p is None else p for p in column("params_id")], dtype=np.int64),
            format=list(column("format")),
            dirs=[dir_paths[d] for d in column("dir_id")],
            names=list(column("name")),
        )
        return table

    def hashes(self) -> npt.NDArray[np.int64]:
        """Every distinct perceptual hash of an indexed image (of the whole picture or of
        what is inside its border), sorted (as signed integers)."""
        rows = self.db.execute(
            "SELECT phash FROM files WHERE phash IS NOT NULL"
            " UNION SELECT trim_hash FROM files WHERE trim_hash IS NOT NULL ORDER BY 1"
        )
        return int_column(rows)

    def pictures(self, params_id: int) -> Pictures:
        """Every distinct picture (SHA-256) hashed under the settings ``params_id``, with the
        id of one of its files (the lowest) and its hashes, in SHA-256 order."""
        rows = self.db.execute(
            "SELECT min(id), sha256, phash, trim_hash FROM files"
            " WHERE params_id = ? AND phash IS NOT NULL AND sha256 IS NOT NULL GROUP BY sha256 ORDER BY sha256",
            (params_id,),
        ).fetchall()
        n = len(rows)
        ids, digests, phash, trim = zip(*rows, strict=True) if rows else ((), (), (), ())
        return Pictures(
            file_id=np.array(ids, dtype=np.int64),
            sha256=np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(n, 32),
            phash=np.array(phash, dtype=np.int64),
            has_trim=np.array([t is not None for t in trim], dtype=np.bool_),
            trim_hash=np.array([0 if t is None else t for t in trim], dtype=np.int64),
        )

    def with_hashes(self, hashes: Sequence[int]) -> list[tuple[int, int | None, int | None]]:
        """``(file id, phash, trim_hash)`` of the indexed images with one of these hashes as either."""
        sql = "SELECT id, phash, trim_hash FROM files WHERE phash IN ({marks}) OR trim_hash IN ({marks})"
        return [(int(i), h, t) for i, h, t in self.db.select_in(sql, hashes, repeat=2)]

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
        sql = "SELECT file_id, picture, trimmed FROM descriptors WHERE file_id IN ({marks})"
        return {int(i): (bytes(p), None if t is None else bytes(t)) for i, p, t in self.db.select_in(sql, ids)}

    def file_info(self, ids: Sequence[int]) -> dict[int, tuple[bytes, int | None, int | None]]:
        """Full path, width and height of files by id."""
        sql = "SELECT id, path, width, height FROM file_paths WHERE id IN ({marks})"
        return {int(i): (bytes(p), w, h) for i, p, w, h in self.db.select_in(sql, ids)}
