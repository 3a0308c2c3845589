"""Export writes inside its output directory only, and whole files only."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from imgindex.cli import app
from imgindex.storage import open_index

from .conftest import encode, picture, run_scan, write


def indexed_tree(tmp_path: Path) -> tuple[Path, Path]:
    tree = tmp_path / "dump"
    for n in range(6):
        side = 100 + 40 * n  # noise: from 30 to 270 KB as PNG
        image = Image.fromarray(np.random.default_rng(n).integers(0, 255, (side, side, 3), dtype=np.uint8))
        write(tree / "sub" / f"{n}.png", encode(image, "PNG"))
        write(tree / "other" / f"{n}-other.png", encode(picture(10 + n, (200, 150)), "PNG"))
        write(tree / "twins" / f"{n}-twin.png", encode(image, "PNG"))  # exact duplicates of sub's
    db = tmp_path / "i.db"
    with open_index(db) as index:
        run_scan(index, tree)
    return tree, db


def export(db: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["export", *args, "--exact", "--db", str(db)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_a_symlink_inside_the_output_is_never_written_through(tmp_path: Path) -> None:
    _, db = indexed_tree(tmp_path)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere)  # planted where a directory of the layout goes
    code, output = export(db, str(out), "--force")
    assert code == 3, output
    assert list(elsewhere.iterdir()) == []
    assert "could not export" in output
    # The review folders too: a group's folder that is a link elsewhere is not followed.
    review = tmp_path / "review"
    review.mkdir()
    (review / "00001-0.png").symlink_to(elsewhere)  # the first group's folder
    export(db, str(tmp_path / "out2"), "--duplicates-dir", str(review), "--force")
    assert list(elsewhere.iterdir()) == []


def test_a_file_where_a_directory_should_be_is_a_reported_failure(tmp_path: Path) -> None:
    _, db = indexed_tree(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_bytes(b"in the way")
    code, output = export(db, str(out), "--force")
    assert code == 3, output
    assert "could not export" in output and "Traceback" not in output
    assert (out / "sub").read_bytes() == b"in the way"
    assert len(list((out / "other").iterdir())) == 6  # the rest was exported


def test_an_output_directory_holding_the_indexed_tree_is_refused(tmp_path: Path) -> None:
    tree, db = indexed_tree(tmp_path)
    before = sorted(p for p in tree.rglob("*"))
    code, output = export(db, str(tmp_path), "--force")
    assert code == 1
    assert "holds the indexed directory" in output
    assert sorted(p for p in tree.rglob("*")) == before


LIMIT = 100_000


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))  # as a disk that fills up
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writing past it fails (EFBIG) instead


def test_a_copy_that_cannot_be_finished_leaves_no_partial_file(tmp_path: Path) -> None:
    _, db = indexed_tree(tmp_path)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "imgindex", "export", str(out), "--exact", "--db", str(db)],
        preexec_fn=_limit_file_size,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    sources = {p.name: p.read_bytes() for p in (tmp_path / "dump").rglob("*.png")}
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(len(data) > LIMIT for data in sources.values())  # some cannot be written whole
    for path in written:
        assert path.read_bytes() == sources[path.name], f"{path} is not a whole copy"
    assert not list(out.rglob(".imgindex-*")), "temporary files were left"
    # Once there is room again, --force adds what was missing, whole.
    again = [sys.executable, "-m", "imgindex", "export", str(out), "--exact", "--db", str(db), "--force"]
    assert subprocess.run(again, capture_output=True, timeout=120).returncode == 0
    exported = {p.name: p.read_bytes() for p in out.rglob("*.png")}
    assert set(exported) == {p.name for p in (tmp_path / "dump").rglob("*.png")} - {f"{n}-twin.png" for n in range(6)}
    for name, data in exported.items():
        assert data == sources[name]
