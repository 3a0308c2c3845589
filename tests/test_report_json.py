"""The JSON report's text is what ``json.dumps`` makes of each group, byte for byte.

The writer formats millions of images without a dict per image; these tests build
the same report the plain way (a dict per image, from ``Report.groups()``) and
compare the two texts whole, over the cases a row can be in: kept alone, kept
with duplicates, a duplicate, the last one; no perceptual hash; names that are
not UTF-8 or hold quotes, backslashes, controls and ``%``; URLs; exact and near
mode; duplicates only.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from imgindex import json_images
from imgindex.formats import atomic_text_file, path_fields, write_json
from imgindex.json_images import BLOCK
from imgindex.report import Image, Report, ReportOptions, build_report
from imgindex.storage import Index

from .conftest import encode, picture, run_scan, write

NAMES = [b"plain.jpg", b'quote"s.jpg', b"back\\slash.jpg", b"pct%s%d%%.jpg", b"tab\tnl\n.jpg", b"\xff\xfe-latin.jpg"]


def _fields(image: Image) -> dict[str, Any]:
    fields: dict[str, Any] = {**path_fields(image.path), "sha256": image.sha256.hex()}
    fields["phash"] = None if image.phash is None else f"{image.phash & (2**64 - 1):016x}"
    if image.url is not None:
        fields["url"] = image.url
    return fields


def plain_json(report: Report) -> str:
    """The report as json.dumps writes it, one dict per image (the header is another test's)."""
    header = json.dumps({"initial_image_count": report.initial_image_count})
    images = []
    for group in report.groups():
        kept = group.kept
        duplicates = [
            {**_fields(image), **({"distance": distance} if report.options.mode == "near" else {})}
            for image, distance in group.duplicates
        ]
        images.append(
            json.dumps(
                {
                    **_fields(kept),
                    "width": kept.width,
                    "height": kept.height,
                    "size": kept.size,
                    "duplicates": duplicates,
                }
            )
        )
    return header[:-1] + ', "images": [' + ("\n" + ",\n".join(images) if images else "") + "\n]}\n"


def written(report: Report) -> str:
    """The report as the writer writes it, its header (the counts, the settings) cut to the first count."""
    out = io.StringIO()
    write_json(report, out)
    return cut_header(out.getvalue())


def cut_header(text: str) -> str:
    start = text.index('"initial_image_count"')
    return "{" + text[start : text.index(",", start)] + text[text.index(', "images": [') :]


@pytest.fixture
def hostile_index(tree: Path, index: Index) -> Index:
    top = os.fsencode(tree)
    a, b = picture(1, (120, 90)), picture(2, (100, 100))
    for n, name in enumerate(NAMES):
        d = os.path.join(top, b"d%d" % n)
        os.makedirs(d)
        with open(os.path.join(d, name), "wb") as f:  # a near copy of a in each directory, an exact one of b
            f.write(encode(a.resize((120 - n, 90)), "JPEG", quality=90 - n))
        with open(os.path.join(d, b"b-" + name), "wb") as f:
            f.write(encode(b, "PNG"))
        with open(os.path.join(d, b"alone-" + name), "wb") as f:
            f.write(encode(picture(10 + n), "PNG"))
        with open(os.path.join(d, b"cut-" + name), "wb") as f:  # truncated: an image without a hash
            f.write(encode(picture(30 + n, (300, 200)), "JPEG")[: 400 + n])
    plain = tree / "d0"
    side = {str(plain / "plain.jpg"): 'http://example.com/\u00e9t\u00e9 "q".jpg', str(plain / "b-plain.jpg"): "u"}
    write(tree / "seg_filenameToUrl.json", json.dumps(side).encode())
    run_scan(index, tree)
    return index


@pytest.mark.parametrize(
    "options",
    [
        ReportOptions(mode="near"),
        ReportOptions(mode="exact"),
        ReportOptions(mode="near", duplicates_only=True),
        ReportOptions(mode="exact", duplicates_only=True),
    ],
    ids=["near", "exact", "near-duplicates-only", "exact-duplicates-only"],
)
def test_the_written_report_is_json_dumps_of_its_groups(hostile_index: Index, options: ReportOptions) -> None:
    report = build_report(hostile_index, options)
    images = [image for group in report.groups() for image in [group.kept, *(d for d, _ in group.duplicates)]]
    # The cases are there: groups and lone images, no hash, not UTF-8, a URL.
    assert report.group_count >= (2 if options.mode == "near" else 1)
    assert any(image.phash is None for image in images) or options.duplicates_only
    assert any("path_b64" in path_fields(image.path) for image in images)
    assert any(image.url is not None for image in images)
    assert written(report) == plain_json(report)


def test_blocks_join_as_one_text(hostile_index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    """Images formatted a few at a time give the same text as all at once."""
    report = build_report(hostile_index, ReportOptions(mode="near"))
    whole = written(report)
    monkeypatch.setattr("imgindex.json_images.BLOCK", 3)
    assert BLOCK > 3
    assert written(report) == whole == plain_json(report)


@pytest.fixture
def in_blocks(hostile_index: Index, monkeypatch: pytest.MonkeyPatch) -> tuple[Report, str]:
    """A near report in blocks of two images, and its text written in one process."""
    report = build_report(hostile_index, ReportOptions(mode="near"))
    monkeypatch.setattr("imgindex.json_images.BLOCK", 2)
    monkeypatch.setattr("imgindex.json_images.JSON_HELPERS", 0)
    return report, written(report)


@pytest.mark.parametrize("helpers", [1, 2])
def test_blocks_formatted_by_helpers_join_as_one_text(
    in_blocks: tuple[Report, str], monkeypatch: pytest.MonkeyPatch, helpers: int
) -> None:
    """Blocks formatted by forked helpers come back in order: the same text as in one process."""
    report, alone = in_blocks
    monkeypatch.setattr("imgindex.json_images.JSON_HELPERS", helpers)
    blocks = -(-len(report.layout()[0]) // 2)
    assert blocks > helpers + 1 and json_images.helpers_for(blocks) == helpers  # every one has blocks to do
    assert written(report) == alone == plain_json(report)


def test_blocks_a_helper_did_not_send_are_formatted_here(
    in_blocks: tuple[Report, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper that stops after its first block (as one killed would): the rest of its run is
    formatted by the writer itself, and the text is whole."""
    report, alone = in_blocks
    real = json_images._help

    def stops_early(blocks: Any, run: list[int], sending: int) -> None:
        real(blocks, run[:1], sending)
        os._exit(1)

    monkeypatch.setattr("imgindex.json_images._help", stops_early)
    monkeypatch.setattr("imgindex.json_images.JSON_HELPERS", 1)
    assert written(report) == alone


def test_blocks_go_to_a_file_as_bytes(
    in_blocks: tuple[Report, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Written to a file, the helpers' blocks go to its bytes as they came (not through text):
    the file holds the same text as one made in one process."""
    report, alone = in_blocks
    monkeypatch.setattr("imgindex.json_images.JSON_HELPERS", 2)
    target = tmp_path / "near.json"
    with atomic_text_file(target) as out:
        assert json_images._bytes_of(out) is not None
        write_json(report, out)
    assert cut_header(target.read_bytes().decode("utf-8", "surrogateescape")) == alone


def test_a_block_sent_in_part_is_made_here(
    in_blocks: tuple[Report, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A helper killed while it sends a block (its length and half its bytes came): the block
    is made here, and nothing of the half sent is written."""
    report, alone = in_blocks

    def sends_half(blocks: Any, run: list[int], sending: int) -> None:
        data = json_images._block_text(blocks, run[0]).encode()
        with open(sending, "wb") as pipe:
            pipe.write(len(data).to_bytes(8, "big") + data[: len(data) // 2])
        os._exit(1)

    monkeypatch.setattr("imgindex.json_images._help", sends_half)
    monkeypatch.setattr("imgindex.json_images.JSON_HELPERS", 2)
    target = tmp_path / "near.json"
    with atomic_text_file(target) as out:
        write_json(report, out)
    assert cut_header(target.read_bytes().decode("utf-8", "surrogateescape")) == alone
    assert written(report) == alone


@pytest.mark.parametrize("forks", [0, 1])
def test_helpers_the_system_would_not_fork_leave_their_blocks_here(
    in_blocks: tuple[Report, str], monkeypatch: pytest.MonkeyPatch, forks: int
) -> None:
    report, alone = in_blocks
    real, made = os.fork, []

    def fork() -> int:
        if len(made) >= forks:
            raise BlockingIOError("Resource temporarily unavailable")
        made.append(1)
        return real()

    monkeypatch.setattr("imgindex.json_images.os.fork", fork)
    monkeypatch.setattr("imgindex.json_images.JSON_HELPERS", 2)
    assert written(report) == alone
    assert len(made) == forks


def test_helpers_reaped_by_the_system_are_no_error(
    in_blocks: tuple[Report, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where SIGCHLD is ignored, finished helpers are reaped at once: waiting for them finds none."""
    report, alone = in_blocks
    monkeypatch.setattr("imgindex.json_images.JSON_HELPERS", 2)
    before = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        assert written(report) == alone
    finally:
        signal.signal(signal.SIGCHLD, before)


def test_no_helpers_are_forked_while_other_threads_run() -> None:
    """A forked child has only the thread that forked: a lock another held stays held in it."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert json_images.helpers_for(40) == 0
    finally:
        stop.set()
        other.join()


def test_an_empty_report(index: Index) -> None:
    report = build_report(index, ReportOptions(mode="near"))
    assert written(report) == plain_json(report)
    assert written(report).endswith(', "images": [\n]}\n')
