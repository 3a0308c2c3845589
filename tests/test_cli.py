"""The command line, through typer's runner and as real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgindex.cli import app
from imgindex.storage import SCHEMA_VERSION, open_index

from .conftest import default_sigint, encode, picture, run_module, write

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "sample-dump"


def invoke(cli: CliRunner, *args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = cli.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_scan_prints_a_summary_and_exits_0(cli: CliRunner, tree: Path, db_path: Path) -> None:
    for i in range(3):
        write(tree / f"{i}" / "img", encode(picture(i), "JPEG"))
    write(tree / "notes.txt", b"hello")
    code, out, _ = invoke(cli, "scan", tree, "--db", db_path, "--jobs", "1")
    assert code == 0
    assert out.startswith("4 files: 3 images (4 new, 0 changed), 1 not images")
    assert out.rstrip().endswith(" s")


def test_scan_exits_3_when_files_fail_and_errors_lists_them(cli: CliRunner, tree: Path, db_path: Path) -> None:
    good = encode(picture(1, (200, 100)), "JPEG")
    write(tree / "good.jpg", good)
    write(tree / "cut.jpg", good[:300])
    code, out, _ = invoke(cli, "scan", tree, "--db", db_path, "-j", "1")
    assert code == 3
    assert "1 failed: 1 truncated" in out
    code, out, _ = invoke(cli, "errors", "--db", db_path)
    assert code == 0
    (line,) = out.splitlines()
    status, path, reason = line.split("\t")
    assert (status, path) == ("truncated", str(tree / "cut.jpg"))
    assert reason.startswith("file ends early, after 300 bytes")
    code, out, _ = invoke(cli, "errors", "--db", db_path, "--json")
    assert json.loads(out) == [
        {"path": str(tree / "cut.jpg"), "status": "truncated", "error": reason, "format": "JPEG"}
    ]


def test_scan_json_summary(cli: CliRunner, tree: Path, db_path: Path) -> None:
    write(tree / "a", encode(picture(1), "PNG"))
    write(tree / "b", b"")
    code, out, _ = invoke(cli, "scan", tree, "--db", db_path, "--json", "-j", "1")
    assert code == 0
    data = json.loads(out)
    assert data["by_status"] == {"empty": 1, "ok": 1}
    assert (data["files"], data["images"], data["new"], data["hashed"], data["removed"]) == (2, 1, 2, 2, 0)
    assert data["roots"] == [str(tree)]
    assert isinstance(data["seconds"], float)


def test_db_from_environment(cli: CliRunner, tree: Path, tmp_path: Path) -> None:
    write(tree / "a", encode(picture(1), "PNG"))
    target = tmp_path / "from-env.db"
    code, _, _ = invoke(cli, "scan", tree, "-q", env={"IMGINDEX_DB": str(target)})
    assert code == 0
    code, out, _ = invoke(cli, "stats", "--json", env={"IMGINDEX_DB": str(target)})
    assert code == 0
    assert json.loads(out)["images"] == 1


def test_quiet_prints_nothing(cli: CliRunner, tree: Path, db_path: Path) -> None:
    write(tree / "a", encode(picture(1), "PNG"))
    assert invoke(cli, "scan", tree, "--db", db_path, "-q", "-j", "1") == (0, "", "")


def test_stats(cli: CliRunner, db_path: Path) -> None:
    code, out, _ = invoke(cli, "scan", EXAMPLES, "--db", db_path, "-q")
    assert code == 3  # the sample dump holds a truncated download
    code, out, _ = invoke(cli, "stats", "--db", db_path, "--json")
    data = json.loads(out)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["by_status"]["truncated"] == 1
    assert data["by_format"]["JPEG"] > 0
    assert data["readable_formats"]["JPEG"] is True
    assert set(data["readable_formats"]) >= {"AVIF", "HEIF", "WEBP", "TIFF", "BMP", "GIF", "PNG"}
    assert data["last_scans"][0]["state"] == "done"
    code, out, _ = invoke(cli, "stats", "--db", db_path)
    assert code == 0
    assert "decoders: JPEG, PNG" in out


def test_fatal_errors_exit_1_with_a_message(cli: CliRunner, tmp_path: Path, db_path: Path) -> None:
    code, _, err = invoke(cli, "scan", tmp_path / "missing", "--db", db_path)
    assert code == 1
    assert "cannot scan" in err and "missing" in err
    code, _, err = invoke(cli, "stats", "--db", tmp_path / "none.db")
    assert code == 1 and "no index" in err
    open_index(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    code, _, err = invoke(cli, "scan", tmp_path, "--db", db_path)
    assert code == 1 and "newer imgindex" in err


def test_non_utf8_names_are_shown_escaped(cli: CliRunner, tree: Path, db_path: Path) -> None:
    with open(os.path.join(os.fsencode(tree), b"bad\xffname.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 truncated")
    code, _, _ = invoke(cli, "scan", tree, "--db", db_path, "-q")
    assert code == 3
    code, out, _ = invoke(cli, "errors", "--db", db_path)
    assert "bad\\xffname.jpg" in out


# -- real processes: signals, permissions ----------------------------------------


def _slow_tree(root: Path, count: int) -> None:
    for i in range(count):
        write(root / f"{i % 20:02d}" / f"p{i}", encode(picture(i % 50, (400, 300)), "PNG" if i % 2 else "JPEG"))


def _committed(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=10) as raw:
            return int(raw.execute("SELECT count(*) FROM files").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def _wait_for_rows(db: Path, proc: subprocess.Popen[str], deadline: float) -> int:
    while time.monotonic() < deadline:
        n = _committed(db)
        if n > 0 or proc.poll() is not None:
            return n
        time.sleep(0.02)
    raise AssertionError("the scan committed nothing in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_scan_keeps_what_it_committed_and_resumes(sig: signal.Signals, tmp_path: Path) -> None:
    count = 400
    _slow_tree(tmp_path / "dump", count)
    db = tmp_path / "index.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imgindex",
            "scan",
            str(tmp_path / "dump"),
            "--db",
            str(db),
            "-j",
            "1",
            "--batch-size",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    _wait_for_rows(db, proc, time.monotonic() + 60)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    committed = _committed(db)
    assert 0 < committed < count, "the scan finished before it could be interrupted: make the tree bigger"
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, stderr
        assert "Interrupted" in stderr
        assert "files:" in stdout  # the summary of what was done
    resumed = run_module("scan", str(tmp_path / "dump"), "--db", str(db), "--json", "-j", "2")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["new"] == count - committed
    assert summary["files"] == count and summary["by_status"] == {"ok": count}
    with sqlite3.connect(db) as raw:
        states = [r[0] for r in raw.execute("SELECT state FROM scans ORDER BY id")]
    assert states[-1] == "done"
    assert states[0] == ("running" if sig == signal.SIGKILL else "interrupted")


def _without_root_powers() -> list[str]:
    """A command prefix under which permission bits apply, even when the tests run as root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "running as root: permission tests need util-linux's setpriv to drop DAC capabilities"
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


def _scan_process(*args: str) -> subprocess.CompletedProcess[str]:
    command = [*_without_root_powers(), sys.executable, "-m", "imgindex", "scan", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_unreadable_directory_keeps_its_rows(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    for i in range(6):
        write(dump / ("locked" if i < 3 else "open") / f"{i}.png", encode(picture(i), "PNG"))
    db = tmp_path / "index.db"
    args = [str(dump), "--db", str(db), "-j", "1", "--json"]
    first = _scan_process(*args)
    assert first.returncode == 0, first.stderr
    (dump / "locked").chmod(0o000)
    try:
        second = _scan_process(*args)
    finally:
        (dump / "locked").chmod(0o755)
    assert second.returncode == 3, second.stderr
    data = json.loads(second.stdout)
    assert data["removed"] == 0
    assert data["by_status"] == {"ok": 6}
    assert data["walk_errors"] == [{"path": str(dump / "locked"), "error": "Permission denied"}]
    errors = run_module("errors", "--db", str(db))
    assert f"directory\t{dump / 'locked'}\tPermission denied" in errors.stdout
    third = _scan_process(*args)
    assert third.returncode == 0
    assert json.loads(third.stdout)["new"] == 0
    assert "directory" not in run_module("errors", "--db", str(db)).stdout


def test_unreadable_file_is_recorded(tmp_path: Path) -> None:
    secret = write(tmp_path / "dump" / "secret.png", encode(picture(1), "PNG"))
    secret.chmod(0o000)
    result = _scan_process(str(tmp_path / "dump"), "--db", str(tmp_path / "index.db"), "-j", "1", "--json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["by_status"] == {"unreadable": 1}


def test_concurrent_scans_of_one_index(tmp_path: Path) -> None:
    _slow_tree(tmp_path / "a", 60)
    _slow_tree(tmp_path / "b", 60)
    db = tmp_path / "index.db"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imgindex",
                "scan",
                str(tmp_path / d),
                "--db",
                str(db),
                "-j",
                "1",
                "--batch-size",
                "3",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in ("a", "b", "a")
    ]
    for p in procs:
        _, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
    with open_index(db) as idx:
        assert idx.catalog.status_counts() == {"ok": 120}
        assert len(idx.catalog.roots()) == 2


def test_error_messages_show_brackets_as_they_are(cli: CliRunner, tmp_path: Path, db_path: Path) -> None:
    code, _, err = invoke(cli, "scan", tmp_path / "missing[/b]dir [red]x", "--db", db_path)
    assert code == 1
    assert "missing[/b]dir [red]x" in err


def test_csv_to_stdout_keeps_non_utf8_bytes(tree: Path, db_path: Path) -> None:
    data = encode(picture(3), "JPEG")
    for name in (b"a\xff.jpg", b"b.jpg"):
        with open(os.path.join(os.fsencode(tree), name), "wb") as f:
            f.write(data)
    assert run_module("scan", str(tree), "--db", str(db_path), "-q").returncode == 0
    result = subprocess.run(
        [sys.executable, "-m", "imgindex", "report", "--exact", "-f", "csv", "--db", str(db_path)],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert os.path.join(os.fsencode(tree), b"a\xff.jpg") in result.stdout


def test_dedup_on_a_terminal_takes_the_progress_bar_down_before_printing(tmp_path: Path) -> None:
    import pty

    tree = tmp_path / "dump"
    for n in range(60):
        write(tree / f"{n % 6}" / f"{n}.jpg", encode(picture(n % 20, (320, 240)), "JPEG"))
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgindex", "dedup", str(tree), "-n", "--db", str(tmp_path / "i.db"), "-j", "1"],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0
    os.close(primary)
    output = b"".join(chunks).decode("utf-8", "replace")
    assert "━" in output, "no progress bar was drawn"
    after = output[output.index(" files: ") :]
    assert "━" not in after, "the bar was drawn again after the scan's summary"
    assert "final image count" in after
