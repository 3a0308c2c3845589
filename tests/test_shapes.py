"""Pictures' shapes: one drawing at two shapes is two banners, while copies keep their shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgindex import pairs
from imgindex.match import verify
from imgindex.match.verify import other_shapes
from imgindex.query import query
from imgindex.report import ReportOptions, build_report
from imgindex.storage import Index

from .conftest import encode, rebuilt_matches, run_scan, stored_matches, write
from .test_detail import groups_of


def banner(width: int, height: int) -> Image.Image:
    """A banner drawn in shares of its size: a gradient from navy to teal, a disc and two bars
    of text. Squeezed to a square, every size of it is the same picture."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    low, high = np.array([20, 30, 90], np.float32), np.array([40, 190, 170], np.float32)
    pixels = np.broadcast_to(low + (high - low) * x, (height, width, 3))
    image = Image.fromarray(np.rint(pixels).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((0.05 * width, 0.15 * height, 0.25 * width, 0.85 * height), fill=(250, 200, 40))
    draw.rectangle((0.35 * width, 0.25 * height, 0.9 * width, 0.45 * height), fill=(245, 245, 245))
    draw.rectangle((0.35 * width, 0.6 * height, 0.7 * width, 0.72 * height), fill=(250, 200, 40))
    return image


def with_caption(image: Image.Image, share: float) -> Image.Image:
    """``image`` with a white bar of ``share`` of its height added below, with a dark line of text."""
    w, h = image.size
    bar = round(share * h)
    out = Image.new("RGB", (w, h + bar), "white")
    out.paste(image, (0, 0))
    ImageDraw.Draw(out).rectangle((0.05 * w, h + 0.3 * bar, 0.6 * w, h + 0.7 * bar), fill=(40, 40, 40))
    return out


def test_shapes_apart_by_more_than_the_factor_are_other_pictures() -> None:
    log = np.log(np.array([880 / 200, 336 / 280, 880 / 236, 200 / 880, 1.0], dtype=np.float32))
    wide, box, captioned, turned, unknown = log[:, None]
    # A third of the way from a square to four and a half wide is too far; a caption bar of 18 % is not.
    assert other_shapes(wide, box, turned=False).all()
    assert not other_shapes(wide, captioned, turned=False).any()
    # A quarter turn apart: too far upright, the same either way round.
    assert other_shapes(wide, turned, turned=False).all()
    assert not other_shapes(wide, turned, turned=True).any()
    assert other_shapes(box, turned, turned=True).all()
    # Not known (a picture with a border, or no size): never too far.
    nan = np.full(1, np.nan, np.float32)
    assert not other_shapes(nan, box, turned=False).any()
    assert not other_shapes(wide, nan, turned=True).any()
    assert not other_shapes(unknown, unknown, turned=False).any()
    # The factor's edge: 1.45 apart holds, 1.55 does not.
    one = np.zeros(1, np.float32)
    assert not other_shapes(one, np.log(np.float32([1.45])), turned=False).any()
    assert other_shapes(one, np.log(np.float32([1.55])), turned=False).all()


@pytest.mark.parametrize("rotations", [False, True])
def test_one_drawing_at_two_shapes_is_two_banners_each_with_its_copies(
    tree: Path, index: Index, rotations: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pairs, "FULL_SHARE", 10.0)  # the later pictures alone, against the stored ones
    if rotations:
        pairs.set_rotations(index, True)
    wide, box = banner(880, 200), banner(336, 280)
    write(tree / "wide.png", encode(wide, "PNG"))
    write(tree / "wide-copy.jpg", encode(wide, "JPEG", quality=85))
    write(tree / "box.png", encode(box, "PNG"))
    write(tree / "box-small.png", encode(box.resize((168, 140), Image.Resampling.LANCZOS), "PNG"))
    run_scan(index, tree)
    # Later: a copy whose shape moved as an edit moves it (a caption bar of 18 %: 1.18 apart), and
    # with rotations a quarter turn.
    write(tree / "wide-caption.png", encode(with_caption(wide, 0.18), "PNG"))
    # Padded to a square: a border, whose inside (not kept) is what matches; not judged.
    padded = Image.new("RGB", (880, 880), (250, 250, 250))
    padded.paste(wide, (0, 340))
    write(tree / "wide-padded.png", encode(padded, "PNG"))
    expected = {
        frozenset(["wide.png", "wide-copy.jpg", "wide-caption.png", "wide-padded.png"]),
        frozenset(["box.png", "box-small.png"]),
    }
    if rotations:
        write(tree / "wide-turned.png", encode(wide.transpose(Image.Transpose.ROTATE_90), "PNG"))
        expected = {g | {"wide-turned.png"} if "wide.png" in g else g for g in expected}
    run_scan(index, tree)
    options = ReportOptions(mode="near", rotations=rotations)
    with index.snapshot():
        afresh = groups_of(build_report(index, options, stored=False))
        stored = build_report(index, options)
    assert afresh == expected
    assert groups_of(stored) == expected
    assert rebuilt_matches(index) == stored_matches(index)  # stored by updates as a full verification does
    # Without the shapes, the thumbnails (squares) let the two banners meet.
    monkeypatch.setattr(verify, "SHAPE_FACTOR", np.inf)
    with index.snapshot():
        blind = groups_of(build_report(index, options, stored=False))
    assert len(blind) < len(expected)


def test_a_banner_looked_up_meets_its_copy_and_not_the_other_shape(tree: Path, index: Index, tmp_path: Path) -> None:
    write(tree / "wide.png", encode(banner(880, 200), "PNG"))
    write(tree / "box.png", encode(banner(336, 280), "PNG"))
    run_scan(index, tree)
    looked_up = write(tmp_path / "outside" / "box.webp", encode(banner(336, 280), "WEBP", quality=90))
    [result] = query(index, [bytes(looked_up)], pairs.MAX_DISTANCE)
    assert [Path(m.path.decode()).name for m in result.matches] == ["box.png"]
