"""The one matcher: reports group with it, queries ask it, and both see the stored pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from imgindex import kinds, pairs
from imgindex.hashing import DESCRIPTOR_BYTES, GREY_SIDE
from imgindex.match import candidate_check
from imgindex.match import matcher as matcher_module
from imgindex.match import units as units_module
from imgindex.match.candidates import pairs_among
from imgindex.match.matcher import Matcher
from imgindex.match.search import as_unsigned
from imgindex.match.units import Units
from imgindex.query import query
from imgindex.report import ReportOptions, build_report
from imgindex.storage import Index

from .conftest import encode, picture, run_scan, write


def families(tree: Path, count: int) -> None:
    for s in range(count):
        image = picture(40 + s, (160, 120))
        write(tree / f"{s:02d}" / "a.png", encode(image, "PNG"))
        write(tree / f"{s:02d}" / "b.jpg", encode(image, "JPEG", quality=60))
        write(tree / f"{s:02d}" / "bright.jpg", encode(ImageEnhance.Brightness(image).enhance(1.15), "JPEG"))
        write(tree / f"{s:02d}" / "crop.png", encode(image.crop((5, 4, 155, 116)), "PNG"))
        write(tree / f"{s:02d}" / "mirror.png", encode(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG"))


def all_units(index: Index) -> Units:
    table = index.images.table()
    return Units(table.id, table.has_hash, table.phash, table.has_trim, table.trim_hash)


@pytest.mark.parametrize("rotations", [False, True])
def test_every_member_of_a_group_is_a_verified_match_of_its_leader(tree: Path, index: Index, rotations: bool) -> None:
    families(tree, 8)
    run_scan(index, tree)
    with index.snapshot():
        units = all_units(index)
        matcher = Matcher(index, units, 10, rotations=rotations)
        grouping = matcher.grouping(np.arange(len(units)))
    leaders = set(grouping.leader.tolist())
    joined = 0
    for leader in leaders:
        matches = matcher.matches(leader)
        for member in np.flatnonzero(grouping.leader == leader).tolist():
            if member != leader:
                assert matches.get(member) == int(grouping.distance[member])
                joined += 1
    assert joined >= 8 * (2 if not rotations else 3)  # most copies of each family, and with rotations its mirror
    # The raw thumbnails are kept for orientations only; else nothing holds them (at ten million
    # pictures, a pass's were gigabytes, kept alive by an empty view of them).
    thumbs = matcher.thumbs
    kept = (thumbs.descriptors, thumbs._inside_descriptors)
    if rotations:
        assert all(len(d) for d in kept)
    else:
        assert all(len(d) == 0 and d.base is None for d in kept)


def test_thumbnails_read_by_parts_give_the_same_matches(
    tree: Path, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past :data:`~imgindex.match.matcher.THUMBNAIL_UNITS` units to verify, the thumbnails and
    grids are read two parts at a time (a full verification at millions of pictures), and
    they are always read :data:`~imgindex.match.units.READ_UNITS` at a time: every match
    and each of its distances is the one reading and verifying them all at once finds."""
    families(tree, 6)
    for s in range(4):  # copies with a bar cut off: matched by a region of their source
        image = picture(70 + s, (160, 120))
        write(tree / f"cut{s}" / "source.png", encode(image, "PNG"))
        write(tree / f"cut{s}" / "cut.png", encode(image.crop((0, 0, 160, 102)), "PNG"))
    run_scan(index, tree)
    with index.snapshot():
        units = all_units(index)
        whole, turned = Matcher(index, units, 10), Matcher(index, units, 10, rotations=True)
        monkeypatch.setattr(units_module, "READ_UNITS", 2)  # the descriptors and grids of two units at a time
        read_in_shares = Matcher(index, units, 10)
        turned_in_shares = Matcher(index, units, 10, rotations=True)
        monkeypatch.setattr(matcher_module, "THUMBNAIL_UNITS", 6)  # parts of three units
        monkeypatch.setattr(candidate_check, "VERIFY_CHUNK", 5)
        # What the verification by parts reads: of two parts, only the units candidates touch.
        touched: set[int] = set()
        read: list[set[int]] = []
        by_parts_verify = candidate_check.CandidateCheck._verify_by_parts
        thumbnails_made = units_module.UnitThumbnails.__init__

        def verify_by_parts(self: candidate_check.CandidateCheck, found: Any) -> Any:
            touched.update(found.u.tolist(), found.v.tolist())
            return by_parts_verify(self, found)

        def thumbnails(self: Any, index: Index, units: Any, wanted: Any, *, keep: bool) -> None:
            if touched:  # (after the detail pass, which reads every part whole)
                read.append(set(wanted.tolist()))
            thumbnails_made(self, index, units, wanted, keep=keep)

        monkeypatch.setattr(candidate_check.CandidateCheck, "_verify_by_parts", verify_by_parts)
        monkeypatch.setattr(units_module.UnitThumbnails, "__init__", thumbnails)
        by_parts = Matcher(index, units, 10)
    assert len(by_parts._parts) > 4 and not whole._parts and not read_in_shares._parts
    parts = [set(p.tolist()) for p in by_parts._parts]
    whole_parts = [set().union(*(p for p in parts if p & r)) for r in read]
    assert len(read) > 4 and all(r <= touched and r <= w for r, w in zip(read, whole_parts, strict=True))
    assert any(r < w for r, w in zip(read, whole_parts, strict=True))  # not both parts whole
    assert whole.slots.region >= 0 and len(whole.edges) >= 6 * 3 + 4 and len(turned.edges) > len(whole.edges)
    for one, other in ((whole, read_in_shares), (whole, by_parts), (turned, turned_in_shares)):
        assert all(np.array_equal(x, y) for x, y in zip(one.sorts, other.sorts, strict=True))
        assert np.array_equal(one._described, other._described) and one.unconfirmed == other.unconfirmed
        assert np.array_equal(one._whole_detail, other._whole_detail)
    assert all(np.array_equal(x, y) for x, y in zip(turned.orientations, turned_in_shares.orientations, strict=True))


def test_a_query_finds_what_a_report_groups_with_it(tree: Path, index: Index, tmp_path: Path) -> None:
    families(tree, 5)
    run_scan(index, tree)
    with index.snapshot():
        report = build_report(index, ReportOptions(mode="near", rotations=True))
    probe = picture(42, (160, 120))
    outside = write(tmp_path / "probe.jpg", encode(probe.resize((120, 90)), "JPEG", quality=70))
    with index.snapshot():
        [plain] = query(index, [bytes(outside)], 10)
        [turned] = query(index, [bytes(outside)], 10, rotations=True)
    names = {Path(m.path.decode()).relative_to(tree).as_posix() for m in plain.matches}
    assert {"02/a.png", "02/b.jpg"} <= names and "02/mirror.png" not in names
    turned_names = {Path(m.path.decode()).relative_to(tree).as_posix() for m in turned.matches}
    assert turned_names == names | {"02/mirror.png"}
    group = next(g for g in report.groups() if Path(g.kept.path.decode()).parent.name == "02")
    assert {Path(i.path.decode()).name for i, _ in group.duplicates} <= {Path(n).name for n in turned_names}


def test_queries_read_the_stored_pairs(tree: Path, index: Index) -> None:
    families(tree, 3)
    run_scan(index, tree)
    values = index.images.hashes()
    a, b = int(values[0]), int(values[-1])
    assert bin(kinds.to_unsigned(a) ^ kinds.to_unsigned(b)).count("1") > 10
    # A pair the index says is stored (whatever its true distance) is what the matcher gets:
    # proof that queries look the pairs up rather than searching everything again.
    index.pairs.add_pairs(pairs.KIND, np.array([min(a, b)]), np.array([max(a, b)]), np.array([3], np.uint8))
    with index.snapshot():
        near = set(Matcher.near_values(index, [a], 10))
    assert b in near and a in near
    with index.snapshot():
        stored = pairs_among(index, as_unsigned(values), 10, kind=pairs.KIND, focus=as_unsigned([a]))
    found = {frozenset(p) for p in zip(stored[0].tolist(), stored[1].tolist(), strict=True)}
    assert frozenset({kinds.to_unsigned(a), kinds.to_unsigned(b)}) in found


def test_the_dhash_kind_is_imagehashs_dhash_and_its_thumbnail_form_is_one_function() -> None:
    kind = kinds.get("dhash")
    for seed in range(6):
        image = picture(seed, (97 + seed, 61))
        assert kind.picture(image) == kinds.to_signed(int(str(imagehash.dhash(image)), 16))
    assert kind.grey is not None
    # The thumbnail form: the same difference bits, over cells averaged from a 16x16 grey thumbnail.
    grey = np.arange(GREY_SIDE * GREY_SIDE, dtype=np.float32).reshape(1, GREY_SIDE, GREY_SIDE) % 7
    cells = kinds._box_weights(GREY_SIDE, 8) @ grey @ kinds._box_weights(GREY_SIDE, 9).T
    assert kind.grey(grey)[0] == kinds.difference_bits(cells)[0]
    with pytest.raises(ValueError, match="unknown hash kind"):
        kinds.get("nope")
    assert DESCRIPTOR_BYTES == GREY_SIDE * GREY_SIDE + 8 * 8 * 3


def test_the_pairs_of_a_few_values_are_all_found_while_the_stored_pairs_are_behind(tree: Path, index: Index) -> None:
    from imgindex.match.search import pairs_within_brute_force

    families(tree, 10)
    run_scan(index, tree)
    values = np.unique(as_unsigned(index.images.hashes()))  # sorted as unsigned, as the matcher gives them
    signed = values.view(np.int64)
    # As an interrupted update leaves them: a third of the values neither marked nor paired.
    behind = signed[::3].tolist()
    with index.db.write() as c:
        c.executemany("DELETE FROM near_hashes WHERE hash = ?", [(h,) for h in behind])
        c.executemany("DELETE FROM near_pairs WHERE a = ? OR b = ?", [(h, h) for h in behind])
    i, j, _ = pairs_within_brute_force(values, 10)
    truth = {frozenset((int(values[x]), int(values[y]))) for x, y in zip(i.tolist(), j.tolist(), strict=True)}
    rng = np.random.default_rng(3)
    for _ in range(6):
        focus = np.unique(rng.choice(values, 5))
        with index.snapshot():
            a, b, _ = pairs_among(index, values, 10, kind=pairs.KIND, focus=focus)
        found = {frozenset((int(x), int(y))) for x, y in zip(a.tolist(), b.tolist(), strict=True)}
        wanted = {p for p in truth if p & set(focus.tolist())}
        assert found == wanted
