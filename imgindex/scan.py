"""The incremental scan: walk, compare with the index, hash what changed.

1. Walk each root. For every directory listed, compare each file's stat data
   with its row: unchanged rows are left alone, new and changed files (and
   racily-clean ones, whose stat cannot be trusted yet) are queued for
   hashing. Rows of files that are gone from a directory that *was* listed
   leave the index; a directory that could not be listed keeps its rows.
2. Hash the queue in worker processes (any :class:`concurrent.futures.Executor`
   will do: a process pool by default). Results are written in short batched
   transactions as they arrive, so an interruption loses at most the batch in
   flight and the next scan carries on with what is left.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import multiprocessing
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

from . import hashing, pairs
from .hashing import HashSettings, ImageError
from .index import FAILED_STATUSES, FileRecord, Index, Root, StoredFile
from .walk import FileStat, join, walk

#: A file's mtime or ctime this close to the moment it was read can change
#: again within the same timestamp tick without its stat data changing, so
#: such a row is checked once more by the next scan (git's "racy clean").
RACY_WINDOW_NS = 2_000_000_000
#: Files larger than this are hashed exactly but never decoded.
MAX_READ_BYTES = 512 * 1024 * 1024
#: How often a file that changes while being read is tried again.
READ_ATTEMPTS = 3

Mode = Literal["full", "phash"]


class ScanError(Exception):
    """A scan that cannot start (e.g. a root that is not a directory)."""


@dataclass(frozen=True)
class ScanOptions:
    jobs: int | None = None  # worker processes; None: all cores
    rehash: bool = False
    follow_symlinks: bool = False
    settings: HashSettings = field(default_factory=HashSettings)
    batch_size: int = 500  # rows per write transaction
    batch_seconds: float = 1.0  # ... or at least this often
    chunk_size: int = 16  # files per task sent to a worker
    racy_window_ns: int = RACY_WINDOW_NS
    settle_ns: int = 0  # leave files modified this recently for later (watch mode)
    update_pairs: bool = True  # bring the stored near pairs up to date at the end


@dataclass(frozen=True)
class Task:
    dir_id: int
    name: bytes
    path: bytes
    stat: FileStat
    mode: Mode
    follow_symlinks: bool


@dataclass
class ScanProgress:
    phase: Literal["walk", "hash"]
    dirs: int = 0
    files: int = 0
    to_hash: int = 0
    hashed: int = 0
    last_path: bytes | None = None


@dataclass
class ScanSummary:
    scan_id: int
    roots: list[bytes]
    files: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    hashed: int = 0
    rechecked: int = 0  # racily-clean files read again
    failed: int = 0  # files that failed in this scan
    by_status: dict[str, int] = field(default_factory=dict)  # the roots' whole state after the scan
    walk_errors: list[tuple[bytes, str]] = field(default_factory=list)
    skipped_symlinks: int = 0
    skipped_special: int = 0
    loops: list[bytes] = field(default_factory=list)
    deferred: list[bytes] = field(default_factory=list)  # too recently modified: left for later
    last_path: bytes | None = None  # the last file read
    worker_deaths: int = 0  # worker processes that died (their files were read again one by one)
    near_pairs: pairs.PairsUpdate | None = None  # the stored near pairs brought up to date
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def images(self) -> int:
        return sum(n for s, n in self.by_status.items() if s not in ("not_image", "empty"))

    @property
    def failures(self) -> dict[str, int]:
        return {s: self.by_status[s] for s in FAILED_STATUSES if self.by_status.get(s)}

    def to_json(self) -> dict[str, Any]:
        return {
            "scan_id": self.scan_id,
            "roots": [os.fsdecode(r) for r in self.roots],
            "files": self.files,
            "images": self.images,
            "by_status": dict(sorted(self.by_status.items())),
            "new": self.new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "hashed": self.hashed,
            "rechecked": self.rechecked,
            "failed": self.failed,
            "walk_errors": [{"path": display_path(p), "error": e} for p, e in self.walk_errors],
            "skipped_symlinks": self.skipped_symlinks,
            "skipped_special": self.skipped_special,
            "symlink_loops": [display_path(p) for p in self.loops],
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "worker_deaths": self.worker_deaths,
            "near_pairs": self.near_pairs.to_json() if self.near_pairs else None,
        }


class ScanInterrupted(Exception):
    """Raised when a scan is stopped (Ctrl-C, SIGTERM) after committing what it had."""

    def __init__(self, summary: ScanSummary) -> None:
        super().__init__("scan interrupted")
        self.summary = summary


def display_path(path: bytes) -> str:
    """A path for people: bytes that are not UTF-8 are shown as ``\\xNN`` escapes."""
    return path.decode("utf-8", "backslashreplace")


ProgressCallback = Callable[[ScanProgress], None]


def scan(
    index: Index,
    roots: Sequence[str | bytes | os.PathLike[str]],
    options: ScanOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    executor: Executor | None = None,
    stop: threading.Event | None = None,
) -> ScanSummary:
    """Bring the index up to date with ``roots``; see the module docstring.

    Setting ``stop`` (or Ctrl-C) ends the scan early, as :class:`ScanInterrupted`,
    after committing what was read.
    """
    options = options or ScanOptions()
    tops = _outermost(normalise_root(r) for r in roots)
    _refuse_aliases(index, tops)
    start = time.monotonic()
    planner = _Planner(index, options, ScanSummary(index.start_scan(tops), tops), progress, stop=stop)
    summary = planner.summary
    for top in tops:
        index.ensure_root(top)
    root_objs = [index.ensure_root(top) for top in tops]  # after all are registered: the root holding each
    state = "failed"
    try:
        # Hashing starts while the walk goes on: tasks are handed over directory by directory.
        tasks = planner.tasks_of(zip(tops, root_objs, strict=True))
        _hash_all(index, tasks, options, planner.params_id, summary, planner.report, progress, executor, stop)
        if options.update_pairs and not (stop and stop.is_set()):
            summary.near_pairs = pairs.update(index, stop=stop.is_set if stop else None)
        state = "done"
    except KeyboardInterrupt:
        state = "interrupted"
        summary.interrupted = True
    finally:
        summary.seconds = time.monotonic() - start
        summary.by_status = index.status_counts([r.id for r in root_objs])
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
        index.finish_scan(summary.scan_id, state, counts, summary.seconds, [r.id for r in root_objs])
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
) -> ScanSummary:
    """Bring the index up to date with some paths under known roots (files or directories,
    present or gone), by the same rules as :func:`scan`. Paths outside every root are ignored.

    ``written`` says the files were just written and closed: they are read
    even if their stat data looks unchanged (a coarse clock can hide a
    rewrite), and ``options.settle_ns`` does not hold them back.
    """
    options = options or ScanOptions()
    start = time.monotonic()
    planner = _Planner(index, options, ScanSummary(0, []), None, written=written)
    for path in dict.fromkeys(paths):  # each once, in order
        root = index.root_of(path)
        if root is None:
            continue
        try:
            st = os.stat(path) if options.follow_symlinks else os.lstat(path)
        except FileNotFoundError:
            planner.forget(path)
            continue
        except OSError as e:
            planner.summary.walk_errors.append((path, e.strerror or str(e)))
            continue
        if stat.S_ISDIR(st.st_mode):
            for _ in planner.walk(path, root):
                pass
        elif stat.S_ISREG(st.st_mode):
            directory, name = os.path.split(path)
            planner.file(index.dir_id(directory, root.id), directory, name, FileStat.of(st), None)
    _hash_all(index, planner.take(), options, planner.params_id, planner.summary, planner.report, None, executor)
    planner.summary.seconds = time.monotonic() - start
    return planner.summary


def _outermost(tops: Iterable[bytes]) -> list[bytes]:
    """Each directory once, leaving out those inside another one given."""
    unique = sorted(set(tops))
    return [t for t in unique if not any(_inside(t, other) for other in unique if other != t)]


def _inside(path: bytes, top: bytes) -> bool:
    return path == top or path.startswith(top.rstrip(b"/") + b"/")


def _refuse_aliases(index: Index, tops: list[bytes]) -> None:
    """A new root that is a known one seen through a symlink would list every file twice."""
    known = index.roots()
    for top in tops:
        if index.root_of(top) is not None:
            continue
        real = os.path.realpath(top)
        for root in known:
            if _inside(root.path, top):
                continue  # a new root holding a known one takes it over
            other = os.path.realpath(root.path)
            if _inside(real, other) or _inside(other, real):
                raise ScanError(
                    f"cannot scan {display_path(top)}: it is {display_path(root.path)} (or overlaps it) through a"
                    " symbolic link; scan the indexed path instead"
                )


def normalise_root(root: str | bytes | os.PathLike[str]) -> bytes:
    path = os.fsencode(root)
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


class _Planner:
    """Compares what is on disk with the index and decides what to read and what to forget.

    Unchanged rows are left alone; removals are written at once; files to read
    are collected in ``tasks``.
    """

    def __init__(
        self,
        index: Index,
        options: ScanOptions,
        summary: ScanSummary,
        progress: ProgressCallback | None,
        *,
        written: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        self.index = index
        self.stop = stop
        self.options = options
        self.summary = summary
        self.progress = progress
        self.params_id = index.params_id(options.settings.key())
        self.report = ScanProgress("walk")
        index.forget_dir_ids()  # another process may have removed directories since
        self.tasks: list[Task] = []
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

    def walk(self, top: bytes, root: Root) -> Iterator[None]:
        """Every file at or below ``top``, yielding after each directory; when the walk is
        complete, rows of files gone from a listed directory are removed."""
        listed: dict[bytes, int] = {}
        failed: dict[bytes, int] = {}
        errors: list[tuple[int, str]] = []
        gone: list[int] = []
        summary = self.summary
        self.index.preload_dirs(top)
        for listing in walk(top, follow_symlinks=self.options.follow_symlinks):
            if self.stop is not None and self.stop.is_set():
                raise KeyboardInterrupt
            dir_id = self.index.dir_id(listing.path, root.id)
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
            self.index.add_dirs(listing.subdirs, root.id)  # one transaction for all the new ones
            stored = self.index.files_in_dir(dir_id)
            for name, st in listing.files:
                self.file(dir_id, listing.path, name, st, stored.pop(name, None), looked_up=True)
            gone.extend(f.id for f in stored.values())
            self.report.files = summary.files
            self.report.last_path = listing.path
            if self.progress:
                self.progress(self.report)
            yield
        self.index.record_listings(list(listed.values()), errors)
        summary.removed += self.index.remove_files(gone)
        summary.removed += self.index.remove_dirs(_vanished_dirs(self.index, top, listed, failed))

    def file(
        self,
        dir_id: int,
        directory: bytes,
        name: bytes,
        st: FileStat,
        prev: StoredFile | None,
        *,
        looked_up: bool = False,
    ) -> None:
        """Decide whether one file must be read (``prev``: its row, if ``looked_up`` already)."""
        summary = self.summary
        if not looked_up:
            prev = self.index.file_row(dir_id, name)
        if (
            self.settle_before_ns
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
            mode = "full" if self.written else _needs_reading(prev, self.options, self.params_id)
            if mode is None and _racy(st, prev.read_ns, self.options.racy_window_ns):
                summary.rechecked += 1
                mode = "full"
        if mode is not None:
            self.tasks.append(Task(dir_id, name, join(directory, name), st, mode, self.options.follow_symlinks))
            self.report.to_hash += 1

    def forget(self, path: bytes) -> None:
        """A path that is gone: drop its row, or its directory's rows, if its parent can be seen."""
        directory, name = os.path.split(path)
        if not os.path.isdir(directory):
            return  # the parent is gone too (its own event handles it) or cannot be seen: keep
        dir_id = self.index.known_dir_id(directory)
        if dir_id is not None:
            self.summary.removed += self.index.remove_named([(dir_id, name)])
        self.summary.removed += self.index.remove_dirs([d for d, _ in self.index.dirs_under(path)])


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
    return None


def _vanished_dirs(index: Index, top: bytes, listed: dict[bytes, int], failed: dict[bytes, int]) -> list[int]:
    """Known directories under ``top`` that a successful listing shows are gone.

    A directory not met by this walk is gone when its nearest met ancestor was
    listed; when that ancestor could not be listed, nothing is known and its
    rows stay.
    """
    vanished = []
    for dir_id, path in index.dirs_under(top):
        if path in listed or path in failed:
            continue
        parent = path
        while len(parent) > len(top):
            parent = os.path.dirname(parent)
            if parent in listed:
                # Made after its parent was listed (and indexed by another process)?
                if not os.path.lexists(path):
                    vanished.append(dir_id)
                break
            if parent in failed:
                break
    return vanished


# -- hashing -------------------------------------------------------------------


class SerialExecutor(cf.Executor):
    """Runs each task at once in this process: ``--jobs 1``, and debugging."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(e)
        return future


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_executor(jobs: int) -> cf.Executor:
    """The default executor: a pool of worker processes (or this process for one job)."""
    if jobs <= 1:
        return SerialExecutor()
    # forkserver, not fork: the caller may have threads (watch mode) and an open index.
    context = multiprocessing.get_context(
        "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    )
    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_worker_init)


def _worker_init() -> None:
    # The parent handles Ctrl-C and SIGTERM: it commits and then stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM keeps its default: the pool terminates its workers with it when one dies.


class Workers:
    """The default executor: started on first use, restarted when a worker process dies."""

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = jobs or default_jobs()
        self._pool: cf.Executor | None = None

    def get(self) -> cf.Executor:
        if self._pool is None:
            self._pool = make_executor(self.jobs)
        return self._pool

    def restart(self) -> None:
        """Drop a broken pool. Its remaining workers are killed: one started while it broke
        can be missed by the pool's own clean-up, which then waits for it for ever."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.kill()

    def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None


class _Given(Workers):
    """An executor the caller gave (e.g. a cluster's): used as it is, never restarted."""

    def __init__(self, executor: cf.Executor) -> None:
        super().__init__(1)
        self._pool = executor

    def restart(self) -> None:
        raise cf.BrokenExecutor("the executor given to scan() broke")

    def shutdown(self, wait: bool = True) -> None:
        pass


Executor = cf.Executor | Workers


def _hash_all(
    index: Index,
    tasks: Iterable[Task],
    options: ScanOptions,
    params_id: int,
    summary: ScanSummary,
    report: ScanProgress,
    progress: ProgressCallback | None,
    executor: Executor | None,
    stop: threading.Event | None = None,
) -> None:
    if isinstance(executor, Workers):
        workers, own = executor, False
    elif executor is not None:
        workers, own = _Given(executor), False
    else:
        workers, own = Workers(options.jobs), True
    pending: list[FileRecord] = []
    gone: list[Task] = []
    last_flush = time.monotonic()
    in_flight: dict[cf.Future[list[FileRecord | None]], list[Task]] = {}
    max_in_flight = max(2, workers.jobs * 3)
    interrupted = False

    def flush() -> None:
        nonlocal last_flush
        if pending:
            index.write_files(pending)
            pending.clear()
        if gone:
            summary.removed += index.remove_named([(t.dir_id, t.name) for t in gone])
            gone.clear()
        last_flush = time.monotonic()

    def accept(chunk: list[Task], records: list[FileRecord | None]) -> None:
        for task, record in zip(chunk, records, strict=True):
            if record is None:
                gone.append(task)
                continue
            pending.append(record)
            summary.hashed += 1
            if record.status in FAILED_STATUSES:
                summary.failed += 1
            report.hashed += 1
            report.last_path = summary.last_path = task.path

    def isolate(suspects: list[Task]) -> None:
        """After a worker died: each file of the chunks it took down, alone in a fresh pool."""
        summary.worker_deaths += 1
        for future, chunk in list(in_flight.items()):  # the rest went down with it
            del in_flight[future]
            try:
                accept(chunk, future.result())
            except cf.BrokenExecutor:
                suspects += chunk
        workers.restart()
        for task in suspects:
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            try:
                accept([task], workers.get().submit(hash_chunk, [task], options.settings, params_id).result())
            except (cf.BrokenExecutor, OSError):
                summary.worker_deaths += 1
                accept([task], [crashed_record(task)])
                workers.restart()

    def collect(done: set[cf.Future[list[FileRecord | None]]]) -> None:
        suspects: list[Task] = []
        for future in done:
            chunk = in_flight.pop(future)
            try:
                accept(chunk, future.result())
            except cf.BrokenExecutor:
                suspects += chunk
        if suspects:
            isolate(suspects)
        if len(pending) >= options.batch_size or time.monotonic() - last_flush >= options.batch_seconds:
            flush()
        if progress:
            progress(report)

    def submit(chunk: list[Task]) -> None:
        try:
            in_flight[workers.get().submit(hash_chunk, chunk, options.settings, params_id)] = chunk
        # It broke since the last results came in (a pool caught breaking while it
        # starts a worker can also say so with an OSError).
        except (cf.BrokenExecutor, OSError):
            isolate(list(chunk))

    try:
        for chunk in _chunks(tasks, options.chunk_size):
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            report.phase = "hash"
            while len(in_flight) >= max_in_flight:
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                collect(done)
            submit(chunk)
        while in_flight:
            done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            collect(done)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        # Keep what finished; results still in flight are read again next time.
        flush()
        if own:
            workers.shutdown(wait=not interrupted)


def crashed_record(task: Task) -> FileRecord:
    """A file on which a worker process died (a decoder crash): recorded as corrupt, with its exact hash."""
    fmt = digest = None
    try:
        with open(task.path, "rb") as f:
            data = f.read(MAX_READ_BYTES)
        fmt, digest = hashing.sniff_format(data[: hashing.SNIFF_BYTES]), hashing.sha256(data)
    except OSError:
        pass
    st = task.stat
    return FileRecord(
        task.dir_id, task.name, st.size, st.mtime_ns, st.ctime_ns, st.inode, st.device,
        "corrupt", "the decoder crashed on this file (its worker process died)", fmt, digest,
        None, None, None, None, time.time_ns(),
    )  # fmt: skip


def _chunks(tasks: Iterable[Task], size: int) -> Iterator[list[Task]]:
    chunk: list[Task] = []
    for task in tasks:
        chunk.append(task)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def hash_chunk(tasks: list[Task], settings: HashSettings, params_id: int) -> list[FileRecord | None]:
    """Read and hash a few files (runs in a worker). None for a file that has vanished."""
    Image.MAX_IMAGE_PIXELS = max(settings.max_pixels, hashing.DEFAULT_MAX_PIXELS)
    return [read_file(task, settings, params_id) for task in tasks]


def read_file(task: Task, settings: HashSettings, params_id: int) -> FileRecord | None:
    """Read one file and describe it as a row. Never raises for a bad file."""
    read_ns = time.time_ns()
    st = task.stat
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not task.follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)

    def record(status: str, error: str | None = None, **values: Any) -> FileRecord:
        return FileRecord(
            task.dir_id, task.name, st.size, st.mtime_ns, st.ctime_ns, st.inode, st.device,
            status, error, values.get("format"), values.get("sha256"), values.get("width"),
            values.get("height"), values.get("phash"), values.get("params_id"), read_ns,
            values.get("trim_hash"), values.get("descriptor"), values.get("trim_descriptor"),
        )  # fmt: skip

    for _attempt in range(READ_ATTEMPTS):
        read_ns = time.time_ns()
        try:
            fd = os.open(task.path, flags)
        except FileNotFoundError:
            return None
        except OSError as e:
            return record("unreadable", e.strerror or str(e))
        try:
            with os.fdopen(fd, "rb", buffering=0) as f:
                before = os.fstat(fd)
                st = FileStat.of(before)
                if not stat.S_ISREG(before.st_mode):
                    return record("unreadable", "not a regular file")
                if before.st_size == 0:
                    return record("empty", "zero-byte file")
                head = f.read(hashing.SNIFF_BYTES)
                fmt = hashing.sniff_format(head)
                if fmt is None:
                    return record("not_image")
                if before.st_size > MAX_READ_BYTES:
                    digest = hashlib.sha256(head)
                    while block := f.read(1 << 20):
                        digest.update(block)
                    return record(
                        "too_large", f"{before.st_size:,} bytes, above {MAX_READ_BYTES:,}",
                        format=fmt, sha256=digest.digest(),
                    )  # fmt: skip
                data = head + _read_all(f)
                after = FileStat.of(os.fstat(fd))
        except OSError as e:
            return record("unreadable", e.strerror or str(e))
        if after != st:
            continue  # changed while being read: try again
        digest_bytes = None if task.mode == "phash" else hashing.sha256(data)
        try:
            info = hashing.image_info(data, fmt, settings)
        except ImageError as e:
            width, height = e.size or (None, None)
            return record(e.status, e.reason, format=fmt, sha256=digest_bytes, width=width, height=height)
        return record(
            "ok", None, format=fmt, sha256=digest_bytes, width=info.width, height=info.height,
            phash=info.phash, params_id=params_id, trim_hash=info.trim_hash, descriptor=info.descriptor,
            trim_descriptor=info.trim_descriptor,
        )  # fmt: skip
    return record("unreadable", f"kept changing while being read ({READ_ATTEMPTS} attempts)")


def _read_all(f: Any) -> bytes:
    chunks = []
    while block := f.read(1 << 20):
        chunks.append(block)
    return b"".join(chunks)
