"""Regions: a copy cut on one side (or cropped, or given a bar) meets a region of its source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from imgindex import pairs
from imgindex.hashing import (
    DESCRIPTOR_BYTES,
    GREY_SIDE,
    REGIONS,
    HashSettings,
    descriptor,
    grid_rows,
    image_info,
    region_box,
    region_rows,
)
from imgindex.match import candidate_check, matcher, region_check, regions, search, verify
from imgindex.match.links import NOT_NEAR
from imgindex.match.regions import REGION_THRESHOLD, region_pairs
from imgindex.match.search import _few_queries_plan, pairs_between
from imgindex.query import query
from imgindex.report import Report, ReportOptions, build_report
from imgindex.storage import Index

from .conftest import encode, picture, rebuilt_matches, run_scan, stored_matches, write

SETTINGS = HashSettings()
#: Sources whose copy with 15 % cut off the bottom is more than 10 bits from them, whole to
#: whole, and near their bottom-cut region (checked below as a precondition).
CUT_SEEDS = (4, 7, 17, 24)


def distance(a: int, b: int) -> int:
    return bin((a ^ b) & (2**64 - 1)).count("1")


@pytest.mark.parametrize("part", [search.TARGET_PART, 1000])
def test_pairs_between_is_every_pair_of_a_query_and_a_target(part: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "TARGET_PART", part)  # all targets bucketed at once, or parts of them
    rng = np.random.default_rng(5)
    # Both ways of searching: targets bucketed, and (many targets, few queries) the queries' values
    # counted in a table of each block's values.
    cases = ((40, 25, 8), (3000, 6000, 8), (500, 20000, 10), (1_200_000, 40, 8), (1_200_000, 40, 3))
    for n, m, t in cases if part > 1000 else cases[:3]:
        targets = rng.integers(0, 2**63, n, dtype=np.int64).view(np.uint64) << np.uint64(1)
        queries = rng.integers(0, 2**63, m, dtype=np.int64).view(np.uint64)
        near = min(n, m) // 2  # planted within a few bits, so that there are pairs to find
        flips = np.zeros(near, np.uint64)
        for _ in range(min(5, t)):
            flips |= np.uint64(1) << rng.integers(0, 64, near).astype(np.uint64)
        queries[:near] = targets[:near] ^ flips
        assert bool(_few_queries_plan(min(n, part), m, t)) == (n > 1_000_000)
        i, j, d = pairs_between(targets, queries, t)
        expected = []
        for q in range(m):  # a query at a time: bounded memory
            gaps = np.bitwise_count(queries[q] ^ targets)
            expected += [(q, k, int(gaps[k])) for k in np.flatnonzero(gaps <= t).tolist()]
        assert len(expected) >= near // 2
        assert sorted(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == sorted(expected)


def test_region_pairs_are_a_region_of_one_near_the_other() -> None:
    rng = np.random.default_rng(9)
    n = 300
    whole = rng.integers(0, 2**63, n, dtype=np.int64).view(np.uint64)
    inside = np.where(rng.random(n) < 0.2, rng.integers(0, 2**63, n, dtype=np.int64).view(np.uint64), whole)
    regions = rng.integers(0, 2**63, (n, len(REGIONS)), dtype=np.int64).view(np.uint64)
    for u in range(0, n - 1, 3):  # one region of u near v's whole or inside, a few bits off
        target = whole[u + 1] if u % 2 else inside[u + 1]
        regions[u, u % len(REGIONS)] = target ^ np.uint64(1 << (u % 7)) ^ np.uint64(1 << (u % 11 + 20))
    has = rng.random(n) < 0.9
    target_ok = rng.random(n) < 0.9
    both = np.column_stack([whole, inside])
    u, v, d = region_pairs(regions, has, both, target_ok, REGION_THRESHOLD)
    expected = {}
    for a in range(n):
        for b in range(n):
            if a == b or not has[a] or not target_ok[b]:
                continue
            gaps = [distance(int(r), int(t)) for r in regions[a] for t in (whole[b], inside[b])]
            if min(gaps) <= REGION_THRESHOLD:
                key = (min(a, b), max(a, b))
                expected[key] = min(expected.get(key, 99), min(gaps))
    assert len(expected) >= 40
    assert dict(zip(zip(u.tolist(), v.tolist(), strict=True), d.tolist(), strict=True)) == expected
    focus = np.zeros(n, dtype=bool)
    focus[::5] = True
    fu, fv, fd = region_pairs(regions, has, both, target_ok, REGION_THRESHOLD, focus)
    assert dict(zip(zip(fu.tolist(), fv.tolist(), strict=True), fd.tolist(), strict=True)) == {
        k: g for k, g in expected.items() if focus[k[0]] or focus[k[1]]
    }


def test_a_regions_thumbnails_cut_from_the_grid_are_nearly_its_own() -> None:
    image = picture(3, (203, 177))
    info = image_info(encode(image, "PNG"), "PNG", SETTINGS)
    assert info.regions is not None and info.grid is not None and info.trim_hash is None
    own = np.frombuffer(descriptor(image), np.uint8)
    for _, share in REGIONS:
        region = image.crop(region_box(image.size, share))
        expected = np.frombuffer(descriptor(region), np.uint8).astype(np.float64)
        cut = regions.box_descriptors(grid_rows([info.grid]), own[GREY_SIDE * GREY_SIDE :].reshape(1, 8, 8, 3), share)
        assert cut.shape == (1, DESCRIPTOR_BYTES)
        grey = cut[0, : GREY_SIDE * GREY_SIDE].astype(np.float64)
        assert np.corrcoef(grey, expected[: GREY_SIDE * GREY_SIDE])[0, 1] > 0.97
        # The colour is cut from the 8x8 of the inside: coarse, well within the check's allowance.
        assert np.abs(cut[0, GREY_SIDE * GREY_SIDE :] - expected[GREY_SIDE * GREY_SIDE :]).mean() < 20
    # And the regions' hashes are the dHash of each region, as a whole picture's is of it.
    hashes = region_rows([info.regions])[0]
    for k, (_, share) in enumerate(REGIONS):
        region = image.crop(region_box(image.size, share))
        alone = image_info(encode(region, "PNG"), "PNG", SETTINGS).phash
        assert int(hashes[k]) == alone & (2**64 - 1)


def cut_copy(image: Image.Image) -> Image.Image:
    """The picture with 15 % cut off its bottom (a caption bar cut away, say)."""
    w, h = image.size
    return image.crop((0, 0, w, round(h * 0.85)))


def groups_of(report: Report) -> set[frozenset[bytes]]:
    return {frozenset([g.kept.path, *(i.path for i, _ in g.duplicates)]) for g in report.groups() if g.duplicates}


def both_ways(index: Index) -> tuple[set[frozenset[bytes]], set[frozenset[bytes]], int]:
    options = ReportOptions(mode="near")
    with index.snapshot():
        stored = build_report(index, options)
        afresh = build_report(index, options, stored=False)
    return groups_of(stored), groups_of(afresh), stored.stored_count


@pytest.mark.parametrize("copy_first", [False, True])
@pytest.mark.parametrize("cut", ["once", "one owner a block", "small blocks", "thumbnails by parts"])
def test_a_copy_cut_on_one_side_matches_a_region_of_its_source(
    tree: Path, index: Index, copy_first: bool, cut: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pairs, "FULL_SHARE", 10.0)  # the new pictures alone, against the stored ones
    if cut == "one owner a block":  # each owner's region cut for its own pairs alone
        monkeypatch.setattr(region_check, "REGION_BLOCK", 1)
    elif cut == "small blocks":  # blocks of three owners and two pairs: an owner's pairs in several
        monkeypatch.setattr(region_check, "REGION_BLOCK", 3)
        monkeypatch.setattr(region_check, "BLOCK_PAIRS", 2)
        monkeypatch.setattr(candidate_check, "VERIFY_CHUNK", 2)
    elif cut == "thumbnails by parts":  # a few units' thumbnails and grids at a time, as for millions
        monkeypatch.setattr(matcher, "THUMBNAIL_UNITS", 4)
    sources = {s: picture(s, (160, 120)) for s in CUT_SEEDS}
    for image in sources.values():  # preconditions: far whole to whole, near by the region
        whole = image_info(encode(image, "PNG"), "PNG", SETTINGS)
        cut = image_info(encode(cut_copy(image), "PNG"), "PNG", SETTINGS)
        assert whole.regions is not None and whole.trim_hash is None and cut.trim_hash is None
        assert distance(whole.phash, cut.phash) > pairs.MAX_DISTANCE
        assert min(distance(int(r), cut.phash) for r in region_rows([whole.regions])[0]) <= REGION_THRESHOLD
    first, second = ("cut.png", "source.png") if copy_first else ("source.png", "cut.png")
    for s, image in sources.items():
        write(tree / f"{s}" / first, encode(cut_copy(image) if copy_first else image, "PNG"))
        write(tree / f"{s}" / "other.png", encode(picture(s + 100, (160, 120)), "PNG"))
    run_scan(index, tree)
    for s, image in sources.items():  # a later scan brings the other one
        write(tree / f"{s}" / second, encode(image if copy_first else cut_copy(image), "PNG"))
    update = run_scan(index, tree).near_pairs
    assert update is not None and 0 < update.pictures_added < update.pictures  # only the new pictures
    expected = {
        frozenset([str(tree / f"{s}" / "source.png").encode(), str(tree / f"{s}" / "cut.png").encode()])
        for s in CUT_SEEDS
    }
    stored, afresh, used = both_ways(index)
    assert used == update.pictures
    assert stored == afresh
    assert expected <= stored
    # Stored incrementally as a full verification stores them.
    incremental = stored_matches(index)
    assert sum(r <= REGION_THRESHOLD and w > 10 and i > 10 for *_, w, i, r in incremental) >= len(CUT_SEEDS)
    assert rebuilt_matches(index) == incremental


@pytest.mark.parametrize("indexed_cut", [False, True])
def test_query_finds_a_source_by_its_cut_copy_and_the_other_way(
    tree: Path, index: Index, tmp_path: Path, indexed_cut: bool
) -> None:
    """A file looked up (not indexed) meets an indexed picture by a region either way round: its
    region near the indexed one's whole, or the indexed one's region near its whole."""
    outside = tmp_path / "outside"
    for s in CUT_SEEDS:
        image = picture(s, (160, 120))
        indexed, looked_up = (cut_copy(image), image) if indexed_cut else (image, cut_copy(image))
        write(tree / f"{s}.png", encode(indexed, "PNG"))
        write(tree / f"other{s}.png", encode(picture(s + 100, (160, 120)), "PNG"))
        write(outside / f"{s}.png", encode(looked_up, "PNG"))
    run_scan(index, tree)
    paths = [str(outside / f"{s}.png").encode() for s in CUT_SEEDS]
    results = query(index, paths, pairs.MAX_DISTANCE)
    for s, result in zip(CUT_SEEDS, results, strict=True):
        assert [m.path for m in result.matches] == [str(tree / f"{s}.png").encode()]
        assert 0 < result.matches[0].distance <= REGION_THRESHOLD


def test_units_with_the_same_hashes_are_not_paired_by_regions_but_each_meets_the_others() -> None:
    rng = np.random.default_rng(4)
    copies = 3000  # one picture saved again and again with other bytes: one set of hashes
    whole = np.full(copies + 1, rng.integers(0, 2**63, dtype=np.int64), dtype=np.int64).view(np.uint64)
    regions = np.tile(rng.integers(0, 2**63, len(REGIONS), dtype=np.int64).view(np.uint64), (copies + 1, 1))
    # ... and one other picture whose whole hash is 3 bits from the copies' middle region.
    whole[copies] = regions[0, 0] ^ np.uint64(0b10101)
    regions[copies] = rng.integers(0, 2**63, len(REGIONS), dtype=np.int64).view(np.uint64)
    everyone = np.ones(copies + 1, dtype=bool)
    both = np.column_stack([whole, whole])
    u, v, d = region_pairs(regions, everyone, both, everyone, REGION_THRESHOLD)
    assert u.tolist() == list(range(copies)) and set(v.tolist()) == {copies} and set(d.tolist()) == {3}
    # With a focus, only its pairs (a copy's, or the other picture's).
    for chosen, expected in ((7, [(7, copies)]), (copies, [(k, copies) for k in range(copies)])):
        focus = np.zeros(copies + 1, dtype=bool)
        focus[chosen] = True
        u, v, _ = region_pairs(regions, everyone, both, everyone, REGION_THRESHOLD, focus)
        assert list(zip(u.tolist(), v.tolist(), strict=True)) == expected


def test_flat_pictures_are_never_paired_by_regions() -> None:
    """Every one-colour picture (or region) has the hash 0, whatever its colour: thousands of
    blank images and spacers, with regions or too small for them, make no region pairs."""
    n = 4000
    whole = np.zeros(n, dtype=np.uint64)
    regions = np.zeros((n, len(REGIONS)), dtype=np.uint64)
    has_regions = np.arange(n) % 2 == 0  # half of them too small to have regions
    inside = whole.copy()
    inside[::4] = np.uint64(0b111)  # a quarter framed: a blank box with a few bits of frame inside
    both = np.column_stack([whole, inside])
    u, _, _ = region_pairs(regions, has_regions, both, np.ones(n, dtype=bool), REGION_THRESHOLD)
    assert len(u) == 0


def barred(image: Image.Image, seed: int) -> Image.Image:
    """The picture with a caption bar added below (dark, with light marks for words)."""
    return barred_by(image, seed, 0.14)


def barred_by(image: Image.Image, seed: int, share: float) -> Image.Image:
    """The picture with a bar of ``share`` of its height added below."""
    w, h = image.size
    bar = round(h * share)
    out = Image.new("RGB", (w, h + bar), (40, 40, 40))
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    rng = np.random.default_rng(seed)
    for _ in range(6):
        x = int(rng.integers(4, w - 20))
        draw.rectangle((x, h + bar // 3, x + int(rng.integers(6, 16)), h + 2 * bar // 3), fill=(230, 230, 230))
    return out


#: Sources whose barred copy is more than 10 bits from them, whole to whole (a precondition below).
BAR_SEEDS = (4, 7, 10)


@pytest.mark.parametrize("turned_later", [False, True])
def test_a_turned_copy_joins_the_group_its_sources_barred_copy_leads(
    tree: Path, index: Index, turned_later: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy with a bar added meets its source by a region and, larger, leads the group; a
    turned copy of the source meets the barred copy by that region against its orientations
    (in memory, stored, and when the turned copy comes after the others were stored)."""
    monkeypatch.setattr(pairs, "FULL_SHARE", 10.0)
    pairs.set_rotations(index, True)
    for s in BAR_SEEDS:
        image = picture(s, (160, 120))
        source = image_info(encode(image, "PNG"), "PNG", SETTINGS)
        copy = image_info(encode(barred(image, s), "PNG"), "PNG", SETTINGS)
        assert distance(source.phash, copy.phash) > pairs.MAX_DISTANCE
        write(tree / f"{s}" / "source.png", encode(image, "PNG"))
        write(tree / f"{s}" / "barred.png", encode(barred(image, s), "PNG"))
        if not turned_later:
            write(tree / f"{s}" / "turned.png", encode(image.transpose(Image.Transpose.ROTATE_90), "PNG"))
    run_scan(index, tree)
    if turned_later:
        for s in BAR_SEEDS:
            turned = picture(s, (160, 120)).transpose(Image.Transpose.ROTATE_90)
            write(tree / f"{s}" / "turned.png", encode(turned, "PNG"))
        update = run_scan(index, tree).near_pairs
        assert update is not None and update.pictures_added == len(BAR_SEEDS)
    expected = {
        frozenset(str(tree / f"{s}" / name).encode() for name in ("source.png", "barred.png", "turned.png"))
        for s in BAR_SEEDS
    }
    options = ReportOptions(mode="near", rotations=True)
    with index.snapshot():
        afresh = groups_of(build_report(index, options, stored=False))
    assert afresh == expected
    with index.snapshot():
        stored = build_report(index, options)
    assert stored.stored_count == 3 * len(BAR_SEEDS) and groups_of(stored) == expected


@pytest.mark.parametrize(("owners", "rows"), [(1, 1), (3, 2), (3, 7), (40, 1000)])
def test_blocks_of_owners_cover_the_rows_and_keep_to_their_bounds(
    owners: int, rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A region's rows, sorted by owner, are checked in blocks: consecutive, covering every row
    once, each of at most REGION_BLOCK owners and BLOCK_PAIRS rows, and as few as those bounds
    allow (a block ends only where one more row would pass one of them)."""
    monkeypatch.setattr(region_check, "REGION_BLOCK", owners)
    monkeypatch.setattr(region_check, "BLOCK_PAIRS", rows)
    rng = np.random.default_rng(owners * 100 + rows)
    for _ in range(30):
        owner = np.sort(rng.integers(0, int(rng.integers(1, 60)), int(rng.integers(0, 200))))
        blocks = region_check._blocks(owner)
        assert [b.start for b in blocks] == [0, *(b.stop for b in blocks[:-1])]
        assert (blocks[-1].stop if blocks else 0) == len(owner)
        for block, after in zip(blocks, [*blocks[1:], None], strict=True):
            part = owner[block]
            assert 0 < len(part) <= rows and len(np.unique(part)) <= owners
            if after is not None:  # full: one more row would pass a bound
                more = owner[block.start : block.stop + 1]
                assert len(more) > rows or len(np.unique(more)) > owners


def tall_barred(image: Image.Image, seed: int) -> Image.Image:
    """The picture with a bar of 18 % of its height added below: 15 % of the copy, where the
    region cut at 12 % keeps a strip of the bar."""
    return barred_by(image, seed, 0.18)


#: Sources whose copy with a tall bar is near them by its bottom-cut region's hash, but whose
#: region cut at 12 % keeps too much of the bar to confirm the match (checked below).
TALL_BAR_SEEDS = (1, 4, 9, 24)


@pytest.mark.parametrize("moved", [True, False])
def test_a_bar_taller_than_the_regions_cut_is_matched_at_a_moved_cut(
    tree: Path, index: Index, moved: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pairs, "FULL_SHARE", 10.0)  # the barred copies alone, against the stored sources
    if not moved:  # the precondition: at the region's own cut, none of them matches
        monkeypatch.setattr(regions, "SIDE_CUTS", ())
        monkeypatch.setattr(regions, "MIDDLE_MARGINS", ())
    for s in TALL_BAR_SEEDS:
        image = picture(s, (160, 120))
        source = image_info(encode(image, "PNG"), "PNG", SETTINGS)
        copy = image_info(encode(tall_barred(image, s), "PNG"), "PNG", SETTINGS)
        assert copy.regions is not None and distance(source.phash, copy.phash) > pairs.MAX_DISTANCE
        assert min(distance(int(r), source.phash) for r in region_rows([copy.regions])[0]) <= REGION_THRESHOLD
        write(tree / f"{s}" / "source.png", encode(image, "PNG"))
        write(tree / f"{s}" / "other.png", encode(picture(s + 100, (160, 120)), "PNG"))
    run_scan(index, tree)
    for s in TALL_BAR_SEEDS:
        write(tree / f"{s}" / "barred.png", encode(tall_barred(picture(s, (160, 120)), s), "PNG"))
    update = run_scan(index, tree).near_pairs
    assert update is not None and update.pictures_added == len(TALL_BAR_SEEDS)
    expected = {
        frozenset(str(tree / f"{s}" / name).encode() for name in ("source.png", "barred.png")) for s in TALL_BAR_SEEDS
    }
    stored, afresh, _ = both_ways(index)
    assert stored == afresh
    if moved:
        assert stored == expected
        assert rebuilt_matches(index) == stored_matches(index)  # stored as a full verification stores them
    else:
        assert not stored


def test_moved_cuts_lie_across_their_regions_range_and_are_cut_as_the_check_reads_them() -> None:
    image = picture(3, (203, 177))
    info = image_info(encode(image, "PNG"), "PNG", SETTINGS)
    assert info.grid is not None
    grids = grid_rows([info.grid])
    colours = np.frombuffer(descriptor(image), np.uint8)[GREY_SIDE * GREY_SIDE :].reshape(1, 8, 8, 3)
    for k, (name, share) in enumerate(REGIONS):
        # The grey the check's first look reads of a cut (rows resampled, then columns) is the
        # grey of the cut's descriptors, to the bit.
        own = regions.box_descriptors(grids, colours, share)
        rows = regions.box_rows(grids.astype(np.float32), share)
        assert np.array_equal(regions.rows_grey(rows, share), own[:, : GREY_SIDE * GREY_SIDE].astype(np.float32))
        moved = regions.moved_cuts(k)
        assert 0 < len(moved) <= 4 and share not in moved
        for box in moved:
            cut = regions.box_descriptors(grids, colours, box)[:, : GREY_SIDE * GREY_SIDE].astype(np.float32)
            assert np.array_equal(regions.rows_grey(regions.box_rows(grids.astype(np.float32), box), box), cut)
            x0, y0, x1, y1 = box
            if name == "middle":  # the same margin on every side, 3.5-10 %
                assert x0 == y0 == pytest.approx(1 - x1) == pytest.approx(1 - y1) and 0.03 <= x0 <= 0.1
            else:  # one side cut by 8-16 %, the others whole; the same side as the region's
                cuts = [x0, y0, 1 - x1, 1 - y1]
                kept = [share[0], share[1], 1 - share[2], 1 - share[3]]
                side = int(np.argmax(kept))
                assert all(c == 0 for i, c in enumerate(cuts) if i != side)
                assert 0.08 - 1e-9 <= cuts[side] <= 0.16 + 1e-9


def test_the_cuts_bounds_refuse_only_what_the_check_refuses(
    tree: Path, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A region's coarse bound and correlation, on the grey of each cut alone (its own and the
    moved ones), rule out only pairs the whole check would refuse: with every pair let through
    to it, the same groups and the same matches, each region match at the same distance (that
    of the nearest region that confirms it)."""
    for s in range(24):  # bars and cuts of several sizes, some re-encoded smaller
        image = picture(s, (160, 120))
        barred = tall_barred(image, s) if s % 3 else barred_by(image, s, 0.11 + 0.01 * (s % 9))
        write(tree / f"{s}" / "source.png", encode(image, "PNG"))
        write(tree / f"{s}" / "barred.jpg", encode(barred.resize((128, round(128 * barred.height / 160))), quality=70))
        write(tree / f"{s}" / "cut.png", encode(image.crop((0, round(120 * (0.07 + 0.01 * (s % 7))), 160, 120)), "PNG"))
        # ... and blurred, small and coarse: correlations near the check's line, not near 1
        soft = image.crop((0, 0, 160, round(120 * (0.86 + 0.01 * (s % 5))))).filter(ImageFilter.GaussianBlur(1 + s % 3))
        write(tree / f"{s}" / "soft.jpg", encode(soft.resize((64, round(64 * soft.height / 160))), quality=25))
    run_scan(index, tree)
    options = ReportOptions(mode="near")
    with index.snapshot():
        bounded = groups_of(build_report(index, options, stored=False))
    bounded_matches = rebuilt_matches(index)  # each match with its region's distance

    def every_pair(
        self: region_check.RegionCheck,
        views: object,
        slot: object,
        target: object,
        left: np.ndarray,
        correlation: float,
    ) -> np.ndarray:
        return left

    monkeypatch.setattr(region_check.RegionCheck, "_candidates", every_pair)
    with index.snapshot():
        everything = groups_of(build_report(index, options, stored=False))
    assert bounded == everything and bounded_matches == rebuilt_matches(index)
    assert sum(len(g) for g in bounded) >= 40  # (a test with something to find)


@pytest.mark.parametrize("framed", [True, False])
def test_an_inside_is_met_apart_from_the_whole_only_where_the_other_has_a_border(framed: bool) -> None:
    """A region meets the other's whole picture (column 0) and its inside (column 1). With the
    same hash in both columns and no border, the inside's thumbnail is the whole's, so the
    row is checked once, by the whole; with a border it is the inside's own thumbnail, checked
    apart. Here only the inside shows the region: found with a border, not without (where
    the thumbnail given for the inside is not what the matcher would give)."""
    image = picture(3, (203, 177))
    info = image_info(encode(image, "PNG"), "PNG", SETTINGS)
    assert info.grid is not None and info.regions is not None
    grid = grid_rows([info.grid])
    colours = np.frombuffer(descriptor(image), np.uint8)[GREY_SIDE * GREY_SIDE :].reshape(1, 8, 8, 3)
    k, box = 0, REGIONS[0][1]
    cut = regions.box_descriptors(grid, colours, box)
    other = picture(40, (203, 177))  # the other's whole picture: nothing like the region
    whole = np.frombuffer(descriptor(other), np.uint8).reshape(1, -1)
    hashes = np.zeros((2, len(REGIONS)), dtype=np.uint64)
    hashes[0] = region_rows([info.regions])[0]
    found = region_check.Regions(hashes, np.array([True, False]))
    found.slot[:] = [0, 1]
    found._grids = np.concatenate([grid, np.rint(regions.box_grids(grid, box)).astype(np.uint8)])
    found._colours = np.concatenate([colours, colours])
    found._grid_keys = region_check._grid_keys(found._grids)
    targets = np.full((2, 2), np.uint64(2**64 - 1))  # the owner's: far from the other's regions (0)
    targets[1] = hashes[0, k]  # the other's, both columns: the region's own hash
    sorts = [verify.thumbnails(whole), verify.thumbnails(cut)]

    def thumbnail(units: np.ndarray, column: int) -> verify.Thumbnails:
        assert np.all(units == 1)
        return sorts[column].rows(np.zeros(len(units), dtype=np.int64))

    one = np.ones(1, dtype=bool)
    pictures = [verify.Pictures(t, t, ~one) for t in sorts]
    assert not verify.confirm(pictures[1], pictures[0], one, one)[0][0]  # the whole does not show it
    best = region_check.RegionCheck(found).distances(
        np.array([0]), np.array([1]), targets, thumbnail, np.array([False, framed]), REGION_THRESHOLD, 0.9, 0
    )
    assert best.tolist() == ([0] if framed else [NOT_NEAR])
