"""Names from crawled URLs reach the terminal and line-based outputs escaped, and
machine-readable outputs keep their bytes."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from imgindex.storage import open_index

from .conftest import encode, picture, run_scan

#: What a terminal must never be sent from a name: C0/C1 controls, DEL, direction overrides.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

CUT = [b"esc\x1b[31mred.jpg", b"bell\x07.jpg", b"tab\tname.jpg", b"\xff\xfe-latin.jpg", b"rtl\xe2\x80\xaegpj.exe"]
COPIES = [b"cr\rreturn.jpg", b"new\nline.jpg", b"back\x08space.jpg"]


def hostile_tree(root: Path) -> bytes:
    top = os.fsencode(root)
    os.makedirs(top, exist_ok=True)
    whole = encode(picture(1, (120, 90)), "JPEG")
    for n, name in enumerate(CUT):  # truncated downloads (each cut elsewhere): listed by `errors`
        with open(os.path.join(top, name), "wb") as f:
            f.write(whole[: 300 + n])
    for name in COPIES:  # byte-identical copies: grouped by reports
        with open(os.path.join(top, name), "wb") as f:
            f.write(whole)
    return top


def imgindex(*args: str | bytes, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """The command in a real process, its output piped (not a terminal), as raw bytes."""
    return subprocess.run([sys.executable, "-m", "imgindex", *args], capture_output=True, cwd=cwd, timeout=120)


def test_errors_show_every_name_on_one_line_escaped_and_json_keeps_the_bytes(tmp_path: Path) -> None:
    top = hostile_tree(tmp_path / "dump")
    db = str(tmp_path / "i.db")
    with open_index(db) as index:
        run_scan(index, top)
    text = imgindex("errors", "--db", db)
    lines = text.stdout.decode("utf-8").splitlines()
    assert len(lines) == len(CUT)
    for line in lines:
        assert line.count("\t") == 2, line  # status, path, reason: a tab in a name is escaped
        assert not UNSAFE.search(line), line
    shown = "\n".join(lines)
    assert "esc\\x1b[31mred.jpg" in shown  # not stripped as an ANSI sequence: escaped
    assert "rtl\\u202egpj.exe" in shown and "\\xff\\xfe-latin.jpg" in shown

    listed = json.loads(imgindex("errors", "--db", db, "--json").stdout)
    paths = [os.fsencode(e["path"]) for e in listed]
    assert sorted(os.path.basename(p) for p in paths) == sorted(CUT)  # each name, distinct, round-trips
    latin = next(e for e in listed if "latin" in e["path"])
    assert base64.b64decode(latin["path_b64"]) == os.path.join(top, b"\xff\xfe-latin.jpg")


def test_reports_keep_hostile_names_whole_and_review_folders_one_per_line(tmp_path: Path) -> None:
    top = hostile_tree(tmp_path / "dump")
    db = str(tmp_path / "i.db")
    with open_index(db) as index:
        run_scan(index, top)
    done = imgindex("report", "--exact", "-f", "csv", "--db", db, "-q")
    rows = list(csv.reader(io.StringIO(done.stdout.decode("utf-8", "surrogateescape"), newline="")))
    assert len(rows) == 1 + len(COPIES) - 1  # the header, then one row per duplicate
    named = {os.path.basename(os.fsencode(p)) for row in rows[1:] for p in row[1:3]}
    assert named == set(COPIES)  # a CR or a newline in a name does not split its row

    review = tmp_path / "review"
    imgindex("export", str(tmp_path / "out"), "--exact", "--duplicates-dir", str(review), "--db", db, "-q")
    [folder] = list(review.iterdir())
    listing = (folder / "group.txt").read_bytes().splitlines()
    assert len(listing) == 1 + len(COPIES)  # the header, then one line per image
    assert all(line.count(b"\t") == 3 for line in listing)  # role, distance, path, url
    assert b"cr\\x0dreturn.jpg" in b"\n".join(listing)


def test_query_stats_and_error_messages_escape_names(tmp_path: Path) -> None:
    top = hostile_tree(tmp_path / "dump\x1b]0;title\x07")
    db = str(tmp_path / "i.db")
    with open_index(db) as index:
        run_scan(index, top)
    for args in (
        ["query", "--db", db, os.path.join(top, COPIES[0]), os.path.join(top, CUT[0])],
        ["stats", "--db", db],
        ["scan", "--db", db, os.path.join(top, b"missing\x1b[2Jdir")],
    ):
        done = imgindex(*args)
        for stream in (done.stdout, done.stderr):
            text = stream.decode("utf-8")
            assert not UNSAFE.search(text.replace("\t", "").replace("\n", "")), (args[0], text)
    missing = imgindex("scan", "--db", db, os.path.join(top, b"missing\x1b[2Jdir"))
    assert missing.returncode == 1
    assert b"missing\\x1b[2Jdir" in missing.stderr
