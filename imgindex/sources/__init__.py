"""Sources: where the items to index come from.

A source lists its entries directory by directory, with stat-like identities
(:class:`FileStat`) that tell the planner what is new, changed or gone, and
opens one entry to read its bytes. The planner, ``scan`` and ``watch`` talk
to this interface only; :class:`.directory.DirectorySource` is a directory
tree on disk, :class:`.urls.UrlSource` a tree behind an fsspec URL (``s3://``,
``hdfs://``, ...); :func:`source_for` picks one by the path. A new input is a
new module here that implements :class:`Source`. Web archives (:mod:`.archives`) are containers inside a
tree: a listing names them, and the planner lists their records apart.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from imgindex.errors import UsageError

if TYPE_CHECKING:
    from .archives import ArchiveListing, ArchiveMark


@dataclass(frozen=True)
class FileStat:
    """The identity of an entry that the index compares to decide whether it changed."""

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
    """One directory: its entries, or why it could not be listed."""

    path: bytes
    files: list[tuple[bytes, FileStat]] = field(default_factory=list)
    subdirs: list[bytes] = field(default_factory=list)  # full paths, listed after this one
    error: str | None = None
    skipped_symlinks: int = 0
    skipped_special: int = 0
    loops: list[bytes] = field(default_factory=list)
    #: Archives in the directory (web archives whose records are entries): names and identities.
    archives: list[tuple[bytes, FileStat]] = field(default_factory=list)


@dataclass(frozen=True)
class Found:
    """What a path is now: a directory, a readable entry or an archive of entries (with its
    identity), or something else."""

    kind: Literal["dir", "file", "archive", "other"]
    stat: FileStat | None = None


class DamagedEntry(OSError):
    """An entry that is there but cannot be read as what it is (a corrupt record in an archive):
    the reader records it with :attr:`status` and this reason."""

    status = "corrupt"


class TooLargeEntry(DamagedEntry):
    """An entry too large to read (a record in an archive above its limit)."""

    status = "too_large"


class Opened(Protocol):
    """One entry opened for reading."""

    def stat(self) -> tuple[FileStat, bool]:
        """Its identity now, and whether it is a regular entry (something with bytes to read)."""
        ...

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when -1)."""
        ...


class Source(Protocol):
    """Where items come from. Paths are bytes; an entry's path is its directory's joined
    with its name by :func:`join`. Must pickle: it is sent to worker processes."""

    def root(self, path: bytes) -> bytes:
        """The canonical form of a root to scan; raises :class:`imgindex.errors.ScanError` when it is none."""
        ...

    def real_path(self, path: bytes) -> bytes:
        """The path with aliases (symbolic links) resolved, to tell one place seen twice."""
        ...

    def listings(self, top: bytes) -> Iterator[Listing]:
        """Every directory at or below ``top``, each listed once, parents before children."""
        ...

    def lookup(self, path: bytes) -> Found | None:
        """What ``path`` is now; None when it is gone. Raises OSError when it cannot be looked at."""
        ...

    def is_dir(self, path: bytes) -> bool: ...

    def exists(self, path: bytes) -> bool: ...

    def open(self, path: bytes) -> AbstractContextManager[Opened]:
        """Open an entry; raises FileNotFoundError when it is gone, OSError when it cannot be read."""
        ...

    def archive(self, path: bytes, since: ArchiveMark | None) -> ArchiveListing:
        """The records of an archive that a listing named, from where ``since`` stopped if it only
        grew since; raises OSError when it cannot be read."""
        ...


def join(directory: bytes, name: bytes) -> bytes:
    return directory + name if directory.endswith(b"/") else directory + b"/" + name


#: ``PROTOCOL://``: an fsspec URL (a local path names a directory ``PROTOCOL:`` as ``./PROTOCOL://``).
_URL = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: bytes) -> bool:
    """Is ``path`` a URL (``s3://bucket/key``, ``file:///mnt``) rather than a path on disk?"""
    return _URL.match(path) is not None


def source_for(paths: Sequence[bytes], *, follow_symlinks: bool = False, archives: bool = True) -> Source:
    """The one source that holds ``paths``: the stores of URLs (through fsspec), or the directory
    tree on disk. :class:`imgindex.errors.UsageError` for a mix, or URLs without fsspec."""
    urls = {is_url(path) for path in paths}
    if len(urls) > 1:
        raise UsageError("directories on disk and URLs are scanned in separate runs (a scan reads through one source)")
    if True not in urls:
        from .directory import DirectorySource

        return DirectorySource(follow_symlinks, archives)
    if follow_symlinks:
        raise UsageError("--follow-symlinks is for directories on disk, not URLs")
    try:
        from .urls import UrlSource
    except ImportError:
        raise UsageError("URLs need fsspec: pip install 'imgindex[remote]'") from None
    return UrlSource(archives)
