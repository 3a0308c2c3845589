"""The index's health: what ``imgindex check`` finds, and what ``--repair`` can mend.

Found: damage SQLite itself sees (``PRAGMA integrity_check``), objects of
``schema.sql`` that are missing, rows that point at nothing, and thumbnails or
hashes of the wrong length (which the readers pass over). Mended: the
indexes (``REINDEX``), missing objects (made again from schema.sql, empty),
orphan rows (deleted), and what is derived from the rest (the stored near
pairs and the image table and regions kept as columns are dropped and made again by the
next scan, the table read row by row meanwhile; images whose thumbnails were
lost or malformed are read again by it). Damage inside the tables themselves cannot be
mended here: a new index (a scan into another ``--db``) can.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from .database import Database, schema_objects, schema_sql, split_sql
from .shapes import BAD_DESCRIPTORS, BAD_ORIENTATIONS, BAD_REGIONS

#: Tables whose rows are derived from the rest, so they can be dropped and made again.
DERIVED = (
    "near_hashes_kept",  # (before near_hashes, so that its rows' deletion is not logged)
    "near_hashes_log",
    "near_hashes",
    "near_pairs",
    "near_pictures",
    "near_matches",
    "near_orientations",
    "image_columns",
    "region_columns",
)

#: Rows that point at nothing: (what, the query counting them, the statement deleting them).
_ORPHANS = (
    (
        "files in no directory",
        "SELECT count(*) FROM files WHERE dir_id NOT IN (SELECT id FROM dirs)",
        "DELETE FROM files WHERE dir_id NOT IN (SELECT id FROM dirs)",
    ),
    (
        "directories in no root",
        "SELECT count(*) FROM dirs WHERE root_id NOT IN (SELECT id FROM roots)",
        # Not deleted (with their files): each lost root is made again from its directories,
        # the shortest path among them being the root itself.
        "INSERT INTO roots (id, path, added_at) SELECT root_id, min(path), 0 FROM dirs"
        " WHERE root_id NOT IN (SELECT id FROM roots) GROUP BY root_id",
    ),
    (
        "thumbnails of no file",
        "SELECT count(*) FROM descriptors WHERE file_id NOT IN (SELECT id FROM files)",
        "DELETE FROM descriptors WHERE file_id NOT IN (SELECT id FROM files)",
    ),
    (
        "region hashes of no file",
        "SELECT count(*) FROM regions WHERE file_id NOT IN (SELECT id FROM files)",
        "DELETE FROM regions WHERE file_id NOT IN (SELECT id FROM files)",
    ),
    (
        "web archive states of no directory",
        "SELECT count(*) FROM archives WHERE dir_id NOT IN (SELECT id FROM dirs)",
        "DELETE FROM archives WHERE dir_id NOT IN (SELECT id FROM dirs)",
    ),
    (
        "URLs of no side-file",
        "SELECT count(*) FROM provenance WHERE side_id NOT IN (SELECT id FROM files)",
        "DELETE FROM provenance WHERE side_id NOT IN (SELECT id FROM files)",
    ),
)


#: Rows whose blobs have the wrong length: (what, the table, the condition that picks them).
_MALFORMED = (
    ("thumbnails of the wrong length", "descriptors", BAD_DESCRIPTORS),
    ("region hashes of the wrong length", "regions", BAD_REGIONS),
    ("orientation hashes of the wrong length", "near_orientations", BAD_ORIENTATIONS),
)


@dataclass
class Health:
    integrity: list[str] = field(default_factory=list)  # what integrity_check says, when not "ok"
    missing: list[str] = field(default_factory=list)  # objects of schema.sql that are not there
    orphans: dict[str, int] = field(default_factory=dict)
    malformed: dict[str, int] = field(default_factory=dict)  # rows whose blobs have the wrong length
    repaired: list[str] = field(default_factory=list)  # what --repair did

    @property
    def ok(self) -> bool:
        return not (self.integrity or self.missing or self.orphans or self.malformed)


def _columns() -> dict[str, dict[str, str]]:
    """Each table of schema.sql with its columns and their declared types."""
    scratch = sqlite3.connect(":memory:")
    try:
        for statement in split_sql(schema_sql()):
            scratch.execute(statement)
        tables = [str(r[0]) for r in scratch.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: {str(r[1]): str(r[2]) for r in scratch.execute(f"PRAGMA table_info({t})")} for t in tables}
    finally:
        scratch.close()


def check(db: Database) -> Health:
    health = Health()
    conn = db.conn
    try:
        found = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(100)")]
    except sqlite3.DatabaseError as e:
        if _busy(e):
            raise  # another process is writing: not damage
        found = [str(e)]
    if found != ["ok"]:
        health.integrity = found
    present = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master")}
    health.missing = sorted(set(schema_objects()) - present)
    expected = _columns()
    for table in sorted(set(expected) & present):
        have = {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}
        health.missing += [f"{table}.{column}" for column in expected[table] if column not in have]
    for what, count, _ in _ORPHANS:
        try:
            n = int(conn.execute(count).fetchone()[0])
        except sqlite3.DatabaseError:
            continue  # a table it needs is missing: said above
        if n:
            health.orphans[what] = n
    for what, table, bad in _MALFORMED:
        try:
            n = int(conn.execute(f"SELECT count(*) FROM {table} WHERE {bad}").fetchone()[0])
        except sqlite3.DatabaseError:
            continue
        if n:
            health.malformed[what] = n
    return health


def repair(db: Database) -> Health:
    """Mend what can be mended (see the module docstring); the health found afterwards,
    with what was done in ``repaired``."""
    done: list[str] = []
    if check(db).integrity:
        done.append(_rebuild_indexes(db))
    before = check(db)
    objects = schema_objects()
    with db.write() as c:
        columns = _columns()
        for name in [m for m in before.missing if "." in m]:
            table, column = name.split(".", 1)
            c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {columns[table][column]}")
            c.execute("UPDATE files SET params_id = NULL WHERE status = 'ok'")  # its values: read them again
            done.append(f"added the column {name} again (the next scan fills it)")
        for name in [n for n in objects if n in before.missing]:  # in schema.sql's order: tables first
            c.execute(objects[name])
            done.append(f"made {name} again" + (" (empty)" if objects[name].startswith("CREATE TABLE") else ""))
        for what, table, bad in _MALFORMED:
            if not before.malformed.get(what):
                continue
            if table != "near_orientations":  # the images they came from: read them again
                c.execute(f"UPDATE files SET params_id = NULL WHERE id IN (SELECT file_id FROM {table} WHERE {bad})")
            c.execute(f"DELETE FROM {table} WHERE {bad}")
            done.append(f"deleted {before.malformed[what]:,} {what} (the next scan makes them again)")
        if set(before.missing) & set(DERIVED) or done:
            for table in DERIVED:
                c.execute(f"DELETE FROM {table}")
            c.execute("DELETE FROM meta WHERE key IN ('near_max_distance', 'near_params')")
            done.append(
                "dropped the stored near pairs and the kept image table and regions (the next scan stores them again)"
            )
        if "descriptors" in before.missing or "regions" in before.missing:
            c.execute("UPDATE files SET params_id = NULL WHERE status = 'ok'")
            done.append("marked every image to be read again by the next scan (its thumbnails were lost)")
    orphans = check(db).orphans  # with the missing tables made again, what points at nothing
    with db.write() as c:
        for what, _, mend in _ORPHANS:
            if orphans.get(what):
                c.execute(mend)
                if what == "directories in no root":
                    done.append(f"made the roots of {orphans[what]:,} {what} again from their paths")
                else:
                    done.append(f"deleted {orphans[what]:,} {what} (the next scan reads what they held again)")
    after = check(db)
    after.repaired = done
    return after


def _rebuild_indexes(db: Database) -> str:
    """Rebuild the indexes; when one is too damaged to be rebuilt in place, forget them all,
    copy the tables into a fresh file (VACUUM) and let the missing objects be made again."""
    conn = db.conn
    try:
        conn.execute("REINDEX")
    except sqlite3.DatabaseError as e:
        if _busy(e):
            raise
    else:
        if not check(db).integrity:
            return "rebuilt every index (REINDEX)"
    # Only when every table reads whole (the damage is in the indexes): otherwise forgetting
    # the indexes would make things worse, and VACUUM could not copy the tables anyway.
    tables = [str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    try:
        for table in tables:
            for _row in conn.execute(f"SELECT * FROM {table} NOT INDEXED"):  # every row, read once
                pass
    except sqlite3.DatabaseError as e:
        if _busy(e):
            raise
        return f"left the indexes alone: the damage is inside a table ({e}), which needs a new index"
    version = int(conn.execute("PRAGMA schema_version").fetchone()[0])
    conn.execute("PRAGMA writable_schema = ON")
    try:
        with db.write() as c:
            c.execute("DELETE FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
            c.execute(f"PRAGMA schema_version = {version + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
    conn.execute("VACUUM")
    return "copied the tables into a fresh file without their damaged indexes (VACUUM)"


def _busy(error: sqlite3.DatabaseError) -> bool:
    return any(word in str(error) for word in ("locked", "busy"))
