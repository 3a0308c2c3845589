"""The catalog: roots, directories, files and scans (what ``scan`` and ``watch`` keep).

A file's row holds its stat data (to tell whether it changed), its status and
what was read from it; the tiny thumbnails that verify near matches live in
``descriptors``, beside it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from imgindex.statuses import FAILED_STATUSES

from .database import Database, prefix_end


def _split(path: bytes) -> tuple[bytes, bytes]:
    directory, _, name = path.rpartition(b"/")
    return directory or b"/", name


@dataclass(frozen=True)
class Root:
    id: int
    path: bytes


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
    error: str | None


#: The columns of a StoredFile, in order.
_STORED = "id, size, mtime_ns, ctime_ns, inode, status, params_id, read_ns, width, height, format, error"


@dataclass(frozen=True)
class StoredArchive:
    """Where the last complete listing of a web archive stopped, and the archive's stat data then."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    read_to: int
    tail: bytes


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
    url: str | None = None
    regions: bytes | None = None  # hashing.regions: the hashes of the inside's regions ...
    grid: bytes | None = None  # ... and its grey grid


@dataclass(frozen=True)
class ProblemFile:
    path: bytes
    kind: str  # a file status, or "directory" for a directory that could not be listed
    error: str | None
    format: str | None


class Catalog:
    """Roots, directories, files and scans of one index."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- roots and directories -------------------------------------------

    def roots(self) -> list[Root]:
        return [Root(r[0], bytes(r[1])) for r in self.db.execute("SELECT id, path FROM roots ORDER BY path")]

    def ensure_root(self, path: bytes) -> Root:
        """The root that ``path`` belongs to, registering it if it is new.

        A path inside a known root is part of that root. A new root that
        contains known roots takes over their directories.
        """
        known = self.root_of(path)
        if known is not None:
            return known
        with self.db.write() as c:
            c.execute("INSERT OR IGNORE INTO roots (path, added_at) VALUES (?, ?)", (path, time.time()))
            root_id = int(c.execute("SELECT id FROM roots WHERE path = ?", (path,)).fetchone()[0])
            prefix = path.rstrip(b"/") + b"/"
            inner = [
                r[0]
                for r in c.execute(
                    "SELECT id FROM roots WHERE id != ? AND path >= ? AND path < ?",
                    (root_id, prefix, prefix_end(prefix)),
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
        row = self.db.execute("SELECT id FROM dirs WHERE path = ?", (path,)).fetchone()
        if row is None:
            with self.db.write() as c:
                c.execute("INSERT OR IGNORE INTO dirs (root_id, path) VALUES (?, ?)", (root_id, path))
            row = self.db.execute("SELECT id FROM dirs WHERE path = ?", (path,)).fetchone()
        return int(row[0])

    def add_dirs(self, paths: Sequence[bytes], root_id: int) -> dict[bytes, int]:
        """Make sure directories have rows, creating the missing ones in one transaction; their ids."""
        if not paths:
            return {}
        with self.db.write() as c:
            c.executemany("INSERT OR IGNORE INTO dirs (root_id, path) VALUES (?, ?)", ((root_id, p) for p in paths))
        rows = self.db.select_in("SELECT id, path FROM dirs WHERE path IN ({marks})", paths)
        return {bytes(p): int(i) for i, p in rows}

    def archive_dir(self, path: bytes, root_id: int) -> tuple[int, StoredArchive | None]:
        """The id of a web archive's row in dirs (made if new, and marked as an archive), and
        where its last complete listing stopped (None when it never was listed whole)."""
        dir_id = self.dir_id(path, root_id)
        row = self.db.execute(
            "SELECT size, mtime_ns, ctime_ns, inode, read_to, tail FROM archives WHERE dir_id = ?", (dir_id,)
        ).fetchone()
        if row is None:
            with self.db.write() as c:
                c.execute("INSERT OR IGNORE INTO archives (dir_id) VALUES (?)", (dir_id,))
            return dir_id, None
        if row[4] is None:
            return dir_id, None
        return dir_id, StoredArchive(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), bytes(row[5]))

    def archives_under(self, top: bytes) -> set[int]:
        """The directory ids of the web archives at or below ``top``."""
        prefix = top.rstrip(b"/") + b"/"
        rows = self.db.execute(
            "SELECT dirs.id FROM dirs JOIN archives ON archives.dir_id = dirs.id"
            " WHERE dirs.path = ? OR (dirs.path >= ? AND dirs.path < ?)",
            (top, prefix, prefix_end(prefix)),
        )
        return {int(r[0]) for r in rows}

    def forget_archive(self, dir_id: int) -> int:
        """A web archive's path is a directory now: its records and its state go, its dirs row
        stays for the directory. Returns how many records went."""
        with self.db.write() as c:
            removed = int(c.execute("DELETE FROM files WHERE dir_id = ?", (dir_id,)).rowcount)
            c.execute("DELETE FROM archives WHERE dir_id = ?", (dir_id,))
        return removed

    def record_archives(self, listed: Sequence[tuple[int, StoredArchive, int]]) -> None:
        """Record where archives' listings stopped (and how many damaged records they found), once
        every record listed has its row."""
        with self.db.write() as c:
            c.executemany(
                "UPDATE archives SET size = ?, mtime_ns = ?, ctime_ns = ?, inode = ?, read_to = ?, tail = ?,"
                " damaged = ? WHERE dir_id = ?",
                (
                    (a.size, a.mtime_ns, a.ctime_ns, a.inode, a.read_to, a.tail, damaged, dir_id)
                    for dir_id, a, damaged in listed
                ),
            )

    def archive_counts(self) -> dict[str, int]:
        """Web archives, their records, the damaged ones, and archives never listed whole."""
        row = self.db.execute(
            "SELECT count(*), coalesce(sum(damaged), 0), coalesce(sum(read_to IS NULL), 0),"
            " (SELECT count(*) FROM files JOIN archives USING (dir_id)) FROM archives"
        ).fetchone()
        return {"archives": row[0], "records": row[3], "damaged": row[1], "unfinished": row[2]}

    def names_in(self, directory: bytes) -> set[bytes]:
        """The names of the files the index has in a directory (none when it knows no such directory)."""
        rows = self.db.execute(
            "SELECT files.name FROM files JOIN dirs ON dirs.id = files.dir_id WHERE dirs.path = ?", (directory,)
        )
        return {bytes(r[0]) for r in rows}

    def side_file_pending(self, side_id: int, read_ns: int) -> bool:
        """Is this reading of a side-file (its row's read_ns) not in provenance yet?"""
        row = self.db.execute("SELECT read_ns FROM side_files WHERE file_id = ?", (side_id,)).fetchone()
        return row is None or int(row[0]) != read_ns

    def side_file_row(self, path: bytes) -> tuple[int, int] | None:
        """The id and read_ns of a side-file's row."""
        row = self.db.execute(
            "SELECT files.id, files.read_ns FROM files JOIN dirs ON dirs.id = files.dir_id"
            " WHERE dirs.path = ? AND files.name = ?",
            _split(path),
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def replace_urls(self, side_id: int, read_ns: int, urls: dict[bytes, str] | None) -> None:
        """The URLs a side-file (by its row) gives, by path, in place of what it gave before
        (None: keep those), as of its reading ``read_ns``; the files' ``url`` follows
        (triggers in schema.sql)."""
        with self.db.write() as c:
            if urls is not None:
                c.execute("DELETE FROM provenance WHERE side_id = ?", (side_id,))
                c.executemany(
                    "INSERT OR REPLACE INTO provenance (dir, name, side_id, url) VALUES (?, ?, ?, ?)",
                    ((*_split(path), side_id, url) for path, url in urls.items()),
                )
            c.execute("INSERT OR REPLACE INTO side_files (file_id, read_ns) VALUES (?, ?)", (side_id, read_ns))

    def url_counts(self) -> dict[str, int]:
        """Files with a URL, and the side-files that gave URLs."""
        row = self.db.execute(
            "SELECT (SELECT count(*) FROM files WHERE url IS NOT NULL),"
            " (SELECT count(DISTINCT side_id) FROM provenance)"
        ).fetchone()
        return {"files": row[0], "side_files": row[1]}

    def known_dir_id(self, path: bytes) -> int | None:
        row = self.db.execute("SELECT id FROM dirs WHERE path = ?", (path,)).fetchone()
        return None if row is None else int(row[0])

    def dirs_under(self, top: bytes) -> list[tuple[int, bytes]]:
        """Known directories at or below ``top``."""
        prefix = top.rstrip(b"/") + b"/"
        rows = self.db.execute(
            "SELECT id, path FROM dirs WHERE path = ? OR (path >= ? AND path < ?)",
            (top, prefix, prefix_end(prefix)),
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def record_listings(self, listed: Sequence[int], failed: Sequence[tuple[int, str]]) -> None:
        """Record which directories were listed, and why others could not be."""
        now = time.time()
        with self.db.write() as c:
            c.executemany("UPDATE dirs SET error = NULL, listed_at = ? WHERE id = ?", ((now, d) for d in listed))
            c.executemany("UPDATE dirs SET error = ? WHERE id = ?", ((e, d) for d, e in failed))

    def remove_dirs(self, dir_ids: Sequence[int]) -> int:
        """Remove directories and their files; returns how many files went."""
        removed = 0
        with self.db.write() as c:
            for d in dir_ids:
                removed += c.execute("SELECT count(*) FROM files WHERE dir_id = ?", (d,)).fetchone()[0]
                c.execute("DELETE FROM files WHERE dir_id = ?", (d,))
                c.execute("DELETE FROM dirs WHERE id = ?", (d,))
        return removed

    # -- files -----------------------------------------------------------

    def files_in_dir(self, dir_id: int) -> dict[bytes, StoredFile]:
        rows = self.db.execute(f"SELECT name, {_STORED} FROM files WHERE dir_id = ?", (dir_id,))
        return {bytes(r[0]): StoredFile(*r[1:]) for r in rows}

    def file_row(self, dir_id: int, name: bytes) -> StoredFile | None:
        row = self.db.execute(f"SELECT {_STORED} FROM files WHERE dir_id = ? AND name = ?", (dir_id, name)).fetchone()
        return None if row is None else StoredFile(*row)

    def remove_files(self, ids: Iterable[int]) -> int:
        ids = list(ids)
        with self.db.write() as c:
            c.executemany("DELETE FROM files WHERE id = ?", ((i,) for i in ids))
        return len(ids)

    def remove_named(self, names: Sequence[tuple[int, bytes]]) -> int:
        """Remove the rows of files (by directory id and name) that turned out to be gone."""
        with self.db.write() as c:
            return sum(c.execute("DELETE FROM files WHERE dir_id = ? AND name = ?", n).rowcount for n in names)

    def write_files(self, records: Sequence[FileRecord]) -> bool:
        """Insert or update file rows, in one transaction. Rows of directories that another
        process removed meanwhile are dropped: returns False when there were such."""
        now = time.time()
        with self.db.write() as c:
            wanted = sorted({r.dir_id for r in records})
            live = {int(row[0]) for row in self.db.select_in("SELECT id FROM dirs WHERE id IN ({marks})", wanted)}
            complete = len(live) == len(wanted)
            if not complete:
                records = [r for r in records if r.dir_id in live]
            c.executemany(
                "INSERT INTO files (dir_id, name, size, mtime_ns, ctime_ns, inode, device, status,"
                " error, format, sha256, width, height, phash, params_id, read_ns, first_seen, trim_hash, url)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (dir_id, name) DO UPDATE SET size = excluded.size,"
                " mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, inode = excluded.inode,"
                " device = excluded.device, status = excluded.status, error = excluded.error,"
                " format = excluded.format,"
                # A perceptual-only re-read of an unchanged image carries no exact hash: keep it.
                " sha256 = CASE WHEN excluded.status = 'ok' AND excluded.sha256 IS NULL"
                " THEN files.sha256 ELSE excluded.sha256 END,"
                " width = excluded.width, height = excluded.height, phash = excluded.phash,"
                " params_id = excluded.params_id, read_ns = excluded.read_ns, trim_hash = excluded.trim_hash,"
                # A side-file's URL stays with a file read again (a record's comes with it).
                " url = coalesce(excluded.url, files.url)",
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
                        r.url,
                    )
                    for r in records
                ),
            )
            # Each row's descriptors are replaced, or dropped when it has none now.
            key = "(SELECT id FROM files WHERE dir_id = ? AND name = ?)"
            c.executemany(
                f"INSERT OR REPLACE INTO descriptors (file_id, picture, trimmed, grid) VALUES ({key}, ?, ?, ?)",
                (
                    (r.dir_id, r.name, r.descriptor, r.trim_descriptor, r.grid)
                    for r in records
                    if r.descriptor is not None
                ),
            )
            c.executemany(
                f"DELETE FROM descriptors WHERE file_id = {key}",
                ((r.dir_id, r.name) for r in records if r.descriptor is None),
            )
            c.executemany(
                f"INSERT OR REPLACE INTO regions (file_id, hashes) VALUES ({key}, ?)",
                ((r.dir_id, r.name, r.regions) for r in records if r.regions is not None),
            )
            c.executemany(
                f"DELETE FROM regions WHERE file_id = {key}",
                ((r.dir_id, r.name) for r in records if r.regions is None),
            )
        return complete

    def params_id(self, key: str) -> int:
        """The id of a set of hash settings, registering it if new."""
        row = self.db.execute("SELECT id FROM hash_params WHERE key = ?", (key,)).fetchone()
        if row is None:
            with self.db.write() as c:
                c.execute("INSERT OR IGNORE INTO hash_params (key, created_at) VALUES (?, ?)", (key, time.time()))
            row = self.db.execute("SELECT id FROM hash_params WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    # -- scans -------------------------------------------------------------

    def start_scan(self, roots: Sequence[bytes]) -> int:
        with self.db.write() as c:
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
        with self.db.write() as c:
            c.execute(
                "UPDATE scans SET finished_at = ?, state = ?, seconds = ?, "
                + ", ".join(f"{col} = ?" for col in columns)
                + " WHERE id = ?",
                (time.time(), state, seconds, *(counts.get(col, 0) for col in columns), scan_id),
            )
            c.executemany("UPDATE roots SET last_scan = ? WHERE id = ?", ((scan_id, r) for r in roots))

    # -- what the catalog holds ----------------------------------------------

    def status_counts(self, root_ids: Sequence[int] | None = None) -> dict[str, int]:
        sql = "SELECT status, count(*) FROM files"
        params: tuple[int, ...] = ()
        if root_ids is not None:
            sql += f" JOIN dirs ON dirs.id = files.dir_id WHERE dirs.root_id IN ({','.join('?' * len(root_ids))})"
            params = tuple(root_ids)
        return {str(s): int(n) for s, n in self.db.execute(sql + " GROUP BY status", params)}

    def format_counts(self) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT format, count(*) FROM files WHERE format IS NOT NULL GROUP BY format ORDER BY count(*) DESC"
        )
        return {str(f): int(n) for f, n in rows}

    def last_scans(self, limit: int = 5) -> list[dict[str, object]]:
        rows = self.db.execute(
            "SELECT id, started_at, finished_at, roots, state, files, new, changed, unchanged, removed,"
            " hashed, failed, walk_errors, seconds FROM scans ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        names = [d[0] for d in rows.description]
        result = [dict(zip(names, r, strict=True)) for r in rows]
        for r in result:
            r["roots"] = json.loads(str(r["roots"]))
        return result

    def problems(self) -> Iterator[ProblemFile]:
        """Directories that could not be listed, then files that could not be read or decoded."""
        for path, error in self.db.execute("SELECT path, error FROM dirs WHERE error IS NOT NULL ORDER BY path"):
            yield ProblemFile(bytes(path), "directory", error, None)
        marks = ",".join("?" * len(FAILED_STATUSES))
        rows = self.db.execute(
            f"SELECT path, status, error, format FROM file_paths WHERE status IN ({marks}) ORDER BY path",
            FAILED_STATUSES,
        )
        for path, status, error, fmt in rows:
            yield ProblemFile(bytes(path), status, error, fmt)
