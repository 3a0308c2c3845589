"""The incremental scan on real trees and real index files."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from imgindex import hashing
from imgindex.hashing import HashSettings
from imgindex.scan import RACY_WINDOW_NS, ScanError, ScanOptions, scan
from imgindex.storage import Index, open_index

from .conftest import QUICK, encode, picture, run_scan, write


def rows(index: Index) -> dict[str, tuple[object, ...]]:
    """path (decoded, with escapes) -> (status, format, sha256 hex, phash, width, height, error)"""
    result = {}
    for path, status, fmt, sha, phash, w, h, err in index.db.conn.execute(
        "SELECT path, status, format, sha256, phash, width, height, error FROM file_paths"
    ):
        key = bytes(path).decode("utf-8", "backslashreplace")
        result[key] = (status, fmt, sha.hex() if sha else None, phash, w, h, err)
    return result


def make_images(root: Path, count: int, start: int = 0) -> list[Path]:
    return [
        write(root / f"{i % 7:02x}" / f"{i:03d}", encode(picture(i, (48, 40)), "PNG" if i % 3 else "JPEG"))
        for i in range(start, start + count)
    ]


def test_first_scan_hashes_everything_second_nothing(tree: Path, index: Index) -> None:
    make_images(tree, 12)
    write(tree / "aa" / "index.html", b"<html><body>hello</body></html>")
    first = run_scan(index, tree)
    assert (first.files, first.new, first.hashed, first.images) == (13, 13, 13, 12)
    assert first.by_status == {"ok": 12, "not_image": 1}
    second = run_scan(index, tree)
    assert (second.new, second.changed, second.unchanged, second.hashed, second.removed) == (0, 0, 13, 0, 0)


def test_touching_one_file_rehashes_exactly_that_file(tree: Path, index: Index) -> None:
    files = make_images(tree, 10)
    run_scan(index, tree)
    os.utime(files[3], ns=(files[3].stat().st_atime_ns, files[3].stat().st_mtime_ns + 1_000_000_000))
    summary = run_scan(index, tree)
    assert (summary.changed, summary.hashed, summary.unchanged) == (1, 1, 9)


def test_same_size_rewrite_within_the_same_second_is_detected(tree: Path, index: Index) -> None:
    path = write(tree / "a" / "pic", encode(picture(1), "PNG"))
    run_scan(index, tree)
    before = path.stat()
    replacement = encode(picture(2), "PNG")
    replacement = replacement[: before.st_size].ljust(before.st_size, b"\0")  # same size (now truncated: fine)
    path.write_bytes(replacement)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same mtime, as on a coarse clock
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    summary = run_scan(index, tree)
    assert (summary.changed, summary.hashed) == (1, 1)
    assert rows(index)[str(path)][2] == hashing.sha256(replacement).hex()


def test_racily_clean_files_are_read_again_once(tree: Path, index: Index) -> None:
    """A file changed within the timestamp tick of its reading cannot be trusted by stat alone."""
    make_images(tree, 3)
    careful = replace(QUICK, racy_window_ns=3600 * 10**9)  # every file here is "recent"
    run_scan(index, tree, options=careful)
    again = run_scan(index, tree, options=careful)
    assert (again.unchanged, again.rechecked, again.hashed) == (3, 3, 3)
    # Once read well after its last change, a file is trusted.
    relaxed = run_scan(index, tree, options=QUICK)
    assert relaxed.hashed == 0


def test_rehash_forces_everything(tree: Path, index: Index) -> None:
    make_images(tree, 4)
    run_scan(index, tree)
    summary = run_scan(index, tree, options=replace(QUICK, rehash=True))
    assert (summary.unchanged, summary.hashed) == (4, 4)


def test_changed_hash_settings_recompute_perceptual_hashes_only(tree: Path, index: Index) -> None:
    make_images(tree, 4)
    run_scan(index, tree)
    before = rows(index)
    index.db.conn.execute("UPDATE files SET sha256 = X'00'")  # a marker: the exact hash must not be recomputed
    summary = run_scan(index, tree, options=replace(QUICK, settings=HashSettings(algorithm="phash")))
    assert summary.hashed == 4
    after = rows(index)
    for path, row in after.items():
        assert row[2] == "00"
        assert row[3] != before[path][3]
    assert run_scan(index, tree, options=replace(QUICK, settings=HashSettings(algorithm="phash"))).hashed == 0


def test_images_are_recognised_by_content_not_name(tree: Path, index: Index) -> None:
    image = picture(4)
    write(tree / "x" / "page.php?id=3", encode(image, "JPEG"))
    write(tree / "x" / "noext", encode(image, "PNG"))
    write(tree / "x" / "fake.jpg", b"<!doctype html><title>404</title>")
    write(tree / "x" / "anim.gif.html", encode(image, "GIF"))
    run_scan(index, tree)
    found = {Path(p).name: (r[0], r[1]) for p, r in rows(index).items()}
    assert found == {
        "page.php?id=3": ("ok", "JPEG"),
        "noext": ("ok", "PNG"),
        "fake.jpg": ("not_image", None),
        "anim.gif.html": ("ok", "GIF"),
    }


def test_bad_inputs_get_a_status_and_the_scan_goes_on(tree: Path, index: Index) -> None:
    good = encode(picture(1, (200, 150)), "JPEG", quality=90)
    write(tree / "ok.jpg", good)
    write(tree / "empty.jpg", b"")
    write(tree / "truncated.jpg", good[: len(good) // 2])
    write(tree / "corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"nonsense" * 10 + b"IEND\xaeB`\x82")
    write(tree / "huge.png", encode(picture(2, (300, 300)), "PNG"))
    write(tree / "photo.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64)
    summary = run_scan(index, tree, options=replace(QUICK, settings=HashSettings(max_pixels=200 * 150)))
    found = {Path(p).name: r for p, r in rows(index).items()}
    assert found["ok.jpg"][0] == "ok"
    assert found["empty.jpg"][0] == "empty"
    assert found["truncated.jpg"][0] == "truncated"
    assert found["corrupt.png"][0] == "corrupt"
    assert found["huge.png"][0] == "too_large"
    assert "90,000 pixels" in str(found["huge.png"][6])
    if not hashing.readable_formats()["HEIF"]:
        assert found["photo.heic"][0] == "unsupported"
    # The exact hash is recorded even where decoding failed.
    assert found["truncated.jpg"][2] == hashing.sha256(good[: len(good) // 2]).hex()
    assert found["huge.png"][2] is not None
    for name in ("truncated.jpg", "corrupt.png", "huge.png"):
        assert found[name][6], f"{name} has no reason recorded"
    assert summary.failed >= 3
    assert summary.failures["truncated"] == 1


def test_raising_max_pixels_reads_too_large_images_again(tree: Path, index: Index) -> None:
    write(tree / "big.png", encode(picture(2, (300, 300)), "PNG"))
    run_scan(index, tree, options=replace(QUICK, settings=HashSettings(max_pixels=1000)))
    assert next(iter(rows(index).values()))[0] == "too_large"
    run_scan(index, tree)
    assert next(iter(rows(index).values()))[0] == "ok"


def test_non_utf8_names_are_indexed(tree: Path, index: Index) -> None:
    name = b"caf\xe9 \xff.jpg"
    os.makedirs(os.path.join(os.fsencode(tree), b"d\xe8r"))
    with open(os.path.join(os.fsencode(tree), b"d\xe8r", name), "wb") as f:
        f.write(encode(picture(3), "JPEG"))
    summary = run_scan(index, tree)
    assert summary.by_status == {"ok": 1}
    (path,) = [bytes(r[0]) for r in index.db.conn.execute("SELECT path FROM file_paths")]
    assert path == os.path.join(os.fsencode(tree), b"d\xe8r", name)
    assert run_scan(index, tree).hashed == 0


def test_removed_files_and_directories_leave_the_index(tree: Path, index: Index) -> None:
    files = make_images(tree, 14)
    run_scan(index, tree)
    files[0].unlink()
    for f in (tree / "03").iterdir():
        f.unlink()
    (tree / "03").rmdir()
    summary = run_scan(index, tree)
    assert summary.removed == 3
    assert len(rows(index)) == 11
    assert index.db.conn.execute("SELECT count(*) FROM dirs WHERE path LIKE '%/03'").fetchone()[0] == 0


def test_symlinks_are_skipped_unless_followed_and_loops_are_detected(tree: Path, index: Index) -> None:
    make_images(tree / "real", 3)
    (tree / "real" / "loop").symlink_to(tree)  # real/loop -> the root: a loop when followed
    (tree / "link.png").symlink_to(next((tree / "real").rglob("001")))
    plain = run_scan(index, tree)
    assert plain.files == 3
    assert plain.skipped_symlinks == 2
    followed = run_scan(index, tree, options=replace(QUICK, follow_symlinks=True))
    assert followed.files == 4  # the three images and the linked file; the loop is entered once at most
    assert followed.loops and followed.loops[0].endswith(b"/loop")


def test_unreadable_root_is_refused(tmp_path: Path, index: Index) -> None:
    with pytest.raises(ScanError, match="not a directory"):
        run_scan(index, write(tmp_path / "file", b"x"))
    with pytest.raises(ScanError, match="No such file"):
        run_scan(index, tmp_path / "missing")


def test_several_roots_and_nested_roots(tmp_path: Path, index: Index) -> None:
    make_images(tmp_path / "a" / "inner", 3)
    make_images(tmp_path / "b", 2, start=10)
    run_scan(index, tmp_path / "a" / "inner")
    run_scan(index, tmp_path / "b")
    assert len(index.catalog.roots()) == 2
    # A new root holding a known one takes it over, without reading its files again.
    summary = run_scan(index, tmp_path / "a")
    assert (summary.new, summary.hashed) == (0, 0)
    assert [os.fsdecode(r.path) for r in index.catalog.roots()] == [str(tmp_path / "a"), str(tmp_path / "b")]
    # A path inside a known root is scanned as part of that root.
    assert run_scan(index, tmp_path / "a" / "inner").files == 3
    assert len(index.catalog.roots()) == 2


def test_scans_history_is_recorded(tree: Path, index: Index) -> None:
    make_images(tree, 2)
    run_scan(index, tree)
    (scan_row,) = index.catalog.last_scans()
    assert scan_row["state"] == "done"
    assert (scan_row["files"], scan_row["new"], scan_row["hashed"]) == (2, 2, 2)
    assert scan_row["roots"] == [str(tree)]
    assert isinstance(scan_row["seconds"], float)


def test_process_pool_gives_the_same_rows_as_one_process(tmp_path: Path) -> None:
    from imgindex.storage import open_index

    make_images(tmp_path / "dump", 40)
    with open_index(tmp_path / "one.db") as one, open_index(tmp_path / "pool.db") as pool:
        run_scan(one, tmp_path / "dump")
        summary = scan(pool, [tmp_path / "dump"], ScanOptions(jobs=2, chunk_size=3, batch_size=7, racy_window_ns=0))
        assert summary.hashed == 40
        assert rows(one) == rows(pool)


def test_index_is_a_plain_sqlite_file_others_can_read(tree: Path, index: Index, db_path: Path) -> None:
    make_images(tree, 2)
    run_scan(index, tree)
    with sqlite3.connect(db_path) as other:
        assert other.execute("SELECT count(*) FROM files WHERE status = 'ok'").fetchone()[0] == 2


def test_a_file_that_stops_being_an_image_loses_its_hash(tree: Path, index: Index) -> None:
    image = encode(picture(1), "PNG")
    write(tree / "a.png", image)
    b = write(tree / "b.png", image)
    run_scan(index, tree)
    b.write_bytes(b"<html>404 not found</html>")
    run_scan(index, tree)
    found = {Path(p).name: r for p, r in rows(index).items()}
    assert found["b.png"][:3] == ("not_image", None, None)
    assert len(index.images.table()) == 1


def test_roots_given_twice_or_nested_on_one_command_line(tmp_path: Path, index: Index) -> None:
    make_images(tmp_path / "nest" / "b", 2)
    make_images(tmp_path / "nest", 1, start=5)
    summary = run_scan(index, tmp_path / "nest" / "b", tmp_path / "nest", f"{tmp_path}//nest/")  # type: ignore[arg-type]
    assert (summary.files, summary.new) == (3, 3)
    assert [os.fsdecode(r.path) for r in index.catalog.roots()] == [str(tmp_path / "nest")]


def test_a_known_root_seen_through_a_symlink_is_refused(tmp_path: Path, index: Index) -> None:
    make_images(tmp_path / "dump", 1)
    (tmp_path / "alias").symlink_to(tmp_path / "dump")
    run_scan(index, tmp_path / "dump")
    with pytest.raises(ScanError, match="symbolic link"):
        run_scan(index, tmp_path / "alias")


def test_future_mtimes_are_not_read_again_and_again(tree: Path, index: Index) -> None:
    path = write(tree / "from-a-fast-clock.png", encode(picture(2), "PNG"))
    tomorrow = time.time_ns() + 86400 * 10**9
    os.utime(path, ns=(tomorrow, tomorrow))
    careful = replace(QUICK, racy_window_ns=RACY_WINDOW_NS)
    run_scan(index, tree, options=careful)
    time.sleep(0.05)
    # ctime is fresh, so one re-check is due; after that the file is trusted.
    run_scan(index, tree, options=replace(careful, racy_window_ns=10**6))
    assert run_scan(index, tree, options=replace(careful, racy_window_ns=10**6)).hashed == 0


def test_directory_made_after_its_parent_was_listed_is_kept(tree: Path, index: Index) -> None:
    from imgindex.planner import Planner
    from imgindex.scan_types import ScanSummary
    from imgindex.sources.directory import DirectorySource

    make_images(tree / "late", 1)
    run_scan(index, tree)
    catalog = index.catalog
    late_ids = {
        catalog.known_dir_id(os.fsencode(tree / "late")),
        catalog.known_dir_id(os.fsencode(tree / "late" / "00")),
    }
    top = os.fsencode(tree)
    planner = Planner(catalog, DirectorySource(), QUICK, ScanSummary(0, []), None)
    # As if the walk listed the root before "late" was made: it is on disk, so it stays.
    assert planner._vanished_dirs(top, {top: 1}, {}) == []
    shutil.rmtree(tree / "late")
    assert set(planner._vanished_dirs(top, {top: 1}, {})) == late_ids


def test_rows_for_a_directory_another_process_removed_are_dropped(tree: Path, index: Index, db_path: Path) -> None:
    from imgindex.storage import FileRecord

    make_images(tree / "gone", 1)
    run_scan(index, tree)
    dir_id = index.catalog.known_dir_id(os.fsencode(tree / "gone"))
    assert dir_id is not None
    with open_index(db_path) as other:
        other.catalog.remove_dirs([dir_id])
    record = FileRecord(dir_id, b"x", 1, 1, 1, 1, 1, "not_image", None, None, None, None, None, None, None, 1)
    index.catalog.write_files([record])  # no foreign-key error: the row is dropped
    assert index.db.conn.execute("SELECT count(*) FROM files WHERE dir_id = ?", (dir_id,)).fetchone()[0] == 0


def test_too_large_and_unsupported_files_are_not_read_again_for_nothing(tree: Path, index: Index) -> None:
    write(tree / "big.png", encode(picture(2, (300, 300)), "PNG"))
    write(tree / "photo.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64)
    limited = replace(QUICK, settings=HashSettings(max_pixels=1000))
    run_scan(index, tree, options=limited)
    again = run_scan(index, tree, options=limited)
    expected = 0 if not hashing.readable_formats()["HEIF"] else 1
    assert again.hashed == expected
    assert {r[0] for r in rows(index).values()} >= {"too_large"}


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def _pool_workers() -> list[int]:
    """The processes of this process's worker pools: the forkserver's children (or, without a
    forkserver, the children started by spawn). Not any child's children: an earlier test may
    have left a browser or a cluster's processes running under this one."""
    found = []
    for child in _children(os.getpid()):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                command = f.read()
        except OSError:
            continue
        if b"forkserver" in command:
            found += _children(child)
        elif b"spawn_main" in command:
            found.append(child)
    return found


def test_a_worker_that_dies_does_not_end_the_scan(tree: Path, index: Index) -> None:
    """Fault injection: a worker process is killed mid-scan (as a decoder crash would kill it)."""
    import signal
    import threading

    blobs = [encode(picture(i, (640, 480)), "JPEG") for i in range(10)]
    for i in range(300):
        write(tree / f"{i % 10}" / f"{i}.jpg", blobs[i % 10])
    killed: list[int] = []
    before = set(_pool_workers())  # (none, unless an earlier scan's pool is still closing)

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            workers = [w for w in _pool_workers() if w not in before]
            if workers:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
            time.sleep(0.01)

    thread = threading.Thread(target=kill_a_worker)
    thread.start()
    summary = run_scan(index, tree, options=replace(QUICK, jobs=2, chunk_size=4))
    thread.join()
    assert killed, "no worker process was seen"
    assert summary.worker_deaths >= 1
    assert summary.by_status == {"ok": 300}
    assert summary.hashed == 300


def test_a_file_blamed_for_a_crash_is_read_again_by_the_next_scan(tree: Path, index: Index, db_path: Path) -> None:
    from imgindex.reading import CRASHED

    write(tree / "a.png", encode(picture(1), "PNG"))
    run_scan(index, tree)
    with index.db.write() as c:  # as a scan leaves a file on which a worker died twice
        c.execute("UPDATE files SET status = 'corrupt', error = ?, phash = NULL", (CRASHED,))
    again = run_scan(index, tree)
    assert again.hashed == 1
    assert again.by_status == {"ok": 1}


def test_a_script_whose_workers_cannot_start_gets_one_error_and_no_file_is_blamed(tree: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    for n in range(6):
        write(tree / f"{n}.png", encode(picture(n), "PNG"))
    # No __main__ guard: every worker process runs the script again as it starts, and dies.
    script = tmp_path / "unguarded.py"
    db = tmp_path / "unguarded.db"
    script.write_text(
        "from imgindex.scan import ScanOptions, scan\nfrom imgindex.storage import open_index\n"
        f"with open_index({str(db)!r}) as index:\n    scan(index, [{str(tree)!r}], ScanOptions(jobs=2))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240)
    assert done.returncode != 0
    assert "worker processes cannot run here" in done.stderr
    with open_index(db) as index:
        assert "corrupt" not in index.catalog.status_counts()
