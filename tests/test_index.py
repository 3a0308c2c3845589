"""Opening, creating and migrating the index file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgindex.errors import IndexOpenError, NewerIndexError, NotAnIndexError
from imgindex.hashing import REGIONS
from imgindex.storage import APPLICATION_ID, SCHEMA_VERSION, open_index, pairstore, schema_sql
from imgindex.storage import database as index_module

ROOT = Path(__file__).resolve().parent.parent


def test_new_index_has_schema_version_application_id_and_wal(db_path: Path) -> None:
    with open_index(db_path) as idx:
        assert idx.schema_version == SCHEMA_VERSION
        assert set(idx.db.utils.table_names()) >= {"roots", "dirs", "files", "scans", "hash_params"}
        assert "file_paths" in idx.db.utils.view_names()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_schema_comes_from_schema_sql(db_path: Path) -> None:
    assert schema_sql() == (ROOT / "schema.sql").read_text(encoding="utf-8")
    with open_index(db_path) as idx:
        created = {
            r[0]
            for r in idx.db.conn.execute(
                "SELECT name FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
            )
        }
    named = set()
    for statement in index_module.split_sql(schema_sql()):
        words = statement.replace("(", " ").split()
        named.add(words[words.index("EXISTS") + 1])
    assert named == created


def test_index_written_by_a_newer_version_is_refused(db_path: Path) -> None:
    open_index(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(NewerIndexError, match="newer imgindex"):
        open_index(db_path)


def test_other_sqlite_databases_and_other_files_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE t (x)")
    with pytest.raises(NotAnIndexError, match="not an imgindex index"):
        open_index(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(NotAnIndexError):
        open_index(garbage)


def test_missing_index_is_not_created_when_only_reading(tmp_path: Path) -> None:
    with pytest.raises(IndexOpenError, match="no index"):
        open_index(tmp_path / "nothing.db", create=False)
    assert not (tmp_path / "nothing.db").exists()


def test_migrations_run_in_order_each_in_a_transaction(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_index(db_path).close()
    calls = []

    def add_column(conn: sqlite3.Connection) -> None:
        calls.append(SCHEMA_VERSION + 1)
        conn.execute("ALTER TABLE roots ADD COLUMN note TEXT")

    monkeypatch.setattr(index_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(index_module.MIGRATIONS, SCHEMA_VERSION + 1, add_column)
    with open_index(db_path) as idx:
        assert idx.schema_version == SCHEMA_VERSION + 1
        assert "note" in idx.db.utils["roots"].columns_dict
    with open_index(db_path):
        pass
    assert calls == [SCHEMA_VERSION + 1]


def test_failed_migration_leaves_the_index_as_it_was(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_index(db_path).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE roots ADD COLUMN note TEXT")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(index_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(index_module.MIGRATIONS, SCHEMA_VERSION + 1, broken)
    with pytest.raises(RuntimeError):
        open_index(db_path)
    monkeypatch.undo()
    with open_index(db_path) as idx:
        assert idx.schema_version == SCHEMA_VERSION
        assert "note" not in idx.db.utils["roots"].columns_dict


def test_many_processes_creating_one_index_at_once(tmp_path: Path) -> None:
    # Each process opens a fresh index many times over, all started together, so that
    # creations and first looks interleave (once in a few hundred starts they used to
    # see a half-made index as somebody else's database).
    code = (
        "import sys\nfrom imgindex.storage import open_index\n"
        "for n in range(int(sys.argv[2])):\n    open_index(f'{sys.argv[1]}-{n}.db').close()\n"
    )
    base = str(tmp_path / "race")
    procs = [subprocess.Popen([sys.executable, "-c", code, base, "40"], stderr=subprocess.PIPE) for _ in range(6)]
    for p in procs:
        _, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr.decode()
    for n in range(40):
        with open_index(f"{base}-{n}.db") as idx:
            assert idx.schema_version == SCHEMA_VERSION


def test_wheel_ships_schema_sql(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    import zipfile

    (wheel,) = tmp_path.glob("imgindex-*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert z.read("imgindex/schema.sql").decode() == schema_sql()
        assert "imgindex/py.typed" in z.namelist()


def test_sorted_ints_reads_every_value_once_across_its_ranges(db_path: Path) -> None:
    """The values at the ends of the 64-bit range and of each of its parts, and many between,
    come back sorted, each once (``pairs.hashes`` reads them so)."""
    step = (1 << 64) // index_module._RANGES
    edges = [-(1 << 63) + k * step + d for k in range(index_module._RANGES) for d in (-1, 0, 1, step - 1)]
    rng = np.random.default_rng(3)
    values = {v for v in edges if -(1 << 63) <= v < 1 << 63} | {-1, 0, 1, (1 << 63) - 1}
    values |= set(rng.integers(-(1 << 63), (1 << 63) - 1, 5000, dtype=np.int64).tolist())
    with open_index(db_path) as idx:
        assert len(idx.pairs.hashes("dhash")) == 0
        with idx.db.write() as c:
            c.executemany("INSERT INTO near_hashes (kind, hash) VALUES ('dhash', ?)", [(v,) for v in values])
            c.executemany(
                "INSERT INTO near_hashes (kind, hash) VALUES ('other', ?)", [(v,) for v in sorted(values)[:5]]
            )
        assert idx.pairs.hashes("dhash").tolist() == sorted(values)


def _live_hashes(db_path: Path, kind: str) -> list[int]:
    with sqlite3.connect(db_path) as raw:
        return [r[0] for r in raw.execute("SELECT hash FROM near_hashes WHERE kind = ? ORDER BY hash", (kind,))]


def test_kept_hashes_and_their_log_hold_what_near_hashes_holds_whoever_writes(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stored values read from their kept blob and the log of writes since are the table's,
    after inserts and deletes by this index and by another connection (a value deleted and
    inserted again, one inserted and deleted, a value already there inserted again); the log
    is folded into a new blob once it is long, and a reset or a damaged blob leaves nothing
    stale."""
    monkeypatch.setattr(pairstore, "LOG_LEAST", 50)
    rng = np.random.default_rng(12)
    values = sorted(set(rng.integers(-(1 << 63), (1 << 63) - 1, 400, dtype=np.int64).tolist()))
    with open_index(db_path) as idx:
        store = idx.pairs
        assert store.keep_hashes("dhash")  # none kept yet: kept now, empty
        assert store.hashes("dhash").tolist() == []
        assert store.add_hashes("dhash", np.array(values[:300], dtype=np.int64), store.state()[1])
        assert store.add_hashes("other", np.array(values[:3], dtype=np.int64), store.state()[1])
        assert store.hashes("dhash").tolist() == _live_hashes(db_path, "dhash") == values[:300]
        assert store.keep_hashes("dhash")  # 300 logged writes: folded
        assert idx.db.execute("SELECT count(*) FROM near_hashes_log WHERE kind = 'dhash'").fetchone()[0] == 0
        assert not store.keep_hashes("dhash")
        with sqlite3.connect(db_path) as other:
            other.executemany("DELETE FROM near_hashes WHERE kind = 'dhash' AND hash = ?", [(v,) for v in values[:10]])
            other.executemany("INSERT OR IGNORE INTO near_hashes VALUES ('dhash', ?)", [(v,) for v in values[5:20]])
            other.executemany("INSERT INTO near_hashes VALUES ('dhash', ?)", [(v,) for v in values[300:310]])
            other.executemany(
                "DELETE FROM near_hashes WHERE kind = 'dhash' AND hash = ?", [(v,) for v in values[305:310]]
            )
        store.remove_hashes("dhash", np.array(values[100:120], dtype=np.int64))
        expected = sorted(set(values[5:300]) - set(values[100:120]) | set(values[300:305]))
        assert _live_hashes(db_path, "dhash") == expected
        assert not store.keep_hashes("dhash")  # 50 logged writes: not above the least
        assert store.hashes("dhash").tolist() == expected
        assert store.stored_among("dhash", np.array(values, dtype=np.int64)).tolist() == [v in expected for v in values]
        assert store.hashes("other").tolist() == values[:3]

        with idx.db.write() as c:  # a blob cut short, then one out of order: read row by row
            c.execute("UPDATE near_hashes_kept SET hashes = substr(hashes, 4) WHERE kind = 'dhash'")
        assert store.hashes("dhash").tolist() == expected
        backwards = np.array(values[:290][::-1], dtype="<i8").tobytes()
        with idx.db.write() as c:
            c.execute("UPDATE near_hashes_kept SET count = 290, hashes = ? WHERE kind = 'dhash'", (backwards,))
        assert store.hashes("dhash").tolist() == expected
        with idx.db.write() as c:  # a count of another type: read row by row, and made again
            c.execute("UPDATE near_hashes_kept SET count = 'many' WHERE kind = 'dhash'")
        assert store.hashes("dhash").tolist() == expected
        assert store.keep_hashes("dhash")
        assert store.hashes("dhash").tolist() == expected

        generation = store.reset(8, store.state()[1])
        assert generation is not None
        assert idx.db.execute("SELECT count(*) FROM near_hashes_kept").fetchone()[0] == 0
        assert store.hashes("dhash").tolist() == []
        assert store.keep_hashes("dhash")
        assert store.add_hashes("dhash", np.array(values[:7], dtype=np.int64), generation)
        assert store.hashes("dhash").tolist() == _live_hashes(db_path, "dhash") == values[:7]


def test_int_rows_reads_every_row_by_ranges_of_its_first_column(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of integers (extremes included) come back as an (n, width) array, by ranges of the
    first column's values (ascending; each range in the query's order), however many ranges;
    none as (0, width)."""
    rng = np.random.default_rng(6)
    rows = [(int(a), int(b), int(d)) for a, b, d in rng.integers(-(1 << 63), (1 << 63) - 1, (50, 3), dtype=np.int64)]
    rows += [(-(1 << 63), (1 << 63) - 1, 0), ((1 << 63) - 1, -(1 << 63), 5), (7, 3, 1), (7, -2, 2)]
    with open_index(db_path) as idx:
        with idx.db.write() as c:
            c.executemany("INSERT INTO near_pairs (kind, a, b, distance) VALUES ('t', ?, ?, ?)", rows)
        sql = (
            "SELECT a AS c0, b AS c1, distance AS c2 FROM near_pairs"
            " WHERE kind = ? AND a BETWEEN {lo} AND {hi} ORDER BY distance DESC"
        )
        for ranges in (1, 3, 64):
            monkeypatch.setattr(index_module, "_ROW_RANGES", ranges)
            got = idx.db.int_rows(sql, ("t",), 3)
            step = (1 << 64) // ranges
            expected = sorted(rows, key=lambda r: ((r[0] + (1 << 63)) // step, -r[2]))
            assert got.dtype == np.int64 and got.tolist() == [list(r) for r in expected]
            assert idx.db.int_rows(sql, ("none",), 3).shape == (0, 3)
        # The pair store's own reads: all of a kind, by the first column.
        a, b, _ = idx.pairs.pairs("t", 64)
        assert sorted(zip(a.tolist(), b.tolist(), strict=True)) == sorted((x, y) for x, y, z in rows if z <= 64)


def test_all_regions_reads_ids_and_blobs_in_step(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files' region hashes (blobs with NUL and non-UTF-8 bytes) come back whole, each beside
    its file id, across ranges of ids; a blob of the wrong length is left out."""
    monkeypatch.setattr("imgindex.storage.table.CHUNK_BITS", 3)  # chunks of 8 ids
    rng = np.random.default_rng(4)
    ids = sorted(set(rng.integers(1, 100, 40).tolist()))
    blobs = {i: bytes([0, 0xFF, 0xC3]) + rng.integers(0, 256, 37, dtype=np.uint8).tobytes() for i in ids}
    with open_index(db_path) as idx:
        idx.db.conn.execute("PRAGMA foreign_keys = OFF")  # regions without their files' rows
        with idx.db.write() as c:
            c.executemany("INSERT INTO regions (file_id, hashes) VALUES (?, ?)", list(blobs.items()))
            c.execute("INSERT INTO regions (file_id, hashes) VALUES (1000, ?)", (b"\0" * 39,))
        got_ids, rows = idx.images.all_regions()
        # A few files looked up one by one, and many (the whole table read, the rest left out).
        few = idx.images.regions([ids[3], ids[0], 1000, 5000])
        monkeypatch.setattr("imgindex.storage.images._SCAN_BEYOND", 2)
        many = idx.images.regions([*ids[1::2], 1000])
    assert got_ids.tolist() == ids
    assert rows.dtype == np.uint64 and rows.shape == (len(ids), len(REGIONS))
    assert rows.astype(">u8").tobytes() == b"".join(blobs[i] for i in ids)
    assert sorted(few[0].tolist()) == [ids[0], ids[3]]
    assert {i: r.tolist() for i, r in zip(*few, strict=True)} == {i: rows[ids.index(i)].tolist() for i in ids[0:4:3]}
    assert many[0].tolist() == ids[1::2]
    assert many[1].tolist() == rows[1::2].tolist()


def test_all_regions_of_ids_far_apart_costs_a_query_per_range_that_holds_one(db_path: Path) -> None:
    """Ids 2**40 apart, and the highest id SQLite has: each read once, and the statements
    SQLite runs are a few per range holding a region, not one per empty range between."""
    far = [5, 1 << 40, (1 << 62) + 3, (1 << 63) - 1]
    blobs = {i: bytes([k]) * 40 for k, i in enumerate(far)}
    with open_index(db_path) as idx:
        idx.db.conn.execute("PRAGMA foreign_keys = OFF")  # regions without their files' rows
        with idx.db.write() as c:
            c.executemany("INSERT INTO regions (file_id, hashes) VALUES (?, ?)", list(blobs.items()))
        statements: list[str] = []
        idx.db.conn.set_trace_callback(statements.append)
        got_ids, rows = idx.images.all_regions()
        idx.db.conn.set_trace_callback(None)
    assert got_ids.tolist() == far
    assert rows.astype(">u8").tobytes() == b"".join(blobs[i] for i in far)
    assert sum("FROM regions" in s for s in statements) <= 3 * len(far)


def test_page_cache_is_raised_for_a_block_and_restored_after(db_path: Path) -> None:
    """``page_cache`` raises the connection's cache for its block only (restored after an error
    too), never lowers it; pairs stored inside ``bulk`` are stored with the bulk cache, and the
    pairs are all there."""
    with open_index(db_path) as idx:
        conn = idx.db.conn

        def size() -> int:
            return int(conn.execute("PRAGMA cache_size").fetchone()[0])

        default = size()
        with idx.db.page_cache(8 * 1024):
            assert size() == -8 * 1024
        assert size() == default
        with pytest.raises(RuntimeError), idx.db.page_cache(8 * 1024):
            raise RuntimeError
        assert size() == default
        with idx.db.page_cache(1):  # below the default: left as it is
            assert size() == default

        seen = []
        execute = conn.execute

        class Watched:  # the connection, noting the cache size at each write transaction
            def __getattr__(self, name: str) -> object:
                return getattr(conn, name)

            def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
                if sql == "BEGIN IMMEDIATE":
                    seen.append(size())
                return execute(sql, *args)

        idx.db.conn = Watched()  # type: ignore[assignment]
        try:
            rng = np.random.default_rng(5)
            a = np.sort(rng.choice(1 << 40, 50, replace=False)).astype(np.int64)
            b = a + 1
            with idx.pairs.bulk():
                idx.pairs.add_pairs("dhash", a, b, np.full(50, 3, np.uint8), batch=20)
            idx.pairs.add_pairs("dhash", a[:5], b[:5] + 1, np.full(5, 4, np.uint8), batch=20)
        finally:
            idx.db.conn = conn
        assert seen == [-pairstore.BULK_CACHE_KIB] * 3 + [default]
        assert size() == default
        stored = idx.pairs.pairs("dhash", 10)
        assert len(stored[0]) == 55
