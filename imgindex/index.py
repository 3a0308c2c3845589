"""The SQLite index: opening, migrating, writing and querying it.

All SQL of the project lives here and in ``schema.sql``. Callers get plain
Python values (bytes paths, ints, dataclasses) and never see a cursor.

Writes are short ``BEGIN IMMEDIATE`` transactions in WAL mode with a generous
busy timeout, so that ``scan``, ``watch`` and ``report`` can share one index.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import sqlite_utils

SCHEMA_VERSION = 3
#: ``PRAGMA application_id``: "imix" in ASCII.
APPLICATION_ID = 0x696D6978
BUSY_TIMEOUT_MS = 60_000

#: Statuses of files that were recognised as images but could not be hashed.
FAILED_STATUSES = ("truncated", "corrupt", "unsupported", "too_large", "unreadable")
#: Every status a file row can have.
STATUSES = ("ok", "not_image", "empty", *FAILED_STATUSES)

NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs", "ceph", "glusterfs", "lustre"}
)


class IndexError_(Exception):
    """Base class of errors opening or using the index (shown to the user as is)."""


class NotAnIndexError(IndexError_):
    pass


class NewerIndexError(IndexError_):
    pass


def schema_sql() -> str:
    """The text of ``schema.sql``: shipped in the package, or at the repository root."""
    packaged = resources.files("imgindex").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "schema.sql").read_text(encoding="utf-8")


#: Migrations by the version they produce: a function that brings an index of
#: the version before up to date (and ``schema.sql`` is changed to match). A new
#: index is made from ``schema.sql`` alone and starts at SCHEMA_VERSION. A
#: migration creates its tables and indexes from their statements in
#: ``schema.sql`` (:func:`_create_objects`), so the schema has one source.
def _add_near_pairs(conn: sqlite3.Connection) -> None:
    """Version 2 adds the near-pair tables, meta and an index on files.phash."""
    _create_objects(conn, {"near_hashes", "near_pairs", "near_pairs_b", "meta", "files_phash"})


def _add_descriptors(conn: sqlite3.Connection) -> None:
    """Version 3 adds files.trim_hash and the descriptors table. The hash settings
    changed with it, so the next scan re-reads every image to fill them."""
    conn.execute("ALTER TABLE files ADD COLUMN trim_hash INTEGER")
    _create_objects(conn, {"files_trim_hash", "descriptors"})


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _add_near_pairs, 3: _add_descriptors}


def filesystem_type(path: str | os.PathLike[str]) -> str | None:
    """The type of the filesystem holding ``path``, from /proc/mounts (Linux only)."""
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    target = os.path.realpath(os.path.dirname(os.path.abspath(path)) or ".")
    best, best_type = "", None
    for fields in mounts:
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        if (target == mount_point or target.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) > len(best):
            best, best_type = mount_point, fields[2]
    return best_type


@dataclass(frozen=True)
class StoredFile:
    """What the index knows of a file, enough to decide whether to read it again."""

    id: int
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    status: str
    params_id: int | None
    read_ns: int
    width: int | None
    height: int | None
    format: str | None


#: The columns of a StoredFile, in order.
_STORED = "id, size, mtime_ns, ctime_ns, inode, status, params_id, read_ns, width, height, format"


@dataclass(frozen=True)
class FileRecord:
    """A file's row as written after reading it."""

    dir_id: int
    name: bytes
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int
    status: str
    error: str | None
    format: str | None
    sha256: bytes | None
    width: int | None
    height: int | None
    phash: int | None
    params_id: int | None
    read_ns: int
    trim_hash: int | None = None
    descriptor: bytes | None = None  # hashing.descriptor of the picture (with phash)
    trim_descriptor: bytes | None = None  # ... and of the picture inside its border (with trim_hash)


class ImageRow(NamedTuple):
    """What a report needs of an image, without its path (fetched later, only for output)."""

    id: int
    root_id: int
    sha256: bytes
    phash: int | None
    width: int | None
    height: int | None
    size: int
    mtime_ns: int
    path_length: int
    format: str | None
    preferred: int
    dir_id: int
    name: bytes
    trim_hash: int | None


@dataclass(frozen=True)
class Root:
    id: int
    path: bytes


@dataclass(frozen=True)
class ProblemFile:
    path: bytes
    kind: str  # a file status, or "directory" for a directory that could not be listed
    error: str | None
    format: str | None


class Index:
    """An open index. Use :func:`open_index` to get one."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path
        self.db = sqlite_utils.Database(conn)
        self._dir_ids: dict[bytes, int] = {}

    # -- connection -----------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction, taken at once so that it never deadlocks."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads that see one state of the index, whatever other processes write meanwhile."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def network_filesystem(self) -> str | None:
        """The filesystem type when the index sits on a network filesystem, else None."""
        fs = filesystem_type(self.path)
        return fs if fs in NETWORK_FILESYSTEMS else None

    # -- roots and directories -------------------------------------------

    def roots(self) -> list[Root]:
        return [Root(r[0], bytes(r[1])) for r in self.conn.execute("SELECT id, path FROM roots ORDER BY path")]

    def ensure_root(self, path: bytes) -> Root:
        """The root that ``path`` belongs to, registering it if it is new.

        A path inside a known root is part of that root. A new root that
        contains known roots takes over their directories.
        """
        known = self.root_of(path)
        if known is not None:
            return known
        with self.write() as c:
            c.execute("INSERT OR IGNORE INTO roots (path, added_at) VALUES (?, ?)", (path, time.time()))
            root_id = int(c.execute("SELECT id FROM roots WHERE path = ?", (path,)).fetchone()[0])
            prefix = path.rstrip(b"/") + b"/"
            inner = [
                r[0]
                for r in c.execute(
                    "SELECT id FROM roots WHERE id != ? AND path >= ? AND path < ?",
                    (root_id, prefix, _prefix_end(prefix)),
                )
            ]
            for old in inner:
                c.execute("UPDATE dirs SET root_id = ? WHERE root_id = ?", (root_id, old))
                c.execute("DELETE FROM roots WHERE id = ?", (old,))
        return Root(root_id, path)

    def root_of(self, path: bytes) -> Root | None:
        """The known root that ``path`` is at or below, if any."""
        for root in self.roots():
            if path == root.path or path.startswith(root.path.rstrip(b"/") + b"/"):
                return root
        return None

    def dir_id(self, path: bytes, root_id: int) -> int:
        """The id of a directory's row, creating the row if needed."""
        cached = self._dir_ids.get(path)
        if cached is not None:
            return cached
        row = self.conn.execute("SELECT id FROM dirs WHERE path = ?", (path,)).fetchone()
        if row is None:
            with self.write() as c:
                c.execute("INSERT OR IGNORE INTO dirs (root_id, path) VALUES (?, ?)", (root_id, path))
            row = self.conn.execute("SELECT id FROM dirs WHERE path = ?", (path,)).fetchone()
        self._dir_ids[path] = int(row[0])
        return int(row[0])

    def add_dirs(self, paths: Sequence[bytes], root_id: int) -> None:
        """Make sure directories have rows, creating the missing ones in one transaction."""
        missing = [p for p in paths if p not in self._dir_ids]
        if not missing:
            return
        with self.write() as c:
            c.executemany("INSERT OR IGNORE INTO dirs (root_id, path) VALUES (?, ?)", ((root_id, p) for p in missing))
        rows = _select_in(self.conn, "SELECT id, path FROM dirs WHERE path IN ({marks})", missing)
        self._dir_ids.update((bytes(p), int(i)) for i, p in rows)

    def preload_dirs(self, top: bytes) -> None:
        """Read the ids of the known directories under ``top`` in one query."""
        self._dir_ids.update((p, i) for i, p in self.dirs_under(top))

    def forget_dir_ids(self) -> None:
        self._dir_ids.clear()

    def known_dir_id(self, path: bytes) -> int | None:
        row = self.conn.execute("SELECT id FROM dirs WHERE path = ?", (path,)).fetchone()
        return None if row is None else int(row[0])

    def files_in_dir(self, dir_id: int) -> dict[bytes, StoredFile]:
        rows = self.conn.execute(
            f"SELECT name, {_STORED} FROM files WHERE dir_id = ?",
            (dir_id,),
        )
        return {bytes(r[0]): StoredFile(*r[1:]) for r in rows}

    def file_row(self, dir_id: int, name: bytes) -> StoredFile | None:
        row = self.conn.execute(
            f"SELECT {_STORED} FROM files WHERE dir_id = ? AND name = ?",
            (dir_id, name),
        ).fetchone()
        return None if row is None else StoredFile(*row)

    def dirs_under(self, top: bytes) -> list[tuple[int, bytes]]:
        """Known directories at or below ``top``."""
        prefix = top.rstrip(b"/") + b"/"
        rows = self.conn.execute(
            "SELECT id, path FROM dirs WHERE path = ? OR (path >= ? AND path < ?)",
            (top, prefix, _prefix_end(prefix)),
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def record_listings(self, listed: Sequence[int], failed: Sequence[tuple[int, str]]) -> None:
        """Record which directories were listed, and why others could not be."""
        now = time.time()
        with self.write() as c:
            c.executemany("UPDATE dirs SET error = NULL, listed_at = ? WHERE id = ?", ((now, d) for d in listed))
            c.executemany("UPDATE dirs SET error = ? WHERE id = ?", ((e, d) for d, e in failed))

    def remove_files(self, ids: Iterable[int]) -> int:
        ids = list(ids)
        with self.write() as c:
            c.executemany("DELETE FROM files WHERE id = ?", ((i,) for i in ids))
        return len(ids)

    def remove_named(self, names: Sequence[tuple[int, bytes]]) -> int:
        """Remove the rows of files (by directory id and name) that turned out to be gone."""
        with self.write() as c:
            return sum(c.execute("DELETE FROM files WHERE dir_id = ? AND name = ?", n).rowcount for n in names)

    def remove_dirs(self, dir_ids: Sequence[int]) -> int:
        """Remove directories and their files; returns how many files went."""
        removed = 0
        with self.write() as c:
            for d in dir_ids:
                removed += c.execute("SELECT count(*) FROM files WHERE dir_id = ?", (d,)).fetchone()[0]
                c.execute("DELETE FROM files WHERE dir_id = ?", (d,))
                c.execute("DELETE FROM dirs WHERE id = ?", (d,))
        dropped = set(dir_ids)
        self._dir_ids = {p: i for p, i in self._dir_ids.items() if i not in dropped}
        return removed

    # -- files -----------------------------------------------------------

    def write_files(self, records: Sequence[FileRecord]) -> None:
        """Insert or update file rows, in one transaction."""
        now = time.time()
        with self.write() as c:
            wanted = sorted({r.dir_id for r in records})
            live = {int(row[0]) for row in _select_in(c, "SELECT id FROM dirs WHERE id IN ({marks})", wanted)}
            if len(live) < len(wanted):  # another process removed a directory meanwhile
                records = [r for r in records if r.dir_id in live]
                self._dir_ids.clear()
            c.executemany(
                "INSERT INTO files (dir_id, name, size, mtime_ns, ctime_ns, inode, device, status,"
                " error, format, sha256, width, height, phash, params_id, read_ns, first_seen, trim_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (dir_id, name) DO UPDATE SET size = excluded.size,"
                " mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, inode = excluded.inode,"
                " device = excluded.device, status = excluded.status, error = excluded.error,"
                " format = excluded.format,"
                # A perceptual-only re-read of an unchanged image carries no exact hash: keep it.
                " sha256 = CASE WHEN excluded.status = 'ok' AND excluded.sha256 IS NULL"
                " THEN files.sha256 ELSE excluded.sha256 END,"
                " width = excluded.width, height = excluded.height, phash = excluded.phash,"
                " params_id = excluded.params_id, read_ns = excluded.read_ns, trim_hash = excluded.trim_hash",
                (
                    (
                        r.dir_id,
                        r.name,
                        r.size,
                        r.mtime_ns,
                        r.ctime_ns,
                        r.inode,
                        r.device,
                        r.status,
                        r.error,
                        r.format,
                        r.sha256,
                        r.width,
                        r.height,
                        r.phash,
                        r.params_id,
                        r.read_ns,
                        now,
                        r.trim_hash,
                    )
                    for r in records
                ),
            )
            # Each row's descriptors are replaced, or dropped when it has none now.
            key = "(SELECT id FROM files WHERE dir_id = ? AND name = ?)"
            c.executemany(
                f"INSERT OR REPLACE INTO descriptors (file_id, picture, trimmed) VALUES ({key}, ?, ?)",
                ((r.dir_id, r.name, r.descriptor, r.trim_descriptor) for r in records if r.descriptor is not None),
            )
            c.executemany(
                f"DELETE FROM descriptors WHERE file_id = {key}",
                ((r.dir_id, r.name) for r in records if r.descriptor is None),
            )

    def params_id(self, key: str) -> int:
        """The id of a set of hash settings, registering it if new."""
        row = self.conn.execute("SELECT id FROM hash_params WHERE key = ?", (key,)).fetchone()
        if row is None:
            with self.write() as c:
                c.execute("INSERT OR IGNORE INTO hash_params (key, created_at) VALUES (?, ?)", (key, time.time()))
            row = self.conn.execute("SELECT id FROM hash_params WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    # -- scans -------------------------------------------------------------

    def start_scan(self, roots: Sequence[bytes]) -> int:
        with self.write() as c:
            scan_id = c.execute(
                "INSERT INTO scans (started_at, roots, state) VALUES (?, ?, 'running')",
                (time.time(), json.dumps([os.fsdecode(r) for r in roots])),
            ).lastrowid
        assert scan_id is not None
        return scan_id

    def finish_scan(
        self, scan_id: int, state: str, counts: dict[str, int], seconds: float, roots: Sequence[int]
    ) -> None:
        columns = ("files", "new", "changed", "unchanged", "removed", "hashed", "failed", "walk_errors")
        with self.write() as c:
            c.execute(
                "UPDATE scans SET finished_at = ?, state = ?, seconds = ?, "
                + ", ".join(f"{col} = ?" for col in columns)
                + " WHERE id = ?",
                (time.time(), state, seconds, *(counts.get(col, 0) for col in columns), scan_id),
            )
            c.executemany("UPDATE roots SET last_scan = ? WHERE id = ?", ((scan_id, r) for r in roots))

    # -- near pairs ------------------------------------------------------------

    def image_hashes(self) -> npt.NDArray[np.int64]:
        """Every distinct perceptual hash of an indexed image (of the whole picture or of
        what is inside its border), sorted (as signed integers)."""
        rows = self.conn.execute(
            "SELECT phash FROM files WHERE phash IS NOT NULL"
            " UNION SELECT trim_hash FROM files WHERE trim_hash IS NOT NULL ORDER BY 1"
        )
        return _int_column(rows)

    def near_hashes(self) -> npt.NDArray[np.int64]:
        """The hashes whose near pairs are all stored, sorted."""
        return _int_column(self.conn.execute("SELECT hash FROM near_hashes ORDER BY hash"))

    def near_state(self) -> tuple[int | None, int]:
        """The distance up to which pairs are kept (None before the first update), and the
        generation of the stored pairs, which every reset changes."""
        rows = dict(
            self.conn.execute("SELECT key, value FROM meta WHERE key IN ('near_max_distance', 'near_generation')")
        )
        max_distance = rows.get("near_max_distance")
        return (None if max_distance is None else int(max_distance)), int(rows.get("near_generation", 0))

    def reset_near_pairs(self, max_distance: int, generation: int) -> int | None:
        """Forget every stored pair and record the distance up to which pairs will be kept.

        Only if the pairs are still of ``generation`` (another process may have
        reset them meanwhile): returns the new generation, or None.
        """
        with self.write() as c:
            if self.near_state()[1] != generation:
                return None
            c.execute("DELETE FROM near_pairs")
            c.execute("DELETE FROM near_hashes")
            c.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [("near_max_distance", str(max_distance)), ("near_generation", str(generation + 1))],
            )
        return generation + 1

    def add_near_pairs(
        self, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], distance: npt.NDArray[np.uint8], batch: int = 200_000
    ) -> None:
        """Store pairs (``a < b``), a batch per transaction; pairs already there are kept."""
        for start in range(0, len(a), batch):
            rows = zip(
                a[start : start + batch].tolist(),
                b[start : start + batch].tolist(),
                distance[start : start + batch].tolist(),
                strict=True,
            )
            with self.write() as c:
                c.executemany("INSERT OR IGNORE INTO near_pairs (a, b, distance) VALUES (?, ?, ?)", rows)

    def add_near_hashes(self, hashes: npt.NDArray[np.int64], generation: int, batch: int = 200_000) -> bool:
        """Mark hashes as having all their pairs stored (call after :meth:`add_near_pairs`).

        Marks nothing if the pairs were reset since ``generation`` (their pairs
        may have been deleted): returns whether all were marked.
        """
        for start in range(0, len(hashes), batch):
            with self.write() as c:
                if self.near_state()[1] != generation:
                    return False
                c.executemany(
                    "INSERT OR IGNORE INTO near_hashes (hash) VALUES (?)",
                    ((h,) for h in hashes[start : start + batch].tolist()),
                )
        return True

    def remove_near_hashes(self, hashes: npt.NDArray[np.int64], batch: int = 50_000) -> int:
        """Forget hashes no image has any more, and their pairs; returns the pairs removed."""
        removed = 0
        for start in range(0, len(hashes), batch):
            chunk = [(h,) for h in hashes[start : start + batch].tolist()]
            with self.write() as c:
                before = c.total_changes
                c.executemany("DELETE FROM near_pairs WHERE a = ?", chunk)
                c.executemany("DELETE FROM near_pairs WHERE b = ?", chunk)
                removed += c.total_changes - before
                c.executemany("DELETE FROM near_hashes WHERE hash = ?", chunk)
        return removed

    def near_pairs(
        self, max_distance: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """Stored pairs within ``max_distance``: ``(a, b, distance)``."""
        rows = self.conn.execute("SELECT a, b, distance FROM near_pairs WHERE distance <= ?", (max_distance,))
        table = np.array(rows.fetchall(), dtype=np.int64).reshape(-1, 3)
        return table[:, 0].copy(), table[:, 1].copy(), table[:, 2].astype(np.uint8)

    def near_pair_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM near_pairs").fetchone()[0])

    def files_with_hashes(self, hashes: Sequence[int]) -> list[tuple[int, int | None, int | None]]:
        """``(file id, phash, trim_hash)`` of the indexed images with one of these hashes as either."""
        sql = "SELECT id, phash, trim_hash FROM files WHERE phash IN ({marks}) OR trim_hash IN ({marks})"
        return [(int(i), h, t) for i, h, t in _select_in(self.conn, sql, hashes, repeat=2)]

    def descriptors(self, ids: Sequence[int]) -> dict[int, tuple[bytes, bytes | None]]:
        """The descriptors of files by id (of the whole picture, and of its inside when
        trimmed): files without (not hashed yet by this version) are left out."""
        sql = "SELECT file_id, picture, trimmed FROM descriptors WHERE file_id IN ({marks})"
        rows = _select_in(self.conn, sql, ids)
        return {int(i): (bytes(p), None if t is None else bytes(t)) for i, p, t in rows}

    def files_with_sha256(self, digests: Sequence[bytes]) -> list[tuple[int, bytes]]:
        """``(file id, sha256)`` of the indexed files with one of these exact hashes."""
        return [
            (int(i), bytes(d))
            for i, d in _select_in(self.conn, "SELECT id, sha256 FROM files WHERE sha256 IN ({marks})", digests)
        ]

    # -- queries -------------------------------------------------------------

    def status_counts(self, root_ids: Sequence[int] | None = None) -> dict[str, int]:
        sql = "SELECT status, count(*) FROM files"
        params: tuple[int, ...] = ()
        if root_ids is not None:
            sql += f" JOIN dirs ON dirs.id = files.dir_id WHERE dirs.root_id IN ({','.join('?' * len(root_ids))})"
            params = tuple(root_ids)
        return {str(s): int(n) for s, n in self.conn.execute(sql + " GROUP BY status", params)}

    def format_counts(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT format, count(*) FROM files WHERE format IS NOT NULL GROUP BY format ORDER BY count(*) DESC"
        )
        return {str(f): int(n) for f, n in rows}

    def last_scans(self, limit: int = 5) -> list[dict[str, object]]:
        rows = self.conn.execute(
            "SELECT id, started_at, finished_at, roots, state, files, new, changed, unchanged, removed,"
            " hashed, failed, walk_errors, seconds FROM scans ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        names = [d[0] for d in rows.description]
        result = [dict(zip(names, r, strict=True)) for r in rows]
        for r in result:
            r["roots"] = json.loads(str(r["roots"]))
        return result

    def image_rows(self, under: Sequence[bytes] = (), prefer: Sequence[bytes] = ()) -> list[tuple[Any, ...]]:
        """Every file recognised as an image (it has an exact hash), ordered by directory and name.

        ``under`` keeps only images below those directories; ``prefer`` marks
        images below those directories. Rows are plain tuples of :class:`ImageRow`'s
        fields (a million named tuples cost a second).
        """
        where, params = _below("dirs.path", under)
        flag, flag_params = _below("dirs.path", prefer)
        sql = (
            "SELECT files.id, dirs.root_id, files.sha256, files.phash, files.width, files.height, files.size,"
            f" files.mtime_ns, length(dirs.path) + 1 + length(files.name), files.format, {flag if prefer else '0'},"
            " files.dir_id, files.name, files.trim_hash"
            # Directories in path order, each one's files by name through the UNIQUE (dir_id, name)
            # index: no sort; "+" keeps SQLite off the sha256 index (a random read per row).
            " FROM dirs JOIN files ON files.dir_id = dirs.id WHERE +files.sha256 IS NOT NULL"
            + (f" AND {where}" if under else "")
            + " ORDER BY dirs.path, files.name"
        )
        return self.conn.execute(sql, (*flag_params, *params) if prefer else params).fetchall()

    def dir_paths(self) -> dict[int, bytes]:
        """Every directory's path by id."""
        return {int(i): bytes(p) for i, p in self.conn.execute("SELECT id, path FROM dirs")}

    def file_info(self, ids: Sequence[int]) -> dict[int, tuple[bytes, int | None, int | None]]:
        """Full path, width and height of files by id."""
        rows = _select_in(self.conn, "SELECT id, path, width, height FROM file_paths WHERE id IN ({marks})", ids)
        return {int(i): (bytes(p), w, h) for i, p, w, h in rows}

    def problems(self) -> Iterator[ProblemFile]:
        """Directories that could not be listed, then files that could not be read or decoded."""
        for path, error in self.conn.execute("SELECT path, error FROM dirs WHERE error IS NOT NULL ORDER BY path"):
            yield ProblemFile(bytes(path), "directory", error, None)
        marks = ",".join("?" * len(FAILED_STATUSES))
        rows = self.conn.execute(
            f"SELECT path, status, error, format FROM file_paths WHERE status IN ({marks}) ORDER BY path",
            FAILED_STATUSES,
        )
        for path, status, error, fmt in rows:
            yield ProblemFile(bytes(path), status, error, fmt)


def _select_in(conn: sqlite3.Connection, sql: str, values: Sequence[Any], repeat: int = 1) -> Iterator[Any]:
    """The rows of ``sql``, whose ``IN ({marks})`` (``repeat`` times) takes every value:
    500 values a query, below SQLite's limit on the parameters of one statement."""
    for start in range(0, len(values), 500):
        chunk = list(values[start : start + 500])
        yield from conn.execute(sql.format(marks=",".join("?" * len(chunk))), chunk * repeat)


def _int_column(rows: Iterable[tuple[int]]) -> npt.NDArray[np.int64]:
    return np.fromiter((r[0] for r in rows), dtype=np.int64)


def _below(column: str, tops: Sequence[bytes]) -> tuple[str, tuple[bytes, ...]]:
    """An SQL condition: ``column`` (a directory path) is one of ``tops`` or below one."""
    terms, params = [], []
    for top in tops:
        prefix = top.rstrip(b"/") + b"/"
        terms.append(f"({column} = ? OR ({column} >= ? AND {column} < ?))")
        params += [top, prefix, _prefix_end(prefix)]
    return "(" + " OR ".join(terms or ["0"]) + ")", tuple(params)


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest byte string greater than every string starting with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def open_index(path: str | os.PathLike[str], *, create: bool = True) -> Index:
    """Open (and create or migrate) the index at ``path``."""
    path = os.fspath(path)
    if not create and not os.path.exists(path):
        raise IndexError_(f"no index at {path}: run 'imgindex scan DIR' first")
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as e:
        raise IndexError_(f"cannot open index {path}: {e}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _check_and_migrate(conn, path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as e:
        conn.close()
        raise NotAnIndexError(f"{path} is not an imgindex index ({e})") from None
    except BaseException:
        conn.close()
        raise
    return Index(conn, path)


def _check_and_migrate(conn: sqlite3.Connection, path: str) -> None:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    if has_tables and app_id != APPLICATION_ID:
        raise NotAnIndexError(f"{path} is an SQLite database but not an imgindex index")
    if version > SCHEMA_VERSION:
        raise NewerIndexError(
            f"{path} was written by a newer imgindex (schema version {version}; this one knows up to"
            f" {SCHEMA_VERSION}): upgrade imgindex, or use another --db"
        )
    if version == SCHEMA_VERSION:
        return
    # Each step runs in its own transaction, taken before re-reading the
    # version so that two processes opening a new index do not both migrate.
    steps: list[tuple[int, Callable[[sqlite3.Connection], None]]]
    if version == 0:
        steps = [(SCHEMA_VERSION, _create)]
    else:
        steps = [(v, MIGRATIONS[v]) for v in range(version + 1, SCHEMA_VERSION + 1)]
    for target, step in steps:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current < target:
                step(conn)
                conn.execute(f"PRAGMA user_version = {target}")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _create(conn: sqlite3.Connection) -> None:
    # executescript would commit the caller's transaction: run statement by statement.
    for statement in _split_sql(schema_sql()):
        conn.execute(statement)


def _create_objects(conn: sqlite3.Connection, names: set[str]) -> None:
    """Run the ``CREATE ... IF NOT EXISTS`` statements of schema.sql that make these objects."""
    made = set()
    for statement in _split_sql(schema_sql()):
        match = re.match(r"CREATE (?:TABLE|INDEX|VIEW) IF NOT EXISTS (\w+)", statement)
        if match and match.group(1) in names:
            conn.execute(statement)
            made.add(match.group(1))
    if made != names:
        raise RuntimeError(f"schema.sql does not create {sorted(names - made)}")


def _split_sql(script: str) -> list[str]:
    """Split a script into complete statements (schema.sql has no triggers)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
