"""Web archives as input: WARC and ARC files written here in their real formats (WARCs by warcio),
scanned in place; each image record an item ``FILE#OFFSET``, incremental as archives grow."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import re
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from imgindex.export import export, url_name
from imgindex.hashing import HashSettings
from imgindex.report import ReportOptions, build_report
from imgindex.scan import ScanInterrupted, scan
from imgindex.sources import archives
from imgindex.sources.archives import ArchiveListing, ArchiveMark
from imgindex.sources.directory import DirectorySource
from imgindex.storage import SCHEMA_VERSION, Index, open_index

from .conftest import BACK_TO_VERSION_5, QUICK, encode, picture, run_scan, write
from .test_report import invoke


@dataclass(frozen=True)
class Capture:
    url: str
    payload: bytes
    content_type: str = "image/jpeg"
    kind: str = "response"  # response | resource | revisit
    chunked: bool = False
    gzipped: bool = False  # Content-Encoding: gzip


def jpeg(seed: int) -> bytes:
    return encode(picture(seed), "JPEG", quality=90)


def warc_bytes(captures: Sequence[Capture], *, compressed: bool = True) -> tuple[bytes, list[int]]:
    """A WARC (gzip per record when ``compressed``) and the offset of each capture's record."""
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=compressed)
    offsets = []
    for c in captures:
        offsets.append(out.tell())
        if c.kind == "resource":
            record = writer.create_warc_record(
                c.url, "resource", payload=io.BytesIO(c.payload), warc_content_type=c.content_type
            )
        elif c.kind == "revisit":
            record = writer.create_revisit_record(c.url, "sha1:AAAA", c.url, "2020-01-01T00:00:00Z")
        else:
            body = gzip.compress(c.payload) if c.gzipped else c.payload
            headers = [("Content-Type", c.content_type)]
            if c.gzipped:
                headers.append(("Content-Encoding", "gzip"))
            if c.chunked:
                headers.append(("Transfer-Encoding", "chunked"))
                body = b"".join(
                    b"%x\r\n%s\r\n" % (len(body[i : i + 97]), body[i : i + 97]) for i in range(0, len(body), 97)
                )
                body += b"0\r\n\r\n"
            else:
                headers.append(("Content-Length", str(len(body))))
            http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
            record = writer.create_warc_record(c.url, "response", payload=io.BytesIO(body), http_headers=http)
        writer.write_record(record)
    return out.getvalue(), offsets


def arc_bytes(captures: Sequence[Capture], *, compressed: bool) -> tuple[bytes, list[int]]:
    """An ARC (version 1), each record a gzip member when ``compressed``."""

    def member(data: bytes) -> bytes:
        return gzip.compress(data) if compressed else data

    version = b"1 0 test\nURL IP-address Archive-date Content-type Archive-length\n"
    out = io.BytesIO()
    out.write(member(b"filedesc://test.arc 0.0.0.0 20200101000000 text/plain %d\n" % len(version) + version + b"\n"))
    offsets = []
    for i, c in enumerate(captures):
        http = b"HTTP/1.0 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
            c.content_type.encode(),
            len(c.payload),
        )
        block = http + c.payload
        offsets.append(out.tell())
        line = b"%s 10.0.0.%d 2020010203%04d %s %d\n" % (c.url.encode(), i, i, c.content_type.encode(), len(block))
        out.write(member(line + block + b"\n"))
    return out.getvalue(), offsets


def rows(index: Index) -> dict[bytes, tuple[str, str | None, str | None, bytes | None]]:
    """Every item's path: status, url, error and SHA-256."""
    found = index.db.conn.execute("SELECT path, status, url, error, sha256 FROM file_paths")
    return {bytes(p): (s, u, e, None if h is None else bytes(h)) for p, s, u, e, h in found}


MIXED = [
    Capture("http://example.com/a.jpg", jpeg(1)),
    Capture("http://example.com/page.html", b"<html><body>hi</body></html>", "text/html"),
    Capture("http://example.com/b.png", encode(picture(2), "PNG"), "image/png", chunked=True, gzipped=True),
    Capture("http://example.com/c.gif", encode(picture(3), "GIF"), "image/gif", kind="resource"),
    Capture("http://example.com/a.jpg", b"", kind="revisit"),
    # Says it is a JPEG and is not: listed (the Content-Type is a hint), read as no image.
    Capture("http://example.com/fake.jpg", b"<html>not found</html>"),
    # Says it is HTML and is a PNG: the bytes decide.
    Capture("http://example.com/mislabelled", encode(picture(4), "PNG"), "text/html"),
]


@pytest.mark.parametrize("compressed", [True, False], ids=["warc.gz", "warc"])
def test_the_image_records_of_a_warc_are_items(tree: Path, index: Index, compressed: bool) -> None:
    data, offsets = warc_bytes(MIXED, compressed=compressed)
    name = "crawl.warc.gz" if compressed else "crawl.warc"
    warc = write(tree / "seg" / name, data)
    write(tree / "seg" / "loose.jpg", jpeg(1))  # the same picture as a file
    summary = run_scan(index, tree)
    found = rows(index)
    at = {i: f"{warc}#{offsets[i]}".encode() for i in range(len(MIXED))}
    assert found[at[0]] == ("ok", "http://example.com/a.jpg", None, hashlib.sha256(MIXED[0].payload).digest())
    assert found[at[2]][:2] == ("ok", "http://example.com/b.png")  # dechunked and decoded
    assert found[at[2]][3] == hashlib.sha256(MIXED[2].payload).digest()
    assert found[at[3]][:2] == ("ok", "http://example.com/c.gif")
    assert found[at[5]][:2] == ("not_image", "http://example.com/fake.jpg")
    assert found[at[6]][:2] == ("ok", "http://example.com/mislabelled")
    assert at[1] not in found and at[4] not in found  # the page and the revisit are not items
    assert len(found) == 6  # five records and the loose file
    assert summary.walk_errors == []
    # The record and the file of one picture are exact duplicates.
    report = build_report(index, ReportOptions(mode="exact"))
    (group,) = [g for g in report.groups() if g.duplicates]
    assert {group.kept.path, group.duplicates[0][0].path} == {at[0], str(tree / "seg" / "loose.jpg").encode()}
    record = group.kept if group.kept.archived else group.duplicates[0][0]
    assert record.url == "http://example.com/a.jpg"


@pytest.mark.parametrize("compressed", [True, False], ids=["arc.gz", "arc"])
def test_the_image_records_of_an_arc_are_items(tree: Path, index: Index, compressed: bool) -> None:
    captures = [
        Capture("http://example.com/x.jpg", jpeg(5)),
        Capture("http://example.com/y.txt", b"text", "text/plain"),
    ]
    data, offsets = arc_bytes(captures, compressed=compressed)
    arc = write(tree / ("old.arc.gz" if compressed else "old.arc"), data)
    run_scan(index, tree)
    found = rows(index)
    assert list(found) == [f"{arc}#{offsets[0]}".encode()]
    status, url, _, digest = found[f"{arc}#{offsets[0]}".encode()]
    assert (status, url, digest) == ("ok", "http://example.com/x.jpg", hashlib.sha256(captures[0].payload).digest())
    date = index.db.conn.execute("SELECT mtime_ns FROM files").fetchone()[0]
    assert date == 1577934000 * 10**9  # 2020-01-02T03:00:00Z, the record's date


class CountingSource(DirectorySource):
    """A directory source that counts the archives it lists (and from where)."""

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "starts", [])

    def archive(self, path: bytes, since: ArchiveMark | None) -> ArchiveListing:
        listing = super().archive(path, since)
        self.starts.append(listing.start)  # type: ignore[attr-defined]
        return listing


def test_an_unchanged_archive_is_not_read_and_a_growing_one_is_read_from_where_it_stopped(
    tree: Path, index: Index
) -> None:
    first = [Capture(f"http://example.com/{i}.jpg", jpeg(10 + i)) for i in range(3)]
    data, offsets = warc_bytes(first)
    more, more_offsets = warc_bytes([Capture(f"http://example.com/m{i}.jpg", jpeg(20 + i)) for i in range(2)])
    warc = tree / "live.warc.gz"
    # Being written: three whole records and half of the fourth.
    write(warc, data + more[: more_offsets[1] // 2])
    source = CountingSource()
    summary = scan(index, [tree], QUICK, source=source)
    assert summary.hashed == 3 and source.starts == [0]  # type: ignore[attr-defined]
    assert sorted(rows(index)) == sorted(f"{warc}#{o}".encode() for o in offsets)

    summary = scan(index, [tree], QUICK, source=source)
    assert summary.hashed == 0 and source.starts == [0]  # unchanged: not even opened

    with warc.open("ab") as f:  # the fourth record ends, a fifth follows
        f.write(more[more_offsets[1] // 2 :])
    summary = scan(index, [tree], QUICK, source=source)
    assert source.starts == [0, len(data)]  # type: ignore[attr-defined]
    assert summary.hashed == 2 and summary.removed == 0
    expected = [f"{warc}#{o}".encode() for o in offsets] + [f"{warc}#{len(data) + o}".encode() for o in more_offsets]
    assert sorted(rows(index)) == sorted(expected)
    assert all(status == "ok" for status, *_ in rows(index).values())


def test_a_rewritten_archive_is_listed_again_and_a_deleted_one_leaves(tree: Path, index: Index) -> None:
    data, _ = warc_bytes([Capture(f"http://example.com/{i}.jpg", jpeg(30 + i)) for i in range(3)])
    warc = write(tree / "a.warc.gz", data)
    run_scan(index, tree)
    other, other_offsets = warc_bytes([Capture("http://example.com/new.jpg", jpeg(40))])
    warc.unlink()
    write(warc, other)  # another file under the same name
    run_scan(index, tree)
    assert sorted(rows(index)) == [f"{warc}#{other_offsets[0]}".encode()]
    assert rows(index)[f"{warc}#0".encode()][1] == "http://example.com/new.jpg"
    warc.unlink()
    summary = run_scan(index, tree)
    assert summary.removed == 1 and rows(index) == {}
    assert index.db.conn.execute("SELECT count(*) FROM archives").fetchone()[0] == 0


def test_a_corrupt_member_is_recorded_and_the_rest_is_indexed(tree: Path, index: Index) -> None:
    captures = [Capture(f"http://example.com/{i}.jpg", jpeg(50 + i)) for i in range(4)]
    data, offsets = warc_bytes(captures)
    damaged = bytearray(data)
    middle = offsets[1] + (offsets[2] - offsets[1]) // 2
    damaged[middle : middle + 64] = bytes(64)  # inside the second record's deflate stream
    warc = write(tree / "bad.warc.gz", bytes(damaged))
    summary = run_scan(index, tree)
    found = rows(index)
    status, _, error, _ = found[f"{warc}#{offsets[1]}".encode()]
    assert status == "corrupt" and error is not None and "gzip" in error
    for i in (0, 2, 3):
        assert found[f"{warc}#{offsets[i]}".encode()][0] == "ok"
    assert summary.failed == 1 and len(found) == 4
    # The record stays damaged: a rescan does not read the unchanged archive again.
    assert run_scan(index, tree).hashed == 0


def test_a_truncated_uncompressed_record_waits(tree: Path, index: Index) -> None:
    data, offsets = warc_bytes(
        [Capture(f"http://example.com/{i}.jpg", jpeg(60 + i)) for i in range(2)], compressed=False
    )
    warc = write(tree / "plain.warc", data[:-10])
    run_scan(index, tree)
    assert sorted(rows(index)) == [f"{warc}#{offsets[0]}".encode()]
    write(warc, data)
    assert run_scan(index, tree).hashed == 1
    assert len(rows(index)) == 2


def test_a_stopped_scan_lists_the_archive_again(tree: Path, index: Index) -> None:
    """An archive's listing counts only once all its records have rows."""
    data, _ = warc_bytes([Capture(f"http://example.com/{i}.jpg", jpeg(70 + i)) for i in range(6)])
    write(tree / "big.warc.gz", data)
    stop = threading.Event()
    written = []

    def progress(p: object) -> None:
        if getattr(p, "hashed", 0) >= 1:
            written.append(p)
            stop.set()

    one_by_one = dataclasses.replace(QUICK, chunk_size=1, batch_size=1)
    with pytest.raises(ScanInterrupted):
        scan(index, [tree], one_by_one, progress=progress, stop=stop)
    assert index.db.conn.execute("SELECT read_to FROM archives").fetchone()[0] is None
    done = len(rows(index))
    assert 1 <= done < 6
    summary = run_scan(index, tree)
    assert summary.hashed == 6 - done and len(rows(index)) == 6


def test_a_file_named_like_a_record_of_an_archive_beside_it_is_skipped(tree: Path, index: Index) -> None:
    data, offsets = warc_bytes([Capture("http://example.com/a.jpg", jpeg(80))])
    warc = write(tree / "w.warc.gz", data)
    write(tree / f"w.warc.gz#{offsets[0]}", jpeg(81))  # would be taken for the record
    write(tree / "w.warc.gz#notanumber", jpeg(82))  # cannot be: indexed
    run_scan(index, tree)
    found = rows(index)
    assert found[f"{warc}#{offsets[0]}".encode()][3] == hashlib.sha256(jpeg(80)).digest()
    assert found[str(tree / "w.warc.gz#notanumber").encode()][0] == "ok"
    assert len(found) == 2


def test_no_archives_leaves_them_files(tree: Path, index: Index) -> None:
    data, _ = warc_bytes([Capture("http://example.com/a.jpg", jpeg(83))])
    warc = write(tree / "w.warc.gz", data)
    run_scan(index, tree, options=dataclasses.replace(QUICK, archives=False))
    assert rows(index) == {str(warc).encode(): ("not_image", None, None, None)}


def test_export_extracts_records_under_names_from_their_urls(tree: Path, index: Index, tmp_path: Path) -> None:
    hostile = "http://example.com/x/..%2F..%2Fevil%0A%1B[31m.jpg?q=1"
    captures = [
        Capture(hostile, jpeg(90)),
        Capture("http://example.com/", jpeg(91)),
        Capture("http://example.com/again\x1b[2J.jpg", jpeg(90)),  # the first one's bytes, fetched again
    ]
    data, offsets = warc_bytes(captures)
    write(tree / "s" / "c.warc.gz", data)
    run_scan(index, tree)
    out, review = tmp_path / "out", tmp_path / "review"
    summary = export(build_report(index, ReportOptions(mode="near")), out, duplicates_dir=review, link="symlink")
    assert summary.kept == 2 and summary.duplicates == 1 and not summary.missing
    made = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert made == sorted(
        [Path("s/c.warc.gz") / f"{offsets[0]}-_.._evil_31m.jpg", Path("s/c.warc.gz") / f"{offsets[1]}-record.jpg"]
    )
    for path, capture in zip(sorted(made), captures, strict=False):
        assert (out / path).read_bytes() == capture.payload and not (out / path).is_symlink()
    assert url_name("http://h/%2e%2e") == b"record" and url_name(None) == b"record"
    # A review folder holds both copies, and lists each with its URL, control bytes escaped.
    (folder,) = review.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [
        f"0-kept-{offsets[0]}-_.._evil_31m.jpg",
        f"1-d0-{offsets[2]}-again_2J.jpg",
        "group.txt",
    ]
    listing = (folder / "group.txt").read_bytes().splitlines()
    assert listing[0] == b"role\tdistance\tpath\turl"
    assert [line.rsplit(b"\t", 1)[1] for line in listing[1:]] == [
        b"http://example.com/x/..%2F..%2Fevil%0A%1B[31m.jpg?q=1",
        b"http://example.com/again\\x1b[2J.jpg",
    ]


def test_report_stats_and_query_give_what_the_index_knows_of_records(tree: Path, db_path: Path, tmp_path: Path) -> None:
    same = jpeg(95)
    data, offsets = warc_bytes([Capture("http://example.com/a.jpg", same), Capture("http://e/b\x1b[2J.jpg", same)])
    data2, _ = warc_bytes(
        [Capture("http://example.com/c.jpg", jpeg(96)), Capture("http://example.com/d.jpg", jpeg(97))]
    )
    warc = write(tree / "r.warc.gz", data)
    write(tree / "s.warc.gz", data2[: len(data2) - 5])  # its last record still being written
    code, _, stderr = invoke("scan", tree, "--db", db_path, "-q", "-j", "1")
    assert code == 0, stderr
    code, out, _ = invoke("report", "--db", db_path, "--exact", "-o", "-")
    (image,) = [i for i in json.loads(out)["images"] if i["duplicates"]]
    assert image["path"] == f"{warc}#{offsets[0]}" and image["url"] == "http://example.com/a.jpg"
    assert image["duplicates"][0]["url"] == "http://e/b\x1b[2J.jpg"
    code, out, _ = invoke("report", "--db", db_path, "--exact", "-f", "csv", "-o", "-")
    assert out.splitlines()[1].endswith(",http://example.com/a.jpg,http://e/b\x1b[2J.jpg")
    code, out, _ = invoke("stats", "--db", db_path)
    assert "web archives: 2, 3 records indexed" in out
    code, out, _ = invoke("stats", "--db", db_path, "--json")
    assert json.loads(out)["archives"] == {"archives": 2, "records": 3, "damaged": 0, "unfinished": 0}
    probe = write(tmp_path / "probe.jpg", same)
    code, out, _ = invoke("query", probe, "--db", db_path)
    assert "(http://example.com/a.jpg)" in out and "(http://e/b\\x1b[2J.jpg)" in out  # escaped on a terminal
    assert "\x1b" not in out
    code, out, _ = invoke("query", probe, "--db", db_path, "--json")
    (result,) = json.loads(out)["queries"]
    assert {m["url"] for m in result["matches"]} == {"http://example.com/a.jpg", "http://e/b\x1b[2J.jpg"}


def test_a_version_5_index_gains_archives(tree: Path, db_path: Path) -> None:
    write(tree / "a.jpg", jpeg(96))
    with open_index(db_path) as idx:
        run_scan(idx, tree)
    raw = sqlite3.connect(db_path)
    raw.executescript(BACK_TO_VERSION_5)
    raw.close()
    data, offsets = warc_bytes([Capture("http://example.com/a.jpg", jpeg(97))])
    warc = write(tree / "new.warc.gz", data)
    with open_index(db_path) as idx:
        assert idx.schema_version == SCHEMA_VERSION == 12
        assert list(rows(idx)) == [str(tree / "a.jpg").encode()]
        assert run_scan(idx, tree).hashed == 1
        assert rows(idx)[f"{warc}#{offsets[0]}".encode()][1] == "http://example.com/a.jpg"


def test_check_finds_archive_states_and_urls_that_point_at_nothing(tree: Path, db_path: Path) -> None:
    data, _ = warc_bytes([Capture("http://example.com/a.jpg", jpeg(98))])
    write(tree / "w.warc.gz", data)
    loose = write(tree / "ab" / "x.jpg", jpeg(99))
    write(tree / "seg_filenameToUrl.json", json.dumps({str(loose): "http://example.com/x.jpg"}).encode())
    assert invoke("scan", tree, "--db", db_path, "-q", "-j", "1")[0] == 0
    with sqlite3.connect(db_path) as raw:  # rows left behind by a hand with the foreign keys off
        raw.execute("PRAGMA foreign_keys = OFF")
        raw.execute("DELETE FROM files WHERE CAST(name AS TEXT) LIKE '%filenameToUrl.json'")
        raw.execute("DELETE FROM files WHERE dir_id IN (SELECT dir_id FROM archives)")
        raw.execute("DELETE FROM dirs WHERE id IN (SELECT dir_id FROM archives)")
    code, out, _ = invoke("check", "--db", db_path, "--json")
    assert code == 3
    assert json.loads(out)["orphans"] == {
        "web archive states of no directory": 1,
        "URLs of no side-file": 1,
        "thumbnails of no file": 1,  # the record's
        "region hashes of no file": 1,  # ... and its regions'
    }
    assert invoke("check", "--repair", "--db", db_path)[0] == 0
    assert invoke("check", "--db", db_path)[0] == 0


def test_a_malformed_uncompressed_record_is_recorded_and_the_rest_is_indexed(tree: Path, index: Index) -> None:
    captures = [Capture(f"http://example.com/{i}.jpg", jpeg(100 + i)) for i in range(3)]
    data, offsets = warc_bytes(captures, compressed=False)
    # The second record's header loses its Content-Length: where it ends can only be found by
    # looking for the next record.
    head = data[offsets[1] : offsets[2]]
    broken = head.replace(b"Content-Length:", b"Content-Lengtx:", 1)
    warc = write(tree / "m.warc", data[: offsets[1]] + broken + data[offsets[2] :])
    summary = run_scan(index, tree)
    found = rows(index)
    status, _, error, _ = found[f"{warc}#{offsets[1]}".encode()]
    assert status == "corrupt" and error is not None and "Content-Length" in error
    assert found[f"{warc}#{offsets[0]}".encode()][0] == found[f"{warc}#{offsets[2]}".encode()][0] == "ok"
    assert summary.failed == 1 and len(found) == 3


def test_a_growing_uncompressed_arc_loses_no_record(tree: Path, index: Index) -> None:
    """An ARC record ends with a newline its length does not count: the next listing starts past it."""
    captures = [Capture(f"http://example.com/{i}.jpg", jpeg(110 + i)) for i in range(4)]
    data, offsets = arc_bytes(captures, compressed=False)
    arc = write(tree / "live.arc", data[: offsets[2] + 10])
    run_scan(index, tree)
    write(arc, data)
    summary = run_scan(index, tree)
    assert summary.hashed == 2 and summary.failed == 0
    assert sorted(rows(index)) == sorted(f"{arc}#{o}".encode() for o in offsets)


def test_records_of_an_unchanged_archive_are_read_again_when_a_file_would_be(tree: Path, index: Index) -> None:
    data, _ = warc_bytes([Capture(f"http://example.com/{i}.jpg", jpeg(120 + i)) for i in range(2)])
    write(tree / "a.warc.gz", data)
    small = dataclasses.replace(QUICK, settings=HashSettings(max_pixels=100))
    run_scan(index, tree, options=small)
    assert {s for s, *_ in rows(index).values()} == {"too_large"}
    summary = run_scan(index, tree)  # --max-pixels raised: the archive is unchanged, its records are not
    assert summary.hashed == 2 and {s for s, *_ in rows(index).values()} == {"ok"}
    assert run_scan(index, tree).hashed == 0
    assert run_scan(index, tree, options=dataclasses.replace(QUICK, rehash=True)).hashed == 2


def test_a_lying_length_ends_where_the_next_record_begins(tree: Path, index: Index) -> None:
    captures = [Capture(f"http://example.com/{i}.jpg", jpeg(130 + i)) for i in range(3)]
    data, offsets = warc_bytes(captures, compressed=False)
    record = data[offsets[1] : offsets[2]]
    length = re.search(rb"Content-Length: (\d+)\r\n", record)
    assert length is not None
    for claim in (b"9" * 30, b"9" * 5000, b"99999999"):  # beyond any integer; beyond the file
        lying = record.replace(length.group(0), b"Content-Length: " + claim + b"\r\n", 1)
        warc = write(tree / "lie.warc", data[: offsets[1]] + lying + data[offsets[2] :])
        summary = run_scan(index, tree)
        shift = len(lying) - len(record)
        found = rows(index)
        assert found[f"{warc}#{offsets[1]}".encode()][0] == "corrupt", len(claim)
        assert found[f"{warc}#{offsets[0]}".encode()][0] == "ok"
        assert found[f"{warc}#{offsets[2] + shift}".encode()][0] == "ok"
        assert len(found) == 3 and summary.walk_errors == []
    # The last record claiming more than there is waits: it may be being written.
    last = data[offsets[2] :].replace(b"Content-Length: ", b"Content-Length: 1", 1)
    warc = write(tree / "lie.warc", data[: offsets[2]] + last)
    run_scan(index, tree)
    assert sorted(rows(index)) == sorted(f"{warc}#{o}".encode() for o in offsets[:2])
    assert index.db.conn.execute("SELECT read_to FROM archives").fetchone()[0] == offsets[2]


def test_a_warc_gzipped_whole_is_one_damaged_entry_that_says_why(tree: Path, index: Index) -> None:
    data, _ = warc_bytes([Capture(f"http://example.com/{i}.jpg", jpeg(140 + i)) for i in range(3)], compressed=False)
    warc = write(tree / "whole.warc.gz", gzip.compress(data))
    summary = run_scan(index, tree)
    ((path, (status, _, error, _)),) = rows(index).items()
    assert path == f"{warc}#0".encode() and status == "corrupt" and summary.failed == 1
    assert error is not None and "recompress" in error


def test_an_archive_replaced_by_a_directory_of_its_name(tree: Path, index: Index) -> None:
    data, _ = warc_bytes([Capture("http://example.com/a.jpg", jpeg(150))])
    warc = write(tree / "x.warc.gz", data)
    run_scan(index, tree)
    warc.unlink()
    inside = write(tree / "x.warc.gz" / "pic.jpg", jpeg(151))
    summary = run_scan(index, tree)
    assert summary.removed == 1
    assert list(rows(index)) == [str(inside).encode()]
    assert index.db.conn.execute("SELECT count(*) FROM archives").fetchone()[0] == 0


def test_rows_past_where_a_listing_started_that_it_did_not_list_are_gone(tree: Path, index: Index) -> None:
    first, _ = warc_bytes([Capture("http://example.com/a.jpg", jpeg(160))])
    warc = write(tree / "g.warc.gz", first)
    run_scan(index, tree)
    (dir_id,) = index.db.conn.execute("SELECT dir_id FROM archives").fetchone()
    with index.db.write() as c:  # a row an interrupted listing left, of a record rewritten since
        c.execute(
            "INSERT INTO files (dir_id, name, size, mtime_ns, ctime_ns, inode, device, status, read_ns, first_seen)"
            " VALUES (?, ?, 1, 0, 0, ?, 0, 'not_image', 0, 0)",
            (dir_id, str(len(first) + 7).encode(), len(first) + 7),
        )
    more, more_offsets = warc_bytes([Capture("http://example.com/b.jpg", jpeg(161))])
    with warc.open("ab") as f:
        f.write(more)
    run_scan(index, tree)
    assert sorted(rows(index)) == sorted([f"{warc}#0".encode(), f"{warc}#{len(first) + more_offsets[0]}".encode()])


@pytest.mark.parametrize("compressed", [True, False], ids=["warc.gz", "warc"])
def test_a_record_above_the_limit_is_too_large_and_costs_no_more(
    tree: Path, index: Index, compressed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit bounds what one record costs (a compression bomb's too); an image record above it
    is recorded too_large, anything else above it is not listed. QUICK reads in this process."""
    monkeypatch.setattr(archives, "MAX_RECORD", 10_000)
    big = encode(picture(170, (800, 600)), "PNG")
    assert len(big) > 10_000 > len(jpeg(171)) + 2_000
    captures = [
        Capture("http://example.com/big.png", big, "image/png"),
        Capture("http://example.com/video.mp4", bytes(50_000), "video/mp4"),
        Capture("http://example.com/small.jpg", jpeg(171)),
    ]
    data, offsets = warc_bytes(captures, compressed=compressed)
    warc = write(tree / ("b.warc.gz" if compressed else "b.warc"), data)
    run_scan(index, tree)
    found = rows(index)
    status, url, error, _ = found[f"{warc}#{offsets[0]}".encode()]
    assert (
        (status, url) == ("too_large", "http://example.com/big.png") and error is not None and "above 10,000" in error
    )
    assert found[f"{warc}#{offsets[2]}".encode()][0] == "ok"
    assert len(found) == 2
    assert run_scan(index, tree).hashed == 0
