"""Hamming-distance search over 64-bit hashes, and grouping into duplicate sets.

Pure numpy: arrays in, arrays out. :func:`pairs_within` is the one entry
point of the search, so that its method can change (a later version indexes
the hashes instead of comparing all pairs) without touching its callers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

#: Hash comparisons per block of the all-pairs search (bounds its memory).
BLOCK_CELLS = 1 << 22


def as_unsigned(hashes: npt.ArrayLike) -> U64:
    """Hashes stored as signed 64-bit integers (as SQLite keeps them), viewed as unsigned."""
    return np.asarray(hashes, dtype=np.int64).view(np.uint64)


def distances(a: U64, b: U64) -> npt.NDArray[np.uint8]:
    """Elementwise Hamming distance."""
    return np.bitwise_count(np.bitwise_xor(a, b))


def pairs_within(hashes: U64, threshold: int) -> tuple[I64, I64, npt.NDArray[np.uint8]]:
    """All pairs ``i < j`` with ``popcount(hashes[i] ^ hashes[j]) <= threshold``.

    Returns ``(i, j, distance)``, sorted by ``i`` then ``j``. Compares all pairs
    block by block, vectorised; memory stays at a few blocks whatever the size.
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(hashes)
    found_i: list[I64] = []
    found_j: list[I64] = []
    found_d: list[npt.NDArray[np.uint8]] = []
    rows = max(1, BLOCK_CELLS // max(n, 1))
    for start in range(0, n - 1, rows):
        stop = min(start + rows, n - 1)
        block = hashes[start:stop, None]
        rest = hashes[None, start + 1 :]
        d = np.bitwise_count(block ^ rest)  # (rows, n - start - 1); column c is hash start + 1 + c
        # Keep only j > i: in row r (hash start + r) that is columns c >= r.
        flat = np.flatnonzero(d.ravel() <= threshold)  # faster than a 2-D nonzero
        r_idx, c_idx = np.divmod(flat, d.shape[1])
        keep = c_idx >= r_idx
        r_idx, c_idx = r_idx[keep], c_idx[keep]
        found_i.append((r_idx + start).astype(np.int64))
        found_j.append((c_idx + start + 1).astype(np.int64))
        found_d.append(d[r_idx, c_idx])
    if not found_i:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8)
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)


@dataclass(frozen=True)
class Grouping:
    """``leader[u]`` is the unit that heads unit ``u``'s group (itself for a leader);
    ``distance[u]`` its Hamming distance to that leader (0 for a leader)."""

    leader: I64
    distance: npt.NDArray[np.uint8]


def group_by_leaders(order: I64, hashes: U64, has_hash: npt.NDArray[np.bool_], threshold: int | None) -> Grouping:
    """Group units greedily around leaders, best first.

    ``order`` lists the units best first. Each unit not yet grouped becomes a
    leader, and every ungrouped unit within ``threshold`` of it joins its group.
    So every member is within the threshold of its leader (no chains), the
    leader is the best unit of its group, and the result depends only on
    ``order`` and the hashes. Units without a hash (or ``threshold`` None)
    stay alone.
    """
    n = len(order)
    leader = np.full(n, -1, dtype=np.int64)
    distance = np.zeros(n, dtype=np.uint8)
    if threshold is None or n == 0:
        leader[:] = np.arange(n)
        return Grouping(leader, distance)
    hashed = np.flatnonzero(has_hash)
    i, j, d = pairs_within(hashes[hashed], threshold)
    i, j = hashed[i], hashed[j]
    # Adjacency in both directions, as CSR sorted by source unit.
    src = np.concatenate([i, j])
    dst = np.concatenate([j, i])
    dist = np.concatenate([d, d])
    by_src = np.argsort(src, kind="stable")
    dst, dist = dst[by_src], dist[by_src]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=offsets[1:])
    for u in order.tolist():
        if leader[u] >= 0:
            continue
        leader[u] = u
        lo, hi = offsets[u], offsets[u + 1]
        if lo == hi:
            continue
        neighbours = dst[lo:hi]
        free = leader[neighbours] < 0
        members = neighbours[free]
        leader[members] = u
        distance[members] = dist[lo:hi][free]
    return Grouping(leader, distance)
