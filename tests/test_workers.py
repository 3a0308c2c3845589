"""The worker pool: chunks, batches, a worker that dies, a file that kills every worker, stopping."""

from __future__ import annotations

import concurrent.futures as cf
import functools
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from imgindex.errors import WorkerPoolError
from imgindex.workers import CRASH, KILLED, LOST_CHUNK_TRIES, TOO_SLOW, SerialExecutor, Workers

POISON = 1013  # only ever given to worker processes


def square_or_die(items: list[int]) -> list[int]:
    """Squares, except that the poison item crashes the process it runs in (as a decoder would)."""
    if POISON in items:
        os.abort()
    return [i * i for i in items]


class Sink:
    """What the caller of Workers.run sees: results as they come, and the batches committed."""

    def __init__(self) -> None:
        self.taken: dict[int, int] = {}
        self.batches: list[int] = []
        self.pending = 0

    def take(self, items: list[int], results: list[int]) -> None:
        for item, result in zip(items, results, strict=True):
            assert item not in self.taken, "an item came back twice"
            self.taken[item] = result
        self.pending += len(items)

    def flush(self) -> None:
        self.batches.append(self.pending)
        self.pending = 0


def crashed(item: int, why: str) -> int:
    return {CRASH: -1, TOO_SLOW: -2, KILLED: -3}[why]


def test_every_item_comes_back_once_and_batches_are_committed_by_size() -> None:
    sink = Sink()
    workers = Workers(executor=SerialExecutor())
    workers.run(square_or_die, range(23), take=sink.take, flush=sink.flush, crashed=crashed, chunk_size=2, batch_size=5)
    assert sink.taken == {i: i * i for i in range(23)}
    assert sum(sink.batches) == 23
    assert all(size >= 5 for size in sink.batches[:-1]), sink.batches  # the last one takes the rest
    assert workers.deaths == 0


def test_a_file_that_kills_every_worker_is_isolated_and_the_rest_are_read() -> None:
    sink = Sink()
    workers = Workers(jobs=2)
    try:
        items = [*range(20), POISON, *range(20, 40)]
        workers.run(square_or_die, items, take=sink.take, flush=sink.flush, crashed=crashed, chunk_size=4)
    finally:
        workers.shutdown()
    # The poison item took its chunk (and whatever was in flight) down: each was run again
    # alone, and only the poison item, which killed a worker a second time, is blamed.
    assert sink.taken == {i: (-1 if i == POISON else i * i) for i in [*range(40), POISON]}
    assert workers.deaths >= 2
    assert sum(sink.batches) == 41


def test_stopping_commits_what_was_taken() -> None:
    sink = Sink()
    stop = threading.Event()

    def take(items: list[int], results: list[int]) -> None:
        sink.take(items, results)
        stop.set()  # stop after the first results

    with pytest.raises(KeyboardInterrupt):
        Workers(executor=SerialExecutor()).run(
            square_or_die, range(100), take=take, flush=sink.flush, crashed=crashed, chunk_size=3, stop=stop
        )
    assert 0 < len(sink.taken) < 100
    assert sum(sink.batches) == len(sink.taken)  # everything taken was flushed


def test_a_given_executor_is_used_as_it_is_and_never_restarted() -> None:
    with cf.ThreadPoolExecutor(2) as pool:
        sink = Sink()
        workers = Workers(executor=pool)
        workers.run(square_or_die, range(10), take=sink.take, flush=sink.flush, crashed=crashed)
        assert sink.taken == {i: i * i for i in range(10)}
        workers.shutdown()
        assert pool.submit(sum, [1, 2]).result() == 3  # not shut down by us
        with pytest.raises(cf.BrokenExecutor):
            workers.restart()


class LosingExecutor(cf.ThreadPoolExecutor):
    """A cluster's executor as it fails a future on its own side: the chunks holding ``lose``
    come back ``times`` times as futures failed with the executor's own error (Dask's, when a
    worker dies as its result comes back), then as results."""

    def __init__(self, lose: int, times: int) -> None:
        super().__init__(2)
        self.lose, self.times, self.failed = lose, times, 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.lose in args[0] and self.failed < self.times:
            self.failed += 1
            future: cf.Future[list[int]] = cf.Future()
            future.set_exception(ValueError("too many values to unpack (expected 3)"))
            return future
        return super().submit(fn, *args, **kwargs)


def test_a_chunk_a_given_executor_fails_on_its_own_side_is_submitted_again() -> None:
    """Every item comes back once; past ``LOST_CHUNK_TRIES`` the executor's error ends the run."""
    with LosingExecutor(lose=7, times=LOST_CHUNK_TRIES) as pool:
        sink = Sink()
        workers = Workers(executor=pool)
        workers.run(square_or_die, range(20), take=sink.take, flush=sink.flush, crashed=crashed, chunk_size=3)
        assert sink.taken == {i: i * i for i in range(20)}
        assert pool.failed == LOST_CHUNK_TRIES
    with LosingExecutor(lose=7, times=LOST_CHUNK_TRIES + 1) as pool, pytest.raises(ValueError, match="unpack"):
        Workers(executor=pool).run(square_or_die, range(20), take=Sink().take, flush=lambda: None, crashed=crashed)


FLAKY = 2013  # dies the first times it is read, then reads fine


def die_at_first(items: list[int], marks: str) -> list[int]:
    """Squares; the flaky item kills its worker the first twice it is run (counted in a file)."""
    if FLAKY in items:
        with open(marks, "a+") as f:
            f.seek(0)
            seen = len(f.read())
            f.write("x")
        if seen < 2:
            os.abort()
    return [i * i for i in items]


def test_an_item_is_blamed_only_when_it_kills_a_worker_twice_on_its_own(tmp_path: Path) -> None:
    # Killed in its chunk, then again when run alone (as when a worker is killed from outside
    # twice in a row): the third time, with a pool shown to work in between, it reads fine.
    sink = Sink()
    workers = Workers(jobs=2)
    try:
        items = [*range(10), FLAKY, *range(10, 20)]
        fn = functools.partial(die_at_first, marks=str(tmp_path / "marks"))
        workers.run(fn, items, take=sink.take, flush=sink.flush, crashed=crashed, chunk_size=4)
    finally:
        workers.shutdown()
    assert sink.taken == {i: i * i for i in items}  # nobody blamed
    assert workers.deaths >= 2


def _fail_to_start() -> None:
    raise RuntimeError("cannot start here")


class _PoolThatCannotStart(Workers):
    """Worker processes that die as they start (as under a read-only /dev/shm, or a script
    without a __main__ guard)."""

    def get(self) -> cf.Executor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(2, initializer=_fail_to_start)
        return self._pool


def test_a_pool_that_cannot_start_is_one_clear_error_and_blames_no_item() -> None:
    sink = Sink()
    workers = _PoolThatCannotStart(jobs=2)
    with pytest.raises(WorkerPoolError, match="worker processes cannot run here"):
        workers.run(square_or_die, range(20), take=sink.take, flush=sink.flush, crashed=crashed, chunk_size=4)
    workers.shutdown()
    assert -1 not in sink.taken.values()  # no item recorded as having crashed a worker


STUCK = 3013  # a file on which a decoder loops for ever


def stuck_or_square(items: list[int]) -> list[int]:
    if STUCK in items:
        while True:
            time.sleep(0.05)
    return [i * i for i in items]


def test_a_file_that_keeps_a_worker_busy_past_the_limit_is_blamed_as_too_slow() -> None:
    sink = Sink()
    workers = Workers(jobs=2, item_seconds=0.5)
    started = time.monotonic()
    try:
        items = [*range(12), STUCK, *range(12, 24)]
        workers.run(stuck_or_square, items, take=sink.take, flush=sink.flush, crashed=crashed, chunk_size=4)
    finally:
        workers.shutdown()
    assert sink.taken == {**{i: i * i for i in range(24)}, STUCK: -2}  # -2: blamed as too slow
    assert time.monotonic() - started < 30


class _Exited:
    """A worker process as the pool lists it: its exit code, None until it is reaped."""

    exitcode: int | None = None


class _BreakingPool:
    """A pool that broke a moment ago: its own thread still reaping the worker that ended
    itself past the time limit (exit code 3) while the caller already holds the failed future."""

    def __init__(self, broken: bool, reaping: float) -> None:
        self._broken = "A child process terminated abruptly" if broken else False
        worker = _Exited()
        self._processes = {1: worker}

        def reap() -> None:
            time.sleep(reaping)
            worker.exitcode = 3

        self._executor_manager_thread = threading.Thread(target=reap, daemon=True)
        self._executor_manager_thread.start()


def test_a_death_is_judged_after_the_pool_has_reaped_its_workers() -> None:
    # Read at once, the code would be missing and the death count as a kill (CI saw an item
    # stuck past the limit blamed as killed): the pool's thread is waited for, once it broke.
    workers = Workers(jobs=2, item_seconds=0.5)
    workers._pool = _BreakingPool(broken=True, reaping=0.3)  # type: ignore[assignment]
    assert workers.cause_of_death() == TOO_SLOW
    # A pool that has not broken is not waited for.
    workers._pool = _BreakingPool(broken=False, reaping=5.0)  # type: ignore[assignment]
    started = time.monotonic()
    assert workers.cause_of_death() == KILLED
    assert time.monotonic() - started < 1
    workers._pool = None


KILLED_THRICE, KILLED_ALWAYS = 4013, 5013


def killed(items: list[int], marks: str) -> list[int]:
    """Squares; the worker reading KILLED_THRICE is killed (SIGKILL) its first three times,
    the one reading KILLED_ALWAYS every time (as by the out-of-memory killer)."""
    for item, times in ((KILLED_THRICE, 3), (KILLED_ALWAYS, 10**6)):
        if item in items:
            with open(f"{marks}-{item}", "a+") as f:
                f.seek(0)
                seen = len(f.read())
                f.write("x")
            if seen < times:
                os.kill(os.getpid(), signal.SIGKILL)
    return [i * i for i in items]


def test_a_worker_killed_from_outside_needs_more_proof_than_a_crash(tmp_path: Path) -> None:
    # Killed in its chunk and twice alone (a crash that often would be blamed): read the fourth time.
    # Killed every time it is read alone, four times over: blamed as killed, not as a crash.
    sink = Sink()
    workers = Workers(jobs=2)
    try:
        items = [*range(8), KILLED_THRICE, *range(8, 16), KILLED_ALWAYS]
        fn = functools.partial(killed, marks=str(tmp_path / "marks"))
        workers.run(fn, items, take=sink.take, flush=sink.flush, crashed=crashed, chunk_size=4)
    finally:
        workers.shutdown()
    assert sink.taken == {**{i: i * i for i in range(16)}, KILLED_THRICE: KILLED_THRICE**2, KILLED_ALWAYS: -3}
