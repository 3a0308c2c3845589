"""The planner: compares what a source lists with the catalog and decides what to read and what to forget.

Unchanged rows are left alone; rows of entries gone from a directory that
*was* listed leave the index, and a directory that could not be listed keeps
its rows; new and changed entries (and racily-clean ones, whose stat cannot
be trusted yet) become :class:`Task` s for the workers.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from . import hashing, provenance
from .reading import CRASHED, KILLED, TOO_SLOW, Mode
from .scan_types import ProgressCallback, ScanOptions, ScanProgress, ScanSummary
from .sources import FileStat, Source, join
from .sources.archives import ArchiveListing, ArchiveMark, address
from .storage import Catalog, Root, StoredArchive, StoredFile


@dataclass(frozen=True)
class Task:
    """An entry to read, and where its row goes."""

    dir_id: int
    name: bytes
    path: bytes
    stat: FileStat
    mode: Mode
    url: str | None = None


class Planner:
    """Compares what a source lists with the catalog and decides what to read and what to forget.

    Unchanged rows are left alone; removals are written at once; files to read
    are collected in ``tasks``.
    """

    def __init__(
        self,
        catalog: Catalog,
        source: Source,
        options: ScanOptions,
        summary: ScanSummary,
        progress: ProgressCallback | None,
        *,
        written: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        self.catalog = catalog
        self.source = source
        self.stop = stop
        self.options = options
        self.summary = summary
        self.progress = progress
        self.params_id = catalog.params_id(options.settings.key())
        self.report = ScanProgress("walk")
        #: Directory ids by path, read once per walk (another process may remove directories: see
        #: :meth:`forget_dir_ids`).
        self.dir_ids: dict[bytes, int] = {}
        self.tasks: list[Task] = []
        #: Archives listed, to record once the rows of their records are written (:meth:`take_archives`).
        self.archives: list[tuple[int, StoredArchive, int]] = []
        #: URL side-files new or changed, to read once the files' rows are written.
        self.side_files: list[bytes] = []
        self.written = written
        self.settle_before_ns = 0 if written or not options.settle_ns else time.time_ns() - options.settle_ns

    def tasks_of(self, tops: Iterable[tuple[bytes, Root]]) -> Iterator[Task]:
        """The files to read under each top, handed out after each directory listed."""
        for top, root in tops:
            for _ in self.walk(top, root):
                yield from self.take()
        yield from self.take()

    def take(self) -> list[Task]:
        tasks, self.tasks = self.tasks, []
        return tasks

    def take_side_files(self) -> list[bytes]:
        """The URL side-files new or changed so far: to read once every task handed out is written."""
        side_files, self.side_files = self.side_files, []
        return side_files

    def take_archives(self) -> list[tuple[int, StoredArchive, int]]:
        """The archives listed so far, with where their listings stopped: to record once every
        task handed out has been written."""
        archives, self.archives = self.archives, []
        return archives

    def dir_id(self, path: bytes, root_id: int) -> int:
        """The id of a directory's row, creating the row if needed."""
        known = self.dir_ids.get(path)
        if known is None:
            known = self.dir_ids[path] = self.catalog.dir_id(path, root_id)
        return known

    def forget_dir_ids(self) -> None:
        """Another process removed directories: read their ids again."""
        self.dir_ids.clear()

    def walk(self, top: bytes, root: Root) -> Iterator[None]:
        """Every file at or below ``top``, yielding after each directory; when the walk is
        complete, rows of files gone from a listed directory are removed."""
        listed: dict[bytes, int] = {}
        failed: dict[bytes, int] = {}
        errors: list[tuple[int, str]] = []
        gone: list[int] = []
        summary = self.summary
        self.dir_ids.update((p, i) for i, p in self.catalog.dirs_under(top))
        archive_ids = self.catalog.archives_under(top)
        for listing in self.source.listings(top):
            if self.stop is not None and self.stop.is_set():
                raise KeyboardInterrupt
            dir_id = self.dir_id(listing.path, root.id)
            if dir_id in archive_ids:  # an archive then, a directory now: its records are gone
                summary.removed += self.catalog.forget_archive(dir_id)
            summary.skipped_symlinks += listing.skipped_symlinks
            summary.skipped_special += listing.skipped_special
            summary.loops.extend(listing.loops)
            self.report.dirs += 1
            if listing.error is not None:
                failed[listing.path] = dir_id
                errors.append((dir_id, listing.error))
                summary.walk_errors.append((listing.path, listing.error))
                continue
            listed[listing.path] = dir_id
            new_dirs = [p for p in listing.subdirs if p not in self.dir_ids]
            self.dir_ids.update(self.catalog.add_dirs(new_dirs, root.id))  # one transaction for all the new ones
            stored = self.catalog.files_in_dir(dir_id)
            for name, st in listing.files:
                self.file(dir_id, listing.path, name, st, stored.pop(name, None), looked_up=True)
            gone.extend(f.id for f in stored.values())
            for name, st in listing.archives:
                if self.stop is not None and self.stop.is_set():
                    raise KeyboardInterrupt
                path = join(listing.path, name)
                archive_id, error = self.archive(path, st, root, gone)
                if error is None:
                    listed[path] = archive_id
                else:
                    failed[path] = archive_id
                    errors.append((archive_id, error))
                    summary.walk_errors.append((path, error))
                yield  # its records can be read while the next archive is listed
            self.report.files = summary.files
            self.report.last_path = listing.path
            if self.progress:
                self.progress(self.report)
            yield
        self.catalog.record_listings(list(listed.values()), errors)
        summary.removed += self.catalog.remove_files(gone)
        summary.removed += self._remove_dirs(self._vanished_dirs(top, listed, failed))

    def archive(self, path: bytes, st: FileStat, root: Root, gone: list[int]) -> tuple[int, str | None]:
        """List a web archive's records unless it is unchanged since its last listing; from
        where that stopped when it only grew. Its rows of records no longer there join ``gone``.
        Returns its directory id, and why it could not be read (its rows then stay)."""
        dir_id, stored = self.catalog.archive_dir(path, root.id)
        rows = self.catalog.files_in_dir(dir_id)
        since = None
        if stored is not None:
            if st.same_as(stored.size, stored.mtime_ns, stored.ctime_ns, stored.inode):
                # Unchanged: not opened; its records are read again only when a file would be
                # (--rehash, other hash settings, a raised --max-pixels, a decoder installed).
                for name, prev in rows.items():
                    record = FileStat(prev.size, prev.mtime_ns, prev.ctime_ns, prev.inode, 0)
                    self.file(dir_id, path, name, record, prev, looked_up=True, record=True, path=address(path, name))
                return dir_id, None
            since = ArchiveMark(
                FileStat(stored.size, stored.mtime_ns, stored.ctime_ns, stored.inode, 0), stored.read_to, stored.tail
            )
        try:
            listing = self.source.archive(path, since)
        except (OSError, ValueError, OverflowError) as e:  # the parsers' errors come as DamagedEntry
            return dir_id, (e.strerror if isinstance(e, OSError) else None) or str(e)
        for name, record in listing.files:
            # A record is whole once listed: never held back to settle, whatever its date.
            self.file(
                dir_id, path, name, record, rows.pop(name, None), looked_up=True, record=True,
                path=address(path, name), url=listing.urls.get(name),
            )  # fmt: skip
        # What it did not list from where it started is gone (all of it when it listed it whole).
        gone.extend(f.id for name, f in rows.items() if not name.isdigit() or int(name) >= listing.start)
        self.archives.append((dir_id, _stored(listing), listing.damaged))
        return dir_id, None

    def refresh_archive(self, path: bytes, st: FileStat, root: Root) -> None:
        """One archive met apart from a walk (a file-system event said it changed)."""
        gone: list[int] = []
        dir_id, error = self.archive(path, st, root, gone)
        if error is None:
            self.catalog.record_listings([dir_id], [])
        else:
            self.catalog.record_listings([], [(dir_id, error)])
            self.summary.walk_errors.append((path, error))
        self.summary.removed += self.catalog.remove_files(gone)

    def file(
        self,
        dir_id: int,
        directory: bytes,
        name: bytes,
        st: FileStat,
        prev: StoredFile | None,
        *,
        looked_up: bool = False,
        record: bool = False,
        path: bytes | None = None,
        url: str | None = None,
    ) -> None:
        """Decide whether one file must be read (``prev``: its row, if ``looked_up`` already;
        ``path`` when it is not the directory's joined with the name). A ``record`` of an
        archive is whole once listed, and unchanged when its identity is: it is never held
        back to settle, nor read again because its archive was just written."""
        summary = self.summary
        if not looked_up:
            prev = self.catalog.file_row(dir_id, name)
        if (
            not record
            and self.settle_before_ns
            # Written lately; an mtime in the future was set afterwards (wget -N), not by writing.
            and self.settle_before_ns < st.mtime_ns <= self.settle_before_ns + self.options.settle_ns + 10**9
            and (prev is None or not st.same_as(prev.size, prev.mtime_ns, prev.ctime_ns, prev.inode))
        ):
            summary.deferred.append(join(directory, name))  # may still be being written
            return
        summary.files += 1
        mode: Mode | None
        if prev is None:
            summary.new += 1
            mode = "full"
        elif not st.same_as(prev.size, prev.mtime_ns, prev.ctime_ns, prev.inode):
            summary.changed += 1
            mode = "full"
        else:
            summary.unchanged += 1
            mode = "full" if self.written and not record else _needs_reading(prev, self.options, self.params_id)
            # A record's identity is its place and content, not a clock's reading: never racy.
            if mode is None and not record and _racy(st, prev.read_ns, self.options.racy_window_ns):
                summary.rechecked += 1
                mode = "full"
        if mode is not None:
            self.tasks.append(Task(dir_id, name, path or join(directory, name), st, mode, url))
            self.report.to_hash += 1
            if not record and provenance.is_side_file(name):
                self.side_files.append(join(directory, name))
        elif (
            not record
            and prev is not None
            and provenance.is_side_file(name)
            and self.catalog.side_file_pending(prev.id, prev.read_ns)  # a scan stopped before reading it
        ):
            self.side_files.append(join(directory, name))

    def forget(self, path: bytes) -> None:
        """A path that is gone: drop its row, or its directory's rows, if its parent can be seen."""
        directory, name = os.path.split(path)
        if not self.source.is_dir(directory):
            return  # the parent is gone too (its own event handles it) or cannot be seen: keep
        dir_id = self.catalog.known_dir_id(directory)
        if dir_id is not None:
            self.summary.removed += self.catalog.remove_named([(dir_id, name)])
        self.summary.removed += self._remove_dirs([d for d, _ in self.catalog.dirs_under(path)])

    def _remove_dirs(self, dir_ids: Sequence[int]) -> int:
        removed = self.catalog.remove_dirs(dir_ids)
        dropped = set(dir_ids)
        self.dir_ids = {p: i for p, i in self.dir_ids.items() if i not in dropped}
        return removed

    def _vanished_dirs(self, top: bytes, listed: dict[bytes, int], failed: dict[bytes, int]) -> list[int]:
        """Known directories under ``top`` that a successful listing shows are gone.

        A directory not met by this walk is gone when its nearest met ancestor was
        listed; when that ancestor could not be listed, nothing is known and its
        rows stay.
        """
        vanished = []
        for dir_id, path in self.catalog.dirs_under(top):
            if path in listed or path in failed:
                continue
            parent = path
            while len(parent) > len(top):
                parent = os.path.dirname(parent)
                if parent in listed:
                    # Made after its parent was listed (and indexed by another process)?
                    if not self.source.exists(path):
                        vanished.append(dir_id)
                    break
                if parent in failed:
                    break
        return vanished


def _stored(listing: ArchiveListing) -> StoredArchive:
    st = listing.mark.stat
    return StoredArchive(st.size, st.mtime_ns, st.ctime_ns, st.inode, listing.mark.read_to, listing.mark.tail)


def _racy(st: FileStat, read_ns: int, window_ns: int) -> bool:
    """Could the file have changed after it was read without its stat data changing?

    Yes when it changed within ``window_ns`` of the reading. An mtime later
    than that (set by ``wget -N`` or ``curl -R`` from a clock ahead of ours)
    says nothing about when the file was written: its ctime does.
    """
    if st.ctime_ns + window_ns >= read_ns:
        return True
    return read_ns - window_ns <= st.mtime_ns <= read_ns + window_ns


def _needs_reading(prev: StoredFile, options: ScanOptions, params_id: int) -> Mode | None:
    """Why an unchanged file must be read again, or None."""
    if options.rehash:
        return "full"
    if prev.status == "ok" and prev.params_id != params_id:
        return "phash"
    if prev.status == "too_large" and prev.width and prev.height:
        return "full" if prev.width * prev.height <= options.settings.max_pixels else None  # --max-pixels raised
    if prev.status == "unsupported" and hashing.readable_formats().get(prev.format or ""):
        return "full"  # a decoder was installed since
    if prev.status == "corrupt" and prev.error in (CRASHED, KILLED, TOO_SLOW):
        return "full"  # its decoder crashed: it may be mended since (and a worker blamed wrongly)
    return None
