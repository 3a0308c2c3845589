"""Faults from outside: the process killed outright leaves nothing running behind it."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import encode, picture, write


def session_processes(sid: int) -> list[int]:
    """The processes of a session, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != b"Z":  # state, ppid, pgrp, session; zombies are gone
            found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process table from /proc")
@pytest.mark.parametrize("command", ["scan", "watch"])
def test_killed_outright_it_leaves_no_helper_process_behind(tmp_path: Path, command: str) -> None:
    blobs = [encode(picture(i, (800, 600)), "JPEG") for i in range(10)]
    for n in range(300):
        write(tmp_path / "dump" / f"{n % 10}" / f"{n}.jpg", blobs[n % 10] + bytes([n % 256]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgindex", command, str(tmp_path / "dump"), "--db", str(tmp_path / "i.db"), "-j", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own session: its helpers are found by it
    )
    try:
        deadline = time.monotonic() + 60
        while len(session_processes(proc.pid)) < 4 and time.monotonic() < deadline:  # workers are reading
            time.sleep(0.05)
        assert len(session_processes(proc.pid)) >= 4, "the worker processes did not start"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert session_processes(proc.pid) == [], "helper processes outlived their parent"
    finally:
        for pid in session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_standard_output_is_one_clear_error(tmp_path: Path) -> None:
    for n in range(4):
        write(tmp_path / "dump" / f"{n}.png", encode(picture(n % 2), "PNG"))
    db = str(tmp_path / "i.db")
    subprocess.run([sys.executable, "-m", "imgindex", "scan", str(tmp_path / "dump"), "--db", db, "-q"], check=True)
    image = str(tmp_path / "dump" / "0.png")
    for args in (
        ["report", "--exact"],
        ["report", "--near", "-f", "csv"],
        ["errors", "--json"],
        ["stats"],
        ["query", image],
    ):
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [sys.executable, "-m", "imgindex", *args, "--db", db], stdout=full, stderr=subprocess.PIPE, text=True
            )
        assert done.returncode == 1, (args, done.stderr)
        assert "No space left on device" in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


def _disk_of(size: int) -> Callable[[], None]:
    """A process in which no file can grow past ``size`` bytes (a disk that fills)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails instead of killing

    return limit


def test_a_scan_on_a_full_disk_is_one_clear_error_and_keeps_what_it_committed(tmp_path: Path) -> None:
    for n in range(300):
        write(tmp_path / "dump" / f"{n % 10}" / f"{n}.png", encode(picture(n % 30, (64, 48)), "PNG") + bytes([n % 256]))
    (tmp_path / "empty").mkdir()
    db = tmp_path / "i.db"
    scan = [sys.executable, "-m", "imgindex", "scan", str(tmp_path / "dump"), "--db", str(db), "-j", "1"]
    # A new index on a disk too full to hold it: the same clear error, not "not an index".
    new = subprocess.run(scan, preexec_fn=_disk_of(20_000), capture_output=True, text=True)
    assert new.returncode == 1 and "reading or writing the index failed" in new.stderr, new.stderr
    assert "Traceback" not in new.stderr and "not an imgindex index" not in new.stderr
    for stale in tmp_path.glob("i.db*"):
        stale.unlink()
    made = subprocess.run([*scan[:4], str(tmp_path / "empty"), *scan[5:]], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    room = db.stat().st_size + 150_000  # the index cannot grow much past what it holds
    done = subprocess.run([*scan, "--batch-size", "20"], preexec_fn=_disk_of(room), capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert "reading or writing the index failed" in done.stderr and "Traceback" not in done.stderr
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        kept = raw.execute("SELECT count(*) FROM files").fetchone()[0]
    assert 0 < kept < 300  # the batches committed before the disk filled
    again = subprocess.run([*scan, "--json"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["by_status"] == {"ok": 300}


def _imgindex(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgindex", *args], capture_output=True, text=True, timeout=120)


def test_check_finds_missing_objects_and_orphans_and_repair_mends_them(tmp_path: Path) -> None:
    for n in range(12):
        write(tmp_path / "dump" / f"{n % 3}" / f"{n}.png", encode(picture(n % 6), "PNG"))
    db = str(tmp_path / "i.db")
    assert _imgindex("scan", str(tmp_path / "dump"), "--db", db, "-q").returncode == 0
    healthy = _imgindex("report", "--near", "--db", db, "-q").stdout
    with sqlite3.connect(db) as raw:  # damage of the kind a crashed tool or a careless hand leaves
        raw.execute("PRAGMA foreign_keys = OFF")
        raw.execute("DROP VIEW file_paths")
        raw.execute("DROP TABLE near_pairs")
        raw.executescript("DROP INDEX files_trim_hash; ALTER TABLE files DROP COLUMN trim_hash")
        raw.execute("DELETE FROM dirs WHERE CAST(path AS TEXT) LIKE '%/0'")
    broken = _imgindex("errors", "--db", db)
    assert broken.returncode == 1 and "the index is damaged" in broken.stderr and "Traceback" not in broken.stderr
    found = _imgindex("check", "--db", db, "--json")
    assert found.returncode == 3
    health = json.loads(found.stdout)
    assert not health["ok"] and {"file_paths", "near_pairs", "files.trim_hash"} <= set(health["missing"])
    assert health["orphans"] == {"files in no directory": 4}
    mended = _imgindex("check", "--repair", "--db", db)
    assert mended.returncode == 0, mended.stdout
    assert _imgindex("check", "--db", db).returncode == 0
    assert _imgindex("scan", str(tmp_path / "dump"), "--db", db, "-q").returncode == 0  # reads the lost rows again
    assert _imgindex("report", "--near", "--db", db, "-q").stdout == healthy


def garbage_over(db: Path, name: str) -> None:
    """Random bytes over the first page of a table or index, as a bad sector would leave it."""
    with sqlite3.connect(db) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = raw.execute("PRAGMA page_size").fetchone()[0]
        page = raw.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]
    with open(db, "r+b") as f:
        f.seek((page - 1) * page_size)
        f.write(os.urandom(page_size))


def test_a_damaged_index_page_is_found_and_rebuilt(tmp_path: Path) -> None:
    for n in range(40):
        write(tmp_path / "dump" / f"{n}.png", encode(picture(n % 8), "PNG"))
    db = tmp_path / "i.db"
    assert _imgindex("scan", str(tmp_path / "dump"), "--db", str(db), "-q").returncode == 0
    garbage_over(db, "files_status")  # one page of an index
    found = _imgindex("check", "--db", str(db), "--json")
    assert found.returncode == 3 and json.loads(found.stdout)["integrity"]
    for args in (["stats"], ["errors"], ["report", "--exact", "-q", "-o", os.devnull]):
        done = _imgindex(*args, "--db", str(db))
        assert "Traceback" not in done.stderr, (args, done.stderr)
    assert _imgindex("check", "--repair", "--db", str(db)).returncode == 0
    assert _imgindex("check", "--db", str(db)).returncode == 0


def _read_only_mount_works() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _read_only_mount_works(), reason="needs root and unshare for a read-only mount")
def test_an_index_in_a_read_only_place_can_be_read_and_says_so_when_written(tmp_path: Path) -> None:
    for n in range(6):
        write(tmp_path / "dump" / f"{n}.png", encode(picture(n % 3), "PNG"))
    place = tmp_path / "place"
    place.mkdir()
    db = place / "i.db"
    assert _imgindex("scan", str(tmp_path / "dump"), "--db", str(db), "-q").returncode == 0
    assert not (place / "i.db-shm").exists()  # closed cleanly: nothing beside it
    expected = _imgindex("report", "--near", "--db", str(db), "-q").stdout
    # The same commands with the index's directory mounted read-only (in a mount namespace of their own).
    script = (
        f"mount --bind {place} {place} && mount -o remount,bind,ro {place} && "
        f"{sys.executable} -m imgindex report --near --db {db} -q > {tmp_path}/report.json; echo report $? && "
        f"{sys.executable} -m imgindex stats --db {db} > /dev/null; echo stats $? && "
        f"{sys.executable} -m imgindex scan {tmp_path}/dump --db {db} -q 2> {tmp_path}/scan.err; echo scan $?"
    )
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    codes = dict(line.split() for line in done.stdout.split("\n") if line.strip())
    assert codes == {"report": "0", "stats": "0", "scan": "1"}, done.stdout + done.stderr
    assert (tmp_path / "report.json").read_text() == expected
    assert "its place is read-only" in (tmp_path / "scan.err").read_text()


@pytest.mark.skipif(not _read_only_mount_works(), reason="needs root and unshare for a read-only mount")
def test_a_read_only_dev_shm_is_one_clear_error_and_no_file_gets_a_status(tmp_path: Path) -> None:
    for n in range(8):
        write(tmp_path / "dump" / f"{n}.png", encode(picture(n), "PNG"))
    (tmp_path / "dump" / "page.html").write_bytes(b"<html></html>")
    db = tmp_path / "i.db"
    script = (
        "mount -t tmpfs -o ro tmpfs /dev/shm && "  # as in some containers: worker processes cannot start
        f"{sys.executable} -m imgindex scan {tmp_path}/dump --db {db} -j 2 -q"
    )
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "worker processes cannot run here" in done.stderr and "Traceback" not in done.stderr
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT count(*) FROM files").fetchone()[0] == 0
    assert _imgindex("scan", str(tmp_path / "dump"), "--db", str(db), "-q", "-j", "1").returncode == 0


@pytest.mark.skipif(not _read_only_mount_works(), reason="needs root and unshare to mount a small filesystem")
def test_a_really_full_filesystem_under_the_index_is_one_clear_error(tmp_path: Path) -> None:
    for n in range(300):
        write(tmp_path / "dump" / f"{n % 10}" / f"{n}.png", encode(picture(n % 30, (64, 48)), "PNG") + bytes([n % 256]))
    small = tmp_path / "small"
    small.mkdir()
    db = small / "i.db"
    script = (
        f"mount -t tmpfs -o size=640k tmpfs {small} && "  # a real filesystem that fills up (ENOSPC)
        f"{sys.executable} -m imgindex scan {tmp_path}/dump --db {db} -j 1 --batch-size 20; echo exit $? && "
        f"{sys.executable} -c \"import sqlite3; c = sqlite3.connect('{db}'); q = lambda s: c.execute(s).fetchone()[0]; "
        "print(q('PRAGMA integrity_check'), q('SELECT count(*) FROM files'))\""
    )
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=180)
    lines = done.stdout.split("\n")
    assert "exit 1" in lines, done.stdout + done.stderr
    assert "database or disk is full" in done.stderr and "Traceback" not in done.stderr
    integrity, kept = lines[lines.index("exit 1") + 1].split()
    assert integrity == "ok" and 0 < int(kept) < 300


def test_repair_makes_lost_roots_again_from_their_directories_and_keeps_every_file(tmp_path: Path) -> None:
    for n in range(6):
        write(tmp_path / "dump" / f"{n % 2}" / f"{n}.png", encode(picture(n), "PNG"))
    db = str(tmp_path / "i.db")
    assert _imgindex("scan", str(tmp_path / "dump"), "--db", db, "-q").returncode == 0
    healthy = _imgindex("report", "--exact", "--db", db, "-q").stdout
    with sqlite3.connect(db) as raw:
        raw.execute("PRAGMA foreign_keys = OFF")
        raw.execute("DROP TABLE roots")
    for _ in range(2):  # a second repair must not take what the first left for orphans
        assert _imgindex("check", "--repair", "--db", db).returncode == 0
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT count(*) FROM files").fetchone()[0] == 6
        assert [bytes(r[0]) for r in raw.execute("SELECT path FROM roots")] == [os.fsencode(tmp_path / "dump")]
    assert _imgindex("report", "--exact", "--db", db, "-q").stdout == healthy


def test_repair_leaves_indexes_alone_when_a_table_itself_is_damaged(tmp_path: Path) -> None:
    for n in range(60):
        write(tmp_path / "dump" / f"{n}.png", encode(picture(n % 9), "PNG"))
    db = tmp_path / "i.db"
    assert _imgindex("scan", str(tmp_path / "dump"), "--db", str(db), "-q").returncode == 0
    with sqlite3.connect(db) as raw:
        indexes = raw.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index'").fetchone()[0]
    garbage_over(db, "descriptors")  # a page of a table: not mendable here
    done = _imgindex("check", "--repair", "--db", str(db))
    assert done.returncode == 3 and "Traceback" not in done.stderr
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index'").fetchone()[0] == indexes


def test_export_refuses_a_fifo_where_an_indexed_file_was_instead_of_hanging(tmp_path: Path) -> None:
    for n in range(3):
        write(tmp_path / "dump" / f"{n}.png", encode(picture(n), "PNG"))
    db = str(tmp_path / "i.db")
    assert _imgindex("scan", str(tmp_path / "dump"), "--db", db, "-q").returncode == 0
    (tmp_path / "dump" / "1.png").unlink()
    os.mkfifo(tmp_path / "dump" / "1.png")
    done = subprocess.run(
        [sys.executable, "-m", "imgindex", "export", str(tmp_path / "out"), "--exact", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3 and "not a regular file" in done.stderr
    assert len(list((tmp_path / "out").iterdir())) == 2


def test_check_finds_thumbnails_and_hashes_of_the_wrong_length_and_repair_reads_them_again(tmp_path: Path) -> None:
    for n in range(12):
        write(tmp_path / "dump" / f"{n}.png", encode(picture(n % 6, (64, 48)), "PNG"))
    time.sleep(2.1)  # older than the racy window (2 s): later scans leave the damaged rows' files alone
    db = str(tmp_path / "i.db")
    assert _imgindex("scan", str(tmp_path / "dump"), "--db", db, "-q").returncode == 0
    assert _imgindex("pairs", "--rotations", "--db", db, "-q").returncode == 0
    healthy = _imgindex("report", "--near", "--db", db, "-q", "--rotations").stdout
    with sqlite3.connect(db) as raw:  # blobs cut short, as a careless hand or another tool leaves them
        first, last = raw.execute("SELECT min(file_id), max(file_id) FROM descriptors").fetchone()
        raw.execute("UPDATE regions SET hashes = substr(hashes, 1, 33) WHERE file_id = ?", (first,))
        raw.execute("UPDATE descriptors SET grid = zeroblob(1000) WHERE file_id = ?", (last,))
        raw.execute("UPDATE descriptors SET picture = x'00' WHERE file_id = ?", (first + 1,))
        key = raw.execute("SELECT min(picture) FROM near_orientations").fetchone()[0]
        raw.execute("UPDATE near_orientations SET hashes = zeroblob(70) WHERE picture = ?", (key,))
    (tmp_path / "dump" / "new.png").write_bytes((tmp_path / "dump" / "3.png").read_bytes() + b"more")
    for command in (["scan", str(tmp_path / "dump")], ["report", "--near", "--rotations", "-t", "12"]):
        damaged = _imgindex(*command, "--db", db, "-q")  # the malformed rows passed over, not a traceback
        assert damaged.returncode == 0 and "Traceback" not in damaged.stderr, damaged.stderr
    (tmp_path / "dump" / "new.png").unlink()
    found = _imgindex("check", "--db", db, "--json")
    assert found.returncode == 3, found.stdout
    health = json.loads(found.stdout)
    assert health["malformed"] == {
        "thumbnails of the wrong length": 2,
        "region hashes of the wrong length": 1,
        "orientation hashes of the wrong length": 1,
    }
    mended = _imgindex("check", "--repair", "--db", db)
    assert mended.returncode == 0, mended.stdout
    assert _imgindex("check", "--db", db).returncode == 0
    assert _imgindex("scan", str(tmp_path / "dump"), "--db", db, "-q").returncode == 0  # reads them again
    assert _imgindex("report", "--near", "--db", db, "-q", "--rotations").stdout == healthy
