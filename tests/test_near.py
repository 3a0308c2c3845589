"""The Hamming-distance search and the grouping, against brute force."""

from __future__ import annotations

import itertools
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest

from imgindex.hashing import ORIENTATIONS
from imgindex.match import grouping, links, search
from imgindex.match.orientations import turned_pairs_with_insides, turned_rows


def brute_force(hashes: list[int], threshold: int) -> set[tuple[int, int, int]]:
    return {
        (i, j, bin(a ^ b).count("1"))
        for (i, a), (j, b) in itertools.combinations(enumerate(hashes), 2)
        if bin(a ^ b).count("1") <= threshold
    }


def planted(rng: np.random.Generator, n: int, families: int, max_flip: int) -> list[int]:
    """Random 64-bit hashes with families of near variants planted among them."""
    hashes = [int(x) for x in rng.integers(0, 2**64, n, dtype=np.uint64)]
    for _ in range(families):
        source = hashes[int(rng.integers(n))]
        for _ in range(int(rng.integers(1, 5))):
            bits = rng.choice(64, int(rng.integers(0, max_flip + 1)), replace=False)
            hashes.append(source ^ sum(1 << int(b) for b in bits))
    order = rng.permutation(len(hashes))
    return [hashes[i] for i in order]


@pytest.mark.parametrize(("seed", "threshold"), [(1, 0), (2, 4), (3, 10), (4, 16)])
def test_pairs_within_finds_exactly_the_brute_force_pairs(seed: int, threshold: int) -> None:
    rng = np.random.default_rng(seed)
    hashes = planted(rng, 600, 80, 14)
    signed = np.array([h - (1 << 64) if h >= 1 << 63 else h for h in hashes], dtype=np.int64)
    i, j, d = search.pairs_within(search.as_unsigned(signed), threshold)
    found = set(zip(i.tolist(), j.tolist(), d.tolist(), strict=True))
    expected = brute_force(hashes, threshold)
    assert found == expected
    assert len(expected) > (0 if threshold == 0 else 20)  # the planted pairs are there to find
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == sorted(zip(i.tolist(), j.tolist(), strict=True))


def test_pairs_within_blocks_do_not_change_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(9)
    hashes = search.as_unsigned(np.array(planted(rng, 300, 50, 8), dtype=np.uint64).view(np.int64))
    whole = search.pairs_within(hashes, 8)
    monkeypatch.setattr(search, "BLOCK_CELLS", 7)  # one row per block, and more
    blocked = search.pairs_within(hashes, 8)
    for a, b in zip(whole, blocked, strict=True):
        assert np.array_equal(a, b)


def test_pairs_within_trivial_sizes() -> None:
    for n in (0, 1):
        i, j, d = search.pairs_within(np.zeros(n, dtype=np.uint64), 5)
        assert len(i) == len(j) == len(d) == 0
    i, j, d = search.pairs_within(np.array([5, 5], dtype=np.uint64), 0)
    assert (i.tolist(), j.tolist(), d.tolist()) == ([0], [1], [0])


def group(
    order: np.ndarray,
    hashes: np.ndarray,
    has: np.ndarray,
    threshold: int,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    check: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> grouping.Grouping:
    """Grouping by one kind of hash, with a check that gives one verdict per candidate pair."""
    found = links.candidates(len(hashes), [links.Link(hashes, has, threshold, pairs)])
    ok = np.ones(len(found), bool) if check is None else check(found.u, found.v)
    g = grouping.group_by_leaders(order, grouping.Edges(found.u[ok], found.v[ok], found.gaps[0][ok]))
    expected = greedy(order, found.u[ok], found.v[ok], found.gaps[0][ok])
    assert g.leader.tolist() == expected.leader.tolist()
    assert g.distance.tolist() == expected.distance.tolist()
    return g


def greedy(
    order: np.ndarray, u: np.ndarray, v: np.ndarray, d: np.ndarray, fixed: set[int] = frozenset()
) -> grouping.Grouping:
    """The rule as it reads, one unit at a time: the centres of families first (those whose
    matches mostly match each other; the one with the most first), then the rest, each best
    first; each unit not yet grouped leads, and takes every ungrouped unit it has an edge to
    and ranks before, and, a centre, every ungrouped unit it has an edge to that ranks before
    it and matches most of its other matches (but not a ``fixed`` one); then each group is
    kept by its best unit among those that match all the others."""
    n = len(order)
    rank = {unit: r for r, unit in enumerate(order.tolist())}
    near: dict[int, dict[int, int]] = {}
    for a, b, gap in zip(u.tolist(), v.tolist(), d.tolist(), strict=True):
        near.setdefault(a, {})[b] = min(gap, near.get(a, {}).get(b, gap))
        near.setdefault(b, {})[a] = near[a][b]

    def measured(x: int) -> list[int]:
        return sorted(near.get(x, {}))[: grouping.CENTRE_MAX_MATCHES]  # the first, by unit number

    def claims(x: int) -> int:
        m = measured(x)
        matching = sum(len(near[y].keys() & set(m)) for y in m) / 2
        return (
            len(near.get(x, {}))
            if len(m) >= 2 and matching >= grouping.CENTRE_COHESION * len(m) * (len(m) - 1) / 2
            else 0
        )

    def cohesive(x: int, y: int) -> bool:
        others = [z for z in measured(x) if z != y]
        return bool(others) and sum(z in near[y] for z in others) >= grouping.CENTRE_COHESION * len(others)

    claim_order = sorted(range(n), key=lambda x: (-claims(x), rank[x]))
    leader = [-1] * n
    for unit in claim_order:
        if leader[unit] >= 0:
            continue
        leader[unit] = unit
        centre = claims(unit) > 0
        for other in sorted(near.get(unit, {})):
            if leader[other] >= 0:
                continue
            if rank[other] > rank[unit] or (centre and other not in fixed and cohesive(unit, other)):
                leader[other] = unit
    groups: dict[int, list[int]] = {}
    for unit, head in enumerate(leader):
        groups.setdefault(head, []).append(unit)
    kept, distance = list(range(n)), [0] * n
    for members in groups.values():
        whole = [m for m in members if all(o == m or o in near.get(m, {}) for o in members)]
        best = min(whole, key=lambda m: rank[m])
        for m in members:
            kept[m], distance[m] = best, (0 if m == best else near[best][m])
    return grouping.Grouping(np.array(kept), np.array(distance, dtype=np.uint8))


@pytest.mark.parametrize(("seed", "rounds"), [(1, grouping.ROUNDS), (2, grouping.ROUNDS), (3, 1), (4, 0)])
def test_grouping_over_arrays_is_the_greedy_rule(monkeypatch: pytest.MonkeyPatch, seed: int, rounds: int) -> None:
    # Random graphs, and chains in rank order (each round of the array form settles one link
    # of a chain: few rounds leave the rest to the one-at-a-time finish).
    monkeypatch.setattr(grouping, "ROUNDS", rounds)
    rng = np.random.default_rng(seed)
    n = 3000
    u = rng.integers(0, n, 6000)
    v = rng.integers(0, n, 6000)
    chain = np.arange(500, 900)
    u, v = np.concatenate([u, chain[:-1]]), np.concatenate([v, chain[1:]])
    keep = u != v
    lo, hi = np.minimum(u[keep], v[keep]), np.maximum(u[keep], v[keep])
    key = np.unique(lo * n + hi)
    lo, hi = key // n, key % n
    d = rng.integers(0, 11, len(lo)).astype(np.uint8)
    order = rng.permutation(n)
    if seed % 2:  # the chain first, in its own order: a round per link
        order = np.concatenate([chain, order[~np.isin(order, chain)]])
    g = grouping.group_by_leaders(order, grouping.Edges(lo, hi, d))
    expected = greedy(order, lo, hi, d)
    assert g.leader.tolist() == expected.leader.tolist()
    assert g.distance.tolist() == expected.distance.tolist()
    assert (g.leader != np.arange(n)).sum() > 500


@pytest.mark.parametrize("dense", [2, 10**9])
def test_the_pairs_among_a_units_matches_are_counted_alike_on_a_table_and_by_lookups(
    monkeypatch: pytest.MonkeyPatch, dense: int
) -> None:
    """Cliques (gradients that all match), families with pairs missing, and random edges: the
    pairs among each unit's measured matches, counted on the dense table (every run, or only
    while its units are few) and by lookups, are the rule's, and so is the grouping."""
    monkeypatch.setattr(grouping, "CENTRE_MAX_MATCHES", 12)
    monkeypatch.setattr(grouping, "DENSE_RUN", dense)
    rng = np.random.default_rng(4)
    n = 600
    edges = {tuple(sorted(map(int, rng.choice(n, 2, replace=False)))) for _ in range(900)}
    for start, size, share in ((0, 30, 1.0), (100, 18, 0.8), (300, 8, 1.0), (400, 40, 0.6)):
        for a, b in itertools.combinations(range(start, start + size), 2):
            if rng.random() < share:
                edges.add((a, b))
    lo, hi = (np.array(column) for column in zip(*sorted(edges), strict=True))
    d = rng.integers(0, 11, len(lo)).astype(np.uint8)
    order = rng.permutation(n)
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    better = np.where(position[lo] < position[hi], lo, hi)
    worse = np.where(position[lo] < position[hi], hi, lo)
    key = np.sort(better * n + worse)
    better, worse = key // n, key % n
    below = np.bincount(better, minlength=n)
    counted = grouping._pairs_that_match(better, worse, below, n)
    monkeypatch.setattr(grouping, "DENSE_UNITS", 5)  # too many units for the table: lookups
    assert np.array_equal(grouping._pairs_that_match(better, worse, below, n), counted)
    near = set(edges)
    for unit in range(n):
        measured = sorted(worse[better == unit].tolist())[:12]
        expected = sum((x, y) in near for x, y in itertools.combinations(measured, 2)) if len(measured) >= 2 else 0
        assert counted[unit] == expected
    assert (counted >= 30).sum() > 20  # the cliques and families count many pairs
    monkeypatch.setattr(grouping, "DENSE_UNITS", 8192)
    g = grouping.group_by_leaders(order, grouping.Edges(lo, hi, d))
    expected_groups = greedy(order, lo, hi, d)
    assert g.leader.tolist() == expected_groups.leader.tolist()


def test_grouping_over_arrays_is_the_rule_on_families_of_copies() -> None:
    # Cliques, nearly cliques and stars, so that centres are found, and some are not.
    rng = np.random.default_rng(7)
    n, us, vs = 2000, [], []
    at = 0
    for size in rng.integers(2, 12, 220).tolist():
        members = np.arange(at, at + size)
        at += size
        i, j = np.triu_indices(size, 1)
        keep = rng.random(len(i)) < rng.choice([0.5, 0.8, 1.0])
        us.append(members[i[keep]])
        vs.append(members[j[keep]])
    us.append(rng.integers(0, n, 300))
    vs.append(rng.integers(0, n, 300))
    u, v = np.concatenate(us), np.concatenate(vs)
    keep = u != v
    lo, hi = np.minimum(u[keep], v[keep]), np.maximum(u[keep], v[keep])
    d = rng.integers(0, 11, len(lo)).astype(np.uint8)
    order = rng.permutation(n)
    g = grouping.group_by_leaders(order, grouping.Edges(lo, hi, d))  # some edges given twice
    expected = greedy(order, lo, hi, d)
    assert g.leader.tolist() == expected.leader.tolist()
    assert g.distance.tolist() == expected.distance.tolist()


def test_a_family_stays_with_its_centre_when_a_better_copy_matches_only_some() -> None:
    # 0: a padded copy (more pixels, ranked first) matching the source 1 and its copy 2;
    # 1: the source, matching every copy 2..5, which match each other; 3, 4, 5 do not
    # match the padded copy. Ranked only, 0 would take 1 and 2, and leave 3, 4, 5 to
    # be grouped by one of them, apart from their source.
    pairs = [(0, 1), (0, 2)] + [(a, b) for a in range(1, 6) for b in range(a + 1, 6)]
    lo = np.array([a for a, _ in pairs])
    hi = np.array([b for _, b in pairs])
    d = np.full(len(pairs), 3, dtype=np.uint8)
    g = grouping.group_by_leaders(np.arange(6), grouping.Edges(lo, hi, d))
    assert g.leader.tolist() == [0, 1, 1, 1, 1, 1]
    # A picture whose matches are strangers to each other (a template) is no centre:
    # 1 matches 2..5 and they match nothing else, so 0 takes 1 and 2 as before.
    star = [(0, 1), (0, 2)] + [(1, b) for b in range(2, 6)]
    lo, hi = np.array([a for a, _ in star]), np.array([b for _, b in star])
    g = grouping.group_by_leaders(np.arange(6), grouping.Edges(lo, hi, np.full(len(star), 3, dtype=np.uint8)))
    assert g.leader.tolist() == [0, 0, 0, 3, 4, 5]


def test_a_centre_takes_a_better_copy_of_its_family_and_the_best_that_matches_all_keeps_it() -> None:
    # 1: the source, matching its copies 2..5, which match each other; 0: a copy with more
    # pixels (ranked first) that matches the source and three of its four copies.
    pairs = [(0, 1), (0, 2), (0, 3), (0, 4)] + [(a, b) for a in range(1, 6) for b in range(a + 1, 6)]
    lo, hi = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    d = np.arange(len(pairs), dtype=np.uint8) % 7 + 1
    g = grouping.group_by_leaders(np.arange(6), grouping.Edges(lo, hi, d))
    # One group; 0 does not match 5, so the source, which matches all, keeps it.
    assert g.leader.tolist() == [1] * 6
    assert g.distance.tolist() == [d[0], 0, *(d[pairs.index((1, b))] for b in range(2, 6))]
    # With 0 matching 5 too, 0 (the best) keeps the group: every member matches it.
    pairs.append((0, 5))
    lo, hi = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    d = np.arange(len(pairs), dtype=np.uint8) % 7 + 1
    g = grouping.group_by_leaders(np.arange(6), grouping.Edges(lo, hi, d))
    assert g.leader.tolist() == [0] * 6
    assert g.distance.tolist() == [0, *(d[pairs.index((0, b))] for b in range(1, 6))]
    # A unit decided to keep is never taken: 0 stays apart with what only it could take.
    fixed = np.zeros(6, dtype=bool)
    fixed[0] = True
    g = grouping.group_by_leaders(np.arange(6), grouping.Edges(lo[:4], hi[:4], d[:4]))
    assert g.leader.tolist() == [0, 0, 0, 0, 0, 5]  # (without the family's edges: plain rank order)
    pairs.pop()
    lo, hi = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    d = np.arange(len(pairs), dtype=np.uint8) % 7 + 1
    g = grouping.group_by_leaders(np.arange(6), grouping.Edges(lo, hi, d), fixed)
    assert g.leader.tolist() == [0, 1, 1, 1, 1, 1]
    assert g.leader.tolist() == greedy(np.arange(6), lo, hi, d, {0}).leader.tolist()


def test_grouping_has_no_chains_and_leaders_are_best() -> None:
    # 0 ~ 1 (distance 3), 1 ~ 2 (distance 3), 0 and 2 at distance 6: a chain at threshold 4.
    hashes = np.array([0b0, 0b111, 0b111111, 0xFFFF_FFFF_0000_0000], dtype=np.uint64)
    order = np.array([1, 0, 2, 3])  # 1 is best
    g = group(order, hashes, np.ones(4, bool), 4)
    assert g.leader.tolist() == [1, 1, 1, 3]
    assert g.distance.tolist() == [3, 0, 3, 0]
    order = np.array([0, 1, 2, 3])  # 0 is best: 2 is too far from 0, so it leads its own group
    g = group(order, hashes, np.ones(4, bool), 4)
    assert g.leader.tolist() == [0, 0, 2, 3]


def test_grouping_every_member_within_threshold_of_its_leader() -> None:
    rng = np.random.default_rng(5)
    values = planted(rng, 400, 120, 12)
    hashes = np.array(values, dtype=np.uint64)
    order = rng.permutation(len(values)).astype(np.int64)
    g = group(order, hashes, np.ones(len(values), bool), 10)
    for u, lead in enumerate(g.leader.tolist()):
        assert bin(values[u] ^ values[lead]).count("1") == g.distance[u] <= 10
        assert g.leader[lead] == lead
        # The leader comes first in the order among its group.
        assert np.flatnonzero(order == lead)[0] <= np.flatnonzero(order == u)[0]


def test_units_without_a_hash_stay_alone() -> None:
    hashes = np.zeros(3, dtype=np.uint64)
    g = group(np.arange(3), hashes, np.array([True, False, True]), 10)
    assert g.leader.tolist() == [0, 1, 0]


def clustered(seed: int, n: int) -> np.ndarray:
    """Enough hashes for the indexed search to be chosen, in families of near variants."""
    rng = np.random.default_rng(seed)
    sources = rng.integers(0, 2**64, n // 3, dtype=np.uint64)
    variants = sources[rng.integers(0, len(sources), n - len(sources))]
    for _ in range(14):
        flip = np.uint64(1) << rng.integers(0, 64, len(variants)).astype(np.uint64)
        variants = variants ^ np.where(rng.random(len(variants)) < 0.4, flip, np.uint64(0))
    return np.concatenate([sources, variants, variants[:40]])  # and some equal hashes


@pytest.mark.parametrize(("threshold", "n"), [(0, 6000), (1, 6000), (3, 6000), (6, 6000), (10, 6000), (12, 20_000)])
def test_indexed_search_matches_brute_force(threshold: int, n: int) -> None:
    hashes = clustered(threshold, n)
    assert search.plan(len(hashes), len(hashes), threshold).blocks  # the indexed search is what runs
    found = search.pairs_within(hashes, threshold)
    expected = search.pairs_within_brute_force(hashes, threshold)
    for a, b in zip(found, expected, strict=True):
        assert np.array_equal(a, b)
    assert len(expected[0]) > 40


@pytest.mark.parametrize("threshold", [4, 10])
def test_pairs_from_queries_finds_each_pair_with_a_query_once(threshold: int) -> None:
    hashes = clustered(7, 5000)
    rng = np.random.default_rng(3)
    queries = rng.choice(len(hashes), 700, replace=False)
    i, j, d = search.pairs_from(hashes, queries, threshold)
    bi, bj, bd = search.pairs_within_brute_force(hashes, threshold)
    q = set(queries.tolist())
    expected = {
        ((a, b) if a in q else (b, a)): dist
        for a, b, dist in zip(bi.tolist(), bj.tolist(), bd.tolist(), strict=True)
        if a in q or b in q
    }
    got = {(a, b): dist for a, b, dist in zip(i.tolist(), j.tolist(), d.tolist(), strict=True)}
    assert len(got) == len(i)  # no pair twice
    assert got == expected
    assert expected


@pytest.mark.parametrize("lookups", [1, 700, 50_000, 1 << 20])
def test_lookups_batched_over_flips_find_the_same_pairs(monkeypatch: pytest.MonkeyPatch, lookups: int) -> None:
    # A pass takes the lookups of as many flips as fit: one flip, a few, or all of them.
    monkeypatch.setattr(search, "LOOKUP_CHUNK", lookups)
    hashes = clustered(7, 5000)
    queries = np.random.default_rng(5).choice(len(hashes), 40, replace=False)
    i, j, d = search.pairs_from(hashes, queries, 10)
    everything = search.pairs_from(hashes, None, 10)
    q = set(queries.tolist())
    expected = {
        ((a, b) if a in q else (b, a)): dist
        for a, b, dist in zip(*(x.tolist() for x in everything), strict=True)
        if a in q or b in q
    }
    assert dict(zip(zip(i.tolist(), j.tolist(), strict=True), d.tolist(), strict=True)) == expected
    assert len(i) == len(expected) > 10


def test_blocks_searched_side_by_side_find_what_one_after_another_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each way of searching (all pairs among hashes, a few queries among them, queries against
    # targets bucketed, few queries against many targets), its blocks one after another and in
    # threads: the same arrays, in the same order.
    hashes = clustered(7, 5000)
    queries = np.random.default_rng(8).choice(len(hashes), 3000, replace=False)
    few = hashes[queries[:1000]] ^ np.uint64(0b1011)
    blocks = search._few_queries_plan(2_000_000, len(few), 8)
    assert blocks and search.plan(len(hashes), len(queries), 10).blocks and search.plan(len(hashes), len(few), 8).blocks

    def searches() -> list[search.Pairs]:
        return [
            search.pairs_within(hashes, 10),
            search.pairs_from(hashes, queries, 10),
            search.pairs_between(hashes, few, 8),
            search._few_queries(hashes, few, 8, blocks),
        ]

    monkeypatch.setattr(search, "_cores", lambda: 2)
    threads: list[int] = []
    real = search.ThreadPoolExecutor

    def counted(workers: int) -> object:
        threads.append(workers)
        return real(workers)

    monkeypatch.setattr(search, "ThreadPoolExecutor", counted)
    side_by_side = searches()
    assert threads == [2, 2, 2, 2]
    # One block after another: a search larger than THREADED_SIZE (memory; but not the few
    # queries' search, which holds no table of the targets), or one thread.
    monkeypatch.setattr(search, "THREADED_SIZE", len(hashes))
    large = searches()
    assert threads == [2, 2, 2, 2, 2]
    monkeypatch.setattr(search, "THREADED_SIZE", 2 * len(hashes))
    monkeypatch.setattr(search, "SEARCH_THREADS", 1)
    for alone in (large, searches()):
        for together, one in zip(side_by_side, alone, strict=True):
            assert len(together[0]) > 100
            for a, b in zip(together, one, strict=True):
                assert np.array_equal(a, b)
    assert threads == [2, 2, 2, 2, 2]  # (none with one thread)


@pytest.mark.parametrize("width", [13, 16, 17, 22, 33])
def test_stable_order_is_the_stable_argsort(width: int) -> None:
    rng = np.random.default_rng(width)
    keys = rng.integers(0, 2**width, 20_000).astype(np.intp)
    keys[::7] = keys[0]  # many ties: their order must stay the input's
    assert np.array_equal(search.stable_order(keys, width), np.argsort(keys, kind="stable"))


@pytest.mark.parametrize("width", [13, 16, 17, 22, 33])
def test_radix_passes_count_the_sorts_of_stable_order(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    sorts: list[int] = []
    argsort = np.argsort

    def counted(*args: object, **kwargs: object) -> object:
        sorts.append(1)
        return argsort(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(search.np, "argsort", counted)
    search.stable_order(np.arange(100, dtype=np.intp), width)
    assert len(sorts) == search.radix_passes(width)


def test_few_queries_among_many_take_narrow_blocks() -> None:
    """A wide block's sort takes two radix passes: for an update's few queries among a million
    hashes the plan takes four 16-bit blocks (their tables sorted in one pass each), and for
    every pair of the million still the 22-bit blocks, whose lookups are fewer."""
    few = search.plan(824_339, 1_100, 10).blocks
    assert [width for _, width, _ in few] == [16, 16, 16, 16]
    every = search.plan(824_339, 824_339, 10).blocks
    assert max(width for _, width, _ in every) >= 20


def test_the_plan_is_the_cheapest_layout_by_layout_cost() -> None:
    """The plan weighs every layout and allowances at once: it takes the first of the cheapest
    by :func:`search.layout_cost`, one at a time in order, or the all-pairs comparison when
    no layout is cheaper."""
    for n, m, threshold in itertools.product(
        (2, 900, 50_000, 824_339, 10_000_000), (1, 1_100, 50_000), range(0, 14, 3)
    ):
        best = search.Plan((), m * float(n) * search._COMPARE_NS)
        for widths in search.LAYOUTS:
            shifts = np.cumsum((0, *widths[:-1])).tolist()
            for allowed in search._allowance_choices(len(widths), threshold):
                cost = search.layout_cost(n, m, widths, allowed)
                if cost < best.cost_ns:
                    blocks = zip(shifts, widths, allowed, strict=True)
                    best = search.Plan(tuple(b for b in blocks if b[2] >= 0), cost)
        chosen = search.plan(n, m, threshold)
        assert chosen.blocks == best.blocks and chosen.cost_ns == pytest.approx(best.cost_ns), (n, m, threshold)


def test_search_memory_is_bounded_by_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    hashes = clustered(11, 4000)
    whole = search.pairs_within(hashes, 10)
    monkeypatch.setattr(search, "CANDIDATE_CHUNK", 5)  # a handful of candidates at a time
    chunked = search.pairs_within(hashes, 10)
    for a, b in zip(whole, chunked, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("threshold", range(17))
def test_every_plan_obeys_the_pigeonhole_rule(threshold: int) -> None:
    for n in (3000, 100_000, 1_000_000):
        blocks = search.plan(n, n, threshold).blocks
        if blocks:
            assert sum(a + 1 for _, _, a in blocks) == threshold + 1
            assert all(a >= 0 for _, _, a in blocks)
            spans = sorted((shift, shift + width) for shift, width, _ in blocks)
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # disjoint bits
            assert spans[-1][1] <= 64


def test_grouping_from_given_pairs_is_the_grouping_from_a_search() -> None:
    rng = np.random.default_rng(8)
    hashes = clustered(8, 3000)
    order = rng.permutation(len(hashes)).astype(np.int64)
    has = rng.random(len(hashes)) < 0.95
    searched = group(order, hashes, has, 8)
    values = np.unique(hashes[has])
    i, j, d = search.pairs_within(values, 10)  # stored up to 10, grouped at 8
    extra = np.array([1, 2], dtype=np.uint64)  # pairs of values no unit has are ignored
    given = group(
        order, hashes, has, 8, (np.append(values[i], extra), np.append(values[j], extra[::-1]), np.append(d, [2, 2]))
    )
    assert np.array_equal(searched.leader, given.leader)
    assert np.array_equal(searched.distance, given.distance)
    assert (searched.leader != np.arange(len(hashes))).sum() > 100


def test_many_pictures_on_one_hash_are_grouped_by_their_node() -> None:
    # Two thousand distinct pictures with one hash (byte-identical files are one unit before
    # this) and a near variant: all candidates of each other, at distance 0.
    hashes = np.concatenate([np.full(2_000, 0xF0F0, dtype=np.uint64), np.array([0xF0F1, 0xFFFF_0000], np.uint64)])
    g = group(np.arange(len(hashes)), hashes, np.ones(len(hashes), bool), 4)
    assert (g.leader[:2_001] == 0).all()
    assert g.distance[2_000] == 1 and not g.distance[1:2_000].any()
    assert g.leader[2_001] == 2_001


def test_a_check_that_accepts_everything_changes_nothing() -> None:
    rng = np.random.default_rng(21)
    hashes = clustered(21, 2500)
    order = rng.permutation(len(hashes)).astype(np.int64)
    has = np.ones(len(hashes), bool)
    plain = group(order, hashes, has, 9)
    checked = group(order, hashes, has, 9, check=lambda u, v: np.ones(len(u), bool))
    assert np.array_equal(plain.leader, checked.leader)
    assert np.array_equal(plain.distance, checked.distance)


def test_units_a_check_refuses_stay_free_for_later_leaders() -> None:
    rng = np.random.default_rng(22)
    hashes = clustered(22, 2500)
    n = len(hashes)
    order = rng.permutation(n).astype(np.int64)

    def accepts(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.asarray((u + v) % 3 != 0)  # a deterministic, arbitrary verdict, the same either way round

    g = group(order, hashes, np.ones(n, bool), 9, check=accepts)
    d = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    leaders = np.flatnonzero(g.leader == np.arange(n))
    for m in range(n):
        lead = int(g.leader[m])
        if lead != m:  # a member: accepted by the unit that keeps its group, within the threshold
            assert accepts(np.array([lead]), np.array([m]))[0]
            assert d[lead, m] == g.distance[m] <= 9
    # And the groups are the rule's over the matches the check accepted: a refused candidate
    # is no edge, so the unit stays free for a later leader.
    found = links.candidates(n, [links.Link(hashes, np.ones(n, bool), 9)])
    ok = accepts(found.u, found.v)
    u, v = found.u[ok], found.v[ok]
    expected = greedy(order, u, v, np.bitwise_count(hashes[u] ^ hashes[v]).astype(np.uint8))
    assert g.leader.tolist() == expected.leader.tolist()
    unchecked = group(order, hashes, np.ones(n, bool), 9)
    assert (g.leader != np.arange(n)).sum() > 100  # groups were made
    assert len(leaders) > (unchecked.leader == np.arange(n)).sum()  # and refusals made more of them


def test_pairs_given_twice_do_not_change_a_checked_grouping() -> None:
    # Stored pairs and a search in memory can both list a pair (see match.candidates.pairs_among).
    rng = np.random.default_rng(23)
    hashes = clustered(23, 2000)
    order = rng.permutation(len(hashes)).astype(np.int64)
    has = np.ones(len(hashes), bool)
    values = np.unique(hashes)
    i, j, d = search.pairs_within(values, 9)
    twice = (np.concatenate([values[i], values[i]]), np.concatenate([values[j], values[j]]), np.concatenate([d, d]))

    def accepts(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.asarray((u * v + u + v) % 4 != 0)

    once = group(order, hashes, has, 9, (values[i], values[j], d), check=accepts)
    doubled = group(order, hashes, has, 9, twice, check=accepts)
    assert np.array_equal(once.leader, doubled.leader)
    assert np.array_equal(once.distance, doubled.distance)


def test_a_unit_near_in_either_kind_joins_at_its_nearest_verified_distance() -> None:
    # Link 0: whole pictures; link 1: what is inside their borders.
    whole = np.array([0x0, 0xFF, 0xFFFF_0000, 0xFFFF_FFFF_FFFF], dtype=np.uint64)
    inside = np.array([0x0, 0x1, 0xF, 0xFFFF_FFFF_0000_0000], dtype=np.uint64)
    has = np.ones(4, bool)
    found = links.candidates(4, [links.Link(whole, has, 8), links.Link(inside, has, 8)])
    pairs = {(u, v): gaps for u, v, gaps in zip(found.u.tolist(), found.v.tolist(), found.gaps.T.tolist(), strict=True)}
    nn = links.NOT_NEAR
    # 1 is near 0 in both (8 and 1 bits); 2 only inside (4 bits from 0, 3 from 1); 3 in neither.
    assert pairs == {(0, 1): [8, 1], (0, 2): [nn, 4], (1, 2): [nn, 3]}
    joined = found.gaps.min(axis=0)
    g = grouping.group_by_leaders(np.arange(4), grouping.Edges(found.u, found.v, joined))
    assert g.leader.tolist() == [0, 0, 0, 3]
    assert g.distance.tolist() == [0, 1, 4, 0]
    # Insides refused: only the whole pictures' match holds.
    g = grouping.group_by_leaders(np.arange(4), grouping.Edges(found.u[:1], found.v[:1], found.gaps[0, :1]))
    assert g.leader.tolist() == [0, 0, 2, 3]
    assert g.distance.tolist() == [0, 8, 0, 0]


def test_a_link_with_framed_units_pairs_only_with_them() -> None:
    hashes = np.array([0x0, 0x3, 0x7, 0xFFFF_0000_0000_0000], dtype=np.uint64)
    framed = np.array([False, True, False, False])
    u, v, d = links.unit_pairs(links.Link(hashes, np.ones(4, bool), 4, framed=framed))
    assert list(zip(u.tolist(), v.tolist(), d.tolist(), strict=True)) == [(0, 1, 2), (1, 2, 1)]  # not (0, 2)
    focus = np.array([True, False, False, False])
    u, v, d = links.unit_pairs(links.Link(hashes, np.ones(4, bool), 4, framed=framed), focus)
    assert list(zip(u.tolist(), v.tolist(), d.tolist(), strict=True)) == [(0, 1, 2)]


@pytest.mark.parametrize(
    ("given", "framed", "excluded"), [(True, False, False), (False, True, True), (True, True, True)]
)
def test_a_link_makes_the_brute_force_pairs_of_a_focus_and_counts_each_units(
    given: bool, framed: bool, excluded: bool
) -> None:
    """Crowds of units on a few near values: the pairs with a focus unit on a side are those
    of brute force, and a unit's degree is how many units are within the threshold of it."""
    rng = np.random.default_rng(11)
    n, threshold = 240, 2
    pool = [0, 1, 3, 0xF0, 1 << 40, (1 << 40) | 1, 0xFFFF]  # a few near each other, some alone
    hashes = np.array([pool[k] for k in rng.integers(0, len(pool), n)], dtype=np.uint64)
    has_hash = rng.random(n) < 0.9
    frame = rng.random(n) < 0.3 if framed else None
    exclude = rng.random(n) < 0.2 if excluded else None
    values = sorted(set(pool))
    near = [(a, b, bin(a ^ b).count("1")) for a, b in itertools.combinations(values, 2)]
    near = [(a, b, d) for a, b, d in near if d <= threshold]
    pairs = (
        np.array([a for a, _, _ in near], np.uint64),
        np.array([b for _, b, _ in near], np.uint64),
        np.array([d for _, _, d in near], np.uint8),
    )
    link = links.Link(hashes, has_hash, threshold, pairs if given else None, frame)
    for focus in (None, rng.random(n) < 0.1, np.zeros(n, bool)):
        u, v, d = links.unit_pairs(link, focus, exclude)
        expected = {
            (a, b, int(np.bitwise_count(hashes[a] ^ hashes[b])))
            for a, b in itertools.combinations(range(n), 2)
            if has_hash[a]
            and has_hash[b]
            and np.bitwise_count(hashes[a] ^ hashes[b]) <= threshold
            and (focus is None or focus[a] or focus[b])
            and (frame is None or frame[a] or frame[b])
            and (exclude is None or not (exclude[a] or exclude[b]))
        }
        assert set(zip(u.tolist(), v.tolist(), d.tolist(), strict=True)) == expected
        assert len(u) == len(expected) and (len(expected) > 50 or (focus is not None and not focus.any()))
    degrees = links.unit_degrees(links.Link(hashes, has_hash, threshold, pairs), n)
    within = np.bitwise_count(hashes[:, None] ^ hashes[None, :]) <= threshold
    within &= has_hash[:, None] & has_hash[None, :] & ~np.eye(n, dtype=bool)
    assert degrees.tolist() == within.sum(axis=1).tolist()
    searched = links.unit_degrees(links.Link(hashes, has_hash, threshold), n)  # pairs not given: searched
    assert searched.tolist() == degrees.tolist()


def test_a_focus_unit_in_a_crowd_costs_its_own_pairs_not_the_crowds() -> None:
    """One unit of 4,000 on one hash: its 3,999 pairs are made without the crowd's eight million."""
    n = 4000
    link = links.Link(
        np.zeros(n, np.uint64), np.ones(n, bool), 4, (np.empty(0, np.uint64),) * 2 + (np.empty(0, np.uint8),)
    )
    focus = np.zeros(n, bool)
    focus[1234] = True
    tracemalloc.start()
    try:
        u, v, _ = links.unit_pairs(link, focus)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(u) == n - 1 and ((u == 1234) | (v == 1234)).all()
    assert peak < 2_000_000  # the crowd's pairs would be over 64 MB for one column


@pytest.mark.parametrize("lower", [True, False])
def test_a_cross_link_pairs_insides_with_other_units_whole_pictures(lower: bool) -> None:
    rng = np.random.default_rng(3)
    n = 200
    whole = rng.integers(0, 2**64, n, dtype=np.uint64)
    inside = rng.integers(0, 2**64, n, dtype=np.uint64)
    for u in range(0, n, 4):  # unit u's inside near unit (u ± 7)'s whole picture, or equal to it
        partner = (u + 7) % n if u % 8 else (u - 7) % n
        inside[u] = whole[partner] ^ np.uint64((1 << int(rng.integers(0, 64))) * (u % 3 == 0))
    has_inside, has_whole = rng.random(n) < 0.8, rng.random(n) < 0.9
    focus = rng.random(n) < 0.5
    link = links.CrossLink(inside, has_inside, whole, has_whole, 3, None, lower)
    u, v, d = links.unit_pairs(link, focus)
    # The two ways round made together share their link over twice the units, with the same pairs.
    pair = links.CrossLink.both(inside, has_inside, whole, has_whole, 3, None)
    assert pair[0].doubled is pair[1].doubled and pair[1 - lower].lower_inside == lower
    twin = links.unit_pairs(pair[1 - lower], focus)
    assert all(np.array_equal(x, y) for x, y in zip((u, v, d), twin, strict=True))
    assert np.array_equal(links.unit_degrees(link, n), links.unit_degrees(pair[1 - lower], n))
    expected = set()
    for a in range(n):
        for b in range(n):
            gap = int(np.bitwise_count(inside[a] ^ whole[b]))
            near = a != b and has_inside[a] and has_whole[b] and gap <= 3 and (focus[a] or focus[b])
            if near and (a < b) == lower:
                expected.add((min(a, b), max(a, b), gap))
    assert set(zip(u.tolist(), v.tolist(), d.tolist(), strict=True)) == expected and len(expected) >= 8


def test_an_edge_given_twice_counts_at_its_smaller_distance() -> None:
    edges = grouping.Edges(np.array([0, 0, 1]), np.array([1, 1, 2]), np.array([5, 2, 1], dtype=np.uint8))
    g = grouping.group_by_leaders(np.arange(3), edges)
    assert g.leader.tolist() == [0, 0, 2] and g.distance.tolist() == [0, 2, 0]


def test_turned_pairs_with_insides_are_each_search_alone() -> None:
    """One search over the wholes' and the framed insides' orientations gives the wholes' pairs,
    and the insides' pairs (whole where not framed) that have a framed picture on a side."""
    rng = np.random.default_rng(7)
    whole = rng.integers(0, 2**64, (300, ORIENTATIONS), dtype=np.uint64)
    framed = rng.random(300) < 0.3
    inside = np.where(framed[:, None], rng.integers(0, 2**64, (300, ORIENTATIONS), dtype=np.uint64), whole)
    for table in (whole, inside):  # row r + 1's upright near row r's orientation k, within 0-5 bits
        for r in range(0, 300, 3):
            flips = rng.choice(64, int(rng.integers(0, 6)), replace=False)
            table[r + 1, 0] = table[r, 1 + r % 7] ^ np.uint64(sum(1 << int(b) for b in flips))
    inside[~framed] = whole[~framed]

    def as_set(found: tuple[np.ndarray, ...]) -> set[tuple[int, int, int]]:
        return set(zip(*(x.tolist() for x in found), strict=True))

    for r in range(0, 300, 5):  # and some framed insides near another picture's whole, turned
        inside[r, 0] = whole[(r + 11) % 300, 1 + r % 7] ^ np.uint64(1 << int(rng.integers(0, 64)))
    inside[~framed] = whole[~framed]
    plain, insides, cross = turned_pairs_with_insides(whole, inside, framed, 5)
    assert as_set(plain) == as_set(turned_rows(whole, 5)[:3]) and len(plain[0]) >= 90
    row = {int(v): r for r, v in enumerate(inside[:, 0].tolist())}
    expected = {(a, b, d) for a, b, d in as_set(turned_rows(inside, 5)[:3]) if framed[row[a]] or framed[row[b]]}
    assert as_set(insides) == expected and len(expected) >= 30
    # Cross: all rows in one search, the pairs of a framed inside's row with a framed whole's.
    rows = np.concatenate([whole, inside[framed]])
    kind = {int(v): ("whole", framed[r]) for r, v in enumerate(whole[:, 0].tolist())}
    kind.update({int(v): ("inside", True) for v in inside[framed, 0].tolist()})
    expected = {
        (a, b, d)
        for a, b, d in as_set(turned_rows(rows, 5)[:3])
        if {kind[a][0], kind[b][0]} == {"whole", "inside"} and kind[a][1] and kind[b][1]
    }
    assert as_set(cross) == expected and len(expected) >= 5


@pytest.mark.parametrize("n", [7, 50_000, 1 << 30])
def test_smallest_keeps_each_pair_once_at_its_smallest_distance(n: int) -> None:
    """By the packed key (pair and distance sorted as one number) and, for units too many to
    pack (1 << 30), by the two-key sort: the same as a dict of the smallest distances."""
    rng = np.random.default_rng(n % 1000)
    u = rng.integers(0, min(n, 300), 5000)
    v = rng.integers(0, min(n, 300), 5000) + (n - min(n, 300))
    u, v = np.minimum(u, v), np.maximum(u, v)
    d = rng.integers(0, 65, 5000).astype(np.uint8)
    best: dict[tuple[int, int], int] = {}
    for a, b, x in zip(u.tolist(), v.tolist(), d.tolist(), strict=True):
        best[a, b] = min(x, best.get((a, b), 64))
    su, sv, sd = links.smallest(u, v, d, n)
    assert sd.dtype == np.uint8
    swap = rng.random(5000) < 0.5  # either way round, the same pairs
    assert all(
        np.array_equal(x, y)
        for x, y in zip(links.smallest(np.where(swap, v, u), np.where(swap, u, v), d, n), (su, sv, sd), strict=True)
    )
    expected = [(a, b, x) for (a, b), x in sorted(best.items())]
    assert list(zip(su.tolist(), sv.tolist(), sd.tolist(), strict=True)) == expected
    assert links.smallest(u[:0], v[:0], d[:0], n)[0].shape == (0,)
