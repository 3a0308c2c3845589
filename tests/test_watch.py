"""Watch mode with a real observer on real directories; every wait has a deadline."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgindex import hashing
from imgindex.scan import ScanOptions
from imgindex.storage import open_index
from imgindex.watch import Watcher, WatchEvent, WatchOptions

from .conftest import encode, picture, run_module, write

DEADLINE = 60.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def rows(db: Path) -> dict[bytes, tuple[str, bytes | None]]:
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return {bytes(p): (s, sha) for p, s, sha in conn.execute("SELECT path, status, sha256 FROM file_paths")}
        except sqlite3.OperationalError:  # the index is not created yet
            return {}


class Running:
    def __init__(self, watcher: Watcher, thread: threading.Thread, events: list[WatchEvent]) -> None:
        self.watcher, self.thread, self.events = watcher, thread, events

    def indexed(self) -> int:
        return sum(e.indexed for e in self.events if e.kind in ("batch", "reconcile", "scan"))


@pytest.fixture
def start_watcher(tree: Path, db_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(**options: object) -> Running:
        events: list[WatchEvent] = []
        opts = WatchOptions(scan=ScanOptions(jobs=1), **{"reconcile": 0.0, "settle": 1.0, **options})  # type: ignore[arg-type]
        made: list[Watcher] = []

        def run() -> None:  # the index is used by the thread that opened it
            with open_index(db_path) as index:
                watcher = Watcher(index, [os.fsencode(tree)], opts, events.append)
                made.append(watcher)
                watcher.run()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        wait_for(lambda: any(e.kind == "scan" for e in events), "the initial scan")
        running = Running(made[0], thread, events)
        started.append(running)
        return running

    yield start
    for running in started:
        running.watcher.stop()
        running.thread.join(timeout=30)
        assert not running.thread.is_alive(), "the watcher did not stop"


def test_slowly_written_file_is_indexed_once_with_its_full_content(
    tree: Path, db_path: Path, start_watcher: Callable[..., Running]
) -> None:
    running = start_watcher()
    data = encode(picture(1, (400, 300)), "JPEG", quality=90)
    path = tree / "slow" / "photo"
    path.parent.mkdir()
    with open(path, "wb") as f:
        for i in range(0, len(data), 1024):
            f.write(data[i : i + 1024])
            f.flush()
            time.sleep(0.05)
    wait_for(lambda: bytes(path) in rows(db_path), "the file's row")
    assert rows(db_path)[bytes(path)] == ("ok", hashing.sha256(data))
    time.sleep(1.5)  # past the settle time: nothing more may be read for it
    assert running.indexed() == 1


def test_burst_of_files_none_missing(tree: Path, db_path: Path, start_watcher: Callable[..., Running]) -> None:
    start_watcher(settle=0.5)
    small = encode(picture(2, (16, 16)), "PNG")
    expected = set()
    for i in range(2000):
        path = tree / f"{i % 40:02d}" / f"{i:04d}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(small + i.to_bytes(4, "big"))  # distinct files (trailing bytes are ignored by decoders)
        expected.add(bytes(path))
    wait_for(lambda: len(rows(db_path)) >= 2000, "2000 rows", timeout=120)
    found = rows(db_path)
    assert set(found) == expected
    assert {s for s, _ in found.values()} == {"ok"}


def test_deletion_rename_and_directory_moved_in(
    tree: Path, tmp_path: Path, db_path: Path, start_watcher: Callable[..., Running]
) -> None:
    first = write(tree / "a" / "one.png", encode(picture(3), "PNG"))
    second = write(tree / "a" / "two.png", encode(picture(4), "PNG"))
    running = start_watcher()
    # Just written: the initial scan leaves them until they are `settle` old.
    wait_for(lambda: set(rows(db_path)) == {bytes(first), bytes(second)}, "the settled files")
    first.unlink()
    renamed = tree / "a" / "renamed.png"
    second.rename(renamed)
    outside = tmp_path / "elsewhere"
    write(outside / "deep" / "x.png", encode(picture(5), "PNG"))
    write(outside / "y.jpg", encode(picture(6), "JPEG"))
    outside.rename(tree / "moved")
    expected = {bytes(renamed), bytes(tree / "moved" / "deep" / "x.png"), bytes(tree / "moved" / "y.jpg")}
    wait_for(lambda: set(rows(db_path)) == expected, "deletion, rename and the moved-in directory")
    (tree / "moved" / "deep" / "x.png").unlink()
    (tree / "moved" / "deep").rmdir()
    wait_for(lambda: bytes(tree / "moved" / "deep" / "x.png") not in rows(db_path), "the removed directory")
    assert running.thread.is_alive()


def test_reconcile_walk_finds_a_change_no_event_reported(
    tree: Path, tmp_path: Path, db_path: Path, start_watcher: Callable[..., Running]
) -> None:
    old = encode(picture(7), "PNG")
    path = write(tree / "d" / "img.png", old)
    start_watcher(reconcile=1.0)
    wait_for(lambda: rows(db_path).get(bytes(path)) == ("ok", hashing.sha256(old)), "the first version")
    # Written through a hard link outside the tree: inotify reports it to the
    # outside directory only, so the watcher never hears of it.
    outside = tmp_path / "alias.png"
    os.link(path, outside)
    new = encode(picture(8), "PNG")
    with open(outside, "r+b") as f:
        f.truncate(0)
        f.write(new)
    wait_for(lambda: rows(db_path)[bytes(path)][1] == hashing.sha256(new), "the reconcile walk")
    assert sorted(rows(db_path)) == [bytes(path)]


def test_scan_and_report_run_while_watching(
    tree: Path, tmp_path: Path, db_path: Path, start_watcher: Callable[..., Running]
) -> None:
    start_watcher(settle=0.5)
    other = tmp_path / "other"
    for i in range(30):
        write(other / f"{i}.jpg", encode(picture(100 + i, (200, 150)), "JPEG"))
    writer_done = threading.Event()

    def writer() -> None:
        for i in range(60):
            write(tree / f"w{i % 5}" / f"{i}.png", encode(picture(i, (64, 64)), "PNG"))
            time.sleep(0.01)
        writer_done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    scanned = run_module("scan", str(other), "--db", str(db_path), "-j", "1", "--json")
    reported = run_module("report", "--near", "--db", str(db_path))
    thread.join()
    assert scanned.returncode == 0, scanned.stderr
    assert json.loads(scanned.stdout)["files"] == 30
    assert reported.returncode == 0, reported.stderr
    assert "database is locked" not in reported.stderr + scanned.stderr
    json.loads(reported.stdout)
    wait_for(lambda: len(rows(db_path)) == 90, "all 90 files")


def test_watch_reports_are_rewritten(
    tree: Path, tmp_path: Path, db_path: Path, start_watcher: Callable[..., Running]
) -> None:
    out = tmp_path / "near.json"
    start_watcher(report_near=out)
    wait_for(out.exists, "the first report")
    assert json.loads(out.read_text())["initial_image_count"] == 0
    image = encode(picture(9), "PNG")
    write(tree / "x" / "a.png", image)
    write(tree / "y" / "b.png", image)
    wait_for(lambda: json.loads(out.read_text())["duplicate_count"] == 1, "a report with the new duplicate")


def test_sigterm_commits_the_last_batch_and_exits_0(tree: Path, db_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgindex", "watch", str(tree), "--db", str(db_path), "-j", "1", "--json-log",
         "--batch-seconds", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first["event"] == "scan"
    paths = [write(tree / "n" / f"{i}.png", encode(picture(i), "PNG")) for i in range(5)]
    time.sleep(0.5)  # the events reach the watcher, whose batch waits 30 s
    assert rows(db_path) == {}
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert set(rows(db_path)) == {bytes(p) for p in paths}
    events = [json.loads(line) for line in stdout.splitlines()]
    assert events[-1]["event"] == "stopped" and events[-1]["images"] == 5
    assert sum(e["indexed"] for e in events if e["event"] == "batch") == 5


def test_polling_mode_uses_walks_only(tree: Path, db_path: Path, start_watcher: Callable[..., Running]) -> None:
    running = start_watcher(polling=True, poll_interval=0.3, settle=0.2)
    path = write(tree / "p" / "q.png", encode(picture(11), "PNG"))
    wait_for(lambda: bytes(path) in rows(db_path), "the polled file")
    assert not any(e.kind == "batch" for e in running.events)  # found by a walk, not an event


def test_watch_refuses_a_missing_directory(tmp_path: Path) -> None:
    result = run_module("watch", str(tmp_path / "missing"), "--db", str(tmp_path / "i.db"))
    assert result.returncode == 1
    assert "cannot scan" in result.stderr


def test_sigterm_stops_the_initial_scan_promptly(tree: Path, db_path: Path) -> None:
    blobs = [encode(picture(i, (640, 480)), "PNG" if i % 2 else "JPEG") for i in range(40)]
    for i in range(800):
        write(tree / f"{i % 20:02d}" / f"p{i}", blobs[i % 40])
    old = time.time_ns() - 3600 * 10**9
    for path in tree.rglob("p*"):
        os.utime(path, ns=(old, old))  # settled: the scan reads them at once
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgindex", "watch", str(tree), "--db", str(db_path), "-j", "1", "--json-log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: len(rows(db_path)) > 0, "the first committed rows")
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert time.monotonic() - start < 10
    assert 0 < len(rows(db_path)) < 800, "the scan finished before it could be stopped: make the tree bigger"


def test_unwritable_report_is_a_warning_not_a_crash(
    tree: Path, tmp_path: Path, db_path: Path, start_watcher: Callable[..., Running]
) -> None:
    running = start_watcher(report_near=tmp_path / "no" / "such" / "dir" / "near.json")
    # The report is written after the initial scan's event: waited for, not expected with it.
    wait_for(
        lambda: any(e.kind == "warning" and "cannot write" in (e.message or "") for e in running.events),
        "the warning that the report cannot be written",
    )
    write(tree / "a.png", encode(picture(1), "PNG"))
    wait_for(lambda: len(rows(db_path)) == 1, "indexing to go on")
    assert running.thread.is_alive()


def stored_hashes(db: Path) -> set[int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return {int(h) for (h,) in conn.execute("SELECT hash FROM near_hashes")}


def image_hashes(db: Path) -> set[int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return {int(h) for (h,) in conn.execute("SELECT DISTINCT phash FROM files WHERE phash IS NOT NULL")}


def test_watch_keeps_the_stored_near_pairs_up_to_date(
    tree: Path, db_path: Path, start_watcher: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgindex import watch

    monkeypatch.setattr(watch, "PAIRS_GAP", 0.2)
    write(tree / "first.png", encode(picture(1), "PNG"))
    running = start_watcher()
    wait_for(lambda: stored_hashes(db_path) == image_hashes(db_path) != set(), "the first file's hash")
    for n in range(2, 6):
        write(tree / "new" / f"{n}.png", encode(picture(n), "PNG"))
    wait_for(lambda: len(image_hashes(db_path)) == 5, "the new files to be indexed")
    wait_for(lambda: stored_hashes(db_path) == image_hashes(db_path), "the pairs to be updated")
    (tree / "first.png").unlink()
    wait_for(lambda: len(image_hashes(db_path)) == 4, "the removal")
    wait_for(lambda: stored_hashes(db_path) == image_hashes(db_path), "the removed hash to be dropped")
    running.watcher.stop()
    running.thread.join(timeout=30)


def test_a_growing_web_archive_is_followed(tree: Path, db_path: Path, start_watcher: Callable[..., Running]) -> None:
    from .test_archives import Capture, warc_bytes

    captures = [Capture(f"http://example.com/{i}.jpg", encode(picture(300 + i))) for i in range(4)]
    data, offsets = warc_bytes(captures)
    start_watcher()
    warc = tree / "live.warc.gz"
    cut = offsets[2] + 40  # two whole records, and the start of the third
    with warc.open("wb") as f:
        f.write(data[:cut])
    first = {f"{warc}#{o}".encode() for o in offsets[:2]}
    wait_for(lambda: set(rows(db_path)) == first, "the whole records to be indexed")
    with warc.open("ab") as f:
        f.write(data[cut:])
    every = {f"{warc}#{o}".encode() for o in offsets}
    wait_for(lambda: set(rows(db_path)) == every, "the records appended to be indexed")
    assert all(status == "ok" for status, _ in rows(db_path).values())
    warc.unlink()
    wait_for(lambda: rows(db_path) == {}, "the deleted archive's records to leave")
