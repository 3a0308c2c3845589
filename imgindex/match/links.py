"""Links: from pairs of hash values to pairs of units that are candidates for a match.

A unit (a distinct picture) becomes a candidate of another in several ways,
one :class:`Link` each: their hashes of the whole picture are near, their
hashes of what is inside their borders are, one's inside is near the other's
whole picture (a :class:`CrossLink`: a copy padded or framed against its
source), one's upright hash is near an orientation of the other's, or a
region of one is near the other (a :class:`FoundLink`, searched apart). Each link turns pairs of hash values (stored
in the index, or searched) into pairs of units; :func:`candidates` puts the
links together, one row per pair of units with its distance in each link.

Pure numpy: nothing here knows of files or SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from imgindex.arrays import distinct

from .search import I64, U8, U64, Pairs, empty_pairs, pairs_within

#: A gap meaning "not within the threshold in this link".
NOT_NEAR = 255


@dataclass(frozen=True)
class Link:
    """One way units become candidates: their hashes of one sort within ``threshold``.

    ``hashes[u]`` is unit ``u``'s hash (when ``has_hash[u]``); units on one
    hash value are candidates at distance 0. ``pairs``, when known already
    (stored in the index), are pairs of distinct hash values within the
    threshold (or more); pairs naming values no unit has are ignored. Without
    them they are searched. With ``framed``, only pairs with a framed unit on
    a side count.
    """

    hashes: U64
    has_hash: npt.NDArray[np.bool_]
    threshold: int
    pairs: tuple[U64, U64, U8] | None = None
    framed: npt.NDArray[np.bool_] | None = None

    @cached_property
    def nodes(self) -> tuple[I64, U64, I64, Pairs]:
        """The units with a hash, the distinct values (nodes), each unit's node, and the pairs of
        nodes within the threshold: worked out once for every pass over some of the units (at
        200,000 small pictures the pairs of values are millions)."""
        hashed = np.flatnonzero(self.has_hash)
        values, node_of = np.unique(self.hashes[hashed], return_inverse=True)
        if self.pairs is None:
            pairs = pairs_within(values, self.threshold)
        else:
            pairs = _as_nodes(values, self.pairs, self.threshold)
        return hashed, values, node_of.reshape(-1), pairs


@dataclass(frozen=True)
class CrossLink:
    """Units whose inside (``inside[u]``, where ``has_inside[u]``) is within ``threshold`` of
    another's whole picture (``whole[v]``, where ``has_whole[v]``): a copy padded or framed
    whose border stops where its source's own margin does not (a page padded onto black
    against the page) meets its source this way, not inside to inside (for a picture
    without a border, whole and inside are one: a :class:`Link` of insides has those). ``pairs``: as for
    :class:`Link`, of all values. A pair of units ``u < v`` may meet this way either way
    round, so there are two: ``lower_inside`` takes the pairs where ``u``'s inside met
    ``v``'s whole picture, else those where ``v``'s inside met ``u``'s."""

    inside: U64
    has_inside: npt.NDArray[np.bool_]
    whole: U64
    has_whole: npt.NDArray[np.bool_]
    threshold: int
    pairs: tuple[U64, U64, U8] | None
    lower_inside: bool
    #: The same link the other way round, whose :attr:`doubled` this one uses (see :meth:`both`).
    twin: CrossLink | None = None

    @classmethod
    def both(
        cls,
        inside: U64,
        has_inside: npt.NDArray[np.bool_],
        whole: U64,
        has_whole: npt.NDArray[np.bool_],
        threshold: int,
        pairs: tuple[U64, U64, U8] | None,
    ) -> tuple[CrossLink, CrossLink]:
        """The two ways round (the lower unit's inside, then the higher's), sharing one
        :attr:`doubled` link: by their sizes its arrays are up to 68 bytes a unit (the hashes, masks
        and nodes of twice the units), half a gigabyte at 7.5 million."""
        lower = cls(inside, has_inside, whole, has_whole, threshold, pairs, True)
        return lower, cls(inside, has_inside, whole, has_whole, threshold, pairs, False, twin=lower)

    @cached_property
    def doubled(self) -> Link:
        """The link as a :class:`Link` over twice its units: each unit's inside (the first ``n``)
        and its whole picture (the next ``n``), with an inside on a side."""
        if self.twin is not None:
            return self.twin.doubled
        n = len(self.whole)
        return Link(
            np.concatenate([self.inside, self.whole]),
            np.concatenate([self.has_inside, self.has_whole]),
            self.threshold,
            self.pairs,
            np.concatenate([np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]),
        )


@dataclass(frozen=True)
class FoundLink:
    """Pairs of units found already (``u < v``, once each, with their distance), by a search of
    its own: a region of one picture near the other (:mod:`.regions`)."""

    u: I64
    v: I64
    d: U8


@dataclass(frozen=True)
class Candidates:
    """Pairs of units (``u < v``), each once, and each one's distance in every link
    (``gaps[k]``, :data:`NOT_NEAR` where not within link ``k``'s threshold)."""

    u: I64
    v: I64
    gaps: U8  # (links, pairs)

    def __len__(self) -> int:
        return len(self.u)


def unit_pairs(
    link: Link | CrossLink | FoundLink,
    focus: npt.NDArray[np.bool_] | None = None,
    exclude: npt.NDArray[np.bool_] | None = None,
) -> Pairs:
    """The pairs of units the link makes candidates (``u < v``, once each, at the smallest
    distance); with ``focus`` (a mask of units), only those with a focus unit on a side;
    with ``exclude``, none with an excluded unit on a side.

    With a focus, only the pairs with a focus unit on a side are ever made (a focus unit with
    every unit of a value near its own, the others there with its focus units), so that a
    pass over a few units of a crowd costs what their pairs do, not what the crowd's do."""
    if isinstance(link, CrossLink):
        return _cross_pairs(link, focus, exclude)
    if isinstance(link, FoundLink):
        keep = np.ones(len(link.u), dtype=bool)
        if focus is not None:
            keep &= focus[link.u] | focus[link.v]
        if exclude is not None:
            keep &= ~exclude[link.u] & ~exclude[link.v]
        return link.u[keep], link.v[keep], link.d[keep]
    hashed, values, node_of, (p, q, d) = link.nodes
    kept = np.ones(len(hashed), dtype=bool) if exclude is None else ~exclude[hashed]
    if np.count_nonzero(kept) < 2:
        return empty_pairs()
    everyone = by_group(hashed, node_of, len(values), kept)
    chosen = everyone if focus is None else by_group(hashed, node_of, len(values), focus[hashed] & kept)
    # Values that hold a unit a pair must have on a side (a focus unit, a framed one).
    crowded = np.flatnonzero(np.diff(everyone[0]) >= 2)
    for mask in (focus, link.framed):
        if mask is not None:
            need = np.bincount(node_of[mask[hashed] & kept], minlength=len(values)) > 0
            keep = need[p] | need[q]
            p, q, d = p[keep], q[keep], d[keep]
            crowded = crowded[need[crowded]]

    # Units on two near values: every unit of one with every unit of the other; on one value:
    # every two of them, at distance 0. With a focus: the focus units with every unit, the
    # other units with the focus units.
    parts = [every_pair(p, q, d, chosen, everyone), _within(crowded, chosen)]
    if focus is not None:
        others = by_group(hashed, node_of, len(values), ~focus[hashed] & kept)
        parts.append(every_pair(p, q, d, others, chosen))
        parts.append(every_pair(crowded, crowded, np.zeros(len(crowded), np.uint8), chosen, others))
    u, v, gap = (np.concatenate(column) for column in zip(*parts, strict=True))
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    if link.framed is not None:
        keep = link.framed[lo] | link.framed[hi]
        lo, hi, gap = lo[keep], hi[keep], gap[keep]
    return smallest(lo, hi, gap, len(link.hashes))


def unit_degrees(link: Link | CrossLink | FoundLink, n: int) -> I64:
    """For each of ``n`` units, how many pairs the link makes with it on a side, counted before
    each pair is made once (at most twice what :func:`unit_pairs` gives for them): what a
    pass over some units costs."""
    if isinstance(link, FoundLink):
        return np.bincount(link.u, minlength=n) + np.bincount(link.v, minlength=n)
    if isinstance(link, CrossLink):
        twice = unit_degrees(link.doubled, 2 * n)
        return twice[:n] + twice[n:]
    degrees = np.zeros(n, dtype=np.int64)
    hashed, values, node_of, (p, q, _) = link.nodes
    count = np.bincount(node_of, minlength=len(values))
    per_value = count - 1
    per_value += np.bincount(p, weights=count[q], minlength=len(values)).astype(np.int64)
    per_value += np.bincount(q, weights=count[p], minlength=len(values)).astype(np.int64)
    degrees[hashed] = per_value[node_of]
    return degrees


def by_group(units: I64, group_of: I64, groups: int, mask: npt.NDArray[np.bool_] | None = None) -> tuple[I64, I64]:
    """The ``units`` (those in ``mask``, when given) by their group (``group_of``, one of
    ``groups``: a value, a kind), as CSR: group ``k``'s in ``members[first[k]:first[k + 1]]``."""
    chosen = np.arange(len(units)) if mask is None else np.flatnonzero(mask)
    members = units[chosen[np.argsort(group_of[chosen], kind="stable")]]
    first = np.zeros(groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(group_of[chosen], minlength=groups), out=first[1:])
    return first, members


def _within(values: I64, side: tuple[I64, I64]) -> tuple[I64, I64, U8]:
    """Every two units of one value (of ``values``, on ``side``, CSR), at distance 0."""
    first, members = side
    count = first[values + 1] - first[values]
    us, vs = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for size in distinct(count[count >= 2]).tolist():
        nodes = values[count == size]
        ti, tj = np.triu_indices(size, 1)
        us.append(members[(first[nodes][:, None] + ti[None, :]).reshape(-1)])
        vs.append(members[(first[nodes][:, None] + tj[None, :]).reshape(-1)])
    u = np.concatenate(us)
    return u, np.concatenate(vs), np.zeros(len(u), dtype=np.uint8)


#: Positions or units: 64-bit, or 32-bit where the caller saves memory.
Positions = npt.NDArray[np.int64] | npt.NDArray[np.int32]
#: Units by value as CSR, ``(first, members)``.
Side = tuple[Positions, Positions]


def every_pair(i: I64, j: I64, d: U8, left: Side, right: Side) -> tuple[I64, I64, U8]:
    """Pairs of values (``i`` of the left side's, ``j`` of the right side's) as pairs of units:
    every unit of the one with every unit of the other, at the pair's distance. Each side's
    units by value as CSR: ``(first, members)``, value ``k``'s in ``members[first[k]:first[k + 1]]``."""
    (l_first, l_members), (r_first, r_members) = left, right
    # (Sides may come in 32 bits: every count, position and unit made here is of 64.)
    sizes = (l_first[i + 1] - l_first[i]).astype(np.int64) * (r_first[j + 1] - r_first[j])
    total = int(sizes.sum())
    if not total:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8)
    # Pair k of a pair of values is left unit k // width and right unit k % width. Built with
    # repeats and in place (tens of millions of unit pairs: each array of them is hundreds of
    # megabytes, so as few are alive at once as can be).
    k = np.arange(total, dtype=np.int64)
    k -= np.repeat(np.cumsum(sizes) - sizes, sizes)
    width = np.repeat((r_first[j + 1] - r_first[j]).astype(np.int64), sizes)
    row = k // width  # the left unit's row among its value's units
    k -= np.multiply(row, width, out=width)  # k % width
    del width
    row += np.repeat(l_first[i], sizes)
    u = l_members[row].astype(np.int64, copy=False)
    del row
    k += np.repeat(r_first[j], sizes)
    v = r_members[k].astype(np.int64, copy=False)
    del k
    return u, v, np.repeat(d, sizes)


def candidates(
    n: int,
    links: Sequence[Link | CrossLink | FoundLink],
    focus: npt.NDArray[np.bool_] | None = None,
    exclude: npt.NDArray[np.bool_] | None = None,
) -> Candidates:
    """Every pair of ``n`` units that some link makes candidates, with its distance in each
    (``focus``, ``exclude``: as :func:`unit_pairs`)."""
    found = [unit_pairs(link, focus, exclude) for link in links]
    keys = [u * n + v for u, v, _ in found]
    every = distinct(np.concatenate(keys)) if keys else np.empty(0, np.int64)
    gaps = np.full((len(links), len(every)), NOT_NEAR, dtype=np.uint8)
    for k, ((_, _, d), key) in enumerate(zip(found, keys, strict=True)):
        gaps[k, np.searchsorted(every, key)] = d
    return Candidates(every // max(n, 1), every % max(n, 1), gaps)


def _cross_pairs(link: CrossLink, focus: npt.NDArray[np.bool_] | None, exclude: npt.NDArray[np.bool_] | None) -> Pairs:
    """:func:`unit_pairs` of a :class:`CrossLink`: over twice the units (``link.doubled``),
    the pairs of an inside with a whole picture of another unit."""
    n = len(link.whole)
    p, q, d = unit_pairs(link.doubled, _twice(focus), _twice(exclude))  # p < q: an inside first
    keep = (p < n) & (q >= n) & (p != q - n)
    u, v, d = p[keep], q[keep] - n, d[keep]  # u's inside, v's whole picture
    lower = u < v if link.lower_inside else u > v
    return smallest(u[lower], v[lower], d[lower], n)


def _twice(mask: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.bool_] | None:
    return None if mask is None else np.concatenate([mask, mask])


def smallest(u: I64, v: I64, d: U8, n: int) -> Pairs:
    """Each pair of ``n`` units once, as ``(lo, hi)`` with ``lo < hi`` (``u`` and ``v`` either
    way round), at its smallest distance, in order."""
    key = np.minimum(u, v)  # the pair as one number, made in place (tens of millions of pairs)
    key *= n
    key += np.maximum(u, v)
    if n * n << _DISTANCE_BITS > np.iinfo(np.int64).max or (len(d) and int(d.max()) >> _DISTANCE_BITS):
        order = np.lexsort((d, key))
        key, d = key[order], d[order]
        head = np.ones(len(key), dtype=bool)
        head[1:] = key[1:] != key[:-1]
        return key[head] // n, key[head] % n, d[head]
    # The pair and its distance as one number, sorted in place: no order array, no gathers,
    # and a third of the memory of the two-key sort (tens of millions of region pairs).
    both = key
    both <<= _DISTANCE_BITS
    both |= d
    both.sort()
    head = np.ones(len(both), dtype=bool)
    step = np.bitwise_xor(both[1:], both[:-1])  # the first of each pair's run differs above the distance
    step >>= _DISTANCE_BITS
    np.not_equal(step, 0, out=head[1:])
    del step
    key = both[head]
    del both
    distance = (key & ((1 << _DISTANCE_BITS) - 1)).astype(np.uint8)
    key >>= _DISTANCE_BITS
    v_out = key % n
    key //= n
    return key, v_out, distance


#: :func:`smallest` keeps a distance (at most 64 bits apart) in this many low bits of a key.
_DISTANCE_BITS = 7


def _as_nodes(values: U64, hash_pairs: tuple[U64, U64, U8], threshold: int) -> Pairs:
    """Pairs of hash values as pairs of indices into the sorted ``values``, keeping those within threshold."""
    a, b, d = (
        np.asarray(hash_pairs[0], np.uint64),
        np.asarray(hash_pairs[1], np.uint64),
        np.asarray(hash_pairs[2], np.uint8),
    )
    keep = d <= threshold
    a, b, d = a[keep], b[keep], d[keep]
    if not len(values):
        return empty_pairs()
    ia = np.minimum(np.searchsorted(values, a), len(values) - 1)
    ib = np.minimum(np.searchsorted(values, b), len(values) - 1)
    known = (values[ia] == a) & (values[ib] == b) & (ia != ib)
    return ia[known].astype(np.int64), ib[known].astype(np.int64), d[known]
