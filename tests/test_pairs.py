"""The stored near pairs: kept up to date by scans, read back by reports, healed after interruptions."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from imgindex import pairs, render
from imgindex.hashing import HashSettings
from imgindex.match.candidates import pairs_among
from imgindex.match.search import as_unsigned, pairs_within_brute_force
from imgindex.match.verify import VERIFICATION
from imgindex.report import Report, ReportOptions, build_report
from imgindex.storage import SCHEMA_VERSION, Index, PairStore, open_index, picture_keys, turned_kind
from imgindex.storage.pairstore import BULK_CACHE_KIB, picture_alone

from .conftest import BACK_TO_VERSION_5, QUICK, encode, picture, rebuilt_matches, run_scan, stored_matches, write


def family_tree(tree: Path, sources: range) -> None:
    """Each source picture with variants at various distances (re-encode, brightness, crops)."""
    for s in sources:
        image = picture(s, (160, 120))
        write(tree / f"{s:02d}" / "a.png", encode(image, "PNG"))
        write(tree / f"{s:02d}" / "b", encode(image, "JPEG", quality=55))
        write(tree / "copies" / f"{s}.png", encode(image, "PNG"))  # byte-identical to a.png
        write(tree / f"{s:02d}" / "bright.jpg", encode(ImageEnhance.Brightness(image).enhance(1.3), "JPEG"))
        write(tree / f"{s:02d}" / "crop.png", encode(image.crop((4, 3, 156, 117)), "PNG"))
        write(tree / f"{s:02d}" / "crop2.png", encode(image.crop((8, 6, 152, 114)), "PNG"))


def stored(index: Index) -> set[tuple[int, int, int]]:
    a, b, d = index.pairs.pairs(pairs.KIND, 64)
    return set(zip(a.tolist(), b.tolist(), d.tolist(), strict=True))


def expected_pairs(index: Index, max_distance: int) -> set[tuple[int, int, int]]:
    values = index.images.hashes()
    i, j, d = pairs_within_brute_force(as_unsigned(values), max_distance)
    return {
        (min(int(values[x]), int(values[y])), max(int(values[x]), int(values[y])), int(z))
        for x, y, z in zip(i.tolist(), j.tolist(), d.tolist(), strict=True)
    }


def groups(index: Index, threshold: int = 10) -> list[list[int]]:
    with index.snapshot():
        report = build_report(index, ReportOptions(mode="near", threshold=threshold))
        return [[group.kept.id, *sorted(i.id for i, _ in group.duplicates)] for group in report.groups()]


def path_groups(index: Index) -> list[list[bytes]]:
    with index.snapshot():
        report = build_report(index, ReportOptions(mode="near"))
        return [[group.kept.path, *sorted(i.path for i, _ in group.duplicates)] for group in report.groups()]


def test_scan_stores_exactly_the_pairs_within_the_maximum(tree: Path, index: Index) -> None:
    family_tree(tree, range(12))
    summary = run_scan(index, tree)
    assert summary.near_pairs is not None and summary.near_pairs.rebuilt
    assert pairs.stored_max_distance(index) == pairs.MAX_DISTANCE
    found = stored(index)
    assert found == expected_pairs(index, pairs.MAX_DISTANCE)
    assert found, "the variants should be near each other"
    assert set(index.pairs.hashes(pairs.KIND).tolist()) == set(index.images.hashes().tolist())


def test_the_index_hashes_are_every_whole_and_inside_value_once_in_signed_order(tree: Path, index: Index) -> None:
    family_tree(tree, range(6))
    run_scan(index, tree)
    ids = [r[0] for r in index.db.execute("SELECT id FROM files WHERE phash IS NOT NULL ORDER BY id")]
    assert len(ids) >= 6
    # Values in both columns, in one twice, negative and positive, and a file with neither.
    values = [(-(2**63), 5), (5, None), (2**63 - 1, -(2**63)), (-7, -7), (0, 12), (None, None)]
    for file_id, (whole, inside) in zip(ids, values, strict=False):
        index.db.execute("UPDATE files SET phash = ?, trim_hash = ? WHERE id = ?", (whole, inside, file_id))
    rows = index.db.execute("SELECT phash, trim_hash FROM files").fetchall()
    expected = sorted({v for row in rows for v in row if v is not None})
    assert index.images.hashes().tolist() == expected


def test_the_stored_pictures_are_counted_up_to_a_bound(tree: Path, index: Index) -> None:
    family_tree(tree, range(5))
    run_scan(index, tree)
    n = index.pairs.picture_count(pairs.KIND)
    assert n == len(index.pairs.pictures(pairs.KIND)) > 3
    for bound in (0, 1, n - 1, n, n + 5):
        assert index.pairs.picture_count(pairs.KIND, at_most=bound) == min(n, bound)


def test_new_and_removed_images_update_only_their_pairs(tree: Path, index: Index) -> None:
    family_tree(tree, range(8))
    run_scan(index, tree)
    before = index.images.hashes()
    family_tree(tree, range(8, 11))
    summary = run_scan(index, tree)
    update = summary.near_pairs
    assert update is not None and not update.rebuilt
    assert update.added == len(np.setdiff1d(index.images.hashes(), before)) > 0
    assert stored(index) == expected_pairs(index, pairs.MAX_DISTANCE)

    for name in ("a.png", "b", "bright.jpg", "crop.png", "crop2.png"):
        (tree / "03" / name).unlink()
    (tree / "copies" / "3.png").unlink()
    summary = run_scan(index, tree)
    assert summary.near_pairs is not None and summary.near_pairs.removed >= 1
    assert summary.near_pairs.pairs_removed >= 1
    assert stored(index) == expected_pairs(index, pairs.MAX_DISTANCE)
    assert set(index.pairs.hashes(pairs.KIND).tolist()) == set(index.images.hashes().tolist())


def test_report_from_stored_pairs_equals_a_search_over_all(tree: Path, index: Index) -> None:
    family_tree(tree, range(10))
    run_scan(index, tree)
    from_stored = groups(index)
    assert any(len(g) > 2 for g in from_stored)
    with index.db.write() as c:  # as if no update had ever run: the report searches in memory
        c.execute("DELETE FROM near_pairs")
        c.execute("DELETE FROM near_hashes")
    assert groups(index) == from_stored
    with index.db.write() as c:  # and no stored maximum at all
        c.execute("DELETE FROM meta")
    assert groups(index) == from_stored


def test_a_threshold_above_the_stored_maximum_searches_all_hashes(tree: Path, index: Index) -> None:
    family_tree(tree, range(10))
    run_scan(index, tree)
    values = as_unsigned(index.images.hashes())
    a, b, d = pairs_among(index, values, pairs.MAX_DISTANCE + 6, kind=pairs.KIND)
    i, j, _dd = pairs_within_brute_force(values, pairs.MAX_DISTANCE + 6)
    expected = set(zip(values[i].tolist(), values[j].tolist(), strict=True))
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == expected
    assert (d > pairs.MAX_DISTANCE).any()


def test_an_update_stopped_halfway_is_finished_by_the_next(tree: Path, index: Index) -> None:
    family_tree(tree, range(10))
    run_scan(index, tree)
    complete = stored(index)
    expected = groups(index)
    # Stopped after writing some pairs but before marking their hashes as stored.
    some = sorted(index.pairs.hashes(pairs.KIND).tolist())[::2]
    with index.db.write() as c:
        c.executemany("DELETE FROM near_hashes WHERE hash = ?", [(h,) for h in some])
        c.executemany("DELETE FROM near_pairs WHERE a = ? AND distance > 3", [(h,) for h in some])
    assert groups(index) == expected  # the report searches what is missing in memory
    update = pairs.update(index)
    assert update.added == len(some)
    assert stored(index) == complete


def test_a_new_maximum_distance_rebuilds_the_pairs(tree: Path, index: Index) -> None:
    family_tree(tree, range(10))
    run_scan(index, tree)
    update = pairs.update(index, max_distance=4)
    assert update.rebuilt
    assert stored(index) == expected_pairs(index, 4)
    assert pairs.stored_max_distance(index) == 4


def test_an_update_stores_the_search_chunks_with_the_bulk_page_cache(tree: Path, index: Index) -> None:
    """Every chunk a search yields (a cluster's, task by task) is stored with the bulk page
    cache, and the cache is as before once the update is done; the pairs are all stored."""
    family_tree(tree, range(6))
    run_scan(index, tree)

    def cache_size() -> int:
        return int(index.db.conn.execute("PRAGMA cache_size").fetchone()[0])

    before, seen = cache_size(), []

    def search(hashes: Any, queries: Any, threshold: int) -> Any:
        for a, b, d in pairs.local_search(hashes, queries, threshold):
            for half in (slice(0, len(a) // 2), slice(len(a) // 2, None)):  # two chunks
                seen.append(cache_size())
                yield a[half], b[half], d[half]

    update = pairs.update(index, max_distance=8, search=search)
    assert update.rebuilt and update.pairs_added > 0
    assert seen == [-BULK_CACHE_KIB] * 2
    assert cache_size() == before
    assert stored(index) == expected_pairs(index, 8)


def test_a_version_1_index_gains_the_pair_tables(db_path: Path, tree: Path) -> None:
    family_tree(tree, range(4))
    with open_index(db_path) as idx:
        run_scan(idx, tree)
    raw = sqlite3.connect(db_path)
    raw.executescript(BACK_TO_VERSION_5)
    raw.executescript(
        "DROP TABLE near_pairs; DROP TABLE near_hashes; DROP TABLE meta; DROP INDEX files_phash;"
        " DROP TABLE descriptors; DROP INDEX files_trim_hash; ALTER TABLE files DROP COLUMN trim_hash;"
        # Hashed with settings of that time: the next scan computes the perceptual values again.
        " UPDATE hash_params SET key = 'older settings'; PRAGMA user_version = 1;"
    )
    raw.close()
    with open_index(db_path) as idx:
        assert idx.schema_version == SCHEMA_VERSION == 12
        assert stored(idx) == set()
        before = groups(idx)  # a report works before any update, matching by hash alone
        summary = run_scan(idx, tree)
        assert summary.hashed == summary.files > 0
        assert summary.near_pairs is not None and summary.near_pairs.rebuilt
        count = idx.db.conn.execute("SELECT count(*) FROM descriptors").fetchone()[0]
        assert count == summary.files
        assert len(before) <= len(groups(idx))  # verified on descriptors now: no fewer groups
        migrated = path_groups(idx)
    with open_index(db_path.with_name("fresh.db")) as fresh:
        run_scan(fresh, tree)
        assert path_groups(fresh) == migrated  # as if made by this version


def test_a_version_3_index_keeps_its_pairs_under_their_kind(db_path: Path, tree: Path) -> None:
    family_tree(tree, range(6))
    with open_index(db_path) as idx:
        run_scan(idx, tree)
        before = stored(idx)
        marked = set(idx.pairs.hashes(pairs.KIND).tolist())
    assert before
    raw = sqlite3.connect(db_path)
    raw.executescript(BACK_TO_VERSION_5)
    raw.executescript(  # the pair tables as version 3 made them: no kind
        "CREATE TABLE v3_hashes (hash INTEGER PRIMARY KEY); INSERT INTO v3_hashes SELECT hash FROM near_hashes;"
        " CREATE TABLE v3_pairs (a INTEGER NOT NULL, b INTEGER NOT NULL, distance INTEGER NOT NULL,"
        " PRIMARY KEY (a, b)) WITHOUT ROWID; INSERT INTO v3_pairs SELECT a, b, distance FROM near_pairs;"
        " DROP TABLE near_pairs; DROP TABLE near_hashes;"
        " ALTER TABLE v3_hashes RENAME TO near_hashes; ALTER TABLE v3_pairs RENAME TO near_pairs;"
        " CREATE INDEX near_pairs_b ON near_pairs(b); PRAGMA user_version = 3;"
    )
    raw.close()
    with open_index(db_path) as idx:
        assert idx.schema_version == SCHEMA_VERSION
        assert stored(idx) == before  # kept, as dHash pairs: no rebuild needed
        assert set(idx.pairs.hashes(pairs.KIND).tolist()) == marked
        summary = run_scan(idx, tree)
        assert summary.near_pairs is not None and not summary.near_pairs.rebuilt
        assert idx.pairs.pairs("phash", 64)[0].size == 0  # another kind's values are apart


@pytest.mark.parametrize("copies", [3000])
def test_thousands_of_copies_of_one_picture_are_one_hash(tree: Path, index: Index, copies: int) -> None:
    spacer = encode(picture(1, (24, 24)), "GIF")
    for n in range(copies):
        write(tree / f"{n % 50}" / f"spacer{n}.gif", spacer)
    summary = run_scan(index, tree)
    assert summary.near_pairs is not None and summary.near_pairs.hashes == 1
    assert index.pairs.count() == 0
    [group] = groups(index)
    assert len(group) == copies


def test_hashes_are_not_marked_stored_after_another_process_reset_the_pairs(
    tree: Path, db_path: Path, index: Index
) -> None:
    family_tree(tree, range(6))
    run_scan(index, tree)
    _, generation = index.pairs.state()
    with open_index(db_path) as other:  # another process starts the pairs again meanwhile
        assert other.pairs.reset(pairs.MAX_DISTANCE, generation) == generation + 1
    values = index.images.hashes()
    assert not index.pairs.add_hashes(pairs.KIND, values, generation)  # our pairs may have been deleted: mark nothing
    assert len(index.pairs.hashes(pairs.KIND)) == 0
    assert index.pairs.reset(pairs.MAX_DISTANCE, generation) is None  # nor reset on top of theirs
    update = pairs.update(index)  # the next update finds them all again
    assert update.added == len(values)
    assert stored(index) == expected_pairs(index, pairs.MAX_DISTANCE)


def test_an_update_whose_matches_another_process_started_again_says_so(
    tree: Path, db_path: Path, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    family_tree(tree, range(4))
    run_scan(index, tree)
    everything = stored_matches(index)
    real = pairs.Matcher

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        with open_index(db_path) as other:  # another process starts the matches again
            assert other.pairs.reset_matches(other.pairs.state()[1]) is not None
        return real(*args, **kwargs)

    index.pairs.reset_matches(index.pairs.state()[1])
    monkeypatch.setattr(pairs, "Matcher", meanwhile)
    update = pairs.update(index)
    assert update.superseded and update.pictures_added == 0
    assert "the next update does this one's work" in render.pairs_summary(update)
    monkeypatch.setattr(pairs, "Matcher", real)
    update = pairs.update(index)  # the next update does it
    assert not update.superseded and update.pictures_added == update.pictures > 0
    assert stored_matches(index) == everything
    assert "meanwhile" not in render.pairs_summary(update)


def test_hashes_of_insides_are_paired_and_forgotten_like_the_others(tree: Path, index: Index) -> None:
    family_tree(tree, range(4))
    for s in range(3):  # pictures in a white frame: their insides have hashes of their own
        framed = Image.new("RGB", (200, 160), (255, 255, 255))
        framed.paste(picture(50 + s, (140, 100)), (30, 30))
        write(tree / "framed" / f"{s}.png", encode(framed, "PNG"))
    run_scan(index, tree)
    insides = {int(h) for (h,) in index.db.conn.execute("SELECT trim_hash FROM files WHERE trim_hash IS NOT NULL")}
    assert len(insides) == 3
    assert insides <= set(index.pairs.hashes(pairs.KIND).tolist())
    assert stored(index) == expected_pairs(index, pairs.MAX_DISTANCE)
    for s in range(3):
        (tree / "framed" / f"{s}.png").unlink()
    run_scan(index, tree)
    assert not insides & set(index.images.hashes().tolist())
    assert not insides & set(index.pairs.hashes(pairs.KIND).tolist())  # forgotten with their pairs
    assert stored(index) == expected_pairs(index, pairs.MAX_DISTANCE)


# -- verified matches of pictures ---------------------------------------------------------


def update_stopped_when_marking(index: Index, monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """An update stopped (Ctrl-C) as it marks pictures for the ``call``-th time."""
    calls = 0
    real = PairStore.add_pictures

    def stopped(self: PairStore, *args: Any, **kwargs: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == call:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(PairStore, "add_pictures", stopped)
        with pytest.raises(KeyboardInterrupt):
            pairs.update(index)


def report_both_ways(
    index: Index, threshold: int = 10, *, rotations: bool = False
) -> tuple[list[list[object]], list[list[object]], int]:
    """Near groups from the stored matches and verified afresh in memory, and how many
    pictures' matches came from the index."""
    options = ReportOptions(mode="near", threshold=threshold, rotations=rotations)
    with index.snapshot():
        from_store = build_report(index, options)

    def listed(report: Report) -> list[list[object]]:
        return [[g.kept.id, *sorted((i.id, d) for i, d in g.duplicates)] for g in report.groups()]

    with index.snapshot():
        afresh = build_report(index, options, stored=False)
    assert afresh.stored_count == 0
    return listed(from_store), listed(afresh), from_store.stored_count


def test_scan_stores_the_verified_matches_and_reports_read_them(tree: Path, index: Index) -> None:
    family_tree(tree, range(10))
    summary = run_scan(index, tree)
    assert summary.near_pairs is not None and summary.near_pairs.pictures_added == summary.near_pairs.pictures > 40
    matches = stored_matches(index)
    assert len(matches) >= 30  # the families' variants
    assert all(a < b and min(w, i, r) <= pairs.MAX_DISTANCE for a, b, w, i, r in matches)
    for threshold in (4, 10):
        stored_groups, fresh_groups, used = report_both_ways(index, threshold)
        assert used == summary.near_pairs.pictures  # every picture's matches came from the index
        assert stored_groups == fresh_groups
        assert sum(len(g) > 1 for g in stored_groups) >= 10


@pytest.mark.parametrize("share", [10.0, 0.0])  # only the pending pictures; every picture again
def test_matches_follow_new_and_removed_pictures(
    tree: Path, index: Index, monkeypatch: pytest.MonkeyPatch, share: float
) -> None:
    monkeypatch.setattr(pairs, "FULL_SHARE", share)
    family_tree(tree, range(6))
    run_scan(index, tree)
    family_tree(tree, range(6, 9))
    for gone in ("02/bright.jpg", "03/b", "04/crop.png"):
        (tree / gone).unlink()
    (tree / "05" / "a.png").write_bytes(encode(picture(40, (160, 120)), "PNG"))  # changed
    update = run_scan(index, tree).near_pairs
    assert update is not None
    if share:
        assert 0 < update.pictures_added < update.pictures
        assert update.matches_removed > 0
    else:
        assert update.pictures_added == update.pictures
    assert not len(index.pairs.pending()[1])
    incremental = stored_matches(index)
    index.pairs.reset_matches(index.pairs.state()[1])  # as if under other settings: all again
    again = pairs.update(index)
    assert again.pictures_added == again.pictures
    assert stored_matches(index) == incremental
    stored_groups, fresh_groups, _ = report_both_ways(index)
    assert stored_groups == fresh_groups


def test_pictures_not_updated_yet_are_verified_in_memory(tree: Path, index: Index) -> None:
    family_tree(tree, range(5))
    run_scan(index, tree)
    family_tree(tree, range(5, 9))
    run_scan(index, tree, options=replace(QUICK, update_pairs=False))
    # The new files' rows are written, their matches not stored (an update that did not run),
    # and some of the others forgotten.
    index.pairs.remove_pictures(pairs.KIND, picture_keys(index.images.pictures(params(index)).sha256[::3]))
    stored_groups, fresh_groups, used = report_both_ways(index)
    assert 0 < used < len(index.images.pictures(params(index)))
    assert stored_groups == fresh_groups


@pytest.mark.parametrize("share", [10.0, 0.0])
def test_an_update_stopped_before_marking_is_finished_by_the_next(
    tree: Path, index: Index, monkeypatch: pytest.MonkeyPatch, share: float
) -> None:
    monkeypatch.setattr(pairs, "FULL_SHARE", share)
    family_tree(tree, range(8))
    run_scan(index, tree)
    family_tree(tree, range(8, 10))
    run_scan(index, tree, options=replace(QUICK, update_pairs=False))
    assert len(index.pairs.pending()[1]) > 0

    update_stopped_when_marking(index, monkeypatch, 1)  # after the matches were written
    assert len(index.pairs.pending()[1]) > 0  # still to do
    stored_groups, fresh_groups, used = report_both_ways(index)
    assert stored_groups == fresh_groups
    update = pairs.update(index)
    assert update.pictures_added > 0 and not len(index.pairs.pending()[1])
    assert rebuilt_matches(index) == stored_matches(index)
    stored_groups, fresh_groups, used = report_both_ways(index)
    assert stored_groups == fresh_groups and used == update.pictures


def test_two_pictures_with_one_key_are_never_stored(tree: Path, index: Index) -> None:
    family_tree(tree, range(4))
    run_scan(index, tree)
    before_groups = report_both_ways(index)[0]
    # Two pictures whose digests share their first 8 bytes (made so in the index).
    found = index.images.pictures(params(index))
    first, second = found.sha256[0].tobytes(), found.sha256[1].tobytes()
    with index.db.write() as c:
        c.execute("UPDATE files SET sha256 = ? WHERE sha256 = ?", (first[:8] + second[8:], second))
    update = pairs.update(index)
    key = int(picture_keys(found.sha256[:1])[0])
    assert key not in index.pairs.pictures(pairs.KIND).tolist()
    assert not any(key in (a, b) for a, b, *_ in stored_matches(index))
    assert update.pictures == len(found) - 2
    stored_groups, fresh_groups, _ = report_both_ways(index)
    assert stored_groups == fresh_groups == before_groups


def test_new_hash_settings_verify_every_picture_again(tree: Path, index: Index) -> None:
    family_tree(tree, range(4))
    run_scan(index, tree)
    with index.db.write() as c:
        c.execute("UPDATE meta SET value = '-7' WHERE key = 'near_params'")
    update = pairs.update(index)
    assert update.pictures_added == update.pictures > 0
    assert index.pairs.match_params(VERIFICATION) == params(index)


def test_matches_verified_by_an_older_rule_are_verified_again(tree: Path, index: Index) -> None:
    family_tree(tree, range(4))
    run_scan(index, tree)
    everything = stored_matches(index)
    with index.db.write() as c:  # as an index whose matches were stored before versions were recorded
        c.execute("DELETE FROM meta WHERE key = 'near_verification'")
    assert index.pairs.match_params(VERIFICATION) is None
    stored_groups, fresh_groups, used = report_both_ways(index)
    assert used == 0 and stored_groups == fresh_groups  # not trusted until verified again
    update = pairs.update(index)
    assert update.pictures_added == update.pictures > 0
    assert index.pairs.match_params(VERIFICATION) == params(index) and stored_matches(index) == everything


def params(index: Index) -> int:
    return index.catalog.params_id(HashSettings().key())


def test_verifying_every_picture_in_chunks_stores_the_same_matches(
    tree: Path, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    family_tree(tree, range(8))
    run_scan(index, tree)
    whole = stored_matches(index)
    assert len(whole) > 20
    monkeypatch.setattr(pairs, "FULL_CHUNK", 7)  # many passes, and matches across them
    index.pairs.reset_matches(index.pairs.state()[1])
    update = pairs.update(index)
    assert update.pictures_added == update.pictures > 7 * 3
    assert stored_matches(index) == whole


def test_candidates_made_in_many_passes_give_the_same_groups(
    tree: Path, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgindex.match import matcher

    family_tree(tree, range(10))
    run_scan(index, tree)
    _, fresh, _ = report_both_ways(index)
    stored = stored_matches(index)
    monkeypatch.setattr(matcher, "CANDIDATE_BUDGET", 3)  # a pass per few units
    _, in_passes, _ = report_both_ways(index)
    assert in_passes == fresh and sum(len(g) > 1 for g in fresh) >= 10
    index.pairs.reset_matches(index.pairs.state()[1])
    pairs.update(index)
    assert stored_matches(index) == stored


def gradient(rng: np.random.Generator, grey: bool) -> Image.Image:
    """A picture that changes from top to bottom only: its dHash is 0, whatever its colours."""
    top, bottom = rng.integers(0, 256, (2, 3))
    if grey:
        top[:], bottom[:] = top[0], bottom[0]
    ramp = np.linspace(0, 1, 64)[:, None]
    rows = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    return Image.fromarray(np.repeat(rows[:, None, :], 48, axis=1), "RGB")


def test_a_crowd_on_one_hash_is_verified_in_passes_within_the_budget(
    tree: Path, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty pictures on one hash make 780 candidate pairs: with a budget of 60, no pass makes
    more than the budget and the pairs of its last unit, and the matches are those of one pass."""
    from imgindex.match import matcher

    rng = np.random.default_rng(5)
    for k in range(40):
        write(tree / f"{k:02d}.png", encode(gradient(rng, grey=k % 4 == 0), "PNG"))
    run_scan(index, tree)
    in_one = stored_matches(index)
    assert len(in_one) >= 45  # the ten grey ones match each other, and some colourful ones
    made: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        made.append(len(found))
        return found

    real = matcher.candidates
    monkeypatch.setattr(matcher, "candidates", counted)
    monkeypatch.setattr(matcher, "CANDIDATE_BUDGET", 60)
    index.pairs.reset_matches(index.pairs.state()[1])
    pairs.update(index)
    assert stored_matches(index) == in_one
    assert sum(made) == 40 * 39 // 2 and len(made) > 10 and max(made) <= 60 + 39


def test_a_write_after_the_queue_emptied_is_not_cleared_by_an_older_update(tree: Path, index: Index) -> None:
    family_tree(tree, range(3))
    run_scan(index, tree, options=replace(QUICK, update_pairs=False))
    last, _ = index.pairs.pending()  # what an update that is slow to finish has read
    assert last > 0
    pairs.update(index)  # another update does the same work and empties the queue
    assert not len(index.pairs.pending()[1])
    write(tree / "late.png", encode(picture(77, (120, 90)), "PNG"))
    run_scan(index, tree, options=replace(QUICK, update_pairs=False))
    index.pairs.clear_pending(last)  # the slow update finishing
    assert len(index.pairs.pending()[1]) == 1  # the late write is still to do


def test_a_rebuild_stopped_halfway_is_done_whole_by_the_next_update(
    tree: Path, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    family_tree(tree, range(8))
    run_scan(index, tree)
    everything = stored_matches(index)
    monkeypatch.setattr(pairs, "FULL_CHUNK", 10)  # passes of 10 pictures
    index.pairs.reset_matches(index.pairs.state()[1])
    update_stopped_when_marking(index, monkeypatch, 2)  # in the second pass
    assert index.pairs.picture_count(pairs.KIND) > 0 and index.pairs.match_params(VERIFICATION) is None
    stored_groups, fresh_groups, used = report_both_ways(index)
    assert used == 0 and stored_groups == fresh_groups  # half a rebuild is not trusted
    update = pairs.update(index)  # no picture pending: only the unset settings say to start again
    assert update.pictures_added == update.pictures and stored_matches(index) == everything


def turned_tree(tree: Path, sources: range) -> None:
    """Each source picture with a mirrored and a quarter-turned copy, and a plain re-encoding."""
    for s in sources:
        image = picture(s, (200, 140))
        write(tree / f"t{s:02d}" / "a.png", encode(image, "PNG"))
        write(tree / f"t{s:02d}" / "b.jpg", encode(image, "JPEG", quality=60))
        write(tree / f"t{s:02d}" / "mirror.jpg", encode(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG"))
        write(tree / f"t{s:02d}" / "turned.png", encode(image.transpose(Image.Transpose.ROTATE_270), "PNG"))


def turned_matches(index: Index) -> set[tuple[int, int, int]]:
    a, b, distance, *_ = index.pairs.matches(turned_kind(pairs.KIND), 64)
    return set(zip(a.tolist(), b.tolist(), distance.tolist(), strict=True))


def page_tree(tree: Path, sources: range) -> None:
    """Each source a page: a picture on white with wide margins (its inside is the picture);
    and the page padded onto a black square (its inside is the whole page)."""
    for s in sources:
        page = Image.new("RGB", (300, 400), "white")
        page.paste(picture(s, (200, 260)), (50, 70))
        canvas = Image.new("RGB", (520, 520), "black")
        canvas.paste(page, (110, 60))
        write(tree / f"page{s:02d}" / "page.png", encode(page, "PNG"))
        write(tree / f"page{s:02d}" / "padded.jpg", encode(canvas, "JPEG", quality=85))


def test_a_copy_padded_to_its_sources_edge_matches_by_its_inside_and_the_sources_whole(
    tree: Path, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The padding stops at the page's edge, the page's own trim at the picture on it: the
    padded copy's inside is the page's whole picture, which no other link compares."""
    monkeypatch.setattr(pairs, "FULL_SHARE", 10.0)  # new pictures are verified alone, against the rest
    page_tree(tree, range(40, 44))
    late = tree / "page43" / "padded.jpg"
    late_bytes = late.read_bytes()
    late.unlink()
    run_scan(index, tree)
    rows = {
        os.fsdecode(name): (phash, trim)
        for name, phash, trim in index.db.execute(
            "SELECT dirs.path || '/' || files.name, phash, trim_hash FROM files JOIN dirs ON dirs.id = files.dir_id"
        )
    }

    def bits(a: int, b: int) -> int:
        return bin((a ^ b) & (2**64 - 1)).count("1")

    for s in range(40, 43):
        (page, page_inside), (padded, padded_inside) = (
            rows[str(tree / f"page{s}" / n)] for n in ("page.png", "padded.jpg")
        )
        assert page_inside is not None and padded_inside is not None
        assert min(bits(page, padded), bits(page_inside, padded_inside)) > 10  # no other link meets them
        assert bits(padded_inside, page) <= 4
    family = {frozenset({f"page{s}/page.png", f"page{s}/padded.jpg"}) for s in range(40, 43)}
    stored_groups, fresh_groups, used = report_both_ways(index)
    assert used > 0 and stored_groups == fresh_groups and named_groups(index, stored_groups) == family
    # A padded copy that comes after its page was stored meets it through the stored pairs.
    late.write_bytes(late_bytes)
    update = run_scan(index, tree).near_pairs
    assert update is not None and update.pictures_added == 1
    stored_groups, fresh_groups, used = report_both_ways(index)
    assert used == update.pictures and stored_groups == fresh_groups
    assert named_groups(index, stored_groups) == family | {frozenset({"page43/page.png", "page43/padded.jpg"})}


def padded_tree(tree: Path, sources: range) -> None:
    """Each source picture, a copy padded onto a white square (the most pixels: it leads the
    group) and a quarter-turned copy (of the picture, without the padding)."""
    for s in sources:
        image = picture(s, (200, 140))
        canvas = Image.new("RGB", (320, 320), "white")
        canvas.paste(image, (60, 90))
        write(tree / f"p{s:02d}" / "a.png", encode(image, "PNG"))
        write(tree / f"p{s:02d}" / "padded.png", encode(canvas, "PNG"))
        write(tree / f"p{s:02d}" / "turned.jpg", encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG"))


def named_groups(index: Index, groups: list[list[object]]) -> set[frozenset[str]]:
    names = {i: f"{Path(os.fsdecode(d)).name}/{os.fsdecode(n)}" for i, d, n in index.db.execute(
        "SELECT files.id, dirs.path, files.name FROM files JOIN dirs ON dirs.id = files.dir_id"
    )}  # fmt: skip
    return {frozenset(names[m if isinstance(m, int) else m[0]] for m in g) for g in groups if len(g) > 1}  # type: ignore[index]


def test_a_turned_copy_joins_the_padded_copy_that_leads_its_group(
    tree: Path, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The padded copy's inside is the picture: its orientations meet the turned copy, in
    memory, once stored, and when the turned copy comes later."""
    monkeypatch.setattr(pairs, "FULL_SHARE", 10.0)  # new pictures are verified alone, against the rest
    padded_tree(tree, range(30, 34))
    run_scan(index, tree)
    family = {frozenset({f"p{s}/a.png", f"p{s}/padded.png", f"p{s}/turned.jpg"}) for s in range(30, 34)}
    stored_groups, fresh_groups, _ = report_both_ways(index, rotations=True)
    assert named_groups(index, fresh_groups) == family

    assert pairs.set_rotations(index, True)
    pairs.update(index)
    stored_groups, fresh_groups, used = report_both_ways(index, rotations=True)
    assert used > 0 and stored_groups == fresh_groups and named_groups(index, stored_groups) == family

    # A mirrored copy written after the padded one was stored: found through the stored
    # orientations of its inside.
    image = picture(31, (200, 140)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    write(tree / "p31" / "late-mirror.jpg", encode(image, "JPEG", quality=80))
    update = run_scan(index, tree).near_pairs
    assert update is not None and update.pictures_added == 1
    stored_groups, fresh_groups, used = report_both_ways(index, rotations=True)
    assert used == update.pictures and stored_groups == fresh_groups
    grown = family - {frozenset({"p31/a.png", "p31/padded.png", "p31/turned.jpg"})}
    grown |= {frozenset({"p31/a.png", "p31/padded.png", "p31/turned.jpg", "p31/late-mirror.jpg"})}
    assert named_groups(index, stored_groups) == grown


def test_rotation_matches_once_stored_follow_new_and_removed_pictures(
    tree: Path, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pairs, "FULL_SHARE", 10.0)  # new pictures are verified alone, against the rest
    family_tree(tree, range(3))
    turned_tree(tree, range(20, 24))
    summary = run_scan(index, tree).near_pairs
    assert summary is not None
    stored_groups, fresh_groups, used = report_both_ways(index, rotations=True)
    assert used == 0 and not turned_matches(index)  # not stored unless asked: searched in memory
    assert stored_groups == fresh_groups

    assert pairs.set_rotations(index, True) and not pairs.set_rotations(index, True)
    again = pairs.update(index)
    assert again.pictures_added == again.pictures == summary.pictures  # all verified again, with orientations
    assert len(turned_matches(index)) >= 8  # each source's mirror and turned copy at least
    stored_groups, fresh_groups, used = report_both_ways(index, rotations=True)
    assert used == again.pictures
    assert stored_groups == fresh_groups
    with_copies = [g for g in stored_groups if len(g) >= 4]
    assert len(with_copies) >= 4

    # New pictures (and their turned copies), a removed mirror, a changed one: only those verified.
    turned_tree(tree, range(24, 27))
    late = picture(22, (200, 140)).transpose(Image.Transpose.ROTATE_90)  # of a picture stored already
    write(tree / "t22" / "late-turn.jpg", encode(late, "JPEG", quality=80))
    (tree / "t20" / "mirror.jpg").unlink()
    (tree / "t21" / "b.jpg").write_bytes(encode(picture(60, (200, 140)), "JPEG"))
    update = run_scan(index, tree).near_pairs
    assert update is not None and 0 < update.pictures_added < update.pictures
    incremental = turned_matches(index)
    stored_groups, fresh_groups, used = report_both_ways(index, rotations=True)
    assert used == update.pictures
    assert stored_groups == fresh_groups
    late_id = index.db.execute("SELECT id FROM files WHERE name = ?", (b"late-turn.jpg",)).fetchone()[0]
    assert any(late_id in [m if isinstance(m, int) else m[0] for m in g] and len(g) >= 3 for g in stored_groups)
    index.pairs.reset_matches(index.pairs.state()[1])  # all again: the same rotation matches
    pairs.update(index)
    assert turned_matches(index) == incremental

    assert pairs.set_rotations(index, False)
    assert not turned_matches(index) and not len(index.pairs.orientations(pairs.KIND)[0])
    stored_groups, fresh_groups, used = report_both_ways(index, rotations=True)
    assert used == 0 and stored_groups == fresh_groups


@pytest.mark.parametrize("share", [10.0, 0.0])  # only the pending pictures; every picture again
def test_an_update_told_to_stop_while_writing_matches_stops_and_the_next_finishes(
    tree: Path, index: Index, monkeypatch: pytest.MonkeyPatch, share: float
) -> None:
    """A watch being stopped asks its update to stop: writing millions of matches (thousands of
    pictures on one hash) stops between batches, marks nothing, and the next update does it."""
    monkeypatch.setattr(pairs, "FULL_SHARE", share)
    family_tree(tree, range(6))
    run_scan(index, tree)
    family_tree(tree, range(6, 9))
    run_scan(index, tree, options=replace(QUICK, update_pairs=False))
    writing = False
    real = PairStore.add_matches

    def noted(self: PairStore, *args: Any, **kwargs: Any) -> bool:
        nonlocal writing
        writing = True  # from here on the caller is told to stop
        return real(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(PairStore, "add_matches", noted)
        stopped = pairs.update(index, stop=lambda: writing)
    assert writing and stopped.pictures_added == 0 and not stopped.superseded  # stopped, not superseded
    assert len(index.pairs.pending()[1]) > 0  # still to do
    update = pairs.update(index)
    assert update.pictures_added > 0 and not len(index.pairs.pending()[1])
    assert rebuilt_matches(index) == stored_matches(index)


def test_picture_alone_marks_keys_no_other_picture_shares() -> None:
    """Pictures whose 64-bit key another shares are never trusted; the rest are alone."""
    rng = np.random.default_rng(11)
    for n in (0, 1, 2, 3, 500):
        keys = rng.integers(-4, 4, n) if n > 3 else np.array([7, 7, 1][:n], dtype=np.int64)
        keys[::50] = rng.integers(100, 10**12, len(keys[::50]))  # some alone, at either end too
        values, counts = np.unique(keys, return_counts=True)
        expected = np.isin(keys, values[counts == 1])
        assert picture_alone(keys).tolist() == expected.tolist()
