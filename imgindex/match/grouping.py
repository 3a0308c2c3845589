"""Grouping: units into duplicate sets around leaders, best first, with no chains.

Pure numpy and lists: nothing here knows of files or SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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


def group_by_leaders(order: I64, edges: Edges) -> Grouping:
    """Group units greedily around leaders, best first.

    ``order`` lists the units best first. Each unit not yet grouped becomes a
    leader, and every ungrouped unit it matches (an edge) joins its group. So
    every member matches its leader (no chains), the leader is the best unit
    of its group, and the result depends only on ``order`` and the edges.
    Units without edges stay alone.

    Computed over arrays, not one unit at a time: a unit leads exactly when
    none of its better neighbours leads (the lexicographically first maximal
    independent set), so each round settles every unit whose better
    neighbours are all settled: those with a leading one join the best of
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
    state = np.zeros(n, dtype=np.int8)
    b, w = better, worse
    pending = np.unique(np.concatenate([b, w]))
    rounds = 0
    while len(pending) and rounds < ROUNDS:
        waiting = np.zeros(n, dtype=bool)
        waiting[w] = True  # a free better neighbour may still lead
        state[pending[~waiting[pending]]] = _LEADER
        state[w[state[b] == _LEADER]] = _MEMBER
        pending = pending[state[pending] == _FREE]
        live = (state[b] == _FREE) & (state[w] == _FREE)
        b, w = b[live], w[live]
        rounds += 1
    if len(pending):
        _one_at_a_time(state, rank, pending, b, w)
    state[state == _FREE] = _LEADER  # never had a free better neighbour

    # Each member joins its best leading neighbour.
    joins = (state[better] == _LEADER) & (state[worse] == _MEMBER)
    lb, lw, ld = better[joins], worse[joins], edges.distance[joins]
    pick = np.lexsort((ld, rank[lb], lw))  # (an edge given twice counts at its smaller distance)
    lb, lw, ld = lb[pick], lw[pick], ld[pick]
    head = np.ones(len(lw), dtype=bool)
    head[1:] = lw[1:] != lw[:-1]
    leader[lw[head]] = lb[head]
    distance[lw[head]] = ld[head]
    return Grouping(leader, distance)


def _one_at_a_time(state: npt.NDArray[np.int8], rank: I64, pending: I64, better: I64, worse: I64) -> None:
    """The greedy rule, unit by unit in rank order, over the units still free and the edges among them."""
    by = np.argsort(better, kind="stable")
    starts = np.searchsorted(better[by], pending)
    ends = np.searchsorted(better[by], pending, side="right")
    neighbours = worse[by].tolist()
    states = state.tolist()
    for at in np.argsort(rank[pending], kind="stable").tolist():
        u = int(pending[at])
        if states[u] != _FREE:
            continue
        states[u] = _LEADER
        for m in neighbours[starts[at] : ends[at]]:
            if states[m] == _FREE:
                states[m] = _MEMBER
    state[:] = states
