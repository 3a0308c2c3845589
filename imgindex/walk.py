"""Finding files: a recursive walk that reports what it could not read.

Paths are bytes throughout, so names that are not UTF-8 survive. A directory
that cannot be listed is reported as such (its ``error`` is set), never as
empty: the scan must not take its files for deleted.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FileStat:
    """The stat data the index compares to decide whether a file changed."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)

    def same_as(self, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> bool:
        """Unchanged? The device is kept but not compared: it is not stable on network filesystems."""
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode) == (size, mtime_ns, ctime_ns, inode)


@dataclass
class Listing:
    """One directory: its regular files, or why it could not be listed."""

    path: bytes
    files: list[tuple[bytes, FileStat]] = field(default_factory=list)
    subdirs: list[bytes] = field(default_factory=list)  # full paths, walked after this one
    error: str | None = None
    skipped_symlinks: int = 0
    skipped_special: int = 0
    loops: list[bytes] = field(default_factory=list)


def join(directory: bytes, name: bytes) -> bytes:
    return directory + name if directory.endswith(b"/") else directory + b"/" + name


def walk(top: bytes, *, follow_symlinks: bool = False) -> Iterator[Listing]:
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
