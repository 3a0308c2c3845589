"""Trees behind fsspec URLs as a source: ``s3://bucket/crawl``, ``hdfs://namenode/crawl``,
``file:///mnt/crawl``, any protocol fsspec knows.

Paths are the URLs themselves (bytes): a root is stored in the index as its
URL, an entry's path is its directory's URL joined with its name, so the
planner, the catalog and reports take them as they take paths on disk. The
listing goes directory by directory (``ls`` with details, the store's
listing cache dropped first); "directories" of an object store are the
prefixes it lists. A directory that cannot be listed is reported as such,
never as empty. An entry's identity is what the store gives: its size, its
modification time (``mtime``, ``LastModified``, ...) and a number made of its
content tag (``ETag``, ``md5Hash``, ...) in place of the inode; there is no
device. The identity is taken before the bytes are read, so an object
replaced while being read is read again by the next scan. Web archives are
named in listings and their records opened by address as on disk.

Credentials and endpoints are the store's own configuration (for S3: the
AWS environment variables and files; for any protocol: fsspec's config files
and ``FSSPEC_<PROTOCOL>_<OPTION>`` variables), here and on each Dask worker,
which opens the entries itself: the source sent there holds URLs and options,
never an open connection. Needs fsspec (``imgindex[remote]``) and the
store's fsspec package (s3fs, gcsfs, pyarrow for HDFS, ...).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, cast

import fsspec
from fsspec.core import url_to_fs

from imgindex.display import display_path
from imgindex.errors import ScanError, UsageError

from . import FileStat, Found, Listing, join
from . import archives as web_archives

#: An object up to this size is fetched in one request; a larger one is read as a stream.
WHOLE_BYTES = 64 * 1024 * 1024
#: Keys of the modification time in what stores list, first found first used.
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "modified")
#: Keys of a content tag (changes with the bytes), first found first used.
_TAG_KEYS = ("ETag", "etag", "md5Hash", "content_md5", "crc32c", "VersionId", "version_id", "checksum")


@dataclass(frozen=True)
class UrlSource:
    """Entries under fsspec URLs. ``storage_options`` go to the file system (beside what the
    store's configuration gives); symbolic links (``file://``) are never followed."""

    archives: bool = True
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False)

    def root(self, path: bytes) -> bytes:
        url = os.fsdecode(path)
        fs, where = self._fs(url)
        protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
        if "file" in protocols:
            url = "file://" + where  # absolute, normalised
        url = url.rstrip("/") if not url.endswith("://") else url
        try:
            info = fs.info(where)
        except FileNotFoundError:
            raise ScanError(f"cannot scan {url}: not found") from None
        except Exception as e:  # noqa: BLE001 -- a store's client raises its own errors
            raise ScanError(f"cannot scan {url}: {_reason(e)}") from None
        if info.get("type") != "directory":
            raise ScanError(f"cannot scan {url}: not a directory")
        return os.fsencode(url)

    def real_path(self, path: bytes) -> bytes:
        return path  # no aliases known

    def listings(self, top: bytes) -> Iterator[Listing]:
        fs, _ = self._fs(os.fsdecode(top))
        stack = [top]
        while stack:
            directory = stack.pop()
            listing = Listing(directory)
            where = fs._strip_protocol(os.fsdecode(directory))
            try:
                fs.invalidate_cache(where)
                entries = fs.ls(where, detail=True)
            except Exception as e:  # noqa: BLE001 -- a store's client raises its own errors
                listing.error = _reason(e)
                yield listing
                continue
            for info in entries:
                _classify(listing, info, where)
            if self.archives:
                web_archives.name_archives(listing)
            listing.subdirs.sort()
            yield listing
            stack.extend(reversed(listing.subdirs))

    def lookup(self, path: bytes) -> Found | None:
        fs, where = self._fs(os.fsdecode(path))
        try:
            fs.invalidate_cache(where)
            info = fs.info(where)
        except FileNotFoundError:
            return None
        except Exception as e:  # noqa: BLE001 -- a store's client raises its own errors
            raise OSError(_reason(e)) from None
        kind = info.get("type")
        if kind == "directory":
            return Found("dir")
        if kind == "file" and not info.get("islink"):
            archive = self.archives and web_archives.is_archive(path.rpartition(b"/")[2])
            return Found("archive" if archive else "file", identity(info))
        return Found("other")

    def is_dir(self, path: bytes) -> bool:
        found = self.lookup(path)
        return found is not None and found.kind == "dir"

    def exists(self, path: bytes) -> bool:
        return self.lookup(path) is not None

    def open(self, path: bytes) -> _OpenObject | web_archives.OpenRecord:
        """An object; or the record that ``path`` addresses (``ARCHIVE#OFFSET``) when there is
        such an archive."""
        where = web_archives.split_address(path) if self.archives else None
        if where is not None:
            archive, offset = where
            found = self.lookup(archive)
            if found is not None and found.kind in ("file", "archive") and found.stat is not None:
                with self._stream(archive) as f:
                    record, payload = web_archives.read_record(f, archive, offset, found.stat.size)
                return web_archives.OpenRecord(record, payload)
        found = self.lookup(path)
        if found is None:
            raise FileNotFoundError(f"{display_path(path)} is gone")
        fs, at = self._fs(os.fsdecode(path))
        return _OpenObject(fs, at, found.stat)

    def archive(self, path: bytes, since: web_archives.ArchiveMark | None) -> web_archives.ArchiveListing:
        found = self.lookup(path)
        if found is None:
            raise FileNotFoundError(f"{display_path(path)} is gone")
        if found.stat is None:
            raise OSError(f"{display_path(path)} is not a file")
        with self._stream(path) as f:
            return web_archives.list_archive(f, path, found.stat, since)

    def _fs(self, url: str) -> tuple[fsspec.AbstractFileSystem, str]:
        try:
            fs, where = url_to_fs(url, **self.storage_options)
        except (ImportError, ValueError) as e:  # no package for the protocol, or no such protocol
            raise UsageError(f"cannot read {url}: {e}") from None
        return fs, cast(str, where)

    def _stream(self, path: bytes) -> BinaryIO:
        fs, where = self._fs(os.fsdecode(path))
        try:
            return cast(BinaryIO, fs.open(where, "rb"))
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001 -- a store's client raises its own errors
            raise OSError(_reason(e)) from None


def _classify(listing: Listing, info: dict[str, Any], where: str) -> None:
    name = str(info["name"]).rstrip("/").rpartition("/")[2]
    if not name or str(info["name"]).rstrip("/") == where.rstrip("/"):
        return  # the directory itself (some stores list it)
    path = join(listing.path, os.fsencode(name))
    kind = info.get("type")
    if info.get("islink"):
        listing.skipped_symlinks += 1
    elif kind == "directory":
        listing.subdirs.append(path)
    elif kind == "file":
        listing.files.append((os.fsencode(name), identity(info)))
    else:
        listing.skipped_special += 1


def identity(info: dict[str, Any]) -> FileStat:
    """An entry's identity from what its store lists: size, modification time, and for the
    inode the file's own (``file://``) or a number made of its content tag."""
    mtime = next((_ns(info[k]) for k in _MTIME_KEYS if info.get(k) is not None), 0)
    created = _ns(info["created"]) if info.get("created") is not None else mtime
    inode = info.get("ino")
    if not isinstance(inode, int):
        tag = next((str(info[k]) for k in _TAG_KEYS if info.get(k)), "")
        inode = int.from_bytes(hashlib.sha256(tag.encode()).digest()[:8], "big", signed=True) if tag else 0
    return FileStat(int(info.get("size") or 0), mtime, created, inode, 0)


def _ns(value: object) -> int:
    """Nanoseconds since the epoch of a time as stores give it: seconds, a datetime, ISO text."""
    if isinstance(value, datetime):
        return int(value.timestamp()) * 10**9 + value.microsecond * 1000
    if isinstance(value, int | float):
        return int(value) if value > 10**14 else round(value * 10**9)  # nanoseconds already, or seconds
    try:
        return _ns(datetime.fromisoformat(str(value)))
    except ValueError:
        return 0


def _reason(e: BaseException) -> str:
    return (e.strerror if isinstance(e, OSError) else None) or str(e) or type(e).__name__


class _OpenObject:
    """An object opened for reading: its identity from when it was opened, its bytes fetched on
    the first read (in one request up to :data:`WHOLE_BYTES`)."""

    def __init__(self, fs: fsspec.AbstractFileSystem, where: str, identity: FileStat | None) -> None:
        self.fs = fs
        self.where = where
        self.identity = identity
        self.data: BinaryIO | None = None

    def __enter__(self) -> _OpenObject:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.data is not None:
            self.data.close()

    def stat(self) -> tuple[FileStat, bool]:
        if self.identity is None:  # a directory, or something else that is no object
            return FileStat(0, 0, 0, 0, 0), False
        return self.identity, True

    def read(self, size: int = -1) -> bytes:
        try:
            if self.data is None:
                whole = self.identity is not None and self.identity.size <= WHOLE_BYTES
                self.data = io.BytesIO(self.fs.cat_file(self.where)) if whole else self.fs.open(self.where, "rb")
            return self.data.read(size)
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001 -- a store's client raises its own errors
            raise OSError(_reason(e)) from None
