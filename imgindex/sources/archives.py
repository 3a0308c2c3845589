"""Web archives as containers: the image records inside WARC and ARC files, each an entry ``FILE#OFFSET``.

A crawler's own output (``*.warc``, ``*.warc.gz``, ``*.arc``, ``*.arc.gz``,
written by Heritrix, Nutch, ``wget --warc-file``, Common Crawl) is read in
place. Listing an archive walks its records from an offset: each response or
resource record whose payload is an image (sniffed as a file's bytes are; its
Content-Type is a hint) becomes an entry named by its offset, with the
record's target URI and date. Opening ``FILE#OFFSET`` reads that one record
again and gives its payload, with transfer and content encodings undone.

The framing is ours and strict, so that a growing or damaged archive is never
misread: a gzip member counts only when it ends, an uncompressed record only
when its Content-Length is all there. A half-written last record is left for
the next listing (which starts where this one stopped); a member or record
that is damaged in the middle becomes an entry of its own that reads as
damaged, and the listing goes on at the next record it can find. The records
themselves are parsed by maintained parsers: FastWARC for WARC (several
times faster than warcio here: ``bench/warc_bench.py``), warcio for ARC,
which FastWARC does not read.
"""

from __future__ import annotations

import hashlib
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from fastwarc.warc import ArchiveIterator as WarcIterator
from fastwarc.warc import WarcRecordType

from imgindex import hashing

from . import DamagedEntry, FileStat, Listing, TooLargeEntry

#: File names of archives (compared in lower case).
SUFFIXES = (b".warc", b".warc.gz", b".arc", b".arc.gz")
#: What joins an archive's path and a record's offset in the record's address.
MARK = b"#"
#: How many bytes before where a listing stopped are remembered, to tell an append from a rewrite.
TAIL_BYTES = 4096
#: A record (decompressed) larger than this is not read: an image record that large is recorded
#: too_large (a video is not listed). It bounds what one record costs in memory, a compression
#: bomb's too (a few hundred MB of zeros gzip to a few hundred kB).
MAX_RECORD = 64 * 1024 * 1024
#: How much of a record too large to read is kept to tell whether it is an image.
HEAD_BYTES = 64 * 1024
#: A WARC or ARC header block longer than this is not one.
MAX_HEADER = 64 * 1024
_BLOCK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b\x08"
_RECORD_TYPES = WarcRecordType.response | WarcRecordType.resource
#: A length: at most 18 digits (a longer one is no record's, and would not fit SQLite's integers).
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,18})[ \t]*\r\n", re.IGNORECASE)
_LENGTH = re.compile(rb"\d{1,18}")


def is_archive(name: bytes) -> bool:
    return name.lower().endswith(SUFFIXES)


def address(archive: bytes, name: bytes) -> bytes:
    """The path of a record in ``archive``, by its name as an entry (its offset in decimal)."""
    return archive + MARK + name


def split_address(path: bytes) -> tuple[bytes, int] | None:
    """The archive and offset of a record's address; None when ``path`` is not one."""
    archive, mark, offset = path.rpartition(MARK)
    if not mark or not offset.isdigit() or not is_archive(archive.rpartition(b"/")[2]):
        return None
    return archive, int(offset)


@dataclass(frozen=True)
class ArchiveMark:
    """Where the last listing of an archive stopped: the archive's identity then, the offset
    after its last whole record, and a digest of the bytes just before that offset."""

    stat: FileStat
    read_to: int
    tail: bytes


@dataclass
class ArchiveListing:
    """The records of one archive, from ``start`` (0: all of it) to ``mark.read_to``."""

    path: bytes
    start: int
    mark: ArchiveMark
    files: list[tuple[bytes, FileStat]] = field(default_factory=list)
    urls: dict[bytes, str] = field(default_factory=dict)
    damaged: int = 0


@dataclass(frozen=True)
class Record:
    """One record, parsed: its payload when it is a capture (response or resource), else None."""

    url: str | None
    date_ns: int
    content_type: str | None
    payload: bytes | None

    def stat(self, offset: int) -> FileStat:
        """The record's identity as an entry: payload size, date, offset (never a file's inode)."""
        return FileStat(len(self.payload or b""), self.date_ns, self.date_ns, offset, 0)


@dataclass(frozen=True)
class _Frame:
    offset: int
    end: int
    raw: bytes | None  # the record's bytes (decompressed), None when damaged or too large
    error: str | None = None
    head: bytes | None = None  # the first bytes of a record too large to read


def name_archives(listing: Listing) -> None:
    """Move the archives out of a listing's files. A file named like the address of a record of an
    archive beside it (``a.warc.gz#1234``) is skipped: it would be taken for that record."""
    names = [name for name, _ in listing.files if is_archive(name)]
    if not names:
        return
    kept = set(names)
    files = []
    for name, st in listing.files:
        if name in kept:
            listing.archives.append((name, st))
        elif (where := split_address(name)) is not None and where[0] in kept:
            listing.skipped_special += 1
        else:
            files.append((name, st))
    listing.files = files


class OpenRecord:
    """A record read from an archive, as a source opens it: its payload, and its identity as an entry."""

    def __init__(self, identity: FileStat, payload: bytes) -> None:
        self.identity = identity
        self.data = io.BytesIO(payload)

    def __enter__(self) -> OpenRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.data.close()

    def stat(self) -> tuple[FileStat, bool]:
        return self.identity, True

    def read(self, size: int = -1) -> bytes:
        return self.data.read(size)


def list_archive(f: BinaryIO, path: bytes, stat: FileStat, since: ArchiveMark | None) -> ArchiveListing:
    """The image records of an open archive; from where ``since`` stopped when the archive only grew since."""
    start = 0
    if since is not None and _grew(f, stat, since):
        start = since.read_to
    listing = ArchiveListing(path, start, ArchiveMark(stat, start, b""))
    end = start
    arc = _is_arc(path)
    for frame in _frames(f, start, stat.size, compressed=path.lower().endswith(b".gz"), arc=arc):
        end = frame.end
        name = str(frame.offset).encode()
        if frame.head is not None:  # too large to read: listed when its first bytes say image
            try:
                record = parse(frame.head, arc=arc)
            except DamagedEntry:
                continue
            if record.payload is not None and _is_image(record):
                listing.files.append((name, FileStat(frame.end - frame.offset, record.date_ns, 0, frame.offset, 0)))
                if record.url:
                    listing.urls[name] = record.url
            continue
        if frame.raw is None:
            listing.files.append((name, FileStat(frame.end - frame.offset, 0, 0, frame.offset, 0)))
            listing.damaged += 1
            continue
        try:
            record = parse(frame.raw, arc=arc)
        except DamagedEntry:
            listing.files.append((name, FileStat(frame.end - frame.offset, 0, 0, frame.offset, 0)))
            listing.damaged += 1
            continue
        if record.payload is None or not _is_image(record):
            continue
        listing.files.append((name, record.stat(frame.offset)))
        if record.url:
            listing.urls[name] = record.url
    listing.mark = ArchiveMark(stat, end, _tail(f, end))
    return listing


def read_record(f: BinaryIO, path: bytes, offset: int, size: int) -> tuple[FileStat, bytes]:
    """The identity and payload of the record at ``offset``; :class:`DamagedEntry` when it is damaged
    or not whole, FileNotFoundError when it holds no capture (any more)."""
    arc = _is_arc(path)
    frame = next(_frames(f, offset, size, compressed=path.lower().endswith(b".gz"), arc=arc, single=True), None)
    if frame is None:  # listed as cut short by the record after it (or the archive was cut since)
        raise DamagedEntry("not a whole record: cut short, or its length is wrong")
    if frame.head is not None:
        raise TooLargeEntry(frame.error or "too large")
    if frame.raw is None:
        raise DamagedEntry(frame.error or "damaged record")
    record = parse(frame.raw, arc=arc)
    if record.payload is None:
        raise FileNotFoundError(f"the record at offset {offset} holds no capture")
    return record.stat(offset), record.payload


def parse(raw: bytes, *, arc: bool) -> Record:
    """One record's bytes (decompressed) parsed; :class:`DamagedEntry` when they are not a record."""
    try:
        return _parse_arc(raw) if arc else _parse_warc(raw)
    except DamagedEntry:
        raise
    except Exception as e:  # noqa: BLE001 -- the parsers raise many kinds of error on strangers' bytes
        raise DamagedEntry(f"malformed record: {e}") from None


#: Why a gzip member holding more than one record is not read (it cannot be addressed by offset).
SEVERAL = (
    "a gzip member holding several records (an archive compressed whole, not record by record):"
    " recompress it record by record (e.g. warcio recompress) to index its records"
)


def _parse_warc(raw: bytes) -> Record:
    records = iter(WarcIterator(io.BytesIO(raw), parse_http=True, auto_decode="all"))
    record = next(records, None)
    if record is None:
        raise DamagedEntry("malformed WARC record")
    url = record.headers.get("WARC-Target-URI")
    date = _ns(record.record_date)
    content_type = None
    payload = None
    if record.record_type & _RECORD_TYPES:
        content_type = (record.http_headers if record.is_http else record.headers).get("Content-Type")
        payload = record.reader.read()
    if next(records, None) is not None:
        raise DamagedEntry(SEVERAL)
    return Record(url, date, content_type, payload)


def _parse_arc(raw: bytes) -> Record:
    # warcio (and the package metadata and fsspec it loads) only for ARC files, which are rare.
    from warcio.archiveiterator import ArchiveIterator as ArcIterator

    records = iter(ArcIterator(io.BytesIO(raw), arc2warc=True))
    record = next(records, None)
    if record is None:
        raise DamagedEntry("malformed ARC record")
    url = record.rec_headers.get_header("WARC-Target-URI")
    date = _parse_date(record.rec_headers.get_header("WARC-Date"))
    content_type = None
    payload = None
    if record.rec_type in ("response", "resource"):
        headers = record.http_headers
        content_type = headers.get_header("Content-Type") if headers is not None else None
        payload = record.content_stream().read()
    if next(records, None) is not None:
        raise DamagedEntry(SEVERAL)
    return Record(url, date, content_type, payload)


def _is_image(record: Record) -> bool:
    """An image by its bytes; or said to be one (then reading it tells what it is: truncated, corrupt...)."""
    payload = record.payload or b""
    if hashing.sniff_format(payload[: hashing.SNIFF_BYTES]) is not None:
        return True
    return bool(record.content_type and record.content_type.strip().lower().startswith("image/"))


def _is_arc(path: bytes) -> bool:
    return path.lower().endswith((b".arc", b".arc.gz"))


def _ns(date: datetime | None) -> int:
    if date is None:
        return 0
    try:
        return int(date.timestamp()) * 10**9 + date.microsecond * 1000
    except (OverflowError, OSError, ValueError):
        return 0


def _parse_date(text: str | None) -> int:
    if not text:
        return 0
    try:
        return _ns(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return 0


def _grew(f: BinaryIO, stat: FileStat, since: ArchiveMark) -> bool:
    """Is the archive the one listed before, with bytes appended (or none)?"""
    if stat.inode != since.stat.inode or stat.size < since.read_to:
        return False
    return _tail(f, since.read_to) == since.tail


def _tail(f: BinaryIO, end: int) -> bytes:
    start = max(0, end - TAIL_BYTES)
    f.seek(start)
    return hashlib.sha256(f.read(end - start)).digest()


def _frames(
    f: BinaryIO, start: int, size: int, *, compressed: bool, arc: bool, single: bool = False
) -> Iterator[_Frame]:
    """The records from ``start`` on, each whole or damaged; stops before a record not yet whole.

    A record that is not whole, or damaged with no end of its own, ends where the next whole
    record begins; with none after it, it may be one still being written: the listing stops
    there, and the next one starts there. ``single``: the record at ``start`` alone, never
    looked past."""
    window = _Window(f, start)
    pos = start if compressed else window.skip_newlines(start, size)
    while pos < size:
        frame = _gzip_frame(window, pos) if compressed else _plain_frame(window, pos, size, arc=arc)
        if single:
            if frame is not None:
                yield frame
            return
        if frame is None or (frame.raw is None and frame.end <= frame.offset):
            nxt = _resync(window, pos + 1, size, compressed=compressed, arc=arc)
            if nxt is None:
                return  # nothing whole after it yet
            error = frame.error if frame is not None else "a record cut short by the next one"
            frame = _Frame(pos, nxt, None, error)
        yield frame
        pos = frame.end
        if not compressed:
            pos = window.skip_newlines(pos, size)


class _Window:
    """Buffered reading at absolute offsets, moving forward, without reading anything twice."""

    def __init__(self, f: BinaryIO, start: int) -> None:
        self.f = f
        self.start = start  # offset of buf[0]
        self.buf = b""
        f.seek(start)

    def get(self, pos: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``pos`` (fewer at the end of the file)."""
        if pos < self.start or pos > self.start + len(self.buf):
            self.f.seek(pos)
            self.start, self.buf = pos, b""
        elif pos > self.start:
            self.buf = self.buf[pos - self.start :]
            self.start = pos
        while len(self.buf) < n:
            block = self.f.read(max(_BLOCK, n - len(self.buf)))
            if not block:
                break
            self.buf += block
        return self.buf[:n]

    def skip_newlines(self, pos: int, size: int) -> int:
        """Past the blank lines some writers leave between uncompressed records."""
        while pos < size:
            head = self.get(pos, 64)
            stripped = head.lstrip(b"\r\n")
            if stripped or not head:
                return pos + len(head) - len(stripped)
            pos += len(head)
        return pos


def _gzip_frame(window: _Window, pos: int) -> _Frame | None:
    """The gzip member at ``pos`` decompressed (a megabyte at a time, what is past
    :data:`MAX_RECORD` thrown away); None when it does not end yet."""
    d = zlib.decompressobj(31)
    parts: list[bytes] = []
    head = None
    total = 0
    at = pos
    try:
        while not d.eof:
            block = window.get(at, _BLOCK)
            if not block:
                return None
            data = block
            while data and not d.eof:
                out = d.decompress(data, 1 << 20)
                total += len(out)
                if head is None and total > MAX_RECORD:
                    head, parts = (b"".join(parts) + out)[:HEAD_BYTES], []
                elif head is None:
                    parts.append(out)
                data = d.unconsumed_tail
            at += len(block) - len(d.unused_data)
    except zlib.error as e:
        return _Frame(pos, 0, None, f"corrupt gzip member: {e}")
    if head is not None:
        return _Frame(pos, at, None, _too_large(total), head)
    return _Frame(pos, at, b"".join(parts))


def _too_large(size: int) -> str:
    return f"a record of {size:,} bytes, above {MAX_RECORD:,}"


def _plain_frame(window: _Window, pos: int, size: int, *, arc: bool) -> _Frame | None:
    """The uncompressed record at ``pos``; None when it is not all there (yet)."""
    head = window.get(pos, MAX_HEADER)
    if arc:
        line_end = head.find(b"\n")
        if line_end < 0:
            return None if len(head) < MAX_HEADER else _Frame(pos, 0, None, "an ARC header line without an end")
        fields = head[:line_end].split()
        if not fields or not _LENGTH.fullmatch(fields[-1]):
            return _Frame(pos, 0, None, "malformed ARC header line")
        end = pos + line_end + 1 + int(fields[-1])
    else:
        header_end = head.find(b"\r\n\r\n")
        if header_end < 0:
            return None if len(head) < MAX_HEADER else _Frame(pos, 0, None, "a WARC header without an end")
        if not head.startswith(b"WARC/"):
            return _Frame(pos, 0, None, "not a WARC record")
        length = _CONTENT_LENGTH.search(head, 0, header_end + 2)
        if length is None:
            return _Frame(pos, 0, None, "a WARC record without a Content-Length")
        end = pos + header_end + 4 + int(length.group(1)) + 4
    if end > size:
        return None  # not all there: still being written, or its length is wrong (the next record tells)
    if end - pos > MAX_RECORD:
        return _Frame(pos, end, None, _too_large(end - pos), window.get(pos, min(end - pos, HEAD_BYTES)))
    raw = window.get(pos, end - pos)
    if len(raw) < end - pos:
        return None
    return _Frame(pos, end, raw)


def _resync(window: _Window, pos: int, size: int, *, compressed: bool, arc: bool) -> int | None:
    """The offset of the next whole record after ``pos``, found by its first bytes."""
    marker = _GZIP_MAGIC if compressed else (b"\n" if arc else b"WARC/")
    while pos < size:
        chunk = window.get(pos, _BLOCK)
        if not chunk:
            return None
        i = chunk.find(marker)
        if i < 0:
            pos += max(1, len(chunk) - len(marker) + 1)
            continue
        candidate = pos + i + (1 if arc and not compressed else 0)
        frame = _gzip_frame(window, candidate) if compressed else _plain_frame(window, candidate, size, arc=arc)
        if frame is not None and frame.raw is not None and _looks_like_record(frame.raw, arc=arc):
            return candidate
        pos = pos + i + 1
    return None


def _looks_like_record(raw: bytes, *, arc: bool) -> bool:
    if not arc:
        return raw.startswith(b"WARC/")
    fields = raw[: raw.find(b"\n")].split()
    return len(fields) >= 3 and _LENGTH.fullmatch(fields[-1]) is not None
