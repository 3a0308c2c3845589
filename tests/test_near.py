"""The Hamming-distance search and the grouping, against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from imgindex import near


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
    i, j, d = near.pairs_within(near.as_unsigned(signed), threshold)
    found = set(zip(i.tolist(), j.tolist(), d.tolist(), strict=True))
    expected = brute_force(hashes, threshold)
    assert found == expected
    assert len(expected) > (0 if threshold == 0 else 20)  # the planted pairs are there to find


def test_pairs_within_blocks_do_not_change_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(9)
    hashes = near.as_unsigned(np.array(planted(rng, 300, 50, 8), dtype=np.uint64).view(np.int64))
    whole = near.pairs_within(hashes, 8)
    monkeypatch.setattr(near, "BLOCK_CELLS", 7)  # one row per block, and more
    blocked = near.pairs_within(hashes, 8)
    for a, b in zip(whole, blocked, strict=True):
        assert np.array_equal(a, b)


def test_pairs_within_trivial_sizes() -> None:
    for n in (0, 1):
        i, j, d = near.pairs_within(np.zeros(n, dtype=np.uint64), 5)
        assert len(i) == len(j) == len(d) == 0
    i, j, d = near.pairs_within(np.array([5, 5], dtype=np.uint64), 0)
    assert (i.tolist(), j.tolist(), d.tolist()) == ([0], [1], [0])


def test_grouping_has_no_chains_and_leaders_are_best() -> None:
    # 0 ~ 1 (distance 3), 1 ~ 2 (distance 3), 0 and 2 at distance 6: a chain at threshold 4.
    hashes = np.array([0b0, 0b111, 0b111111, 0xFFFF_FFFF_0000_0000], dtype=np.uint64)
    order = np.array([1, 0, 2, 3])  # 1 is best
    g = near.group_by_leaders(order, hashes, np.ones(4, bool), 4)
    assert g.leader.tolist() == [1, 1, 1, 3]
    assert g.distance.tolist() == [3, 0, 3, 0]
    order = np.array([0, 1, 2, 3])  # 0 is best: 2 is too far from 0, so it leads its own group
    g = near.group_by_leaders(order, hashes, np.ones(4, bool), 4)
    assert g.leader.tolist() == [0, 0, 2, 3]


def test_grouping_every_member_within_threshold_of_its_leader() -> None:
    rng = np.random.default_rng(5)
    values = planted(rng, 400, 120, 12)
    hashes = np.array(values, dtype=np.uint64)
    order = rng.permutation(len(values)).astype(np.int64)
    g = near.group_by_leaders(order, hashes, np.ones(len(values), bool), 10)
    for u, lead in enumerate(g.leader.tolist()):
        assert bin(values[u] ^ values[lead]).count("1") == g.distance[u] <= 10
        assert g.leader[lead] == lead
        # The leader comes first in the order among its group.
        assert np.flatnonzero(order == lead)[0] <= np.flatnonzero(order == u)[0]


def test_units_without_a_hash_stay_alone() -> None:
    hashes = np.zeros(3, dtype=np.uint64)
    g = near.group_by_leaders(np.arange(3), hashes, np.array([True, False, True]), 10)
    assert g.leader.tolist() == [0, 1, 0]
