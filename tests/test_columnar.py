"""The index as Parquet: written, read by pyarrow as any engine would, and merged back."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq

from imgindex.columnar import export_index, import_index
from imgindex.errors import ExchangeError
from imgindex.hashing import HashSettings
from imgindex.storage import Index, open_index

from .conftest import encode, picture, run_scan, write
from .test_archives import Capture, jpeg, warc_bytes
from .test_report import invoke


def a_tree(tree: Path) -> None:
    for n in range(12):
        write(tree / f"d{n % 3}" / f"{n}.png", encode(picture(n % 5), "PNG"))
    write(tree / "page.html", b"<html></html>")
    write(tree / "cut.jpg", jpeg(1)[:300])
    data, _ = warc_bytes([Capture("http://example.com/a.jpg", jpeg(2)), Capture("http://example.com/b.jpg", jpeg(2))])
    write(tree / "c.warc.gz", data)


def table(db: Path) -> list[tuple[object, ...]]:
    """The index's rows that an import must give back (ids, times and the scan log aside)."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT p.path, p.status, p.error, p.format, p.size, p.mtime_ns, p.ctime_ns, p.inode, p.sha256,"
            " p.width, p.height, p.phash, p.trim_hash, p.url, p.read_ns, h.key, d.picture, d.trimmed, g.hashes, d.grid"
            " FROM file_paths p LEFT JOIN hash_params h ON h.id = p.params_id"
            " LEFT JOIN descriptors d ON d.file_id = p.id LEFT JOIN regions g ON g.file_id = p.id ORDER BY p.path"
        ).fetchall()


def test_an_index_round_trips_through_parquet(tree: Path, index: Index, db_path: Path, tmp_path: Path) -> None:
    a_tree(tree)
    run_scan(index, tree)
    summary = export_index(index, tmp_path / "pq")
    assert summary.items == len(table(db_path)) == 16 and summary.matches > 0
    items = pq.read_table(tmp_path / "pq" / "items.parquet")
    assert items.num_rows == 16
    assert {bytes(p) for p in items.column("path").to_pylist()} == {bytes(r[0]) for r in table(db_path)}
    assert pq.read_table(tmp_path / "pq" / "matches.parquet").num_rows == summary.matches
    meta = json.loads((tmp_path / "pq" / "index.json").read_text())
    assert meta["format"] == "imgindex-index" and meta["items"] == 16

    other = tmp_path / "other.db"
    with open_index(other) as fresh:
        done = import_index(fresh, tmp_path / "pq")
        assert done.items == 16 and done.roots == 1
        assert done.near_pairs is not None
    assert table(other) == table(db_path)
    assert sum(row[-2] is not None for row in table(db_path)) >= 4  # the pictures' regions came across
    # The imported index is as a scan left it: a scan reads nothing, and reports are the same.
    with open_index(other) as fresh:
        assert run_scan(fresh, tree).hashed == 0
    for args in (["--near"], ["--exact"], ["--near", "-f", "csv"]):
        assert (
            invoke("report", "--db", other, *args, "-o", "-")[1]
            == invoke("report", "--db", db_path, *args, "-o", "-")[1]
        )


def test_items_hashed_under_other_settings_are_refused_whole(tree: Path, index: Index, tmp_path: Path) -> None:
    a_tree(tree)
    run_scan(index, tree)
    export_index(index, tmp_path / "pq")
    with open_index(tmp_path / "other.db") as fresh:
        try:
            import_index(fresh, tmp_path / "pq", HashSettings(work_size=128))  # as another job would hash
        except ExchangeError as e:
            assert "other settings" in str(e)
        else:
            raise AssertionError("imported items of other settings")
        assert fresh.db.conn.execute("SELECT count(*) FROM files").fetchone()[0] == 0


def test_the_commands_and_what_is_not_an_index(tree: Path, db_path: Path, tmp_path: Path) -> None:
    a_tree(tree)
    invoke("scan", tree, "--db", db_path, "-q", "-j", "1")
    code, out, _ = invoke("export-index", tmp_path / "pq", "--db", db_path)
    assert code == 0 and out.startswith("wrote 16 items")
    code, out, _ = invoke("import-index", tmp_path / "pq", "--db", tmp_path / "b.db")
    assert code == 0 and out.startswith("imported 16 items under 1 roots")
    code, _, err = invoke("import-index", tmp_path, "--db", tmp_path / "c.db")
    assert code == 1 and "holds no index in Parquet form" in err
