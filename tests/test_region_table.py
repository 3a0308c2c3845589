"""The regions' hashes: read live and from the chunks kept as columns, always the same, never stale."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from imgindex.hashing import REGIONS, region_rows
from imgindex.storage import SCHEMA_VERSION, Index, health, open_index
from imgindex.storage.table import CHUNK_IDS

from .conftest import encode, picture, run_scan, write


def regions(index: Index) -> list[tuple[int, tuple[int, ...]]]:
    ids, rows = index.images.all_regions()
    assert rows.shape == (len(ids), len(REGIONS)) and rows.dtype == np.uint64
    return [(int(i), tuple(int(h) for h in row)) for i, row in zip(ids, rows, strict=True)]


def stored(index: Index) -> list[tuple[int, tuple[int, ...]]]:
    """The regions table itself, row by row (the rows of the right length)."""
    found = index.db.execute("SELECT file_id, hashes FROM regions WHERE length(hashes) = 40 ORDER BY file_id")
    return [(int(i), tuple(int(h) for h in region_rows([bytes(b)])[0])) for i, b in found]


def live(index: Index) -> list[tuple[int, tuple[int, ...]]]:
    """The regions read with no chunk kept (inside a transaction that is rolled back)."""
    index.db.execute("SAVEPOINT live")
    try:
        index.db.execute("DELETE FROM region_columns")
        return regions(index)
    finally:
        index.db.execute("ROLLBACK TO live")
        index.db.execute("RELEASE live")


def kept(index: Index) -> set[int]:
    return {c for (c,) in index.db.execute("SELECT chunk FROM region_columns")}


@pytest.fixture
def spread(tree: Path, db_path: Path) -> Path:
    """An index with pictures (each with regions) in file id chunks 0 and 3, and a file
    without regions (not a picture) between them, at the end of chunk 2."""
    for k in range(4):
        write(tree / f"m{k}" / "x.png", encode(picture(k), "PNG"))
    write(tree / "note.txt", b"not a picture")
    with open_index(db_path) as index:
        run_scan(index, tree)
        index.db.execute("UPDATE files SET id = ? WHERE name = ?", (3 * CHUNK_IDS - 1, b"note.txt"))
        for k in range(3):
            write(tree / f"a{k}" / "z.png", encode(picture(k + 40), "PNG"))
        run_scan(index, tree)
    return db_path


def test_kept_chunks_give_the_regions_read_live(spread: Path) -> None:
    with open_index(spread) as index:
        # The scan kept the chunk below the highest id's (3, where new files go) with regions.
        assert kept(index) == {0}
        chunks = index.db.execute("SELECT file_id >> 16, count(*) FROM regions GROUP BY 1").fetchall()
        assert dict(chunks) == {0: 4, 3: 3}
        assert regions(index) == stored(index) == live(index)
        # The highest id far past them (2**40): chunk 3 is kept too, one query a chunk that holds one.
        index.db.execute("UPDATE files SET id = ? WHERE name = ?", (1 << 40, b"note.txt"))
        assert index.images.keep_table() == 1 and kept(index) == {0, 3}
        assert regions(index) == stored(index) == live(index)
        # Kept chunks alone, the live read of none: the same rows.
        index.db.execute("SAVEPOINT gone")
        index.db.execute("DELETE FROM regions")
        assert regions(index) == []
        index.db.execute("ROLLBACK TO gone")
        index.db.execute("RELEASE gone")


def test_a_write_to_regions_drops_its_chunk_in_the_same_transaction(spread: Path, tree: Path) -> None:
    with open_index(spread) as index:
        index.db.execute("UPDATE files SET id = ? WHERE name = ?", (1 << 40, b"note.txt"))
        index.images.keep_table()
        assert kept(index) == {0, 3}
        first = "(SELECT min(file_id) FROM regions)"
        for sql in (
            f"UPDATE regions SET hashes = zeroblob(40) WHERE file_id = {first}",
            f"DELETE FROM regions WHERE file_id = {first}",
            f"INSERT INTO regions (file_id, hashes) SELECT id, zeroblob(40) FROM files WHERE id = {first} - 1",
            # A file's row removed takes its regions with it (the cascade's delete drops the chunk).
            f"DELETE FROM files WHERE id = (SELECT max(file_id) FROM regions WHERE file_id < {CHUNK_IDS})",
        ):
            with index.db.write() as c:
                assert c.execute(sql).rowcount
                assert 0 not in kept(index) and 3 in kept(index)  # in the same transaction
            assert regions(index) == stored(index) == live(index)
            index.images.keep_table()
            assert kept(index) == {0, 3}
            assert regions(index) == stored(index)
        # A changed picture: the rescan writes its regions, which drops chunk 3; the scan keeps it again.
        write(tree / "a1" / "z.png", encode(picture(99), "PNG"))
        before = regions(index)
        run_scan(index, tree)
        assert regions(index) != before and regions(index) == stored(index) == live(index) and kept(index) == {0, 3}


def test_a_damaged_chunk_is_read_live(spread: Path) -> None:
    with open_index(spread) as index:
        good = regions(index)
        for damage in ("ids = substr(ids, 9)", "hashes = substr(hashes, 41)", "rows = rows + 1", "rows = -1"):
            index.db.execute("SAVEPOINT damage")
            index.db.execute(f"UPDATE region_columns SET {damage} WHERE chunk = 0")
            assert regions(index) == good
            index.db.execute("ROLLBACK TO damage")
            index.db.execute("RELEASE damage")


def test_repair_drops_the_kept_regions(spread: Path) -> None:
    with open_index(spread) as index:
        index.db.execute("DROP TRIGGER regions_columns_update")
        # A write with the trigger gone leaves chunk 0 as it was: stale.
        index.db.execute("UPDATE regions SET hashes = zeroblob(40) WHERE file_id = (SELECT min(file_id) FROM regions)")
        assert 0 in kept(index) and regions(index) != stored(index)
        assert "regions_columns_update" in health.check(index.db).missing
        assert health.repair(index.db).ok
        assert kept(index) == set() and regions(index) == stored(index)


def test_an_index_of_the_version_before_gains_the_kept_regions(spread: Path) -> None:
    conn = sqlite3.connect(spread)
    for name in ("regions_columns_insert", "regions_columns_update", "regions_columns_delete"):
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE region_columns")
    conn.execute("PRAGMA user_version = 10")
    conn.commit()
    conn.close()
    with open_index(spread) as index:
        assert index.db.schema_version == SCHEMA_VERSION
        assert kept(index) == set() and regions(index) == stored(index)
        index.images.keep_table()
        assert kept(index) == {0} and regions(index) == stored(index) == live(index)
        index.db.execute("DELETE FROM regions WHERE file_id = (SELECT min(file_id) FROM regions)")
        assert kept(index) == set()
