"""Worker processes: run a function over items in chunks, survive workers that die.

:class:`Workers` hands chunks of items to an executor (a process pool by
default, started on first use), takes the results as they come, and tells
its caller when to commit a batch (every ``batch_size`` results or
``batch_seconds``). When a worker process dies (a decoder crashing on a
hostile file, the out-of-memory killer), the pool is restarted and every item
of the chunks that went down with it is run again alone; only an item that
takes a worker down twice on its own gets the caller's ``crashed`` result,
and a pool that cannot run anything is an error (:class:`WorkerPoolError`),
never an item's fault. Any
:class:`concurrent.futures.Executor` can be given instead of the pool (a
cluster's, say): it is used as it is and never restarted.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from imgindex.errors import WorkerPoolError

#: How long a fresh pool may take to run a task that does nothing.
POOL_START_SECONDS = 60

T = TypeVar("T")
R = TypeVar("R")


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


def _nothing() -> None:
    """A task that does nothing: does the pool run tasks at all?"""


def _worker_init() -> None:
    # The parent handles Ctrl-C and SIGTERM: it commits and then stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM keeps its default: the pool terminates its workers with it when one dies.
    # A parent killed outright (kill -9, the out-of-memory killer) cannot stop the pool:
    # each worker ends itself then, and with the last of them the fork server and the
    # resource tracker, which would otherwise wait for ever.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent.sentinel,), name="end-with-parent", daemon=True).start()


def _end_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


class Workers:
    """A pool of workers, started on first use and restarted when a worker process dies.

    ``executor``: use this one instead (never restarted, never shut down here).
    """

    def __init__(
        self, jobs: int | None = None, executor: cf.Executor | None = None, *, item_seconds: float | None = None
    ) -> None:
        self.jobs = jobs or (1 if executor is not None else default_jobs())
        self._given = executor is not None
        self._pool: cf.Executor | None = executor
        #: Worker processes that died while this object ran them.
        self.deaths = 0
        #: A worker process that spends longer than this on one item ends itself (its item is then
        #: run alone, and blamed as too slow when it stops a worker again). Only in the pool of
        #: worker processes this object starts: never in this process, nor in a given executor.
        self.item_seconds = item_seconds

    @property
    def given(self) -> bool:
        """Whether the executor was given (a cluster's), not a pool started here."""
        return self._given

    @property
    def timed(self) -> bool:
        return bool(self.item_seconds) and self.jobs > 1 and not self._given

    def get(self) -> cf.Executor:
        if self._pool is None:
            self._pool = make_executor(self.jobs)
        return self._pool

    def restart(self) -> None:
        """Drop a broken pool. Its remaining workers are killed: one started while it broke
        can be missed by the pool's own clean-up, which then waits for it for ever."""
        if self._given:
            raise cf.BrokenExecutor("the executor given to imgindex broke")
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.kill()

    def cause_of_death(self) -> str:
        """Why the pool broke, from its dead workers' exit codes: ended past the time limit,
        crashed (killed by a signal of its own making: SIGSEGV, SIGABRT, SIGBUS, ...), or
        else killed (SIGKILL, from outside or from the out-of-memory killer), which is also
        what a death leaving no telling code counts as: no proof of a crash. (The pool ends
        the other workers with SIGTERM; a worker may also exit 1 as its queue closes.)"""
        # The pool's own thread reaps its dead workers (and ends) once the pool breaks, while the
        # failed futures have woken the caller already: read the exit codes after it, or a code
        # may be read while that thread holds it (the wait of two threads on one child: the one
        # that loses sees no code, and the death would count as a kill).
        manager = getattr(self._pool, "_executor_manager_thread", None)
        if getattr(self._pool, "_broken", False) and manager is not None and manager is not threading.current_thread():
            manager.join(timeout=POOL_START_SECONDS)
        processes = (getattr(self._pool, "_processes", None) or {}).values()
        codes = {p.exitcode for p in processes} - {None, 0}
        if _TOO_SLOW_EXIT in codes:
            return TOO_SLOW
        if any(code < 0 and code not in (-signal.SIGKILL, -signal.SIGTERM) for code in codes):
            return CRASH
        return KILLED

    def check(self) -> None:
        """Make sure the pool can run a task at all; :class:`WorkerPoolError` when it cannot
        (worker processes that cannot start: a read-only /dev/shm, a script without a
        ``__main__`` guard, ...)."""
        try:
            self.get().submit(_nothing).result(timeout=POOL_START_SECONDS)
        except (cf.BrokenExecutor, OSError, TimeoutError) as e:
            self.restart()
            reason = str(e) or type(e).__name__
            raise WorkerPoolError(
                f"worker processes cannot run here ({reason}); try --jobs 1 (reading in this process)"
            ) from None

    def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None and not self._given:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None

    def run(
        self,
        fn: Callable[[list[T]], list[R]],
        items: Iterable[T],
        *,
        take: Callable[[list[T], list[R]], None],
        flush: Callable[[], None],
        crashed: Callable[[T, str], R],
        chunk_size: int = 16,
        batch_size: int = 500,
        batch_seconds: float = 1.0,
        stop: threading.Event | None = None,
    ) -> None:
        """Run ``fn`` over ``items`` in chunks; see the module docstring.

        ``take(chunk, results)`` receives each chunk's results as they come;
        ``flush()`` is called when a batch is due and once at the end, also
        when interrupted (Ctrl-C, or ``stop`` set: :class:`KeyboardInterrupt`),
        so that what was taken is committed; results still in flight are lost.
        ``fn`` must pickle (a module-level function, or a partial of one). ``crashed(item, why)``
        is the result of an item blamed for stopping workers: ``why`` is :data:`CRASH` or
        :data:`TOO_SLOW`.
        """
        if self.timed:
            fn = functools.partial(_one_by_one, fn, float(self.item_seconds or 0))
        _Run(self, fn, take, flush, crashed, batch_size, batch_seconds, stop).run(_chunks(items, chunk_size))


class _Run(Generic[T, R]):
    """One :meth:`Workers.run`: the chunks in flight and what has come back."""

    def __init__(
        self,
        workers: Workers,
        fn: Callable[[list[T]], list[R]],
        take: Callable[[list[T], list[R]], None],
        flush: Callable[[], None],
        crashed: Callable[[T, str], R],
        batch_size: int,
        batch_seconds: float,
        stop: threading.Event | None,
    ) -> None:
        self.workers = workers
        self.fn = fn
        self.take = take
        self.flush = flush
        self.crashed = crashed
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.stop = stop
        self.in_flight: dict[cf.Future[list[R]], list[T]] = {}
        self.lost: dict[int, int] = {}  # id of a chunk: how often a given executor lost it
        self.taken = 0  # results taken since the last flush
        self.last_flush = time.monotonic()

    def run(self, chunks: Iterator[list[T]]) -> None:
        max_in_flight = max(2, self.workers.jobs * 3)
        try:
            for chunk in chunks:
                self._check_stop()
                while len(self.in_flight) >= max_in_flight:
                    self._collect()
                self._submit(chunk)
            while self.in_flight:
                self._collect()
        finally:
            # Keep what finished; results still in flight are read again next time.
            self._flush()

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise KeyboardInterrupt

    def _flush(self) -> None:
        self.flush()
        self.taken = 0
        self.last_flush = time.monotonic()

    def _accept(self, chunk: list[T], results: list[R]) -> None:
        self.take(chunk, results)
        self.taken += len(chunk)

    def _submit(self, chunk: list[T]) -> None:
        try:
            self.in_flight[self.workers.get().submit(self.fn, chunk)] = chunk
        # It broke since the last results came in (a pool caught breaking while it
        # starts a worker can also say so with an OSError).
        except (cf.BrokenExecutor, OSError):
            self._isolate(list(chunk))

    def _collect(self) -> None:
        done, _ = cf.wait(self.in_flight, return_when=cf.FIRST_COMPLETED)
        suspects: list[T] = []
        for future in done:
            chunk = self.in_flight.pop(future)
            try:
                results = future.result()
            except cf.BrokenExecutor:
                suspects += chunk
                continue
            except Exception:
                if self._submitted_again(chunk):
                    continue
                raise
            self.lost.pop(id(chunk), None)  # (its id may be another chunk's later)
            self._accept(chunk, results)
        if suspects:
            self._isolate(suspects)
        if self.taken >= self.batch_size or time.monotonic() - self.last_flush >= self.batch_seconds:
            self._flush()

    def _submitted_again(self, chunk: list[T]) -> bool:
        """A chunk whose future an executor given to imgindex (a cluster's) failed: submitted
        again, up to :data:`LOST_CHUNK_TRIES` times. A cluster can fail a future on its own
        side (a worker killed as its result came back: Dask's executor then fails the future
        with its own error); the reader never raises for an entry, so the chunk is not at fault."""
        if not self.workers.given or self.lost.get(id(chunk), 0) >= LOST_CHUNK_TRIES:
            return False
        self.lost[id(chunk)] = self.lost.get(id(chunk), 0) + 1
        self._submit(chunk)
        return True

    def _isolate(self, suspects: list[T]) -> None:
        """After a worker died: each item of the chunks it took down, alone in a fresh pool."""
        workers = self.workers
        workers.deaths += 1
        for future, chunk in list(self.in_flight.items()):  # the rest went down with it
            del self.in_flight[future]
            try:
                self._accept(chunk, future.result())
            except cf.BrokenExecutor:
                suspects += chunk
        workers.restart()
        for item in suspects:
            self._check_stop()
            self._accept([item], self._alone(item))

    def _alone(self, item: T) -> list[R]:
        """Run one item alone. It is blamed (``crashed``) only when it takes a worker down
        on its own again and again, with a pool that runs a task doing nothing in between:
        twice when the worker crashed or overran the time limit, four times when it was
        killed (SIGKILL: the out-of-memory killer, or somebody else), since a worker killed
        from outside is no item's fault, nor is a pool that cannot start at all."""
        workers = self.workers
        deaths: list[str] = []
        while True:
            start = time.monotonic()
            try:
                return workers.get().submit(self.fn, [item]).result()
            except (cf.BrokenExecutor, OSError):
                why = workers.cause_of_death()
                if why == CRASH and workers.timed and time.monotonic() - start >= (workers.item_seconds or 0):
                    why = TOO_SLOW
                deaths.append(why)
                workers.deaths += 1
                workers.restart()
                workers.check()
            if len(deaths) >= (4 if deaths[-1] == KILLED else 2):
                return [self.crashed(item, deaths[-1])]


#: How often a chunk whose future an executor given to imgindex failed is submitted again
#: (:meth:`_Run._submitted_again`) before its error ends the run.
LOST_CHUNK_TRIES = 3
#: Why an item was blamed: it took its worker process down (a crash, or a kill such as the
#: out-of-memory killer's), or kept it busy past the time limit.
CRASH = "crash"
KILLED = "killed"
TOO_SLOW = "too slow"
#: The exit code of a worker that ended itself past the time limit.
_TOO_SLOW_EXIT = 3

#: In a worker process: when it began its current item (monotonic), or None between items.
_began: list[float | None] = [None]


def _one_by_one(fn: Callable[[list[T]], list[R]], seconds: float, chunk: list[T]) -> list[R]:
    """Run ``fn`` over a chunk an item at a time, under a watch that ends this worker
    process when one item takes longer than ``seconds`` (a decoder caught in a loop)."""
    _watch(seconds)
    results: list[R] = []
    for item in chunk:
        _began[0] = time.monotonic()
        try:
            results += fn([item])
        finally:
            _began[0] = None
    return results


_watching: list[bool] = [False]


def _watch(seconds: float) -> None:
    if _watching[0]:
        return
    _watching[0] = True

    def watch() -> None:
        while True:
            time.sleep(min(1.0, seconds / 4))
            began = _began[0]
            if began is not None and time.monotonic() - began > seconds:
                os._exit(_TOO_SLOW_EXIT)

    threading.Thread(target=watch, name="item-time-limit", daemon=True).start()


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
