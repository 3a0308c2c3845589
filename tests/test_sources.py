"""The source interface: a second source, held in memory, goes through the same planner,
workers, reader and index as a directory tree, and gets the same rules."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from imgindex.errors import ScanError
from imgindex.report import ReportOptions, build_report
from imgindex.scan import scan
from imgindex.sources import FileStat, Found, Listing, join
from imgindex.storage import Index

from .conftest import QUICK, encode, picture

EPOCH_NS = 1_600_000_000 * 10**9  # long ago: no entry is racily clean


class _Reader:
    """One entry opened: its bytes as they were when it was opened."""

    def __init__(self, data: bytes, identity: FileStat) -> None:
        self.data = data
        self.identity = identity
        self.at = 0

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def stat(self) -> tuple[FileStat, bool]:
        return self.identity, True

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.at + size
        chunk = self.data[self.at : end]
        self.at += len(chunk)
        return chunk


@dataclass
class MemorySource:
    """Entries held in a dict (path -> bytes), each version of an entry with an identity of its own."""

    entries: dict[bytes, bytes] = field(default_factory=dict)
    versions: dict[bytes, int] = field(default_factory=dict)
    unlistable: set[bytes] = field(default_factory=set)

    def put(self, path: bytes, data: bytes) -> None:
        self.entries[path] = data
        self.versions[path] = self.versions.get(path, 0) + 1

    def identity(self, path: bytes) -> FileStat:
        version = self.versions[path]
        changed = EPOCH_NS + version * 10**9
        return FileStat(len(self.entries[path]), changed, changed, zlib.crc32(path), 0)

    def root(self, path: bytes) -> bytes:
        if not self.is_dir(path):
            raise ScanError(f"cannot scan {path!r}: not a directory")
        return path

    def real_path(self, path: bytes) -> bytes:
        return path

    def listings(self, top: bytes) -> Iterator[Listing]:
        stack = [top]
        while stack:
            directory = stack.pop()
            if directory in self.unlistable:
                yield Listing(directory, error="Permission denied")
                continue
            listing = Listing(directory)
            subdirs = set()
            for path in sorted(self.entries):
                parent, name = os.path.split(path)
                if parent == directory:
                    listing.files.append((name, self.identity(path)))
                elif path.startswith(directory + b"/"):
                    subdirs.add(join(directory, path[len(directory) + 1 :].split(b"/")[0]))
            listing.subdirs = sorted(subdirs)
            yield listing
            stack.extend(reversed(listing.subdirs))

    def lookup(self, path: bytes) -> Found | None:
        if path in self.entries:
            return Found("file", self.identity(path))
        return Found("dir") if self.is_dir(path) else None

    def is_dir(self, path: bytes) -> bool:
        return any(p.startswith(path + b"/") for p in self.entries)

    def exists(self, path: bytes) -> bool:
        return path in self.entries or self.is_dir(path)

    def open(self, path: bytes) -> _Reader:
        if path not in self.entries:
            raise FileNotFoundError(path)
        return _Reader(self.entries[path], self.identity(path))


def crawl() -> MemorySource:
    source = MemorySource()
    photo = picture(1, (160, 120))
    source.put(b"/mem/a/photo.jpg", encode(photo, "JPEG", quality=90))
    source.put(b"/mem/a/copy", encode(photo, "JPEG", quality=90))  # byte-identical, no extension
    source.put(b"/mem/b/reencoded.jpg", encode(photo, "JPEG", quality=60))  # a near copy
    source.put(b"/mem/b/other.png", encode(picture(2, (160, 120)), "PNG"))
    source.put(b"/mem/b/page.html", b"<html>not an image</html>")
    source.put(b"/mem/c/cut.jpg", encode(photo, "JPEG")[:400])  # a truncated download
    return source


def test_a_source_in_memory_is_indexed_by_the_same_rules(index: Index) -> None:
    source = crawl()
    summary = scan(index, [b"/mem"], QUICK, source=source)
    assert summary.by_status == {"ok": 4, "not_image": 1, "truncated": 1}
    assert summary.hashed == 6
    with index.snapshot():
        near = build_report(index, ReportOptions(mode="near"))
    [group] = [g for g in near.groups() if g.duplicates]
    assert {group.kept.path, *(i.path for i, _ in group.duplicates)} == {
        b"/mem/a/photo.jpg",
        b"/mem/a/copy",
        b"/mem/b/reencoded.jpg",
    }

    # Incremental: nothing changed, nothing read; a new version is read, a gone entry removed.
    assert scan(index, [b"/mem"], QUICK, source=source).hashed == 0
    source.put(b"/mem/b/page.html", encode(picture(3), "PNG"))
    del source.entries[b"/mem/c/cut.jpg"]
    again = scan(index, [b"/mem"], QUICK, source=source)
    assert (again.hashed, again.changed, again.removed) == (1, 1, 1)
    assert again.by_status == {"ok": 5}


def test_an_unlistable_directory_of_any_source_keeps_its_rows(index: Index) -> None:
    source = crawl()
    scan(index, [b"/mem"], QUICK, source=source)
    source.unlistable.add(b"/mem/b")
    summary = scan(index, [b"/mem"], QUICK, source=source)
    assert summary.walk_errors == [(b"/mem/b", "Permission denied")]
    assert summary.removed == 0
    assert sum(summary.by_status.values()) == 6


def test_a_source_is_read_in_worker_processes_alike(index: Index) -> None:
    source = crawl()
    serial = scan(index, [b"/mem"], QUICK, source=source)
    with index.snapshot():
        expected = [
            (g.kept.path, [i.path for i, _ in g.duplicates]) for g in build_report(index, ReportOptions()).groups()
        ]
    index.db.conn.execute("DELETE FROM files")
    pooled = scan(index, [b"/mem"], replace(QUICK, jobs=2, chunk_size=2), source=source)  # the source pickles
    assert pooled.by_status == serial.by_status
    with index.snapshot():
        found = [
            (g.kept.path, [i.path for i, _ in g.duplicates]) for g in build_report(index, ReportOptions()).groups()
        ]
    assert found == expected
