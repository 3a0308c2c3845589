"""URLs from a crawler's side-files: Nutch's FileDumper writes <segment>_filenameToUrl.json beside
its dump, from each written file's absolute path to its URL. Side-files written here in that form."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import threading
from pathlib import Path

import pytest

from imgindex.scan import ScanInterrupted, ScanProgress, scan
from imgindex.storage import Index

from .conftest import QUICK, encode, picture, run_scan, write
from .test_report import invoke


def dumped(root: Path, url: str, seed: int, layout: str = "default") -> Path:
    """Write a picture where FileDumper puts the file of ``url`` (its three layouts)."""
    md5 = hashlib.md5(url.encode()).hexdigest()
    base = url.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if layout == "flat":
        path = root / f"{md5}_{base}.jpg"
    elif layout == "reverse":
        host = url.split("/")[2].split(".")
        path = root.joinpath(*reversed(host)) / hashlib.sha256(url.encode()).hexdigest().upper()
    else:
        path = root / md5[:2] / md5[2:4] / f"{md5}_{base}.jpg"
    return write(path, encode(picture(seed)))


def side_file(root: Path, segment: str, entries: dict[Path, str], *, written_at: Path | None = None) -> Path:
    """A segment's side-file; its paths as they were at ``written_at`` when the dump was elsewhere."""
    at = written_at or root
    mapping = {str(at / p.relative_to(root)): url for p, url in entries.items()}
    return write(root / f"{segment}_filenameToUrl.json", json.dumps(mapping).encode())


def urls(index: Index) -> dict[str, str | None]:
    rows = index.db.conn.execute("SELECT path, url FROM file_paths WHERE sha256 IS NOT NULL")
    return {bytes(p).decode(): u for p, u in rows}


def test_the_urls_of_a_dump_in_each_layout(tree: Path, index: Index) -> None:
    files = {
        dumped(tree, "http://example.com/a/logo.jpg", 1): "http://example.com/a/logo.jpg",
        dumped(tree, "http://example.org/b.jpg", 2, "flat"): "http://example.org/b.jpg",
        dumped(tree, "http://www.example.net/c.jpg", 3, "reverse"): "http://www.example.net/c.jpg",
    }
    plain = write(tree / "not-in-any-side-file.jpg", encode(picture(4)))
    side_file(tree, "20261130120000", files)
    summary = run_scan(index, tree)
    assert summary.warnings == []
    assert urls(index) == {**{str(p): u for p, u in files.items()}, str(plain): None}


def test_a_moved_dump_is_matched_by_its_paths_below_the_side_file(tree: Path, index: Index) -> None:
    files = {dumped(tree, f"http://example.com/{i}.jpg", 10 + i): f"http://example.com/{i}.jpg" for i in range(3)}
    side_file(tree, "seg", files, written_at=Path("/data/crawls/old-dump"))
    summary = run_scan(index, tree)
    assert urls(index) == {str(p): u for p, u in files.items()}
    assert summary.warnings == [
        f"{tree}/seg_filenameToUrl.json: written for a dump at /data/crawls/old-dump; matched here"
    ]


def test_a_bad_side_file_is_a_warning_and_costs_nothing_else(tree: Path, db_path: Path) -> None:
    kept = dumped(tree, "http://example.com/kept.jpg", 20)
    write(tree / "broken_filenameToUrl.json", b'{"/x": "http://e/", ')  # cut short
    write(tree / "list_filenameToUrl.json", b'["not", "an", "object"]')
    side_file(tree, "partly", {kept: "http://example.com/kept.jpg", tree / "gone.jpg": "http://example.com/gone.jpg"})
    code, out, err = invoke("scan", tree, "--db", db_path, "-j", "1")
    assert code == 0
    assert "broken_filenameToUrl.json: not a URL side-file (not JSON" in err
    assert "list_filenameToUrl.json: not a URL side-file (not a JSON object); ignored" in err
    assert "partly_filenameToUrl.json: names 1 files that are not here" in err
    code, out, _ = invoke("report", "--db", db_path, "--exact", "-o", "-")
    (image,) = json.loads(out)["images"]
    assert image["path"] == str(kept) and image["url"] == "http://example.com/kept.jpg"
    code, out, _ = invoke("stats", "--db", db_path)
    assert "URLs: 1 files (1 URL side-files read)" in out


def test_urls_follow_the_side_files_as_they_change_and_go(tree: Path, index: Index) -> None:
    a = dumped(tree, "http://example.com/a.jpg", 30)
    b = dumped(tree, "http://example.com/b.jpg", 31)
    first = side_file(tree, "20260101000000", {a: "http://old.example/a.jpg"})
    run_scan(index, tree)
    assert urls(index) == {str(a): "http://old.example/a.jpg", str(b): None}
    # A later segment fetched the same file again: its URL wins, whatever the order of reading.
    side_file(tree, "20260201000000", {a: "http://new.example/a.jpg", b: "http://new.example/b.jpg"})
    run_scan(index, tree)
    assert urls(index) == {str(a): "http://new.example/a.jpg", str(b): "http://new.example/b.jpg"}
    side_file(tree, "20260101000000", {a: "http://old.example/a2.jpg", b: "http://old.example/b.jpg"})
    run_scan(index, tree)
    assert urls(index) == {str(a): "http://new.example/a.jpg", str(b): "http://new.example/b.jpg"}
    (tree / "20260201000000_filenameToUrl.json").unlink()
    run_scan(index, tree)
    assert urls(index) == {str(a): "http://old.example/a2.jpg", str(b): "http://old.example/b.jpg"}
    first.unlink()
    run_scan(index, tree)
    assert urls(index) == {str(a): None, str(b): None}


def test_a_file_indexed_after_its_side_file_gets_its_url(tree: Path, index: Index, tmp_path: Path) -> None:
    a = dumped(tree, "http://example.com/a.jpg", 40)
    later = dumped(tmp_path / "elsewhere", "http://example.com/late.jpg", 41)
    target = tree / later.relative_to(tmp_path / "elsewhere")
    side_file(tree, "seg", {a: "http://example.com/a.jpg", target: "http://example.com/late.jpg"})
    run_scan(index, tree)
    assert urls(index) == {str(a): "http://example.com/a.jpg"}
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(later, target)
    run_scan(index, tree)
    assert urls(index)[str(target)] == "http://example.com/late.jpg"
    write(target, encode(picture(42)))  # rewritten: read again, its URL stays
    run_scan(index, tree)
    assert urls(index)[str(target)] == "http://example.com/late.jpg"


def test_a_side_file_cannot_name_a_file_outside_its_dump(tree: Path, index: Index, tmp_path: Path) -> None:
    inside = dumped(tree / "dump", "http://example.com/in.jpg", 50)
    outside = write(tree / "other" / "x.jpg", encode(picture(51)))
    mapping = {
        str(inside): "http://example.com/in.jpg",
        str(outside): "http://evil.example/claims-this.jpg",
        str(tree / "dump" / ".." / "other" / "x.jpg"): "http://evil.example/dotdot.jpg",
    }
    write(tree / "dump" / "seg_filenameToUrl.json", json.dumps(mapping).encode())
    summary = run_scan(index, tree)
    assert urls(index) == {str(inside): "http://example.com/in.jpg", str(outside): None}
    assert any("names 2 files that are not here (2 outside its dump)" in w for w in summary.warnings)


def test_a_side_file_left_unread_by_a_stopped_scan_is_read_by_the_next(tree: Path, index: Index) -> None:
    a = dumped(tree, "http://example.com/a.jpg", 60)
    side_file(tree, "seg", {a: "http://example.com/a.jpg"})
    for i in range(4):
        write(tree / "zz" / f"{i}.jpg", encode(picture(61 + i)))
    stop = threading.Event()

    def progress(p: ScanProgress) -> None:
        if p.last_path and p.last_path.endswith(b"_filenameToUrl.json"):
            stop.set()  # its row is written; its URLs would be read at the end

    with pytest.raises(ScanInterrupted):
        scan(index, [tree], dataclasses.replace(QUICK, chunk_size=1, batch_size=1), progress=progress, stop=stop)
    assert urls(index).get(str(a)) is None
    run_scan(index, tree)
    assert urls(index)[str(a)] == "http://example.com/a.jpg"


def test_entries_sqlite_cannot_store_are_skipped_with_a_warning(tree: Path, index: Index) -> None:
    a = dumped(tree, "http://example.com/a.jpg", 70)
    b = dumped(tree, "http://example.com/b.jpg", 71)
    text = json.dumps({str(a): "http://example.com/a.jpg", str(b): "http://x/\ud800", str(tree) + "/\ud800": "u"})
    write(tree / "seg_filenameToUrl.json", text.encode())
    summary = run_scan(index, tree)
    assert urls(index) == {str(a): "http://example.com/a.jpg", str(b): None}
    assert any("2 entries that are not path and URL; skipped" in w for w in summary.warnings)
