"""The incremental scan: list a source, compare with the index, read what changed.

1. The planner (:mod:`imgindex.planner`) lists each root through the source
   and compares every entry's identity with its row: unchanged rows are left
   alone, gone ones removed, new and changed entries become tasks.
2. The workers (:mod:`imgindex.workers`) read the tasks (:mod:`imgindex.reading`)
   while the listing goes on; results are written in short batched
   transactions as they arrive, so an interruption loses at most the batch in
   flight and the next scan carries on with what is left.
3. The stored near pairs are brought up to date (:mod:`imgindex.pairs`), and
   the image table kept as columns (:mod:`imgindex.storage.table`).
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

from . import pairs, provenance
from . import workers as pool
from .display import display_path
from .errors import ScanError
from .hashing import HashSettings
from .planner import Planner, Task
from .reading import CRASHED, KILLED, TOO_SLOW, Reading, crashed, read_items
from .scan_types import (
    RACY_WINDOW_NS,
    ProgressCallback,
    ScanInterrupted,
    ScanOptions,
    ScanProgress,
    ScanSummary,
)
from .sources import Source, source_for
from .sources.directory import DirectorySource
from .statuses import FAILED_STATUSES
from .storage import FileRecord, Index
from .workers import Workers

__all__ = [
    "RACY_WINDOW_NS",
    "ScanError",
    "ScanInterrupted",
    "ScanOptions",
    "ScanProgress",
    "ScanSummary",
    "normalise_root",
    "refresh",
    "scan",
]

#: A URL side-file larger than this is not read (a million entries take about 150 MB).
MAX_SIDE_FILE = 2 * 1024**3

#: The reason recorded for an item the workers blame, by why they blame it.
BLAME = {pool.CRASH: CRASHED, pool.KILLED: KILLED, pool.TOO_SLOW: TOO_SLOW}

#: What scan() and refresh() accept as ``executor``: any executor, or :class:`Workers` to reuse.
Executor = cf.Executor | Workers


def scan(
    index: Index,
    roots: Sequence[str | bytes | os.PathLike[str]],
    options: ScanOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    executor: Executor | None = None,
    stop: threading.Event | None = None,
    source: Source | None = None,
) -> ScanSummary:
    """Bring the index up to date with ``roots`` of ``source`` (a directory tree by default).

    Setting ``stop`` (or Ctrl-C) ends the scan early, as :class:`ScanInterrupted`,
    after committing what was read.
    """
    options = options or ScanOptions()
    source = source or source_for(
        [os.fsencode(r) for r in roots], follow_symlinks=options.follow_symlinks, archives=options.archives
    )
    catalog = index.catalog
    tops = _outermost(source.root(os.fsencode(r)) for r in roots)
    _refuse_aliases(index, source, tops)
    start = time.monotonic()
    summary = ScanSummary(catalog.start_scan(tops), tops)
    planner = Planner(catalog, source, options, summary, progress, stop=stop)
    for top in tops:
        catalog.ensure_root(top)
    root_objs = [catalog.ensure_root(top) for top in tops]  # after all are registered: the root holding each
    state = "failed"
    try:
        # Reading starts while the listing goes on: tasks are handed over directory by directory.
        _read_all(index, source, planner, planner.tasks_of(zip(tops, root_objs, strict=True)), executor, stop)
        # Every record listed has its row now: an unchanged archive need not be read again.
        catalog.record_archives(planner.take_archives())
        _read_side_files(index, source, planner)
        if options.update_pairs and not (stop and stop.is_set()):
            summary.near_pairs = pairs.update(index, stop=stop.is_set if stop else None)
            index.images.keep_table(stop=stop.is_set if stop else None)
        state = "done"
    except KeyboardInterrupt:
        state = "interrupted"
        summary.interrupted = True
    finally:
        summary.seconds = time.monotonic() - start
        summary.by_status = catalog.status_counts([r.id for r in root_objs])
        counts = {
            "files": summary.files,
            "new": summary.new,
            "changed": summary.changed,
            "unchanged": summary.unchanged,
            "removed": summary.removed,
            "hashed": summary.hashed,
            "failed": summary.failed,
            "walk_errors": len(summary.walk_errors),
        }
        catalog.finish_scan(summary.scan_id, state, counts, summary.seconds, [r.id for r in root_objs])
    if summary.interrupted:
        raise ScanInterrupted(summary)
    return summary


def refresh(
    index: Index,
    paths: Iterable[bytes],
    options: ScanOptions | None = None,
    *,
    written: bool = False,
    executor: Executor | None = None,
    source: Source | None = None,
) -> ScanSummary:
    """Bring the index up to date with some paths under known roots (entries or directories,
    present or gone), by the same rules as :func:`scan`. Paths outside every root are ignored.

    ``written`` says the files were just written and closed: they are read
    even if their stat data looks unchanged (a coarse clock can hide a
    rewrite), and ``options.settle_ns`` does not hold them back.
    """
    options = options or ScanOptions()
    source = source or DirectorySource(options.follow_symlinks, options.archives)
    catalog = index.catalog
    start = time.monotonic()
    planner = Planner(catalog, source, options, ScanSummary(0, []), None, written=written)
    for path in dict.fromkeys(paths):  # each once, in order
        root = catalog.root_of(path)
        if root is None:
            continue
        try:
            found = source.lookup(path)
        except OSError as e:
            planner.summary.walk_errors.append((path, e.strerror or str(e)))
            continue
        if found is None:
            planner.forget(path)
        elif found.kind == "dir":
            for _ in planner.walk(path, root):
                pass
        elif found.kind == "file" and found.stat is not None:
            directory, name = os.path.split(path)
            planner.file(planner.dir_id(directory, root.id), directory, name, found.stat, None)
        elif found.kind == "archive" and found.stat is not None:
            planner.refresh_archive(path, found.stat, root)
    _read_all(index, source, planner, planner.take(), executor)
    catalog.record_archives(planner.take_archives())
    _read_side_files(index, source, planner)
    planner.summary.seconds = time.monotonic() - start
    return planner.summary


def normalise_root(root: str | bytes | os.PathLike[str]) -> bytes:
    """A directory to scan, absolute and normalised; :class:`ScanError` when it is none."""
    return DirectorySource().root(os.fsencode(root))


def _outermost(tops: Iterable[bytes]) -> list[bytes]:
    """Each directory once, leaving out those inside another one given."""
    unique = sorted(set(tops))
    return [t for t in unique if not any(_inside(t, other) for other in unique if other != t)]


def _inside(path: bytes, top: bytes) -> bool:
    return path == top or path.startswith(top.rstrip(b"/") + b"/")


def _refuse_aliases(index: Index, source: Source, tops: list[bytes]) -> None:
    """A new root that is a known one seen through a symlink would list every file twice."""
    known = index.catalog.roots()
    for top in tops:
        if index.catalog.root_of(top) is not None:
            continue
        real = source.real_path(top)
        for root in known:
            if _inside(root.path, top):
                continue  # a new root holding a known one takes it over
            other = source.real_path(root.path)
            if _inside(real, other) or _inside(other, real):
                raise ScanError(
                    f"cannot scan {display_path(top)}: it is {display_path(root.path)} (or overlaps it) through a"
                    " symbolic link; scan the indexed path instead"
                )


def _read_all(
    index: Index,
    source: Source,
    planner: Planner,
    tasks: Iterable[Task],
    executor: Executor | None,
    stop: threading.Event | None = None,
) -> None:
    """Read the tasks on the workers and write what they read, in batches."""
    options = planner.options
    if isinstance(executor, Workers):
        workers, own = executor, False
    else:
        # A given executor keeps as many chunks in flight as one worker would (as before).
        workers = Workers(None if executor else options.jobs, executor, item_seconds=options.item_seconds)
        own = executor is None
    writer = _Writer(index, planner)
    deaths = workers.deaths
    interrupted = False
    try:
        workers.run(
            # Each chunk carries this process's settings key: a worker that would hash otherwise refuses.
            functools.partial(_read_tasks, source, options.settings, options.settings.key()),
            writer.started(tasks),
            take=writer.take,
            flush=writer.flush,
            crashed=lambda task, why: crashed(source, task.path, task.stat, BLAME[why]),
            chunk_size=options.chunk_size,
            batch_size=options.batch_size,
            batch_seconds=options.batch_seconds,
            stop=stop,
        )
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        planner.summary.worker_deaths += workers.deaths - deaths
        if own:
            workers.shutdown(wait=not interrupted)


def _read_side_files(index: Index, source: Source, planner: Planner) -> None:
    """Read the URL side-files that are new or changed (after the rows of the files they name
    are written), and put their URLs in place of what they gave before."""
    catalog = index.catalog
    names: dict[bytes, set[bytes]] = {}

    def known(path: bytes) -> bool:
        directory, _, name = path.rpartition(b"/")
        directory = directory or b"/"
        if directory not in names:
            names[directory] = catalog.names_in(directory)
        return name in names[directory]

    for path in planner.take_side_files():
        row = catalog.side_file_row(path)
        if row is None:
            continue  # gone meanwhile
        side_id, read_ns = row
        try:
            with source.open(path) as f:
                data = f.read(MAX_SIDE_FILE + 1)
        except OSError as e:  # tried again by the next scan
            planner.summary.warnings.append(f"{display_path(path)}: cannot read it ({e.strerror or e})")
            continue
        if len(data) > MAX_SIDE_FILE:
            planner.summary.warnings.append(f"{display_path(path)}: larger than {MAX_SIDE_FILE:,} bytes; ignored")
            catalog.replace_urls(side_id, read_ns, None)
            continue
        side_file = provenance.read_side_file(path, data, known)
        planner.summary.warnings.extend(side_file.warnings)
        # One that says nothing usable (not JSON, say: being rewritten?) leaves what it gave before.
        catalog.replace_urls(side_id, read_ns, side_file.urls if side_file.urls or not side_file.warnings else None)


def _read_tasks(source: Source, settings: HashSettings, key: str, tasks: list[Task]) -> list[Reading | None]:
    """Read a chunk of tasks (runs in a worker process): the reader sees paths, not rows."""
    return read_items(source, settings, key, [(t.path, t.stat, t.mode) for t in tasks])


class _Writer:
    """Turns readings into rows and writes them, a batch per transaction."""

    def __init__(self, index: Index, planner: Planner) -> None:
        self.catalog = index.catalog
        self.planner = planner
        self.params_id = planner.params_id
        self.summary = planner.summary
        self.report: ScanProgress = planner.report
        self.pending: list[FileRecord] = []
        self.gone: list[Task] = []

    def started(self, tasks: Iterable[Task]) -> Iterator[Task]:
        """The tasks, with the progress in its reading phase once the first is handed out."""
        for task in tasks:
            self.report.phase = "hash"
            yield task

    def take(self, tasks: list[Task], readings: list[Reading | None]) -> None:
        summary, report = self.summary, self.report
        for task, reading in zip(tasks, readings, strict=True):
            if reading is None:
                self.gone.append(task)
                continue
            self.pending.append(self.record(task, reading))
            summary.hashed += 1
            if reading.status in FAILED_STATUSES:
                summary.failed += 1
            report.hashed += 1
            report.last_path = summary.last_path = task.path
        if self.planner.progress:
            self.planner.progress(report)

    def record(self, task: Task, r: Reading) -> FileRecord:
        st = r.stat
        return FileRecord(
            task.dir_id, task.name, st.size, st.mtime_ns, st.ctime_ns, st.inode, st.device, r.status, r.error,
            r.format, r.sha256, r.width, r.height, r.phash, self.params_id if r.status == "ok" else None, r.read_ns,
            r.trim_hash, r.descriptor, r.trim_descriptor, task.url, r.regions, r.grid,
        )  # fmt: skip

    def flush(self) -> None:
        if self.pending:
            if not self.catalog.write_files(self.pending):
                self.planner.forget_dir_ids()  # another process removed directories meanwhile
            self.pending.clear()
        if self.gone:
            self.summary.removed += self.catalog.remove_named([(t.dir_id, t.name) for t in self.gone])
            self.gone.clear()
