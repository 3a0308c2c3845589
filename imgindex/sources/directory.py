"""A directory tree on disk as a source: a recursive walk that reports what it could not read.

Paths are bytes throughout, so names that are not UTF-8 survive. A directory
that cannot be listed is reported as such (its ``error`` is set), never as
empty: the scan must not take its files for deleted. Symlinks are not
followed unless asked; sockets, FIFOs and devices are skipped (opening a FIFO
would block). Web archives (``*.warc.gz`` and the like) are named apart in
each listing, and their records are entries addressed ``FILE#OFFSET``
(:mod:`.archives`), unless ``archives`` is off.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from imgindex.display import display_path
from imgindex.errors import ScanError

from . import FileStat, Found, Listing
from . import archives as web_archives


@dataclass(frozen=True)
class DirectorySource:
    """Files under directories on a local or mounted filesystem."""

    follow_symlinks: bool = False
    archives: bool = True

    def root(self, path: bytes) -> bytes:
        path = os.path.normpath(os.path.abspath(path))
        if path.startswith(b"//"):  # POSIX keeps a leading "//"; it names the same directory here
            path = b"/" + path.lstrip(b"/")
        try:
            st = os.stat(path)
        except OSError as e:
            raise ScanError(f"cannot scan {display_path(path)}: {e.strerror or e}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise ScanError(f"cannot scan {display_path(path)}: not a directory")
        return path

    def real_path(self, path: bytes) -> bytes:
        return os.path.realpath(path)

    def listings(self, top: bytes) -> Iterator[Listing]:
        return walk(top, follow_symlinks=self.follow_symlinks, archives=self.archives)

    def lookup(self, path: bytes) -> Found | None:
        try:
            st = os.stat(path) if self.follow_symlinks else os.lstat(path)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            return Found("dir")
        if stat.S_ISREG(st.st_mode):
            archive = self.archives and web_archives.is_archive(os.path.basename(path))
            return Found("archive" if archive else "file", FileStat.of(st))
        return Found("other")

    def is_dir(self, path: bytes) -> bool:
        return os.path.isdir(path)

    def exists(self, path: bytes) -> bool:
        return os.path.lexists(path)

    def open(self, path: bytes) -> _OpenFile | web_archives.OpenRecord:
        """A file; or the record that ``path`` addresses (``ARCHIVE#OFFSET``) when there is such
        an archive (a file named so beside it is never listed, so never meant)."""
        where = web_archives.split_address(path) if self.archives else None
        if where is not None:
            archive, offset = where
            try:
                f = self._open_file(archive)
            except (FileNotFoundError, NotADirectoryError):
                f = None  # no such archive: a file of that name
            if f is not None:
                with f:
                    st, regular = f.stat()
                    if regular:
                        identity, payload = web_archives.read_record(f.f, archive, offset, st.size)
                        return web_archives.OpenRecord(identity, payload)
        return self._open_file(path)

    def archive(self, path: bytes, since: web_archives.ArchiveMark | None) -> web_archives.ArchiveListing:
        with self._open_file(path) as f:
            st, regular = f.stat()
            if not regular:
                raise OSError(f"{display_path(path)} is not a file")
            return web_archives.list_archive(f.f, path, st, since)

    def _open_file(self, path: bytes) -> _OpenFile:
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        if not self.follow_symlinks:
            flags |= getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags)
        return _OpenFile(fd, os.fdopen(fd, "rb", buffering=0))


class _OpenFile:
    """A file opened without following a final symlink and without blocking on a FIFO."""

    def __init__(self, fd: int, f: BinaryIO) -> None:
        self.fd = fd
        self.f = f

    def __enter__(self) -> _OpenFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()

    def stat(self) -> tuple[FileStat, bool]:
        st = os.fstat(self.fd)
        return FileStat.of(st), stat.S_ISREG(st.st_mode)

    def read(self, size: int = -1) -> bytes:
        if size >= 0:
            return self.f.read(size)
        chunks = []
        while block := self.f.read(1 << 20):
            chunks.append(block)
        return b"".join(chunks)


def walk(top: bytes, *, follow_symlinks: bool = False, archives: bool = False) -> Iterator[Listing]:
    """Every directory at or below ``top``, depth first, each listed once.

    Symlinks are skipped unless ``follow_symlinks``; then directories already
    entered (by device and inode) are not entered again, which breaks loops.
    Sockets, FIFOs and devices are skipped: opening a FIFO would block.
    """
    visited: set[tuple[int, int]] = set()
    if follow_symlinks:
        try:
            st = os.stat(top)
            visited.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    stack = [top]
    while stack:
        directory = stack.pop()
        listing = Listing(directory)
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    _classify(entry, listing, visited, follow_symlinks)
            if archives:
                web_archives.name_archives(listing)
        except OSError as e:
            listing.files.clear()
            listing.subdirs.clear()
            listing.error = e.strerror or str(e)
            yield listing
            continue
        listing.subdirs.sort()
        yield listing
        stack.extend(reversed(listing.subdirs))


def _classify(
    entry: os.DirEntry[bytes],
    listing: Listing,
    visited: set[tuple[int, int]],
    follow_symlinks: bool,
) -> None:
    subdirs = listing.subdirs
    try:
        if not follow_symlinks and entry.is_dir(follow_symlinks=False):
            subdirs.append(entry.path)  # the type from the listing: no stat needed
            return
        if entry.is_symlink():
            if not follow_symlinks:
                listing.skipped_symlinks += 1
                return
            try:
                st = os.stat(entry.path)
            except OSError:  # a dangling link
                listing.skipped_symlinks += 1
                return
        else:
            st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:  # gone since the listing
        return
    if stat.S_ISDIR(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if follow_symlinks:
            if key in visited:
                listing.loops.append(entry.path)
                return
            visited.add(key)
        subdirs.append(entry.path)
    elif stat.S_ISREG(st.st_mode):
        listing.files.append((entry.name, FileStat.of(st)))
    else:
        listing.skipped_special += 1
