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


def group_by_leaders(order: I64, edges: Edges) -> Grouping:
    """Group units greedily around leaders.

    ``order`` lists the units best first (the rules for the kept image). A
    unit only ever takes units it ranks before, so every member matches its
    leader (no chains) and the leader is the best unit of its group; the
    result depends only on ``order`` and the edges. Units without edges stay
    alone.

    Units claim in :func:`claim_order`: the centres of families of copies
    first, then the rest, best first. A free unit leads and takes every free
    unit it matches and ranks before; a member joins the first leader that
    takes it.

    Computed over arrays, not one unit at a time: an edge counts only where
    one unit comes first both in rank and in claim order (otherwise neither
    can take the other), and a unit leads exactly when none of its earlier
    neighbours by those edges leads (the lexicographically first maximal
    independent set), so each round settles every unit whose earlier
    neighbours are all settled: those with a leading one join the first of
    those, the others lead. Sparse graphs need a few rounds; after
    :data:`ROUNDS` the rest goes one unit at a time.
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
    position = np.empty(n, dtype=np.int64)
    position[claim_order(rank, better, worse)] = np.arange(n)
    can_take = position[better] < position[worse]
    better, worse, gap = better[can_take], worse[can_take], edges.distance[can_take]
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
    return Grouping(leader, distance)


def claim_order(rank: I64, better: I64, worse: I64) -> I64:
    """The order in which units claim their groups: the centres of families of copies, the
    one that would take the most first, then the other units; best first within each.

    Ranked only by the rules, a picture is taken by any better match of its own (a source
    by its padded, captioned or rotated copy, which has more pixels or bytes), and its
    other copies, which need not match that copy, are left apart from it: alone, or in
    groups kept by one another. A *centre* is a unit at least two of whose matches rank
    below it, and at least :data:`CENTRE_COHESION` of the pairs of those match each other:
    copies of one picture do; a picture that shares a layout with others (a template, a
    near-blank page) matches strangers that do not match each other, and is no centre. Of
    a unit with more than :data:`CENTRE_MAX_MATCHES` matches below it, the first that many
    (by unit number) are measured: the count costs the square of them.

    ``better`` and ``worse``: the edges, each as its better-ranked unit and the other.
    """
    n = len(rank)
    keys = distinct(better * n + worse)  # an edge given twice counts once
    better, worse = keys // n, keys % n
    below = np.bincount(better, minlength=n)
    inner = _pairs_that_match(better, worse, below, n)
    share = CENTRE_COHESION
    measured = np.minimum(below, CENTRE_MAX_MATCHES)
    centre = (below >= 2) & (2 * share.denominator * inner >= share.numerator * measured * (measured - 1))
    return lex_order([rank, -np.where(centre, below, 0)], distinct_rows=True)  # (ranks are distinct)


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
