"""Grouping: units into duplicate sets around leaders, best first, with no chains.

Pure numpy and lists: nothing here knows of files or SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .search import I64, U8, U64, Pairs, empty_pairs, pairs_within

#: A gap meaning "not within the threshold in this kind of hash".
NOT_NEAR = 255

#: ``check(leader, candidates, gaps) -> verified``: units in, and each candidate's
#: distance to the leader in each kind of hash (``(kinds, m)``, :data:`NOT_NEAR`
#: where it is not within that kind's threshold); out, for each kind and
#: candidate, whether the match in that kind holds (``(kinds, m)`` bools).
Check = Callable[[int, I64, U8], npt.NDArray[np.bool_]]


@dataclass(frozen=True)
class Links:
    """One way units become candidates for one group: their hashes of one sort (of the
    whole picture, of what is inside its border, of an orientation) within a threshold.

    ``hashes[u]`` is unit ``u``'s hash (when ``has_hash[u]``); two units are
    candidates when their hashes are within ``threshold``. ``pairs``, when
    known already (e.g. stored in the index), are the pairs of distinct hash
    values within the threshold (or more); pairs naming values no unit has
    are ignored. Without them they are searched.
    """

    hashes: U64
    has_hash: npt.NDArray[np.bool_]
    threshold: int
    pairs: tuple[U64, U64, U8] | None = None


@dataclass(frozen=True)
class Grouping:
    """``leader[u]`` is the unit that heads unit ``u``'s group (itself for a leader);
    ``distance[u]`` its Hamming distance to that leader (0 for a leader)."""

    leader: I64
    distance: U8


@dataclass
class _Graph:
    """One kind's units per distinct hash value (node) and neighbour nodes, as lists."""

    node_of_unit: list[int]  # -1 without a hash
    members: list[int]  # units, by node
    member_first: list[int]
    edge_first: list[int]
    neighbour: list[int]
    gap: list[int]
    lonely: npt.NDArray[np.bool_]  # per unit: alone on its node, with no neighbour node (or no hash)


def _graph(n: int, kind: Links) -> _Graph:
    hashed = np.flatnonzero(kind.has_hash)
    values, node_of_hashed = np.unique(kind.hashes[hashed], return_inverse=True)
    node_of_hashed = node_of_hashed.reshape(-1)
    nodes = len(values)
    if nodes == 0:
        a, b, d = empty_pairs()
    elif kind.pairs is None:
        a, b, d = pairs_within(values, kind.threshold)
    else:
        a, b, d = _as_nodes(values, kind.pairs, kind.threshold)
    by_node = hashed[np.argsort(node_of_hashed, kind="stable")]
    member_first = np.zeros(nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(node_of_hashed, minlength=nodes), out=member_first[1:])
    src = np.concatenate([a, b])
    by_src = np.argsort(src, kind="stable")
    edge_first = np.zeros(nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=nodes), out=edge_first[1:])
    node_of_unit = np.full(n, -1, dtype=np.int64)
    node_of_unit[hashed] = node_of_hashed
    lonely = np.ones(n, dtype=bool)
    lonely[hashed] = ((np.diff(member_first) == 1) & (np.diff(edge_first) == 0))[node_of_hashed]
    return _Graph(
        node_of_unit.tolist(),
        by_node.tolist(),
        member_first.tolist(),
        edge_first.tolist(),
        np.concatenate([b, a])[by_src].tolist(),
        np.concatenate([d, d])[by_src].tolist(),
        lonely,
    )


def group_by_leaders(order: I64, kinds: Sequence[Links], check: Check | None = None) -> Grouping:
    """Group units greedily around leaders, best first.

    ``order`` lists the units best first. Each unit not yet grouped becomes a
    leader, and every ungrouped unit that is a candidate in some kind (its
    hash of that kind within that kind's threshold of the leader's) joins its
    group. So every member is near its leader (no chains), the leader is the
    best unit of its group, and the result depends only on ``order``, the
    hashes and the check. A unit's distance is the smallest of its kinds' that made it join.
    Units without any hash stay alone.

    The search runs over distinct hash values, not units, so ten thousand
    copies of one picture cost one hash, not fifty million pairs.

    ``check`` says which candidates really join the leader, and by which
    kinds (e.g. :func:`confirm` on their descriptors); those refused stay
    free for later leaders.
    """
    n = len(order)
    leader = np.arange(n, dtype=np.int64)
    distance = np.zeros(n, dtype=np.uint8)
    if n == 0 or not any(k.has_hash.any() for k in kinds):
        return Grouping(leader, distance)
    graphs = [_graph(n, kind) for kind in kinds]
    # A unit alone on its hash with no neighbour, in every kind, leads its own group: settle those at once.
    alone = np.logical_and.reduce([g.lonely for g in graphs])
    leader[~alone] = -1

    # The rest in order. Each leader looks at the free units on its hash and on the
    # neighbouring ones, in each kind; what it leaves (those the check refused) is
    # kept per node, so a node whose units have all been taken costs nothing to
    # visit again.
    leader_list = leader.tolist()
    distance_list = [0] * n
    free: list[list[list[int] | None]] = [[None] * (len(g.member_first) - 1) for g in graphs]
    taken: list[int] = []  # (shared, never changed) what a node keeps once all are grouped
    for u in order[~alone[order]].tolist():
        if leader_list[u] >= 0:
            continue
        leader_list[u] = u
        visited: list[tuple[int, int, list[int]]] = []  # (kind, node, units still free) for the check
        gaps: dict[int, list[int]] = {}  # candidate -> its gap in each kind
        for k, graph in enumerate(graphs):
            node = graph.node_of_unit[u]
            if node < 0:
                continue
            lo, hi = graph.edge_first[node], graph.edge_first[node + 1]
            for other, gap in [(node, 0), *zip(graph.neighbour[lo:hi], graph.gap[lo:hi], strict=True)]:
                units = free[k][other]
                if units is None:
                    units = graph.members[graph.member_first[other] : graph.member_first[other + 1]]
                elif not units:
                    continue  # emptied, or listed twice
                free[k][other] = taken
                if check is None:  # every free unit joins
                    for m in units:
                        if leader_list[m] < 0:
                            leader_list[m] = u
                            distance_list[m] = gap
                        elif leader_list[m] == u and m != u and gap < distance_list[m]:
                            distance_list[m] = gap  # nearer in this kind
                    continue
                units = [m for m in units if leader_list[m] < 0]
                visited.append((k, other, units))
                for m in units:
                    row = gaps.get(m)
                    if row is None:
                        row = gaps[m] = [NOT_NEAR] * len(graphs)
                    row[k] = min(row[k], gap)
        if check is None or not gaps:
            continue
        candidates = np.fromiter(gaps, dtype=np.int64, count=len(gaps))
        gap_array = np.array(list(gaps.values()), dtype=np.uint8).T.reshape(len(graphs), -1)
        verified = check(u, candidates, gap_array)
        joined = np.where(verified, gap_array, NOT_NEAR).min(axis=0)
        for m, gap in zip(candidates.tolist(), joined.tolist(), strict=True):
            if gap != NOT_NEAR:
                leader_list[m] = u
                distance_list[m] = gap
        for k, other, units in visited:
            free[k][other] = [m for m in units if leader_list[m] < 0]
    return Grouping(np.array(leader_list, dtype=np.int64), np.array(distance_list, dtype=np.uint8))


def _as_nodes(values: U64, hash_pairs: tuple[U64, U64, U8], threshold: int) -> Pairs:
    """Pairs of hash values as pairs of indices into the sorted ``values``, keeping those within threshold."""
    a, b, d = (
        np.asarray(hash_pairs[0], np.uint64),
        np.asarray(hash_pairs[1], np.uint64),
        np.asarray(hash_pairs[2], np.uint8),
    )
    keep = d <= threshold
    a, b, d = a[keep], b[keep], d[keep]
    ia = np.minimum(np.searchsorted(values, a), len(values) - 1)
    ib = np.minimum(np.searchsorted(values, b), len(values) - 1)
    known = (values[ia] == a) & (values[ib] == b) & (ia != ib)
    return ia[known].astype(np.int64), ib[known].astype(np.int64), d[known]
