"""The SQLite file itself: opening, creating, migrating, transactions.

The schema has one source, ``schema.sql``: a new index is made by running it,
and each migration creates its objects from their statements there. Writes
are short ``BEGIN IMMEDIATE`` transactions in WAL mode with a generous busy
timeout, so that ``scan``, ``watch`` and ``report`` can share one index.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import sqlite_utils

from imgindex.errors import ImgindexError, IndexOpenError, NewerIndexError, NotAnIndexError

SCHEMA_VERSION = 12
#: ``PRAGMA application_id``: "imix" in ASCII.
APPLICATION_ID = 0x696D6978
BUSY_TIMEOUT_MS = 60_000

NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs", "ceph", "glusterfs", "lustre"}
)


def schema_sql() -> str:
    """The text of ``schema.sql``: shipped in the package, or at the repository root."""
    packaged = resources.files("imgindex").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent.parent / "schema.sql").read_text(encoding="utf-8")


class Database:
    """One connection to an index file, with its transactions."""

    def __init__(self, conn: sqlite3.Connection, path: str, *, read_only: bool = False) -> None:
        self.conn = conn
        self.path = path
        #: Opened read-only (the index's place cannot be written): writes raise IndexOpenError.
        self.read_only = read_only

    @functools.cached_property
    def utils(self) -> sqlite_utils.Database:
        """The same connection through sqlite-utils, for introspection (imported when first
        asked for: a twentieth of a second every command would pay)."""
        return _utils(self.conn)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction, taken at once so that it never deadlocks."""
        if self.read_only:
            raise IndexOpenError(f"cannot write the index {self.path}: its place is read-only")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def page_cache(self, kib: int) -> Iterator[None]:
        """A page cache of at least ``kib`` KiB for this connection while the block runs (the
        one before restored after, its pages let go): for bulk writes into large indexes,
        whose B-tree pages a default cache of 2 MB reads again and again."""
        (before,) = self.conn.execute("PRAGMA cache_size").fetchone()
        current_kib = -before if before < 0 else before * self.conn.execute("PRAGMA page_size").fetchone()[0] // 1024
        if current_kib >= kib:
            yield
            return
        self.conn.execute(f"PRAGMA cache_size = {-int(kib)}")
        try:
            yield
        finally:
            self.conn.execute(f"PRAGMA cache_size = {int(before)}")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads that see one state of the index, whatever other processes write meanwhile
        (inside a transaction already, that one's)."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def select_in(self, sql: str, values: Sequence[Any], repeat: int = 1, params: Sequence[Any] = ()) -> Iterator[Any]:
        """The rows of ``sql``, whose ``IN ({marks})`` (``repeat`` times) takes every value:
        500 values a query, below SQLite's limit on the parameters of one statement.
        ``params`` are the statement's parameters before the marks."""
        for start in range(0, len(values), 500):
            chunk = list(values[start : start + 500])
            yield from self.conn.execute(sql.format(marks=",".join("?" * len(chunk))), (*params, *(chunk * repeat)))

    def sorted_ints(self, sql: str, params: Sequence[Any] = ()) -> npt.NDArray[np.int64]:
        """The integers (no NULLs) that ``sql`` selects as ``x``, sorted. ``sql`` holds ``{lo}``
        and ``{hi}`` where it bounds the values (``x BETWEEN {lo} AND {hi}``, on an indexed
        column): they are read in :data:`_RANGES` ranges, in one read transaction.

        SQLite writes each range's values as one text (``group_concat``) that numpy parses:
        a row and a Python integer per value cost two to three times as much (at a million
        values, half a second). The text of about an eighth of the values is held at once."""
        step = (1 << 64) // _RANGES
        parts = []
        with self.snapshot():
            for lo in range(-(1 << 63), 1 << 63, step):
                sql_range = sql.format(lo=lo, hi=lo + step - 1)
                (text,) = self.conn.execute(f"SELECT group_concat(x, ' ') FROM ({sql_range})", params).fetchone()
                if text:
                    values = np.fromstring(text, dtype=np.int64, sep=" ")  # text mode: not deprecated
                    values.sort()
                    parts.append(values)
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def int_rows(self, sql: str, params: Sequence[Any], width: int) -> npt.NDArray[np.int64]:
        """The rows of ``sql``, ``width`` integers each (no NULLs), as an ``(n, width)`` array.
        ``sql`` holds ``{lo}`` and ``{hi}`` where it bounds its first column (``a BETWEEN {lo}
        AND {hi}``, on an index that starts with it): the rows come by ranges of that column's
        values, ascending (:data:`_ROW_RANGES` of them, in one read transaction), each range's
        in the query's order. SQLite joins each column of a range into one text that numpy
        reads: a row handed over as a tuple cost three times as much, and twenty million of
        them at once took 3.9 GB."""
        step = (1 << 64) // _ROW_RANGES
        joined = "SELECT count(*), " + ", ".join(f"group_concat(c{k}, ' ')" for k in range(width)) + " FROM ({0})"
        parts = []
        with self.snapshot():
            for lo in range(-(1 << 63), 1 << 63, step):
                n, *texts = self.conn.execute(joined.format(sql.format(lo=lo, hi=lo + step - 1)), params).fetchone()
                if n:
                    what = f"rows of {lo} to {lo + step - 1}"
                    parts.append(np.stack([ints_of(text, n, what) for text in texts], axis=1))
        return np.concatenate(parts) if parts else np.empty((0, width), np.int64)

    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the index."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def table_counts(self) -> dict[str, int]:
        """Rows per table."""
        return {name: self.utils[name].count for name in sorted(self.utils.table_names())}

    def network_filesystem(self) -> str | None:
        """The filesystem type when the index sits on a network filesystem, else None."""
        fs = filesystem_type(self.path)
        return fs if fs in NETWORK_FILESYSTEMS else None


#: :meth:`Database.sorted_ints` reads the values in this many ranges (by their top bits).
_RANGES = 8
#: Rows :func:`record_array` turns into columns at a time.
_ROW_CHUNK = 1 << 18
#: :meth:`Database.int_rows` reads the rows in this many ranges of their first column's values
#: (a sixty-fourth of twenty million rows' texts is some tens of megabytes).
_ROW_RANGES = 64


def ints_of(text: str | None, count: int, what: str) -> npt.NDArray[np.int64]:
    """The integers of ``text`` (SQLite's ``group_concat(x, ' ')``; None for no rows), which
    must be ``count`` of them (any number for -1); ``what`` names them in the error if not."""
    values = np.fromstring(text, dtype=np.int64, sep=" ") if text else np.empty(0, np.int64)  # text mode
    if count >= 0 and len(values) != count:
        raise ImgindexError(f"{what} read out of step")
    return values


def record_array(rows: Iterable[Sequence[Any]], dtype: np.dtype[Any], chunk: int | None = None) -> npt.NDArray[Any]:
    """Rows (a cursor, say) as a numpy record array of ``dtype``, ``chunk`` rows at a time
    (default :data:`_ROW_CHUNK`): never a list of every row's tuple, nor a Python int kept
    per value."""
    step = _ROW_CHUNK if chunk is None else chunk
    parts = []
    remaining = iter(rows)
    while batch := list(itertools.islice(remaining, step)):
        parts.append(np.fromiter(batch, dtype=dtype, count=len(batch)))
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def below(column: str, tops: Sequence[bytes]) -> tuple[str, tuple[bytes, ...]]:
    """An SQL condition: ``column`` (a directory path) is one of ``tops`` or below one."""
    terms, params = [], []
    for top in tops:
        prefix = top.rstrip(b"/") + b"/"
        terms.append(f"({column} = ? OR ({column} >= ? AND {column} < ?))")
        params += [top, prefix, prefix_end(prefix)]
    return "(" + " OR ".join(terms or ["0"]) + ")", tuple(params)


def prefix_end(prefix: bytes) -> bytes:
    """The smallest byte string greater than every string starting with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


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


def _utils(conn: sqlite3.Connection) -> sqlite_utils.Database:
    import sqlite_utils

    return sqlite_utils.Database(conn)


# -- migrations -------------------------------------------------------------------
#
# Migrations by the version they produce: a function that brings an index of
# the version before up to date (and ``schema.sql`` is changed to match). A new
# index is made from ``schema.sql`` alone and starts at SCHEMA_VERSION. A
# migration creates its tables and indexes from their statements in
# ``schema.sql`` (:func:`_create_objects`), so the schema has one source.


def _add_near_pairs(conn: sqlite3.Connection) -> None:
    """Version 2 adds the near-pair tables, meta and an index on files.phash."""
    _create_objects(conn, {"near_hashes", "near_pairs", "near_pairs_b", "meta", "files_phash"})


def _add_descriptors(conn: sqlite3.Connection) -> None:
    """Version 3 adds files.trim_hash and the descriptors table. The hash settings
    changed with it, so the next scan re-reads every image to fill them."""
    _utils(conn).table("files").add_column("trim_hash", int)
    _create_objects(conn, {"files_trim_hash", "descriptors"})


def _pairs_by_kind(conn: sqlite3.Connection) -> None:
    """Version 4: the near-pair tables carry the kind of hash their values are, so that
    the values of two kinds never meet. The stored pairs were all of dHash values.

    They are rebuilt from schema.sql and their rows copied (a WITHOUT ROWID table's key
    changes, which sqlite-utils' ``transform`` would turn into a rowid table)."""
    for table in ("near_hashes", "near_pairs"):
        conn.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
    conn.execute("DROP INDEX IF EXISTS near_pairs_b")
    _create_objects(conn, {"near_hashes", "near_pairs", "near_pairs_b"})
    conn.execute("INSERT INTO near_hashes (kind, hash) SELECT 'dhash', hash FROM old_near_hashes")
    conn.execute("INSERT INTO near_pairs (kind, a, b, distance) SELECT 'dhash', a, b, distance FROM old_near_pairs")
    for table in ("near_hashes", "near_pairs"):
        conn.execute(f"DROP TABLE old_{table}")


def _add_near_matches(conn: sqlite3.Connection) -> None:
    """Version 5 adds the verified near matches and what keeps them up to date; the next
    scan (or watch batch) fills them."""
    _create_objects(
        conn,
        {
            "near_pictures",
            "near_matches",
            "near_matches_b",
            "near_pending",
            "files_pending_insert",
            "files_pending_update",
            "files_pending_delete",
        },
    )


def _add_archives(conn: sqlite3.Connection) -> None:
    """Version 6 adds web archives (their records are entries), files.url and the URLs that
    crawlers' side-files give; the view of full paths joins a record's archive and offset
    with '#', so it is made again."""
    _utils(conn).table("files").add_column("url", str)
    conn.execute("DROP VIEW IF EXISTS file_paths")
    _create_objects(
        conn,
        {
            "archives",
            "file_paths",
            "provenance",
            "provenance_side",
            "side_files",
            "provenance_urls",
            "provenance_insert",
            "provenance_delete",
            "files_url_insert",
        },
    )


def _add_review(conn: sqlite3.Connection) -> None:
    """Version 7 adds the review's decisions (by content, in batches that can be undone)."""
    _create_objects(conn, {"review_batches", "review_decisions", "review_decisions_batch"})


def _add_orientations(conn: sqlite3.Connection) -> None:
    """Version 8 adds the pictures' orientation hashes, kept once rotation matches are stored."""
    _create_objects(conn, {"near_orientations"})


def _add_regions(conn: sqlite3.Connection) -> None:
    """Version 9 adds the hashes of regions of each picture (``regions``), the grey grid their
    thumbnails are cut from (``descriptors.grid``) and the distance of the matches found by
    them (``near_matches.region``). The hash settings changed with it, so the next scan
    re-reads every image to fill them, and the matches are verified again."""
    db = _utils(conn)
    # (An index older than the tables' own versions made them from schema.sql, with the columns.)
    for table, column, kind in (("descriptors", "grid", bytes), ("near_matches", "region", int)):
        if column not in db.table(table).columns_dict:
            db.table(table).add_column(column, kind)
    _create_objects(conn, {"regions"})


def _add_image_columns(conn: sqlite3.Connection) -> None:
    """Version 10 keeps the image table as columns (``image_columns`` and its triggers); the
    next scan makes them."""
    _create_objects(conn, {"image_columns", "files_columns_insert", "files_columns_update", "files_columns_delete"})


def _add_region_columns(conn: sqlite3.Connection) -> None:
    """Version 11 keeps the regions' hashes as columns (``region_columns`` and its triggers);
    the next scan makes them."""
    _create_objects(
        conn, {"region_columns", "regions_columns_insert", "regions_columns_update", "regions_columns_delete"}
    )


def _add_kept_near_hashes(conn: sqlite3.Connection) -> None:
    """Version 12 keeps the values of ``near_hashes`` as a blob and a log of the writes since
    (``near_hashes_kept``, ``near_hashes_log`` and their triggers); the next update makes them."""
    _create_objects(
        conn,
        {
            "near_hashes_kept",
            "near_hashes_log",
            "near_hashes_log_insert",
            "near_hashes_log_delete",
            "near_hashes_log_update",
        },
    )
    for table in ("near_hashes_kept", "near_hashes_log"):  # (nothing kept of an earlier near_hashes)
        conn.execute(f"DELETE FROM {table}")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    2: _add_near_pairs,
    3: _add_descriptors,
    4: _pairs_by_kind,
    5: _add_near_matches,
    6: _add_archives,
    7: _add_review,
    8: _add_orientations,
    9: _add_regions,
    10: _add_image_columns,
    11: _add_region_columns,
    12: _add_kept_near_hashes,
}


def connect(path: str | os.PathLike[str], *, create: bool = True, threads: bool = False) -> Database:
    """Open (and create or migrate) the index file at ``path``.

    ``create=False`` is for reading: an index in a place this process cannot
    write (a read-only mount, another user's directory) is then opened
    read-only, and a command that tries to write to it is told so. With
    ``threads``, the connection may be used from other threads (one at a time:
    the caller holds a lock).
    """
    path = os.fspath(path)
    if not create and not os.path.exists(path):
        raise IndexOpenError(f"no index at {path}: run 'imgindex scan DIR' first")
    try:
        return _open(path, path, read_only=False, threads=threads)
    except _ReadOnlyPlace as e:
        if not _read_only_place(path):
            raise IndexOpenError(f"cannot open index {path}: {e}") from None
        if create:
            raise IndexOpenError(
                f"cannot write the index {path}: its place is read-only ({e}); use a --db where this user can write"
            ) from None
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    try:
        return _open(uri, path, read_only=True, threads=threads)
    except _ReadOnlyPlace as e:
        # WAL mode needs a shared-memory file beside the index, which cannot be made there. With
        # no write-ahead log beside it either (an index closed cleanly), the file holds all
        # that was committed and is read as it is; with one, it cannot be read safely here.
        if os.path.exists(path + "-wal"):
            raise IndexOpenError(
                f"cannot read the index {path} here: its write-ahead log ({path}-wal) needs a shared-memory"
                f" file that cannot be made in this read-only place ({e}); open it where it can be written once"
            ) from None
    try:
        return _open(uri + "&immutable=1", path, read_only=True, threads=threads)
    except _ReadOnlyPlace as e:
        raise IndexOpenError(f"cannot open index {path}: {e}") from None


def _read_only_place(path: str) -> bool:
    """Is the index's directory on a read-only mount, or not writable by this user?"""
    place = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(place) or os.path.isdir(path):
        return False
    try:
        if os.statvfs(place).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not os.access(place, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK))


class _ReadOnlyPlace(Exception):
    """The index cannot be written where it is."""


_READ_ONLY_SIGNS = ("readonly", "read-only", "unable to open database file")


def _open(target: str, path: str, *, read_only: bool, threads: bool = False) -> Database:
    try:
        conn = sqlite3.connect(
            target,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            uri=read_only,
            check_same_thread=not threads,
        )
    except sqlite3.Error as e:
        if any(sign in str(e) for sign in _READ_ONLY_SIGNS):
            raise _ReadOnlyPlace(str(e)) from None
        raise IndexOpenError(f"cannot open index {path}: {e}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _check_and_migrate(conn, path, read_only=read_only)
        if not read_only:
            _use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as e:
        conn.close()
        if any(sign in str(e) for sign in _READ_ONLY_SIGNS):
            raise _ReadOnlyPlace(str(e)) from None
        if "full" in str(e) or "disk I/O error" in str(e):
            raise  # a disk that is full or failing, not a file that is no index (the caller says so)
        if "malformed" in str(e):
            raise IndexOpenError(
                f"the index {path} is damaged ({e}): 'imgindex check' says what is wrong; a scan into a new --db"
                " starts again"
            ) from None
        raise NotAnIndexError(f"{path} is not an imgindex index ({e})") from None
    except BaseException:
        conn.close()
        raise
    return Database(conn, path, read_only=read_only)


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL mode (it stays with the file). The switch needs the file to itself and
    SQLite does not wait for it: when processes open a new index together, one of them
    is told "database is locked" at once. Try again until the busy timeout, as a wait would."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _state(conn: sqlite3.Connection) -> tuple[int, int, bool]:
    """The schema version, the application id and whether there are tables, read in one
    transaction: read one by one, another process creating the index can commit in between
    (and a half-seen new index looks like somebody else's database)."""
    conn.execute("BEGIN")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    finally:
        conn.execute("COMMIT")
    return version, app_id, has_tables


def _check_and_migrate(conn: sqlite3.Connection, path: str, *, read_only: bool = False) -> None:
    version, app_id, has_tables = _state(conn)
    if has_tables and app_id != APPLICATION_ID:
        raise NotAnIndexError(f"{path} is an SQLite database but not an imgindex index")
    if version > SCHEMA_VERSION:
        raise NewerIndexError(
            f"{path} was written by a newer imgindex (schema version {version}; this one knows up to"
            f" {SCHEMA_VERSION}): upgrade imgindex, or use another --db"
        )
    if version == SCHEMA_VERSION:
        return
    if read_only:
        raise IndexOpenError(
            f"the index {path} was written by an older imgindex (schema version {version}) and must be upgraded,"
            " which needs writing it; its place is read-only"
        )
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
            if conn.in_transaction:  # SQLite has rolled back already after some errors (a full disk)
                conn.execute("ROLLBACK")
            raise


def _create(conn: sqlite3.Connection) -> None:
    # executescript would commit the caller's transaction: run statement by statement.
    for statement in split_sql(schema_sql()):
        conn.execute(statement)


def schema_objects() -> dict[str, str]:
    """The tables, indexes, views and triggers schema.sql makes, each with its statement, in its order."""
    made = {}
    for statement in split_sql(schema_sql()):
        match = re.match(r"CREATE (?:TABLE|INDEX|VIEW|TRIGGER) IF NOT EXISTS (\w+)", statement)
        if match:
            made[match.group(1)] = statement
    return made


def _create_objects(conn: sqlite3.Connection, names: set[str]) -> None:
    """Run the ``CREATE ... IF NOT EXISTS`` statements of schema.sql that make these objects."""
    objects = schema_objects()
    if not names <= set(objects):
        raise RuntimeError(f"schema.sql does not create {sorted(names - set(objects))}")
    for name, statement in objects.items():
        if name in names:
            conn.execute(statement)


def split_sql(script: str) -> list[str]:
    """Split a script into complete statements (a trigger's body is part of its statement)."""
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
