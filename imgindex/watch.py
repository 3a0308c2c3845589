"""Following a growing tree: keep the index current as files are written.

Events are hints, not truth: on each, the path is looked at again and the
same code that ``scan`` uses (:func:`imgindex.scan.refresh`) decides what to
do. A file is read once it is complete: at once when the platform reports it
closed after writing, otherwise once its mtime is ``settle`` seconds old. A
periodic reconciling walk catches what events missed (a queue overflow, a
watch limit, a network filesystem that sends no events).
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from . import pairs
from .display import display_path
from .formats import atomic_text_file, write_json
from .report import ReportOptions, build_report
from .scan import Executor, ScanInterrupted, ScanOptions, ScanSummary, normalise_root, refresh, scan
from .statuses import failed_count, image_count
from .storage import Index
from .workers import Workers

#: Seconds a file found in a newly created (and already watched) directory must
#: be unchanged before it is read, when no close event says it is complete.
QUICK_SETTLE = 0.5
#: Least time between two updates of the stored near pairs while watching.
PAIRS_GAP = 5.0

EventKind = Literal["scan", "batch", "reconcile", "report", "warning", "stopped"]

#: Events worth a look. Opening and closing without writing (our own reads do
#: that) and directory modifications (a file event says more) are not.
EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]


@dataclass(frozen=True)
class WatchOptions:
    scan: ScanOptions = field(default_factory=ScanOptions)
    settle: float = 2.0  # seconds a file's mtime must be old when no close event says it is complete
    reconcile: float = 300.0  # seconds between reconciling walks; 0: none (but see polling)
    polling: bool = False  # no events at all: walk every `poll_interval` seconds
    poll_interval: float = 10.0
    batch_seconds: float = 0.25  # gather events this long before acting on them
    report_near: Path | None = None
    report_exact: Path | None = None
    threshold: int | None = None


@dataclass
class WatchEvent:
    """What happened, for the command line to show (one line, or one JSON object)."""

    kind: EventKind
    indexed: int = 0  # files read and written in this step
    removed: int = 0
    newest: bytes | None = None
    images: int = 0  # running total in the index
    files: int = 0
    failed: int = 0
    message: str | None = None
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": self.kind, "time": round(self.time, 3)}
        if self.kind in ("scan", "batch", "reconcile", "stopped"):
            data.update(indexed=self.indexed, removed=self.removed, images=self.images, files=self.files)
            data["failed"] = self.failed
            data["newest"] = None if self.newest is None else os.fsdecode(self.newest)
        if self.message:
            data["message"] = self.message
        return data


class _Stop:
    """Put in the queue to wake the loop up when it is told to stop."""


class _Overflow:
    """Put in the queue when events were lost."""


class _Handler(FileSystemEventHandler):
    def __init__(self, events: queue.SimpleQueue[Any]) -> None:
        self.events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.events.put(event)


class _OverflowLog(logging.Handler):
    """watchdog reports a kernel queue overflow only in its log: turn that into a reconcile."""

    def __init__(self, events: queue.SimpleQueue[Any]) -> None:
        super().__init__(logging.WARNING)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.events.put(_Overflow())


class Watcher:
    """Keeps an index current with ``roots`` until :meth:`stop` is called."""

    def __init__(
        self,
        index: Index,
        roots: Sequence[bytes],
        options: WatchOptions,
        on_event: Callable[[WatchEvent], None],
        *,
        executor: Executor | None = None,
    ) -> None:
        self.index = index
        self.roots = [normalise_root(r) for r in roots]  # refuses what is not a directory
        self.options = options
        self.scan_options = replace(options.scan, settle_ns=int(options.settle * 1e9))
        # Paths named by events: a rewrite after our read brings another event, so
        # the racy-clean re-read (for walks, which have no events) is not needed.
        self.event_options = replace(self.scan_options, racy_window_ns=0)
        self.dir_options = replace(self.event_options, settle_ns=int(min(options.settle, QUICK_SETTLE) * 1e9))
        self.quick: set[bytes] = set()  # deferred files found by walking a new, watched directory
        self.observing = False
        self.on_event = on_event
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()  # put() is safe in a signal handler
        self._stopping = threading.Event()
        self._own_executor = executor is None
        self.executor: Executor = executor or Workers(options.scan.jobs, item_seconds=options.scan.item_seconds)
        self.deferred: dict[bytes, float] = {}  # path -> when to look again (monotonic)
        # The stored near pairs are brought up to date after batches, but no more
        # often than every PAIRS_GAP seconds or four times what the last update took
        # (reports search what is not stored yet in memory, so they never wait).
        self.pairs_due: float | None = None
        self.pairs_gap = PAIRS_GAP
        self.pairs_done = 0.0

    def stop(self) -> None:
        """Ask the loop to finish (safe from a signal handler or another thread)."""
        self._stopping.set()
        self.events.put(_Stop())

    def run(self) -> None:
        observer = None
        log_handler = _OverflowLog(self.events)
        watchdog_log = logging.getLogger("watchdog")
        watchdog_log.addHandler(log_handler)
        try:
            # Watch first, then walk: what changes during the walk is queued, not missed.
            observer = None if self.options.polling else self._start_observer()
            self.observing = observer is not None
            self._full_walk("scan")
            self._loop(observer is not None)
        finally:
            watchdog_log.removeHandler(log_handler)
            if observer is not None:
                observer.stop()
                observer.join(timeout=10)
            if self._own_executor:
                self.executor.shutdown(wait=True)
            stopped = self._counted("stopped")
            if self.deferred:
                stopped.message = f"{len(self.deferred):,} files still being written were left for the next scan"
            self.on_event(stopped)

    # -- the loop ---------------------------------------------------------------

    def _start_observer(self) -> BaseObserver | None:
        observer = Observer()
        handler = _Handler(self.events)
        try:
            for root in self.roots:
                observer.schedule(handler, os.fsdecode(root), recursive=True, event_filter=EVENTS)
            observer.start()
        except OSError as e:
            observer.stop()
            interval = self._walk_interval(fallback=True)
            self.on_event(
                WatchEvent(
                    "warning",
                    message=f"cannot watch for events ({e.strerror or e}): falling back to a walk every"
                    f" {interval:g} s; raise fs.inotify.max_user_watches to watch big trees",
                )
            )
            return None
        return observer

    def _walk_interval(self, fallback: bool) -> float:
        if self.options.polling or fallback:
            return self.options.poll_interval if self.options.polling else (self.options.reconcile or 60.0)
        return self.options.reconcile

    def _loop(self, have_events: bool) -> None:
        interval = self._walk_interval(fallback=not have_events)
        next_walk = time.monotonic() + interval if interval > 0 else float("inf")
        closed: set[bytes] = set()  # complete: hash now
        maybe: set[bytes] = set()  # created, modified, gone, new directories: look again
        first_event = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            deadlines = [next_walk]
            if closed or maybe:
                deadlines.append(first_event + self.options.batch_seconds)
            if self.deferred:
                deadlines.append(min(self.deferred.values()))
            if self.pairs_due is not None:
                deadlines.append(self.pairs_due)
            timeout = max(0.0, min(deadlines) - now)
            try:
                item = self.events.get(timeout=None if timeout == float("inf") else timeout)
            except queue.Empty:
                item = None
            walk_now = False
            while item is not None:
                if isinstance(item, _Overflow):
                    walk_now = True
                elif isinstance(item, FileSystemEvent):
                    if not (closed or maybe):
                        first_event = time.monotonic()
                    self._classify(item, closed, maybe)
                try:
                    item = self.events.get_nowait()
                except queue.Empty:
                    item = None
            now = time.monotonic()
            due = [p for p, t in self.deferred.items() if t <= now]
            for p in due:
                del self.deferred[p]
            maybe.update(due)
            if (closed or maybe) and (now - first_event >= self.options.batch_seconds or self._stopping.is_set()):
                self._batch(closed, maybe)
                closed, maybe = set(), set()
            if walk_now or now >= next_walk:
                self._full_walk("reconcile")
                next_walk = time.monotonic() + interval if interval > 0 else float("inf")
            if self.pairs_due is not None and time.monotonic() >= self.pairs_due:
                self._update_pairs()
        # Stopping: commit what is pending; files still settling get one settle
        # time to finish (they are complete if unchanged by then).
        if closed or maybe:
            self._batch(closed, maybe)
        if self.deferred:
            time.sleep(max(0.0, min(max(self.deferred.values()) - time.monotonic(), self.options.settle)))
            last = set(self.deferred)
            self.deferred.clear()
            self._batch(set(), last)
        if self.pairs_due is not None:
            self._update_pairs()

    def _classify(self, event: FileSystemEvent, closed: set[bytes], maybe: set[bytes]) -> None:
        src = os.fsencode(event.src_path)
        if isinstance(event, FileClosedEvent):
            closed.add(src)
            maybe.discard(src)
            self.deferred.pop(src, None)
            self.quick.discard(src)
        elif isinstance(event, (FileMovedEvent, DirMovedEvent)):
            maybe.add(src)  # gone from here
            dest = os.fsencode(event.dest_path)
            if isinstance(event, FileMovedEvent):
                closed.add(dest)  # a rename moves a whole file
            else:
                maybe.add(dest)  # walked, files settled by age
        elif src not in closed:
            maybe.add(src)

    def _batch(self, closed: set[bytes], maybe: set[bytes]) -> None:
        steps = [refresh(self.index, sorted(closed), self.event_options, written=True, executor=self.executor)]
        maybe = maybe - closed
        if self.observing:
            # A new directory is watched before its event is sent, so a file in it
            # still being written will send its own close event, and one already
            # closed never will: files found by walking it wait only a short settle.
            quick = {p for p in maybe if p in self.quick or os.path.isdir(p)}
            self.quick -= quick
            step = refresh(self.index, sorted(quick), self.dir_options, executor=self.executor)
            steps.append(step)
            look_again = time.monotonic() + self.dir_options.settle_ns / 1e9
            for path in step.deferred:
                self.deferred[path] = look_again
                self.quick.add(path)
            maybe -= quick | set(step.deferred)
        rest = refresh(self.index, sorted(maybe), self.event_options, executor=self.executor)
        steps.append(rest)
        look_again = time.monotonic() + self.options.settle
        for path in rest.deferred:
            self.deferred[path] = look_again
        indexed = sum(step.hashed for step in steps)
        removed = sum(step.removed for step in steps)
        for warning in (w for step in steps for w in step.warnings):
            self.on_event(WatchEvent("warning", message=warning))
        if indexed or removed:
            newest = next((step.last_path for step in reversed(steps) if step.last_path), None)
            self.on_event(self._counted("batch", indexed, removed, newest))
            self._write_reports()
            if self.pairs_due is None:
                self.pairs_due = self.pairs_done + self.pairs_gap

    def _update_pairs(self) -> None:
        start = time.monotonic()
        try:
            pairs.update(self.index, stop=self._stopping.is_set)
            self.index.images.keep_table(stop=self._stopping.is_set)
        except sqlite3.Error as e:  # e.g. the index stayed locked: try again later
            self.on_event(WatchEvent("warning", message=f"could not update the near pairs: {e}"))
            self.pairs_gap = min(max(PAIRS_GAP, 2 * self.pairs_gap), 600.0)
            self.pairs_due = time.monotonic() + self.pairs_gap
            return
        self.pairs_done = time.monotonic()
        self.pairs_gap = max(PAIRS_GAP, 4 * (self.pairs_done - start))
        self.pairs_due = None

    def _full_walk(self, kind: EventKind) -> None:
        try:
            summary: ScanSummary = scan(
                self.index, self.roots, self.scan_options, executor=self.executor, stop=self._stopping
            )
        except ScanInterrupted:
            return  # stopping: what was read is committed
        self.pairs_done, self.pairs_due = time.monotonic(), None  # the scan updated the pairs
        look_again = time.monotonic() + self.options.settle
        for path in summary.deferred:
            self.deferred[path] = look_again
        self.on_event(self._counted(kind, summary.hashed, summary.removed, summary.last_path))
        for path, error in summary.walk_errors:
            self.on_event(WatchEvent("warning", message=f"could not read directory {display_path(path)}: {error}"))
        for warning in summary.warnings:
            self.on_event(WatchEvent("warning", message=warning))
        if kind == "scan" or summary.hashed or summary.removed:
            self._write_reports()

    def _counted(self, kind: EventKind, indexed: int = 0, removed: int = 0, newest: bytes | None = None) -> WatchEvent:
        """An event with the index's running totals."""
        counts = self.index.catalog.status_counts()
        return WatchEvent(
            kind,
            indexed=indexed,
            removed=removed,
            newest=newest,
            files=sum(counts.values()),
            images=image_count(counts),
            failed=failed_count(counts),
        )

    def _write_reports(self) -> None:
        for mode, target in (("near", self.options.report_near), ("exact", self.options.report_exact)):
            if target is None:
                continue
            threshold = self.options.threshold if mode == "near" else None
            try:
                with self.index.snapshot(), atomic_text_file(target) as f:
                    report = build_report(self.index, ReportOptions(mode=mode, threshold=threshold))  # type: ignore[arg-type]
                    write_json(report, f)
            except OSError as e:
                self.on_event(WatchEvent("warning", message=f"cannot write {target}: {e.strerror or e}"))
                continue
            self.on_event(WatchEvent("report", message=f"wrote {target}"))
