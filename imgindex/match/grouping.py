"""Grouping: units into duplicate sets around leaders, with no chains.

Pure numpy and lists: nothing here knows of files or SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from imgindex.arrays import distinct, lex_order

from .search import I64, U8, empty_pairs


@dataclass(frozen=True)
class Edges:
    """Verified matches between units, each once (``u < v``), with the Hamming distance by
    which it holds (the smallest of the kinds of hash in which it does)."""

    u: I64
    v: I64
    distance: U8

    def __len__(self) -> int:
        return len(self.u)


def no_edges() -> Edges:
    return Edges(*empty_pairs())


@dataclass(frozen=True)
class Grouping:
    """``leader[u]`` is the unit that heads unit ``u``'s group (itself for a leader);
    ``distance[u]`` its Hamming distance to that leader (0 for a leader)."""

    leader: I64
    distance: U8


_FREE, _LEADER, _MEMBER = 0, 1, 2
#: Rounds of the parallel form before the rest is finished one unit at a time (a long
#: chain of matches in rank order would otherwise cost a round per link).
ROUNDS = 64
#: A unit is the centre of a family of copies when at least this share of the pairs of its
#: matches ranked below it match each other (at least 2 of them; at most CENTRE_MAX_MATCHES
#: measured) (:func:`claim_order`). Chosen on the quality bench's tuning part: the lowest share
#: at which its false pairs stay at or below those of plain rank order.
CENTRE_COHESION = Fraction(3, 4)
CENTRE_MAX_MATCHES = 256
#: Pairs of a unit's matches looked up at once (bounds the arrays).
PAIR_CHUNK = 1 << 20
#: A unit with at least this many matches measured (a family of many copies, a crowd of
#: gradients that all match) has the pairs among them counted on a table of the matches
#: between the units of such runs, a bit a pair, when those are at most DENSE_UNITS (a table
#: of 128 MB), not looked up one by one: a clique of 1,200 pictures asks 39 million lookups.
DENSE_RUN = 64
DENSE_UNITS = 1 << 15


def group_by_leaders(order: I64, edges: Edges, fixed: npt.NDArray[np.bool_] | None = None) -> Grouping:
    """Group units greedily around leaders.

    ``order`` lists the units best first (the rules for the kept image). Units
    claim in :func:`claim_order`: the centres of families of copies first, then
    the rest, best first. A free unit leads and takes every free unit it
    matches and ranks before; a centre also takes the free units it matches
    that rank before it and match at least :data:`CENTRE_COHESION` of its other
    matches (as its matches match each other), but never a unit that is
    ``fixed`` (one a person decided to keep). A member joins the first leader
    that takes it. Then each group is kept by its best unit among those that
    match every other member (the one that took them does), so every member
    matches the kept unit (no chains), and the kept unit is the best of its
    group where the group was taken downwards alone. The result depends only
    on ``order``, ``fixed`` and the edges. Units without edges stay alone.

    Computed over arrays, not one unit at a time: each edge points from the
    unit that may take to the other (by rank, or a centre's cohesive better
    match), and counts only where that unit comes first in claim order;
    a unit leads exactly when none of its earlier neighbours by those edges
    leads (the lexicographically first maximal independent set), so each
    round settles every unit whose earlier neighbours are all settled: those
    with a leading one join the first of those, the others lead. Sparse
    graphs need a few rounds; after :data:`ROUNDS` the rest goes one unit at
    a time.
    """
    n = len(order)
    leader = np.arange(n, dtype=np.int64)
    distance = np.zeros(n, dtype=np.uint8)
    if n == 0 or not len(edges):
        return Grouping(leader, distance)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    first = rank[edges.u] < rank[edges.v]
    better = np.where(first, edges.u, edges.v)
    worse = np.where(first, edges.v, edges.u)
    near = _Matches(edges.u, edges.v, n)
    centre, degree = near.centres()
    position = np.empty(n, dtype=np.int64)
    position[_claim_order(rank, centre, degree)] = np.arange(n)
    # Who may take whom: the better-ranked unit, or a centre (claiming first) its better match
    # when that one is as much one of the family as the family's members are to each other.
    upward = centre[worse] & (position[worse] < position[better])
    if fixed is not None:
        upward &= ~fixed[better]
    at = np.flatnonzero(upward)
    upward[at] = near.cohesive(worse[at], better[at])
    taker = np.where(upward, worse, better)
    taken = np.where(upward, better, worse)
    can_take = position[taker] < position[taken]
    better, worse, gap = taker[can_take], taken[can_take], edges.distance[can_take]
    state = np.zeros(n, dtype=np.int8)
    b, w = better, worse
    pending = distinct(np.concatenate([b, w]))
    rounds = 0
    while len(pending) and rounds < ROUNDS:
        waiting = np.zeros(n, dtype=bool)
        waiting[w] = True  # a free earlier neighbour may still lead
        state[pending[~waiting[pending]]] = _LEADER
        state[w[state[b] == _LEADER]] = _MEMBER
        pending = pending[state[pending] == _FREE]
        live = (state[b] == _FREE) & (state[w] == _FREE)
        b, w = b[live], w[live]
        rounds += 1
    if len(pending):
        _one_at_a_time(state, position, pending, b, w)
    state[state == _FREE] = _LEADER  # never had a free earlier neighbour

    # Each member joins the first leader that takes it.
    joins = (state[better] == _LEADER) & (state[worse] == _MEMBER)
    lb, lw, ld = better[joins], worse[joins], gap[joins]
    pick = np.lexsort((ld, position[lb], lw))  # (an edge given twice counts at its smaller distance)
    lb, lw, ld = lb[pick], lw[pick], ld[pick]
    head = np.ones(len(lw), dtype=bool)
    head[1:] = lw[1:] != lw[:-1]
    leader[lw[head]] = lb[head]
    distance[lw[head]] = ld[head]
    if upward.any():
        _kept_by_the_best(leader, distance, rank, edges, near)
    return Grouping(leader, distance)


def _kept_by_the_best(leader: I64, distance: U8, rank: I64, edges: Edges, near: _Matches) -> None:
    """Each group kept by its best-ranked unit among those that match every other member (its
    leader does), and each member's distance its distance to that unit (``near``: the distinct
    matches of ``edges``)."""
    n = len(leader)
    x, y = near.pairs // n, near.pairs % n
    same = leader[x] == leader[y]
    x, y = x[same], y[same]
    size = np.bincount(leader, minlength=n)
    inside = np.bincount(np.concatenate([x, y]), minlength=n)
    grouped = np.flatnonzero(size[leader] >= 2)
    whole = grouped[inside[grouped] == size[leader[grouped]] - 1]  # matches all the others of its group
    best = whole[np.argsort(leader[whole] * n + rank[whole])]  # by group, best first
    head = np.ones(len(best), dtype=bool)
    head[1:] = leader[best[1:]] != leader[best[:-1]]
    kept = np.arange(n, dtype=np.int64)
    kept[leader[best[head]]] = best[head]
    moved = np.flatnonzero(kept[leader] != leader)  # members of groups kept by another unit
    if not len(moved):
        return
    new = kept[leader[moved]]
    # Their distances to it: the smallest of the edges between them.
    ends = np.concatenate([edges.u, edges.v])
    others = np.concatenate([edges.v, edges.u])
    gaps = np.concatenate([edges.distance, edges.distance])
    mine = np.zeros(n, dtype=bool)
    mine[moved] = True
    to_kept = mine[others] & (ends == kept[leader[np.where(mine[others], others, 0)]])
    nearest = np.full(n, 255, dtype=np.uint8)
    np.minimum.at(nearest, others[to_kept], gaps[to_kept])
    leader[moved] = new
    distance[moved] = np.where(moved == new, 0, nearest[moved])


class _Matches:
    """The distinct matches of units (each pair once, ``x * n + y`` with ``x < y``, sorted), and
    each unit's matches in unit order (CSR), for the centres' counts."""

    def __init__(self, u: I64, v: I64, n: int) -> None:
        self.n = n
        self.pairs = distinct(np.minimum(u, v) * n + np.maximum(u, v))
        x, y = self.pairs // n, self.pairs % n
        keys = np.sort(np.concatenate([x * n + y, y * n + x]))
        self.owner, self.other = keys // n, keys % n  # by owner, then other, ascending
        self.start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.owner, minlength=n), out=self.start[1:])

    def centres(self) -> tuple[npt.NDArray[np.bool_], I64]:
        """Which units are centres (:func:`claim_order`), and each unit's number of matches."""
        degree = np.diff(self.start)
        inner = _pairs_that_match(self.owner, self.other, degree, self.n)
        share = CENTRE_COHESION
        measured = np.minimum(degree, CENTRE_MAX_MATCHES)
        centre = (degree >= 2) & (2 * share.denominator * inner >= share.numerator * measured * (measured - 1))
        return centre, degree

    def cohesive(self, centre: I64, other: I64) -> npt.NDArray[np.bool_]:
        """For each pair: does ``other`` match at least :data:`CENTRE_COHESION` of the centre's
        other matches (of the first :data:`CENTRE_MAX_MATCHES` by unit number)?"""
        n = self.n
        count = np.minimum(self.start[centre + 1] - self.start[centre], CENTRE_MAX_MATCHES)
        hits = np.zeros(len(centre), dtype=np.int64)
        listed = np.zeros(len(centre), dtype=np.int64)  # whether other is among those measured
        ends = np.cumsum(count)
        lo = 0
        while lo < len(centre):
            hi = max(int(np.searchsorted(ends, (ends[lo - 1] if lo else 0) + PAIR_CHUNK, side="right")), lo + 1)
            k = count[lo:hi]
            row = np.repeat(np.arange(lo, hi), k)
            at = np.repeat(self.start[centre[lo:hi]], k) + np.arange(len(row)) - np.repeat(np.cumsum(k) - k, k)
            mate = self.other[at]
            mine = other[row]
            listed += np.bincount(row, weights=mate == mine, minlength=len(centre)).astype(np.int64)
            asked = np.minimum(mate, mine) * n + np.maximum(mate, mine)
            found = np.searchsorted(self.pairs, asked)
            found[found == len(self.pairs)] = 0
            hits += np.bincount(row[(self.pairs[found] == asked) & (mate != mine)], minlength=len(centre))
            lo = hi
        others = count - listed
        share = CENTRE_COHESION
        result: npt.NDArray[np.bool_] = (others > 0) & (share.denominator * hits >= share.numerator * others)
        return result


def claim_order(rank: I64, better: I64, worse: I64) -> I64:
    """The order in which units claim their groups: the centres of families of copies, the
    one with the most matches first, then the other units; best first within each.

    Ranked only by the rules, a picture is taken by any better match of its own (a source
    by its padded, captioned or rotated copy, which has more pixels or bytes), and its
    other copies, which need not match that copy, are left apart from it: alone, or in
    groups kept by one another. A *centre* is a unit with at least two matches, at least
    :data:`CENTRE_COHESION` of whose pairs match each other: copies of one picture do; a
    picture that shares a layout with others (a template, a near-blank page) matches
    strangers that do not match each other, and is no centre. Of a unit with more than
    :data:`CENTRE_MAX_MATCHES` matches, the first that many (by unit number) are measured:
    the count costs the square of them.

    ``better`` and ``worse``: the edges, each as its better-ranked unit and the other.
    """
    centre, degree = _Matches(better, worse, len(rank)).centres()
    return _claim_order(rank, centre, degree)


def _claim_order(rank: I64, centre: npt.NDArray[np.bool_], degree: I64) -> I64:
    return lex_order([rank, -np.where(centre, degree, 0)], distinct_rows=True)  # (ranks are distinct)


def _pairs_that_match(better: I64, worse: I64, below: I64, n: int) -> I64:
    """For each unit, how many pairs of its matches ranked below it match each other, among
    the first :data:`CENTRE_MAX_MATCHES` of them by unit number. The edges: each once, sorted
    by ``better * n + worse``."""
    inner = np.zeros(n, dtype=np.int64)
    pairs = distinct(np.minimum(better, worse) * n + np.maximum(better, worse))  # by unit number
    b, w = better[below[better] >= 2], worse[below[better] >= 2]  # in runs of one b each, w ascending
    if not len(b):
        return inner
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    lengths = np.diff(np.r_[starts, len(b)])
    if lengths.max() > CENTRE_MAX_MATCHES:  # the first of each run only
        kept = np.arange(len(b)) - np.repeat(starts, lengths) < CENTRE_MAX_MATCHES
        b, w = b[kept], w[kept]
        lengths = np.minimum(lengths, CENTRE_MAX_MATCHES)
        starts = np.cumsum(lengths) - lengths
    dense = lengths >= DENSE_RUN
    if dense.any():
        on_table = np.repeat(dense, lengths)
        units = distinct(w[on_table])
        if len(units) <= DENSE_UNITS:
            inner[b[starts[dense]]] = _pairs_on_table(pairs, n, units, w, starts[dense], lengths[dense])
            b, w, lengths = b[~on_table], w[~on_table], lengths[~dense]
            starts = np.cumsum(lengths) - lengths
            if not len(b):
                return inner
    # Every pair (i, j), i < j, within each run: for each i, the j after it in its run.
    after = np.repeat(starts + lengths, lengths) - np.arange(len(b)) - 1
    ends = np.cumsum(after)
    lo = 0
    while lo < len(b):
        hi = max(int(np.searchsorted(ends, ends[lo] - after[lo] + PAIR_CHUNK, side="right")), lo + 1)
        counts = after[lo:hi]
        i = np.repeat(np.arange(lo, hi), counts)
        j = i + 1 + np.arange(len(i)) - np.repeat(np.cumsum(counts) - counts, counts)
        asked = w[i] * n + w[j]  # w[i] < w[j]
        by = np.argsort(asked)  # looked up in order: far faster than at random
        at = np.searchsorted(pairs, asked[by])
        at[at == len(pairs)] = 0
        inner += np.bincount(b[i[by[pairs[at] == asked[by]]]], minlength=n)
        lo = hi
    return inner


def _pairs_on_table(pairs: I64, n: int, units: I64, w: I64, starts: I64, lengths: I64) -> I64:
    """For each run of ``w`` (``w[starts[k]:starts[k] + lengths[k]]``, ascending, of the sorted
    ``units``), how many of its pairs are among ``pairs`` (``x * n + y``, ``x < y``): on a table
    of the matches between ``units``, a bit each, upper (each pair once, as the runs ascend)."""
    x, y = pairs // n, pairs % n
    both = np.isin(x, units) & np.isin(y, units)
    row, column = np.searchsorted(units, x[both]), np.searchsorted(units, y[both])
    width = (len(units) + 7) // 8
    cell = row * width * 8 + column  # each pair's bit, in order (as the pairs are, sorted by x * n + y)
    byte, bit = cell // 8, (cell % 8).astype(np.uint8)
    first = np.flatnonzero(np.r_[True, byte[1:] != byte[:-1]])
    flat = np.zeros(len(units) * width, dtype=np.uint8)
    flat[byte[first]] = np.bitwise_or.reduceat(np.left_shift(np.uint8(1), bit), first) if len(first) else 0
    table = flat.reshape(len(units), width)
    counts = np.empty(len(starts), dtype=np.int64)
    for k, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
        local = np.searchsorted(units, w[start : start + length])
        shift = (local % 8).astype(np.uint8)
        counts[k] = np.count_nonzero(table[np.ix_(local, local // 8)] & np.left_shift(np.uint8(1), shift))
    return counts


def _one_at_a_time(state: npt.NDArray[np.int8], position: I64, pending: I64, better: I64, worse: I64) -> None:
    """The greedy rule, unit by unit in claim order, over the units still free and the edges among them."""
    by = np.argsort(better, kind="stable")
    starts = np.searchsorted(better[by], pending)
    ends = np.searchsorted(better[by], pending, side="right")
    neighbours = worse[by].tolist()
    states = state.tolist()
    for at in np.argsort(position[pending], kind="stable").tolist():
        u = int(pending[at])
        if states[u] != _FREE:
            continue
        states[u] = _LEADER
        for m in neighbours[starts[at] : ends[at]]:
            if states[m] == _FREE:
                states[m] = _MEMBER
    state[:] = states
