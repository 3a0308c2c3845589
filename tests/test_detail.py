"""Where two pictures differ: signs of one frame with other symbols are not one picture."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgindex import pairs
from imgindex.hashing import HashSettings, grid_rows, image_info
from imgindex.match import verify
from imgindex.match.verify import differ_in_one_place, normalised_grids
from imgindex.query import query
from imgindex.report import Report, ReportOptions, build_report
from imgindex.storage import Index

from .conftest import encode, picture, rebuilt_matches, run_scan, stored_matches, write

SETTINGS = HashSettings()
SYMBOLS = ("bang", "ring", "cross", "bolt")


def sign(symbol: str) -> Image.Image:
    """A warning sign: one yellow triangle with a black rim on white, and a black symbol in it."""
    image = Image.new("RGB", (160, 140), "white")
    draw = ImageDraw.Draw(image)
    draw.polygon([(80, 8), (152, 132), (8, 132)], fill=(250, 200, 0))
    draw.line([(80, 8), (152, 132), (8, 132), (80, 8)], fill="black", width=8)
    if symbol == "bang":
        draw.rectangle((74, 50, 86, 100), fill="black")
        draw.ellipse((73, 106, 87, 120), fill="black")
    elif symbol == "ring":
        draw.ellipse((58, 62, 102, 106), outline="black", width=8)
    elif symbol == "cross":
        draw.line([(60, 62), (100, 110)], fill="black", width=9)
        draw.line([(100, 62), (60, 110)], fill="black", width=9)
    else:
        draw.polygon([(86, 50), (66, 90), (82, 90), (72, 122), (98, 80), (82, 80)], fill="black")
    return image


def grid_of(image: Image.Image, fmt: str = "PNG", **params: object) -> np.ndarray:
    info = image_info(encode(image, fmt, **params), fmt, SETTINGS)
    assert info.grid is not None
    return normalised_grids(grid_rows([info.grid]))[0]


def distance(a: int, b: int) -> int:
    return bin((a ^ b) & (2**64 - 1)).count("1")


def test_grids_that_differ_in_one_place_are_told_from_copies() -> None:
    signs = {s: grid_of(sign(s)) for s in SYMBOLS}
    pairs_of_signs = list(itertools.combinations(SYMBOLS, 2))
    a = np.stack([signs[x] for x, _ in pairs_of_signs])
    b = np.stack([signs[y] for _, y in pairs_of_signs])
    assert differ_in_one_place(a, b).all()  # the frame the same, the symbol not
    copies = []
    for s in SYMBOLS:
        copies += [
            grid_of(sign(s), "JPEG", quality=85),
            grid_of(sign(s).resize((120, 105), Image.Resampling.LANCZOS)),
            grid_of(sign(s).resize((200, 175), Image.Resampling.LANCZOS)),
        ]
    sources = np.stack([signs[s] for s in SYMBOLS for _ in range(3)])
    assert not differ_in_one_place(sources, np.stack(copies)).any()
    # A copy differs a little everywhere; a picture differing everywhere is not "in one place".
    rng = np.random.default_rng(1)
    photo = normalised_grids(rng.integers(0, 256, (5, 32, 32), dtype=np.uint8))
    assert not differ_in_one_place(photo, photo + rng.normal(0, 0.3, photo.shape).astype(np.float32)).any()
    assert not differ_in_one_place(photo, photo).any()  # identical: no difference anywhere


def groups_of(report: Report) -> set[frozenset[str]]:
    return {
        frozenset(Path(p.decode()).name for p in [g.kept.path, *(i.path for i, _ in g.duplicates)])
        for g in report.groups()
        if g.duplicates
    }


@pytest.mark.parametrize("rotations", [False, True])
def test_signs_of_one_frame_are_apart_and_each_keeps_its_copies(
    tree: Path, index: Index, rotations: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pairs, "FULL_SHARE", 10.0)  # the later pictures alone, against the stored ones
    if rotations:
        pairs.set_rotations(index, True)
    hashes = {s: image_info(encode(sign(s), "PNG"), "PNG", SETTINGS).phash for s in SYMBOLS}
    assert all(distance(hashes["bang"], hashes[s]) <= pairs.MAX_DISTANCE for s in SYMBOLS)
    for s in SYMBOLS:
        write(tree / f"{s}.png", encode(sign(s), "PNG"))
        write(tree / f"{s}-copy.jpg", encode(sign(s), "JPEG", quality=90))
    write(tree / "photo.png", encode(picture(3, (160, 120)), "PNG"))
    run_scan(index, tree)
    later = sign("bolt").resize((200, 175), Image.Resampling.LANCZOS)
    write(tree / "bolt-large.png", encode(later.transpose(Image.Transpose.ROTATE_90) if rotations else later, "PNG"))
    run_scan(index, tree)
    expected = {frozenset([f"{s}.png", f"{s}-copy.jpg"]) for s in SYMBOLS[:3]}
    expected.add(frozenset(["bolt.png", "bolt-copy.jpg", "bolt-large.png"]))
    options = ReportOptions(mode="near", rotations=rotations)
    with index.snapshot():
        afresh = groups_of(build_report(index, options, stored=False))
        stored = build_report(index, options)
    assert afresh == expected
    assert groups_of(stored) == expected and stored.stored_count == 2 * len(SYMBOLS) + 2
    assert rebuilt_matches(index) == stored_matches(index)  # stored by updates as a full verification does
    # Without looking where they differ, the thumbnails' check alone lets the signs meet.
    monkeypatch.setattr(verify, "DETAIL_CONCENTRATION", np.inf)
    with index.snapshot():
        blind = groups_of(build_report(index, options, stored=False))
    assert len(blind) < len(expected)


def page_with_a_sun(r: int = 20) -> Image.Image:
    """Grey lines of text and, in a corner, a yellow disc: the one colourful thing on the page."""
    image = Image.new("RGB", (200, 120), "white")
    draw = ImageDraw.Draw(image)
    for k in range(5):
        draw.rectangle((10, 10 + k * 22, 190 - k * 25, 22 + k * 22), fill=(60, 60, 60))
    draw.ellipse((175 - r, 95 - r, 175 + r, 95 + r), fill=(250, 220, 0))
    return image


def test_a_grey_copy_made_by_another_formula_is_not_judged_where_it_differs(tree: Path, index: Index) -> None:
    """A grey copy made by averaging the channels (not by the luma the grids hold) differs from
    its source's grid where the one colour is: grey against colourful, the grids do not judge."""
    source = page_with_a_sun()
    averaged = np.rint(np.asarray(source, dtype=np.float32).mean(axis=2)).astype(np.uint8)
    grey = Image.fromarray(averaged).convert("RGB")
    assert differ_in_one_place(grid_of(source)[None], grid_of(grey)[None])[0]  # precondition
    write(tree / "page.png", encode(source, "PNG"))
    write(tree / "page-grey.png", encode(grey, "PNG"))
    run_scan(index, tree)
    with index.snapshot():
        afresh = groups_of(build_report(index, ReportOptions(mode="near"), stored=False))
        stored = groups_of(build_report(index, ReportOptions(mode="near")))
    assert afresh == stored == {frozenset(["page.png", "page-grey.png"])}


def test_a_sign_looked_up_meets_its_copies_and_not_the_other_signs(tree: Path, index: Index, tmp_path: Path) -> None:
    for s in SYMBOLS:
        write(tree / f"{s}.png", encode(sign(s), "PNG"))
    write(tree / "bang-copy.jpg", encode(sign("bang"), "JPEG", quality=90))
    run_scan(index, tree)
    looked_up = write(tmp_path / "outside" / "bang.webp", encode(sign("bang"), "WEBP", quality=90))
    [result] = query(index, [bytes(looked_up)], pairs.MAX_DISTANCE)
    assert sorted(Path(m.path.decode()).name for m in result.matches) == ["bang-copy.jpg", "bang.png"]
