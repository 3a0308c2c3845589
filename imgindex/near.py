"""Hamming-distance search over 64-bit hashes, and grouping into duplicate sets.

Pure numpy: arrays in, arrays out; nothing here knows of files or SQLite.

The search is exact: :func:`pairs_within` and :func:`pairs_from` return the
same pairs as comparing every pair, found by *multi-index hashing* (Norouzi
et al., "Fast search in Hamming space with multi-index hashing", CVPR 2012).
Each hash is cut into 3 or 4 blocks (:data:`LAYOUTS`, chosen by :func:`plan`
for the input's size). If two hashes differ in at most ``k`` bits and block
``b`` is allowed ``a[b]`` differing bits with ``sum(a[b] + 1) > k``, then by
pigeonhole some block differs in at most its allowance. So for each block the
hashes are bucketed by its value, each hash looks up the buckets of every
value within the allowance of its own (137 values of a 16-bit block for an
allowance of 2), and the candidates found are checked on all 64 bits. A
pair close on several blocks is kept only from the first such block, so no
pair is reported twice. Memory stays bounded: candidates are handled a few
million at a time, and no N×N matrix is ever made. Small inputs, and
thresholds so large that the lookups would cost more than comparing
everything, use the all-pairs comparison instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import combinations
from math import comb

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Pairs = tuple[I64, I64, U8]

#: Hash comparisons per block of the all-pairs search (bounds its memory).
BLOCK_CELLS = 1 << 22
#: Candidate pairs checked at once by the indexed search (bounds its memory).
CANDIDATE_CHUNK = 1 << 22


def as_unsigned(hashes: npt.ArrayLike) -> U64:
    """Hashes stored as signed 64-bit integers (as SQLite keeps them), viewed as unsigned."""
    return np.asarray(hashes, dtype=np.int64).view(np.uint64)


def as_signed(hashes: U64) -> I64:
    return np.ascontiguousarray(hashes, dtype=np.uint64).view(np.int64)


def distances(a: U64, b: U64) -> U8:
    """Elementwise Hamming distance."""
    return np.bitwise_count(np.bitwise_xor(a, b))


def _empty() -> Pairs:
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8)


def pairs_within(hashes: U64, threshold: int) -> Pairs:
    """All pairs ``i < j`` with ``popcount(hashes[i] ^ hashes[j]) <= threshold``.

    Returns ``(i, j, distance)``, sorted by ``i`` then ``j``.
    """
    return pairs_from(hashes, None, threshold)


def pairs_from(hashes: U64, queries: npt.ArrayLike | None, threshold: int) -> Pairs:
    """Every pair within ``threshold`` that involves one of ``queries`` (indices into ``hashes``).

    Each pair is reported once, as ``(i, j, distance)`` with ``i`` a query;
    when both are queries, ``i < j``. ``queries=None`` means all of them
    (then this is :func:`pairs_within`). Sorted by ``i`` then ``j``.
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(hashes)
    q = np.arange(n, dtype=np.int64) if queries is None else np.unique(np.asarray(queries, dtype=np.int64))
    if n < 2 or len(q) == 0:
        return _empty()
    how = plan(n, len(q), threshold)
    if how.blocks:
        i, j, d = _indexed(hashes, q, threshold, how.blocks, all_queries=queries is None)
    else:
        i, j, d = _all_pairs(hashes, q, threshold, all_queries=queries is None)
    return _sorted(i, j, d)


def pairs_within_brute_force(hashes: U64, threshold: int) -> Pairs:
    """:func:`pairs_within` by comparing every pair (for tests and benchmarks)."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    if len(hashes) < 2:
        return _empty()
    return _sorted(*_all_pairs(hashes, np.arange(len(hashes), dtype=np.int64), threshold, all_queries=True))


def _sorted(i: I64, j: I64, d: U8) -> Pairs:
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]


#: Ways to cut a hash into blocks (widths in bits, low bits first). Fewer, wider
#: blocks mean fewer chance candidates but more lookups per hash; :func:`plan`
#: picks the cheapest for the input's size.
LAYOUTS: tuple[tuple[int, ...], ...] = ((16, 16, 16, 16), (17, 17, 17, 13), (22, 21, 21), (22, 22, 20))
#: Rough costs in nanoseconds, measured on one core: a bucket lookup per hash,
#: a candidate checked, a pair compared by the all-pairs search; per block,
#: a bucket of its table and a hash sorted into it.
_LOOKUP_NS, _CANDIDATE_NS, _COMPARE_NS = 5.0, 10.0, 0.6
_BUCKET_NS, _SORT_NS = 2.0, 40.0


@dataclass(frozen=True)
class Plan:
    """How to search: blocks as (shift, width, allowance); empty for the all-pairs comparison."""

    blocks: tuple[tuple[int, int, int], ...]
    cost_ns: float


@cache
def plan(n: int, queries: int, threshold: int) -> Plan:
    """The cheapest way to find every pair within ``threshold`` among ``n`` hashes for ``queries`` of them.

    For a layout, the allowances ``a`` must satisfy ``sum(a + 1) == threshold + 1``
    (pigeonhole); -1 leaves a block out.
    """
    best = Plan((), queries * float(n) * _COMPARE_NS)
    for widths in LAYOUTS:
        for allowed in _allowance_choices(len(widths), threshold):
            lookups = sum(_flip_count(w, a) for w, a in zip(widths, allowed, strict=True) if a >= 0)
            chance = sum(_flip_count(w, a) / 2**w for w, a in zip(widths, allowed, strict=True) if a >= 0)
            setup = sum(2**w * _BUCKET_NS + n * _SORT_NS for w, a in zip(widths, allowed, strict=True) if a >= 0)
            cost = setup + queries * (lookups * _LOOKUP_NS + n * chance * _CANDIDATE_NS)
            if cost < best.cost_ns:
                shifts = np.cumsum((0, *widths[:-1])).tolist()
                blocks = tuple(zip(shifts, widths, allowed, strict=True))
                best = Plan(tuple(b for b in blocks if b[2] >= 0), cost)
    return best


def _allowance_choices(blocks: int, threshold: int) -> list[tuple[int, ...]]:
    choices: list[tuple[int, ...]] = [()]
    for _ in range(blocks):
        choices = [(*c, a) for c in choices for a in range(-1, min(threshold, 6) + 1)]
    return [c for c in choices if sum(a + 1 for a in c) == threshold + 1]


@cache
def _flip_count(width: int, allowance: int) -> int:
    return sum(comb(width, b) for b in range(allowance + 1))


@cache
def _flips(width: int, allowance: int) -> tuple[int, ...]:
    """Every ``width``-bit value with at most ``allowance`` bits set, fewest bits first."""
    return tuple(
        sum(1 << b for b in bits) for count in range(allowance + 1) for bits in combinations(range(width), count)
    )


def _all_pairs(hashes: U64, q: I64, threshold: int, *, all_queries: bool) -> Pairs:
    """Compare each query with every hash, block by block."""
    n = len(hashes)
    is_query = np.zeros(n, dtype=bool)
    is_query[q] = True
    found: list[Pairs] = []
    rows = max(1, BLOCK_CELLS // n)
    for start in range(0, len(q), rows):
        qi = q[start : start + rows]
        if all_queries:  # only the hashes after the block's first can pair with it as j > i
            lo = int(qi[0]) + 1
            if lo >= n:
                break
            d = np.bitwise_count(hashes[qi, None] ^ hashes[None, lo:])
            flat = np.flatnonzero(d.ravel() <= threshold)  # faster than a 2-D nonzero
            r, c = np.divmod(flat, d.shape[1])
            j = c + lo
            keep = j > qi[r]
        else:
            d = np.bitwise_count(hashes[qi, None] ^ hashes[None, :])
            flat = np.flatnonzero(d.ravel() <= threshold)
            r, c = np.divmod(flat, n)
            j = c
            keep = (j != qi[r]) & (~is_query[j] | (j > qi[r]))
        r, j, c = r[keep], j[keep], c[keep]
        found.append((qi[r].astype(np.int64), j.astype(np.int64), d[r, c]))
    return _concat(found)


def _concat(found: list[Pairs]) -> Pairs:
    found = [f for f in found if len(f[0])]
    if not found:
        return _empty()
    return (
        np.concatenate([f[0] for f in found]),
        np.concatenate([f[1] for f in found]),
        np.concatenate([f[2] for f in found]),
    )


def _indexed(hashes: U64, q: I64, threshold: int, blocks: tuple[tuple[int, int, int], ...], all_queries: bool) -> Pairs:
    """Multi-index hashing (see the module's docstring)."""
    n = len(hashes)
    is_query = np.zeros(n, dtype=bool)
    is_query[q] = True
    qh = hashes[q]
    found: list[Pairs] = []
    for number, (shift, width, allowance) in enumerate(blocks):
        mask = np.uint64((1 << width) - 1)
        keys = ((hashes >> np.uint64(shift)) & mask).astype(np.intp)
        by_key = np.argsort(keys, kind="stable")
        sorted_hashes = hashes[by_key]
        counts = np.bincount(keys, minlength=1 << width).astype(np.int32)
        first = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=first[1:])
        qkeys = keys[q]
        del keys
        for flip in _flips(width, allowance):
            target = qkeys ^ flip
            size = counts[target]
            hit = np.flatnonzero(size)
            if len(hit) == 0:
                continue
            size = size[hit].astype(np.int64)
            ends = np.cumsum(size)
            start = 0
            while start < len(hit):  # a bounded number of candidates at a time
                base = int(ends[start - 1]) if start else 0
                stop = max(int(np.searchsorted(ends, base + CANDIDATE_CHUNK, side="right")), start + 1)
                part = hit[start:stop]
                sizes = size[start:stop]
                # Candidate c is entry (c - bucket's first candidate) of its bucket in key order.
                starts = ends[start:stop] - sizes - base
                pos = np.repeat(first[target[part]] - starts, sizes) + np.arange(int(sizes.sum()))
                x = np.repeat(qh[part], sizes) ^ sorted_hashes[pos]
                d = np.bitwise_count(x)
                good = np.flatnonzero(d <= threshold)
                if len(good):
                    owner = np.searchsorted(ends[start:stop] - base, good, side="right")
                    i = q[part[owner]]
                    j = by_key[pos[good]].astype(np.int64)
                    x, d = x[good], d[good]
                    keep = j > i if all_queries else (j != i) & (~is_query[j] | (j > i))
                    # A pair close on an earlier block was found there already.
                    for e_shift, e_width, e_allowance in blocks[:number]:
                        part_bits = (x >> np.uint64(e_shift)) & np.uint64((1 << e_width) - 1)
                        keep &= np.bitwise_count(part_bits) > e_allowance
                    found.append((i[keep], j[keep], d[keep]))
                start = stop
    return _concat(found)


#: Verification of a hash match on the pictures' descriptors (see hashing.descriptor).
GREY_CORRELATION = 0.80  # Pearson correlation of the 16x16 grey thumbnails, at least
COLOURFUL = 5.0  # mean chroma of the 8x8 thumbnail from which a picture counts as colourful
COLOUR_DIFFERENCE = 30.0  # RMS chroma difference of two colourful pictures, at most
GREY_COPY_CORRELATION = 0.95  # a grey picture against a colourful one needs this correlation
#: Below this standard deviation (grey levels, in the 16x16 thumbnail) a picture is blank or
#: one colour: its thumbnail cannot confirm a match, so it matches by its bytes only. (On the
#: quality corpus, one-colour pictures are at 0 and the faintest real ones, low-contrast
#: textures and line art, at 0.6 and up.)
LOW_DETAIL = 0.25
#: Two pictures with borders whose whole thumbnails agree (a canvas shared by different
#: pictures makes them agree) must also correlate this much over their foreground: the
#: cells inside the areas that differ from their background (the median of the corners)
#: by more than FOREGROUND_TOLERANCE grey levels in either, when there are at least
#: FOREGROUND_CELLS of them, both with FOREGROUND_CONTRAST; otherwise their insides must
#: agree at FRAMED_INSIDE_CORRELATION (and in colour), unless one of them is nearly flat
#: (a one-colour product), when the wholes decide. Measured on the quality corpus and on
#: pictures padded onto one canvas.
FOREGROUND_CORRELATION = 0.9
FOREGROUND_TOLERANCE = 16
FOREGROUND_CELLS = 16
FOREGROUND_CONTRAST = 4.0  # grey levels of spread in each foreground, or in each inside, to compare them by
FRAMED_INSIDE_CORRELATION = 0.7
_GREY = 16 * 16
_CORNERS = [0, 15, 240, 255]  # of the 16x16 grey thumbnail
_CHROMA = 8 * 8 * 2


@dataclass(frozen=True)
class Thumbnails:
    """Descriptors made ready to compare (see :func:`thumbnails`): per picture, its grey
    thumbnail centred and scaled to unit length (zero for a flat picture), its colours as
    opponent-colour pairs, and whether it is colourful. Half-precision: 768 bytes a picture."""

    grey: npt.NDArray[np.float16]  # (n, 256)
    chroma: npt.NDArray[np.float16]  # (n, 128): (R - G, (R + G) / 2 - B) per pixel of the 8x8
    colourful: npt.NDArray[np.bool_]  # (n,)
    detail: npt.NDArray[np.float32]  # (n,): standard deviation of the grey thumbnail, in grey levels

    def rows(self, at: npt.NDArray[np.int64]) -> Thumbnails:
        return Thumbnails(self.grey[at], self.chroma[at], self.colourful[at], self.detail[at])


def thumbnails(descriptors: npt.NDArray[np.uint8]) -> Thumbnails:
    """Rows of ``DESCRIPTOR_BYTES`` made ready for :func:`confirm`."""
    n = len(descriptors)
    grey = np.empty((n, _GREY), dtype=np.float16)
    chroma = np.empty((n, _CHROMA), dtype=np.float16)
    colourful = np.empty(n, dtype=bool)
    detail = np.empty(n, dtype=np.float32)
    for start in range(0, n, 1 << 16):  # bounded float32 temporaries
        part = descriptors[start : start + (1 << 16)]
        g = part[:, :_GREY].astype(np.float32)
        g -= g.mean(axis=1, keepdims=True)
        norm = np.sqrt((g * g).sum(axis=1, keepdims=True))
        grey[start : start + len(part)] = np.divide(g, norm, out=np.zeros_like(g), where=norm > 0)
        detail[start : start + len(part)] = norm[:, 0] / np.sqrt(_GREY)
        rgb = part[:, _GREY:].astype(np.float32).reshape(len(part), -1, 3)
        r, gg, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        pairs = np.stack([r - gg, (r + gg) / 2 - b], axis=-1)  # (m, 64, 2)
        chroma[start : start + len(part)] = pairs.reshape(len(part), -1)
        colourful[start : start + len(part)] = np.hypot(pairs[..., 0], pairs[..., 1]).mean(axis=1) >= COLOURFUL
    return Thumbnails(grey, chroma, colourful, detail)


@dataclass(frozen=True)
class Pictures:
    """Thumbnails of some pictures: of the whole picture, and of what is inside its
    border (the whole picture's again where it has no border, ``framed`` False)."""

    whole: Thumbnails
    inside: Thumbnails
    framed: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, whole: npt.NDArray[np.uint8], inside: npt.NDArray[np.uint8], framed: npt.NDArray[np.bool_]) -> Pictures:
        """From descriptor rows (``inside`` holds the whole picture's where not ``framed``)."""
        return cls(thumbnails(whole), thumbnails(inside), framed)


def confirm(
    mine: Pictures,
    theirs: Pictures,
    near_whole: npt.NDArray[np.bool_],
    near_inside: npt.NDArray[np.bool_],
    grey_correlation: float = GREY_CORRELATION,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Which hash matches of picture 0 of ``mine`` with each of ``theirs`` their thumbnails confirm.

    ``near_whole``/``near_inside``: whose hashes of the whole picture / of the
    inside are within the threshold. A match of the whole pictures needs the
    whole thumbnails to agree (:func:`_verdict`) and, when both pictures have a
    border, their foregrounds to correlate (:data:`FOREGROUND_CORRELATION`),
    or with too little foreground to tell, their insides to agree at
    :data:`FRAMED_INSIDE_CORRELATION` (a canvas shared by different pictures
    makes their wholes agree); a match of the insides needs the insides to
    agree. A picture (or inside) with almost no detail
    (:data:`LOW_DETAIL`) confirms nothing.
    """
    wholes, _ = _against(mine.whole, theirs.whole, grey_correlation)
    if not mine.framed[0] and not theirs.framed.any():  # the insides are the wholes
        return near_whole & wholes, near_inside & wholes
    insides, _ = _against(mine.inside, theirs.inside, grey_correlation)
    both = mine.framed[0] & theirs.framed
    if both.any():
        # A canvas shared by different pictures makes their wholes agree: their foregrounds
        # must correlate too, or, with too little foreground to tell, their insides agree.
        similar, _ = _against(mine.inside, theirs.inside, min(grey_correlation, FRAMED_INSIDE_CORRELATION))
        foreground, judged = _foreground_correlation(mine.whole, theirs.whole)
        # Flat insides (a one-colour product on a canvas) have no structure to compare beyond
        # what the wholes showed: the wholes decide.
        flat = (mine.inside.detail[0] < FOREGROUND_CONTRAST) | (theirs.inside.detail < FOREGROUND_CONTRAST)
        wholes &= ~both | np.where(judged, foreground >= FOREGROUND_CORRELATION, similar | flat)
    return near_whole & wholes, near_inside & insides


def _foreground(t: Thumbnails) -> npt.NDArray[np.bool_]:
    """(n, 256): the cells of each grey thumbnail inside the areas that differ from its
    background (the median of its corners) by more than FOREGROUND_TOLERANCE grey levels."""
    grey = t.grey.astype(np.float32)  # centred, and scaled by 1 / (16 * detail)
    levels = np.abs(grey - np.median(grey[:, _CORNERS], axis=1, keepdims=True)) * (16 * t.detail[:, None])
    # (Levels are whole or half numbers, recovered to within about 0.1 from half precision.)
    differs = (levels > FOREGROUND_TOLERANCE + 0.25).reshape(-1, 16, 16)
    # Only cells inside the foreground: those on its edge follow the shape of the canvas.
    inner = differs.copy()
    inner[:, 1:] &= differs[:, :-1]
    inner[:, :-1] &= differs[:, 1:]
    inner[:, :, 1:] &= differs[:, :, :-1]
    inner[:, :, :-1] &= differs[:, :, 1:]
    result: npt.NDArray[np.bool_] = inner.reshape(-1, _GREY)
    return result


def _foreground_correlation(a: Thumbnails, b: Thumbnails) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """The correlation of picture 0 of ``a``'s grey thumbnail with each of ``b``'s over the
    cells that are foreground in either: what is on a shared canvas, not the canvas; and
    where there were enough such cells to tell (elsewhere the correlation is 1)."""
    mask = _foreground(a.rows(np.array([0])))[0] | _foreground(b)  # (m, 256)
    x = np.where(mask, a.grey[0].astype(np.float32), 0)
    y = np.where(mask, b.grey.astype(np.float32), 0)
    count = mask.sum(axis=1)
    sx, sy = x.sum(axis=1), y.sum(axis=1)
    safe = np.maximum(count, 1)
    covariance = (x * y).sum(axis=1) - sx * sy / safe
    variances = ((x * x).sum(axis=1) - sx * sx / safe) * ((y * y).sum(axis=1) - sy * sy / safe)
    result = np.ones(len(count), dtype=np.float32)
    # Enough cells, and structure in both: their spread in grey levels (the thumbnails are
    # centred and scaled by 1 / (16 * detail)).
    spread_a = np.sqrt(np.maximum((x * x).sum(axis=1) - sx * sx / safe, 0) / safe) * (16 * a.detail[0])
    spread_b = np.sqrt(np.maximum((y * y).sum(axis=1) - sy * sy / safe, 0) / safe) * (16 * b.detail)
    judged = (count >= FOREGROUND_CELLS) & (np.minimum(spread_a, spread_b) >= FOREGROUND_CONTRAST)
    judged &= variances > 0
    result[judged] = covariance[judged] / np.sqrt(variances[judged])
    return result, judged


def _against(
    a: Thumbnails, b: Thumbnails, grey_correlation: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32]]:
    """Picture 0 of ``a`` against every picture of ``b``: :func:`_verdict` with the detail
    guard, and the correlations."""
    correlations: npt.NDArray[np.float32] = b.grey.astype(np.float32) @ a.grey[0].astype(np.float32)
    difference = b.chroma.astype(np.float32) - a.chroma[0].astype(np.float32)
    accepted = _verdict(correlations, difference, a.colourful[0], b.colourful, grey_correlation)
    accepted &= (a.detail[0] >= LOW_DETAIL) & (b.detail >= LOW_DETAIL)
    return accepted, correlations


def _verdict(
    correlation: npt.NDArray[np.float32],
    difference: npt.NDArray[np.float32],
    colourful_a: npt.ArrayLike,
    colourful_b: npt.ArrayLike,
    grey_correlation: float,
) -> npt.NDArray[np.bool_]:
    """Do two pictures' thumbnails show the same picture, given their grey correlation and
    opponent-colour difference? The grey thumbnails must correlate; two colourful pictures
    must also agree in colour (flags with the same stripes in other colours, tinted icons),
    while a grey copy of a colourful picture must correlate more closely instead."""
    rms = np.sqrt((difference * difference).sum(axis=1) / (_CHROMA // 2))
    both = np.logical_and(colourful_a, colourful_b)
    one = np.logical_xor(colourful_a, colourful_b)
    accepted: npt.NDArray[np.bool_] = (
        (correlation >= grey_correlation)
        & (~both | (rms <= COLOUR_DIFFERENCE))
        & (~one | (correlation >= max(grey_correlation, GREY_COPY_CORRELATION)))
    )
    return accepted


#: A gap meaning "not within the threshold in this kind of hash".
NOT_NEAR = 255

#: ``check(leader, candidates, gaps) -> verified``: units in, and each candidate's
#: distance to the leader in each kind of hash (``(kinds, m)``, :data:`NOT_NEAR`
#: where it is not within that kind's threshold); out, for each kind and
#: candidate, whether the match in that kind holds (``(kinds, m)`` bools).
Check = Callable[[int, I64, U8], npt.NDArray[np.bool_]]


@dataclass(frozen=True)
class Kind:
    """One kind of hash that makes units candidates for one group.

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


def _graph(n: int, kind: Kind) -> _Graph:
    hashed = np.flatnonzero(kind.has_hash)
    values, node_of_hashed = np.unique(kind.hashes[hashed], return_inverse=True)
    node_of_hashed = node_of_hashed.reshape(-1)
    nodes = len(values)
    if nodes == 0:
        a, b, d = _empty()
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


def group_by_leaders(order: I64, kinds: Sequence[Kind], check: Check | None = None) -> Grouping:
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
