"""Shared fixtures: real temp trees, real images made with Pillow, real index files."""

from __future__ import annotations

import faulthandler
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, PngImagePlugin
from typer.testing import CliRunner

from imgindex import pairs
from imgindex.scan import ScanOptions, ScanSummary, scan
from imgindex.storage import Index, open_index

FIXTURES = Path(__file__).parent / "fixtures"
#: A test still running after this long is hung: print every thread's stack and
#: end the run, so that a hang costs minutes and leaves a trace, not the CI's hour.
HANG_SECONDS = 300


#: Where the stacks of a hung run go: pytest captures the standard error of a test at the
#: file-descriptor level, and a run ended by the guard never shows what it captured.
HANG_LOG = os.environ.get("IMGINDEX_HANG_LOG")


@pytest.fixture(autouse=True)
def _hang_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    if HANG_LOG:
        with open(HANG_LOG, "a") as log:
            log.write(f"\n{request.node.nodeid}\n")
            log.flush()
            faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=log)
            yield
            faulthandler.cancel_dump_traceback_later()
        return
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def picture(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A photo-like RGB picture that differs clearly from other seeds."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [
            (np.sin(xx / rng.uniform(4, 20) + rng.uniform(0, 6)) + 1) * 127,
            (np.cos(yy / rng.uniform(4, 20) + rng.uniform(0, 6)) + 1) * 127,
            (xx + yy) * 255.0 / (w + h),
        ],
        axis=-1,
    )
    image = Image.fromarray(base.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.rectangle([x, y, x + int(rng.integers(5, w // 2)), y + int(rng.integers(5, h // 2))], fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "dump"
    root.mkdir()
    return root


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "index.db"


@pytest.fixture
def index(db_path: Path) -> Iterator[Index]:
    idx = open_index(db_path)
    yield idx
    idx.close()


#: Tests that check incrementality write files and scan them at once, so the
#: racy-clean window (which makes the next scan re-read just-written files) is
#: turned off there; the tests of that rule turn it back on.
QUICK = ScanOptions(jobs=1, racy_window_ns=0)


def run_scan(index: Index, *roots: Path | bytes, options: ScanOptions = QUICK) -> ScanSummary:
    return scan(index, list(roots), options)


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def default_sigint() -> None:
    """For a child process that is sent SIGINT: the default disposition, so that Python turns
    it into KeyboardInterrupt (Ctrl-C), even when this run was started with SIGINT ignored (a
    shell starts background commands so, and Python then leaves it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_module(*args: str, check: bool = False, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``python -m imgindex`` in a real process."""
    env = {**os.environ, **kwargs.pop("env", {})}  # type: ignore[dict-item]
    return subprocess.run(
        [sys.executable, "-m", "imgindex", *args], capture_output=True, text=True, check=check, env=env, **kwargs
    )  # type: ignore[call-overload]


#: SQL that takes an index of today's schema back to version 5 (before web archives and
#: files.url, and the review's decisions), for tests of the migrations from older versions.
BACK_TO_VERSION_5 = (
    "DROP TRIGGER near_hashes_log_insert; DROP TRIGGER near_hashes_log_delete; DROP TRIGGER near_hashes_log_update;"
    " DROP TABLE near_hashes_kept; DROP TABLE near_hashes_log;"
    " DROP TABLE near_orientations; DROP TABLE review_decisions; DROP TABLE review_batches;"
    " DROP VIEW file_paths; DROP TABLE archives; DROP TRIGGER files_url_insert; DROP VIEW provenance_urls;"
    " DROP TABLE provenance;"
    " DROP TABLE side_files;"
    " ALTER TABLE files DROP COLUMN url;"
    " CREATE VIEW file_paths AS SELECT files.*, dirs.root_id AS root_id, dirs.listed_at AS last_seen,"
    " CAST(CASE WHEN dirs.path = X'2F' THEN X'2F' || files.name ELSE dirs.path || X'2F' || files.name END AS BLOB)"
    " AS path FROM files JOIN dirs ON dirs.id = files.dir_id; PRAGMA user_version = 5;"
)


HOUR = 3600 * 10**9


def set_mtime(path: Path, hours_ago: int) -> None:
    ns = 1_700_000_000 * 10**9 - hours_ago * HOUR
    os.utime(path, ns=(ns, ns))


@pytest.fixture
def corpus(tree: Path) -> dict[str, Path]:
    """Two families of duplicates and three unrelated pictures, in a crawl-like layout."""
    a = picture(1, (256, 192))
    b = picture(2, (200, 200))
    meta = PngImagePlugin.PngInfo()
    meta.add_text("Comment", "same pixels, other bytes")
    files = {
        "a": write(tree / "11" / "aa" / "photo.jpg", encode(a, "JPEG", quality=90)),
        "a_copy": write(tree / "22" / "bb" / "copy-of-photo", encode(a, "JPEG", quality=90)),
        "a_q60": write(tree / "33" / "cc" / "photo-q60.jpg", encode(a, "JPEG", quality=60)),
        "a_half": write(tree / "44" / "dd" / "photo-small.jpg", encode(a.resize((128, 96)), "JPEG", quality=90)),
        "b": write(tree / "55" / "ee" / "drawing.png", encode(b, "PNG")),
        "b_meta": write(tree / "66" / "ff" / "drawing-meta.png", encode(b, "PNG", pnginfo=meta)),
        "c1": write(tree / "77" / "00" / "other1", encode(picture(3), "JPEG")),
        "c2": write(tree / "77" / "01" / "other2.webp", encode(picture(4), "WEBP")),
        "c3": write(tree / "77" / "02" / "other3.gif", encode(picture(5), "GIF")),
        "junk": write(tree / "77" / "03" / "index.html", b"<html></html>"),
        "cut": write(tree / "77" / "04" / "cut.jpg", encode(picture(6, (300, 200)), "JPEG")[:500]),
    }
    for hours, key in enumerate(files):
        set_mtime(files[key], 100 - hours)  # "a" oldest ... "cut" newest
    set_mtime(files["a_copy"], 200)  # the copy is older than the original
    return files


def stored_matches(index: Index) -> set[tuple[int, int, int, int, int]]:
    """The index's stored matches: (a, b, whole, inside, region), at every distance."""
    a, b, whole, inside, region = index.pairs.matches(pairs.KIND, 64)
    return set(zip(a.tolist(), b.tolist(), whole.tolist(), inside.tolist(), region.tolist(), strict=True))


def rebuilt_matches(index: Index) -> set[tuple[int, int, int, int, int]]:
    """The matches a full verification stores: every picture verified again (as under other
    settings), to compare with what updates stored incrementally."""
    index.pairs.reset_matches(index.pairs.state()[1])
    pairs.update(index)
    return stored_matches(index)
