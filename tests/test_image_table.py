"""The image table: read live and from the chunks kept as columns, always the same, never stale."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgindex.storage import SCHEMA_VERSION, Index, open_index
from imgindex.storage import table as table_module
from imgindex.storage.table import CHUNK_IDS, ImageTable

from .conftest import encode, picture, run_scan, write


def rows(table: ImageTable) -> list[tuple[Any, ...]]:
    """Every column of every row, comparable."""
    return [
        (
            table.path(r),
            int(table.id[r]),
            int(table.root_id[r]),
            table.sha256[r].tobytes(),
            bool(table.has_hash[r]),
            int(table.phash[r]),
            bool(table.has_trim[r]),
            int(table.trim_hash[r]),
            int(table.width[r]),
            int(table.height[r]),
            int(table.size[r]),
            int(table.mtime_ns[r]),
            int(table.path_length[r]),
            bool(table.preferred[r]),
            int(table.params_id[r]),
            table.format[r],
            table.urls[r],
            bool(table.archived[r]),
        )
        for r in range(len(table))
    ]


def live(index: Index, **kwargs: Any) -> list[tuple[Any, ...]]:
    """The table read with no chunk kept (inside a transaction that is rolled back)."""
    index.db.execute("SAVEPOINT live")
    try:
        index.db.execute("DELETE FROM image_columns")
        return rows(index.images.table(**kwargs))
    finally:
        index.db.execute("ROLLBACK TO live")
        index.db.execute("RELEASE live")


def kept(index: Index) -> set[int]:
    return {c for (c,) in index.db.execute("SELECT chunk FROM image_columns")}


def stored_order(index: Index) -> list[tuple[bytes, int, str | None]]:
    found = index.db.execute("SELECT path, id, url FROM file_paths WHERE sha256 IS NOT NULL ORDER BY path")
    return [(bytes(p), i, u) for p, i, u in found]


@pytest.fixture
def spread(tree: Path, db_path: Path) -> Path:
    """An index whose images lie in three chunks of file ids (0, 2 and beyond) in directories
    met in one order whose paths sort in another."""
    for k in range(4):
        write(tree / f"m{k}" / "x.png", encode(picture(k), "PNG"))
        write(tree / f"m{k}" / "y.png", encode(picture(k + 20), "PNG"))
    write(tree / "note.txt", b"not a picture")
    with open_index(db_path) as index:
        run_scan(index, tree)
        # Ids with a gap (files removed, say): the next files take ids past it, in later chunks.
        index.db.execute("UPDATE files SET id = ? WHERE name = ?", (3 * CHUNK_IDS - 1, b"note.txt"))
        for k in range(3):
            write(tree / f"a{k}" / "z.png", encode(picture(k + 40), "PNG"))
        write(tree / "m1" / "w.png", encode(picture(60), "PNG"))
        run_scan(index, tree)
    return db_path


def test_kept_chunks_give_the_table_read_live(spread: Path, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_index(spread) as index:
        # The scan kept every chunk with a file below the last one: 0 (images), 2 (the gap's end);
        # 1 holds none, 3 the highest id.
        assert kept(index) == {0, 2}
        ids = index.db.execute("SELECT id >> 16, count(*) FROM files WHERE sha256 IS NOT NULL GROUP BY 1").fetchall()
        assert dict(ids) == {0: 8, 3: 4}
        table = index.images.table()
        assert [(p, i, u) for p, i, *_, u, _archived in rows(table)] == stored_order(index)
        assert rows(table) == live(index)
        # The directories met first hold the lowest ids but sort last.
        assert table.path(0).endswith(b"/a0/z.png") and table.path(len(table) - 1).endswith(b"/m3/y.png")
        # The order's walk of the (dir_id, name) index, a few entries at a time.
        for step in (1, 2, 5):
            monkeypatch.setattr(table_module, "_ORDER_CHUNK", step)
            assert rows(index.images.table()) == rows(table)
        below = [os.fsencode(tree / "a1"), os.fsencode(tree / "m3")]
        prefer = [os.fsencode(tree / "m1")]
        assert rows(index.images.table(under=below, prefer=prefer)) == live(index, under=below, prefer=prefer)
        chosen = index.images.table(under=below, prefer=prefer)
        assert sorted(p.rsplit(b"/", 2)[1] for p in map(chosen.path, range(len(chosen)))) == [b"a1", b"m3", b"m3"]


def test_ids_far_apart_cost_a_query_a_chunk_that_holds_files(spread: Path) -> None:
    with open_index(spread) as index:
        before = rows(index.images.table())
        # The highest id 2**40: sixteen million chunks below it, three hold a file.
        index.db.execute("UPDATE files SET id = ? WHERE name = ?", (1 << 40, b"note.txt"))
        assert kept(index) == {0}
        assert index.images.keep_table() == 1 and kept(index) == {0, 3}
        assert rows(index.images.table()) == before == live(index)
        # The highest id SQLite has: its chunk is the last there can be.
        index.db.execute("UPDATE files SET id = ? WHERE name = ?", ((1 << 63) - 1, b"note.txt"))
        assert index.images.keep_table() == 0 and kept(index) == {0, 3}
        assert rows(index.images.table()) == before == live(index)


def test_a_write_drops_its_chunk_in_the_same_transaction(spread: Path, tree: Path) -> None:
    with open_index(spread) as index:
        before = rows(index.images.table())
        # A changed picture: the rescan writes its row, which drops chunk 0; the scan makes it again.
        write(tree / "m2" / "x.png", encode(picture(99), "PNG"))
        os.utime(tree / "m2" / "x.png", ns=(1, 1))
        run_scan(index, tree)
        after = rows(index.images.table())
        assert after != before and after == live(index) and kept(index) == {0, 2}
        # Any write to a column the table reads drops the chunk, even one outside a scan ...
        for sql in (
            "UPDATE files SET url = 'http://e.test/' || id WHERE name = CAST('y.png' AS BLOB)",
            "UPDATE files SET format = 'QOI', width = 4294967295 WHERE name = CAST('x.png' AS BLOB)",
            "UPDATE files SET mtime_ns = mtime_ns + 1 WHERE name = CAST('x.png' AS BLOB)",
            "DELETE FROM files WHERE name = CAST('y.png' AS BLOB) AND id < 65536",
        ):
            with index.db.write() as c:
                assert c.execute(sql).rowcount
                assert 0 not in kept(index)  # in the same transaction
            assert rows(index.images.table()) == live(index)
            assert index.images.keep_table() == 1 and kept(index) == {0, 2}
            assert rows(index.images.table()) == live(index)
        # ... but a write to another column does not.
        index.db.execute("UPDATE files SET read_ns = read_ns + 1, inode = inode + 1")
        assert kept(index) == {0, 2}
        # Files removed from the tree (a directory of them): their rows go, and their chunk.
        for name in ("x.png", "y.png"):
            (tree / "m0" / name).unlink()
        (tree / "m0").rmdir()
        run_scan(index, tree)
        assert not any(b"/m0/" in p for p, *_ in rows(index.images.table()))
        assert rows(index.images.table()) == live(index)


def test_names_and_urls_with_a_nul_and_a_damaged_chunk(spread: Path) -> None:
    with open_index(spread) as index:
        # Names and URLs of strangers: a NUL in a name (a record's, say) and in a URL.
        first = "(SELECT min(id) FROM files WHERE name = ?)"
        index.db.execute(f"UPDATE files SET name = ? WHERE id = {first}", (b"x\x00.png", b"x.png"))
        index.db.execute("UPDATE files SET url = 'http://e.test/' || id WHERE name = ?", (b"w.png",))
        index.db.execute("UPDATE files SET url = 'http://e.test/a' || char(0) || 'b' WHERE name = ?", (b"z.png",))
        index.db.execute("UPDATE files SET url = 'http://e.test/c' || char(0) || 'd' WHERE name = ?", (b"y.png",))
        expected = stored_order(index)
        assert any(b"\x00" in p for p, _, _ in expected) and any(u and "\x00" in u for _, _, u in expected)
        for _ in range(2):  # live, then kept (with the lengths of the names and URLs)
            table = index.images.table()
            assert [(p, i, u) for p, i, *_, u, _archived in rows(table)] == expected
            index.images.keep_table()
        assert index.db.execute("SELECT count(*) FROM image_columns WHERE name_lengths IS NOT NULL").fetchone()[0]
        assert index.db.execute("SELECT count(*) FROM image_columns WHERE url_lengths IS NOT NULL").fetchone()[0]
        # A chunk that does not hold what it says is read live instead (and made again by a scan).
        good = rows(index.images.table())
        damages = (
            "names = X'00'",
            "numbers = substr(numbers, 9)",
            "name_lengths = X'0100000000000000'",
            "numbers = 5",
            "urls = 5",
            "url_lengths = 5",
            "rows = 'many'",
            "rows = 1.5",
        )
        for damage in damages:
            index.db.execute("SAVEPOINT damage")
            index.db.execute(f"UPDATE image_columns SET {damage} WHERE chunk = 0")
            assert rows(index.images.table()) == good
            index.db.execute("ROLLBACK TO damage")
            index.db.execute("RELEASE damage")


def sql_hashes(index: Index) -> list[int]:
    """The images' whole and inside hashes as SQL finds them, row by row."""
    found = index.db.execute(
        "SELECT phash FROM files WHERE sha256 IS NOT NULL AND phash IS NOT NULL"
        " UNION SELECT trim_hash FROM files WHERE sha256 IS NOT NULL AND trim_hash IS NOT NULL ORDER BY 1"
    )
    return [int(v) for (v,) in found]


def test_the_hashes_are_the_same_read_from_kept_chunks_and_live(spread: Path, tree: Path) -> None:
    # A picture with a white border (an inside hash) in the kept chunk 0, and a file with a
    # hash but no exact hash (not an image): its hash is not one of the images'.
    framed = Image.new("RGB", (120, 90), "white")
    framed.paste(picture(70, (80, 60)), (20, 15))
    write(tree / "m0" / "x.png", encode(framed, "PNG"))
    os.utime(tree / "m0" / "x.png", ns=(1, 1))
    with open_index(spread) as index:
        run_scan(index, tree)
        assert kept(index) == {0, 2}
        index.db.execute("SAVEPOINT odd")
        index.db.execute("UPDATE files SET sha256 = NULL, phash = 12345 WHERE name = ?", (b"note.txt",))
        index.db.execute("RELEASE odd")
        expected = sql_hashes(index)
        assert len(expected) == 13 and 12345 not in expected
        framed_ids = index.db.execute("SELECT id FROM files WHERE trim_hash IS NOT NULL").fetchall()
        assert len(framed_ids) == 1 and framed_ids[0][0] < CHUNK_IDS  # (in the kept chunk 0)
        assert index.images.hashes().tolist() == expected
        damages = (
            "DELETE FROM image_columns",
            "UPDATE image_columns SET numbers = substr(numbers, 9)",
            "UPDATE image_columns SET numbers = 5",
            "UPDATE image_columns SET rows = 'many'",
            "UPDATE image_columns SET rows = 1.5",
        )
        for damage in damages:
            index.db.execute("SAVEPOINT damage")
            index.db.execute(damage)
            assert index.images.hashes().tolist() == expected
            index.db.execute("ROLLBACK TO damage")
            index.db.execute("RELEASE damage")


def test_an_index_of_the_version_before_gains_the_kept_table(spread: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(spread)
    for name in ("files_columns_insert", "files_columns_update", "files_columns_delete"):
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE image_columns")
    conn.execute("PRAGMA user_version = 9")
    conn.commit()
    conn.close()
    with open_index(spread) as index:
        assert index.db.schema_version == SCHEMA_VERSION and kept(index) == set()
        table = index.images.table()
        assert index.images.keep_table() == 2
        assert rows(index.images.table()) == rows(table) == live(index)
        index.db.execute("DELETE FROM files WHERE name = CAST('x.png' AS BLOB)")
        assert kept(index) == {2}


def test_repair_drops_chunks_a_lost_trigger_may_have_left_stale(spread: Path) -> None:
    from imgindex.storage import health

    with open_index(spread) as index:
        index.db.execute("DROP TRIGGER files_columns_update")
        # A write with the trigger gone leaves chunk 0 as it was: stale.
        index.db.execute("UPDATE files SET size = size + 1 WHERE name = CAST('x.png' AS BLOB)")
        assert 0 in kept(index) and rows(index.images.table()) != live(index)
        assert "files_columns_update" in health.check(index.db).missing
        mended = health.repair(index.db)
        assert mended.ok and any("kept image table" in step for step in mended.repaired)
        assert kept(index) == set() and rows(index.images.table()) == live(index)
        index.db.execute("UPDATE files SET size = size + 1 WHERE name = CAST('x.png' AS BLOB)")
        index.images.keep_table()
        assert rows(index.images.table()) == live(index)


def test_a_damaged_row_is_not_kept_and_the_scan_goes_on(spread: Path, tree: Path) -> None:
    from imgindex.errors import ImgindexError

    with open_index(spread) as index:
        # A digest cut short (by hand, or damage) in chunk 0: that chunk cannot be kept.
        index.db.execute("UPDATE files SET sha256 = substr(sha256, 1, 31) WHERE id = (SELECT min(id) FROM files)")
        write(tree / "m0" / "v.png", encode(picture(77), "PNG"))
        summary = run_scan(index, tree)
        assert summary.new == 1 and kept(index) == {2}
        with pytest.raises(ImgindexError, match="not 32 bytes"):
            index.images.table()


def test_all_pictures_are_sqlites_group_by_digest_across_chunks(spread: Path) -> None:
    """Every picture of some settings, one file each (the lowest id), in digest order: as
    SQLite's GROUP BY sha256 gives them, with copies in two chunks of ids, digests that share
    their first 64 bits, one digest a prefix-ordered neighbour of another, files of other
    settings, and a picture without an inside hash."""
    from imgindex.storage.images import _PICTURES, _pictures

    with open_index(spread) as index:
        ids = [i for (i,) in index.db.execute("SELECT id FROM files WHERE sha256 IS NOT NULL ORDER BY id")]
        shared = bytes(range(8))
        digests = {
            ids[0]: shared + b"\x01" * 24,
            ids[1]: shared + b"\x00" * 24,  # the same first 64 bits, lower after them
            ids[2]: shared + b"\x01" * 24,  # a copy of ids[0] (a higher id)
            ids[-1]: shared + b"\x00" * 24,  # a copy of ids[1], in another chunk of ids
            ids[3]: b"\xff" * 32,
            ids[4]: b"\x00" * 32,
        }
        for file_id, digest in digests.items():
            index.db.execute("UPDATE files SET sha256 = ? WHERE id = ?", (digest, file_id))
        index.db.execute("UPDATE files SET trim_hash = NULL WHERE id = ?", (ids[4],))
        index.db.execute("UPDATE files SET trim_hash = 12345 WHERE id = ?", (ids[3],))
        (params,) = index.db.execute("SELECT params_id FROM files WHERE id = ?", (ids[5],)).fetchone()
        index.db.execute("INSERT INTO hash_params (key, created_at) VALUES ('other', 0)")
        index.db.execute("UPDATE files SET params_id = (SELECT max(id) FROM hash_params) WHERE id = ?", (ids[5],))
        assert {i >> 16 for i in ids} == {0, 3}
        found = index.images.pictures(params)
        oracle = _pictures(index.db.execute(_PICTURES + " GROUP BY sha256", (params,)).fetchall())
        for column in ("file_id", "sha256", "phash", "has_trim", "trim_hash"):
            assert getattr(found, column).tolist() == getattr(oracle, column).tolist(), column
        assert found.file_id.tolist()[:3] == [ids[4], ids[1], ids[0]]
        assert len(found) == len(ids) - 3


def test_a_file_in_no_directory_is_left_out_as_the_join_left_it(spread: Path) -> None:
    with open_index(spread) as index:
        before = rows(index.images.table())
        index.db.execute("PRAGMA foreign_keys = OFF")  # damage: a row whose directory is gone
        (lost,) = index.db.execute("SELECT id FROM files WHERE name = CAST('w.png' AS BLOB)").fetchone()
        index.db.execute("UPDATE files SET dir_id = 999999 WHERE id = ?", (lost,))
        index.db.execute("PRAGMA foreign_keys = ON")
        after = rows(index.images.table())
        assert after == [r for r in before if r[1] != lost] and after == live(index)
