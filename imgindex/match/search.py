"""Search: every pair of 64-bit hashes within a Hamming distance.

Pure numpy: arrays in, arrays out; nothing here knows of files or SQLite.

The search is exact: :func:`pairs_within` and :func:`pairs_from` return the
same pairs as comparing every pair, found by *multi-index hashing* (Norouzi
et al., "Fast search in Hamming space with multi-index hashing", CVPR 2012).
Each hash is cut into 3 or 4 blocks (:data:`LAYOUTS`, chosen by :func:`plan`
for the input's size; the bits in the order of :mod:`.bitorder` that makes
fewer candidates for these hashes). If two hashes differ in at most ``k``
bits and block ``b`` is allowed ``a[b]`` differing bits with
``sum(a[b] + 1) > k``, then by pigeonhole some block differs in at most its
allowance. So for each block the hashes are bucketed by its value, each hash
looks up the buckets of every value within the allowance of its own (137
values of a 16-bit block for an allowance of 2), and the candidates found
are checked on all 64 bits. A
pair close on several blocks is kept only from the first such block, so no
pair is reported twice. Memory stays bounded: candidates are handled a few
million at a time, and no N×N matrix is ever made. Small inputs, and
thresholds so large that the lookups would cost more than comparing
everything, use the all-pairs comparison instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from itertools import combinations
from math import comb

import numpy as np
import numpy.typing as npt

from imgindex.arrays import distinct, lex_order

from .bitorder import block_values, spread, spread_if_cheaper

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Pairs = tuple[I64, I64, U8]

#: Hash comparisons per block of the all-pairs search (bounds its memory).
BLOCK_CELLS = 1 << 22
#: Candidate pairs checked at once by the indexed search (bounds its memory).
CANDIDATE_CHUNK = 1 << 22
#: Bucket lookups made at once by the indexed search (bounds its memory).
LOOKUP_CHUNK = 1 << 20
#: Targets of :func:`pairs_between` bucketed at once (bounds its memory).
TARGET_PART = 1 << 23


def as_unsigned(hashes: npt.ArrayLike) -> U64:
    """Hashes stored as signed 64-bit integers (as SQLite keeps them), viewed as unsigned."""
    return np.asarray(hashes, dtype=np.int64).view(np.uint64)


def as_signed(hashes: U64) -> I64:
    return np.ascontiguousarray(hashes, dtype=np.uint64).view(np.int64)


def distances(a: U64, b: U64) -> U8:
    """Elementwise Hamming distance."""
    return np.bitwise_count(np.bitwise_xor(a, b))


def empty_pairs() -> Pairs:
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
    q = np.arange(n, dtype=np.int64) if queries is None else distinct(np.asarray(queries, dtype=np.int64))
    if n < 2 or len(q) == 0:
        return empty_pairs()
    how = plan(n, len(q), threshold)
    if how.blocks:
        if how.cost_ns >= ORDER_FLOOR_NS:
            hashes = _spread_if_cheaper(hashes, hashes[q], how.blocks)
        i, j, d = _indexed(hashes, q, threshold, how.blocks, all_queries=queries is None)
    else:
        i, j, d = _all_pairs(hashes, q, threshold, all_queries=queries is None)
    return _sorted(i, j, d)


def pairs_within_brute_force(hashes: U64, threshold: int) -> Pairs:
    """:func:`pairs_within` by comparing every pair (for tests and benchmarks)."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    if len(hashes) < 2:
        return empty_pairs()
    return _sorted(*_all_pairs(hashes, np.arange(len(hashes), dtype=np.int64), threshold, all_queries=True))


def _sorted(i: I64, j: I64, d: U8) -> Pairs:
    """The pairs by ``i``, then ``j`` (``np.lexsort``'s order, by one sort where the indexes and
    the rows' numbers fit 63 bits: 20 million pairs of 200,000 hashes 3.4 s against 9.2 s)."""
    order = lex_order([j, i])
    return i[order], j[order], d[order]


#: Ways to cut a hash into blocks (widths in bits, low bits first). Fewer, wider
#: blocks mean fewer chance candidates but more lookups per hash; :func:`plan`
#: picks the cheapest for the input's size.
LAYOUTS: tuple[tuple[int, ...], ...] = ((16, 16, 16, 16), (17, 17, 17, 13), (22, 21, 21), (22, 22, 20))
#: Rough costs in nanoseconds, measured on one core: a bucket lookup per hash,
#: a candidate checked, a pair compared by the all-pairs search; per block,
#: a bucket of its table, and a hash sorted into it by a pass of the radix sort
#: (:func:`stable_order`: a pass per 16 bits of the block; at 824,000 hashes a
#: 16-bit block's table took 31 ms, a 22-bit one's 102 ms, 30 of them its
#: empty table). Without the second pass of wide blocks, the plan took 22-bit
#: blocks for an update's few queries among many hashes where four 16-bit
#: ones are faster (1,100 among 824,000: 539 → 350 ms; 1,100 among 8 million:
#: 3.41 → 2.80 s; bench/plan_probe.py).
_LOOKUP_NS, _CANDIDATE_NS, _COMPARE_NS = 5.0, 10.0, 0.6
_BUCKET_NS, _SORT_NS = 2.0, 40.0


#: A search the plan expects to take longer than this (ns) first counts which order of the
#: hashes' bits makes fewer candidates (:mod:`.bitorder`): a few milliseconds.
ORDER_FLOOR_NS = 2e7


def _spread_if_cheaper(targets: U64, queries: U64, blocks: tuple[tuple[int, int, int], ...]) -> U64:
    """``targets`` in the order of bits that makes fewer candidates (:mod:`.bitorder`): the
    spread order, or themselves."""
    values = [np.array(flips(width, allowance), dtype=np.intp) for _, width, allowance in blocks]
    spread_targets = spread_if_cheaper(targets, queries, blocks, values)
    return targets if spread_targets is None else spread_targets


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
    every = queries * float(n) * _COMPARE_NS
    terms = _layout_terms(threshold)
    if not len(terms.blocks):
        return Plan((), every)
    # layout_cost for every layout and allowances at once (a loop over them: 8 ms a plan)
    costs = (
        terms.buckets
        + n * _SORT_NS * terms.passes
        + queries * (terms.lookups * _LOOKUP_NS + n * terms.chance * _CANDIDATE_NS)
    )
    k = int(np.argmin(costs))  # (the first of equal ones, as a loop taking only lower ones would)
    return Plan(terms.blocks[k], float(costs[k])) if costs[k] < every else Plan((), every)


@dataclass(frozen=True)
class _Terms:
    """The parts of :func:`layout_cost` that do not depend on the input's size, for every
    layout and allowances (in :data:`LAYOUTS`' order, then :func:`_allowance_choices`')."""

    blocks: tuple[tuple[tuple[int, int, int], ...], ...]
    lookups: npt.NDArray[np.float64]
    chance: npt.NDArray[np.float64]
    buckets: npt.NDArray[np.float64]
    passes: npt.NDArray[np.float64]


@cache
def _layout_terms(threshold: int) -> _Terms:
    blocks, lookups, chance, buckets, passes = [], [], [], [], []
    for widths in LAYOUTS:
        shifts = np.cumsum((0, *widths[:-1])).tolist()
        for allowed in _allowance_choices(len(widths), threshold):
            used = [(w, a) for w, a in zip(widths, allowed, strict=True) if a >= 0]
            blocks.append(tuple(b for b in zip(shifts, widths, allowed, strict=True) if b[2] >= 0))
            lookups.append(sum(flip_count(w, a) for w, a in used))
            chance.append(sum(flip_count(w, a) / 2**w for w, a in used))
            buckets.append(sum(2**w * _BUCKET_NS for w, _ in used))
            passes.append(sum(radix_passes(w) for w, _ in used))
    return _Terms(tuple(blocks), *(np.array(x, dtype=np.float64) for x in (lookups, chance, buckets, passes)))


def layout_cost(n: int, queries: int, widths: tuple[int, ...], allowed: tuple[int, ...]) -> float:
    """The estimated cost (ns) of a search of ``queries`` among ``n`` hashes by blocks of
    ``widths`` with the allowances ``allowed`` (-1: the block left out)."""
    used = [(w, a) for w, a in zip(widths, allowed, strict=True) if a >= 0]
    lookups = sum(flip_count(w, a) for w, a in used)
    chance = sum(flip_count(w, a) / 2**w for w, a in used)
    setup = sum(2**w * _BUCKET_NS + n * _SORT_NS * radix_passes(w) for w, _ in used)
    return float(setup + queries * (lookups * _LOOKUP_NS + n * chance * _CANDIDATE_NS))


def radix_passes(width: int) -> int:
    """The passes :func:`stable_order` makes to sort keys of ``width`` bits."""
    return max(1, -(-width // 16))


@cache
def _allowance_choices(blocks: int, threshold: int) -> tuple[tuple[int, ...], ...]:
    choices: list[tuple[int, ...]] = [()]
    for _ in range(blocks):
        choices = [(*c, a) for c in choices for a in range(-1, min(threshold, 6) + 1)]
    return tuple(c for c in choices if sum(a + 1 for a in c) == threshold + 1)


@cache
def flip_count(width: int, allowance: int) -> int:
    return sum(comb(width, b) for b in range(allowance + 1))


@cache
def flips(width: int, allowance: int) -> tuple[int, ...]:
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
        return empty_pairs()
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

    def block(number: int) -> list[Pairs]:
        shift, width, allowance = blocks[number]
        found: list[Pairs] = []
        keys = block_values(hashes, shift, width)
        table = BucketTable(keys, hashes, width)
        # The queries in the order of their block's value (see :func:`_by_block_value`).
        qkeys = keys[q]
        by_value = _by_block_value(qkeys, width)
        qkeys, qs, qh = qkeys[by_value], q[by_value], hashes[q[by_value]]
        del keys
        # The lookups of several flips at once when the queries are few (a pair's XOR has one
        # value on the block, so it is found by one flip alone): one pass over a few
        # million lookups instead of thousands of passes over a few queries.
        values = np.array(flips(width, allowance), dtype=np.intp)
        per_pass = max(1, LOOKUP_CHUNK // len(q))
        for first in range(0, len(values), per_pass):
            batch = values[first : first + per_pass]
            targets = (qkeys[None, :] ^ batch[:, None]).reshape(-1)
            for owner, pos, x, d in table.matches(qh, targets, threshold):
                i = qs[owner % len(q)]
                j = table.order[pos].astype(np.int64)
                keep = j > i if all_queries else (j != i) & (~is_query[j] | (j > i))
                keep &= ~close_on_any(x, blocks[:number])  # found on that earlier block already
                found.append((i[keep], j[keep], d[keep]))
        return found

    found = by_blocks(len(blocks), block, n + len(q))
    return _concat(found)


#: Threads a search spreads its blocks over. A block's table and lookups are numpy's work,
#: done without the interpreter's lock, so two blocks go side by side on two cores (the
#: pairs each finds do not depend on the others': a pair close on an earlier block is left
#: out by its distances on that block, not by what that block's search found). No more than
#: two, and only for searches of at most :data:`THREADED_SIZE` targets and queries together:
#: each block holds its table, its queries' keys and its candidates while it is searched. A
#: full verification of a million pictures peaked at 1,059 MB one block at a time, 1,311 MB
#: with its search of the 822,000 values among themselves in two threads, and 1,555 MB with
#: the search of their five million regions' hashes too; the searches of an update's new
#: pictures among a million are far smaller, and are what a scan or watch waits for.
SEARCH_THREADS = 2
THREADED_SIZE = 1 << 20


def by_blocks(count: int, block: Callable[[int], list[Pairs]], size: int) -> list[Pairs]:
    """What ``block(k)`` finds for each of ``count`` blocks of a search, in block order; side by
    side in :data:`SEARCH_THREADS` threads where this process may use as many cores and the
    search's ``size`` (its targets and queries together; 0 for one that holds no table) is at
    most :data:`THREADED_SIZE`."""
    threads = min(SEARCH_THREADS, count, _cores()) if size <= THREADED_SIZE else 1
    if threads < 2:
        return [pairs for k in range(count) for pairs in block(k)]
    with ThreadPoolExecutor(threads) as pool:
        return [pairs for found in pool.map(block, range(count)) for pairs in found]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _by_block_value(keys: npt.NDArray[np.intp], width: int) -> npt.NDArray[np.intp]:
    """The order of queries by their block's value, in which to look them up: a value XOR a
    flip, for values in order, walks the bucket table in runs of ascending rows, so that its
    counts and entries are read a cache line after another (the hardware reads ahead), not
    one miss of the cache at random per lookup (the lookups were most of a search's time:
    millions of queries times hundreds of flips, on tables of 4 million buckets)."""
    return stable_order(keys, width)


def close_on_any(x: U64, blocks: tuple[tuple[int, int, int], ...]) -> npt.NDArray[np.bool_]:
    """Which of the differences ``x`` (a XOR b) are within the allowance of one of ``blocks``:
    the pairs a search by those blocks finds (so a later block leaves them out)."""
    close = np.zeros(len(x), dtype=bool)
    for shift, width, allowance in blocks:
        close |= np.bitwise_count(block_values(x, shift, width)) <= allowance
    return close


def stable_order(keys: npt.NDArray[np.intp], width: int) -> npt.NDArray[np.intp]:
    """``np.argsort(keys, kind="stable")`` for keys below ``2**width``, by 16 bits at a time:
    numpy sorts 16-bit numbers by radix (a pass over them), ten times faster than wider ones."""
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    for shift in range(16, width, 16):
        digit = ((keys[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
    return order


class BucketTable:
    """Hashes bucketed by a key of ``width`` bits (their block's value, say), to look candidates up."""

    def __init__(self, keys: npt.NDArray[np.intp], hashes: U64, width: int) -> None:
        self.order = stable_order(keys, width)  # entry k of the table is hashes[order[k]]
        self.hashes = hashes[self.order]
        self.counts = np.bincount(keys, minlength=1 << width).astype(np.int32)
        #: Which buckets hold a hash: a byte a bucket, a quarter of the counts' memory to read
        #: for the lookups that find nothing (most of them, when the hashes are fewer than the
        #: buckets), and a test numpy makes fast.
        self.occupied = self.counts > 0
        # (32-bit where the entries allow: a 22-bit block's starts summed in 17 ms, not 38)
        starts = np.int32 if len(keys) < 1 << 31 else np.int64
        self.first: npt.NDArray[np.signedinteger] = np.zeros(len(self.counts), dtype=starts)
        np.cumsum(self.counts[:-1], out=self.first[1:])

    def matches(self, qh: U64, target: npt.NDArray[np.intp], threshold: int) -> Iterator[tuple[I64, I64, U64, U8]]:
        """The hashes of bucket ``target[k]`` within ``threshold`` of ``qh[k % len(qh)]`` (the
        same queries looked up in several buckets each, a round of them at a time), for every
        k, a bounded number of candidates at a time: ``(k, entry in the table, XOR, distance)``."""
        hit = np.flatnonzero(self.occupied[target])
        if len(hit) == 0:
            return
        size = self.counts[target[hit]].astype(np.int64)
        ends = np.cumsum(size)
        start = 0
        while start < len(hit):
            base = int(ends[start - 1]) if start else 0
            stop = max(int(np.searchsorted(ends, base + CANDIDATE_CHUNK, side="right")), start + 1)
            part = hit[start:stop]
            sizes = size[start:stop]
            # Candidate c is entry (c - bucket's first candidate) of its bucket in key order.
            starts = ends[start:stop] - sizes - base
            pos = np.repeat(self.first[target[part]] - starts, sizes) + np.arange(int(sizes.sum()))
            x = np.repeat(qh[part % len(qh)], sizes) ^ self.hashes[pos]
            d = np.bitwise_count(x)
            good = np.flatnonzero(d <= threshold)
            if len(good):
                owner = np.searchsorted(ends[start:stop] - base, good, side="right")
                yield part[owner].astype(np.int64), pos[good], x[good], d[good]
            start = stop


def pairs_between(targets: U64, queries: U64, threshold: int) -> Pairs:
    """Every pair of a query and a target within ``threshold``: ``(query, target, distance)``
    (indices into each), each once, sorted. Only the targets are bucketed, so pairs among the
    queries are neither looked for nor paid for (many region hashes against fewer pictures)."""
    targets = np.ascontiguousarray(targets, dtype=np.uint64)
    queries = np.ascontiguousarray(queries, dtype=np.uint64)
    n, m = len(targets), len(queries)
    if not n or not m:
        return empty_pairs()
    if n > TARGET_PART:
        # A part of the targets at a time: each part's tables and their sort are what a
        # search holds at once (at ten million pictures, the 45 million hashes of their
        # regions took 1.5 GB more), for more lookups (the queries' once a part).
        parts = []
        for lo in range(0, n, TARGET_PART):
            i, j, d = pairs_between(targets[lo : lo + TARGET_PART], queries, threshold)
            parts.append((i, j + lo, d))
        return _sorted(*_concat(parts))
    few = _few_queries_plan(n, m, threshold)
    if few:
        return _few_queries(targets, queries, threshold, few)
    how = plan(n, m, threshold)
    found: list[Pairs] = []
    if not how.blocks:
        rows = max(1, BLOCK_CELLS // n)
        for start in range(0, m, rows):
            d = np.bitwise_count(queries[start : start + rows, None] ^ targets[None, :])
            flat = np.flatnonzero(d.ravel() <= threshold)
            r, c = np.divmod(flat, n)
            found.append(((r + start).astype(np.int64), c.astype(np.int64), d[r, c]))
        return _sorted(*_concat(found))
    if how.cost_ns >= ORDER_FLOOR_NS:
        spread_targets = _spread_if_cheaper(targets, queries, how.blocks)
        if spread_targets is not targets:
            targets, queries = spread_targets, spread(queries)
    blocks = how.blocks

    def block(number: int) -> list[Pairs]:
        shift, width, allowance = blocks[number]
        found: list[Pairs] = []
        table = BucketTable(block_values(targets, shift, width), targets, width)
        qkeys = block_values(queries, shift, width)
        by_value = _by_block_value(qkeys, width)  # (see there)
        qkeys, ordered = qkeys[by_value], queries[by_value]
        values = np.array(flips(width, allowance), dtype=np.intp)
        per_pass = max(1, LOOKUP_CHUNK // m)
        for first in range(0, len(values), per_pass):
            batch = values[first : first + per_pass]
            keys = (qkeys[None, :] ^ batch[:, None]).reshape(-1)
            for owner, pos, x, d in table.matches(ordered, keys, threshold):
                keep = ~close_on_any(x, blocks[:number])  # found on that earlier block already
                found.append((by_value[owner % m][keep], table.order[pos][keep].astype(np.int64), d[keep]))
        return found

    return _sorted(*_concat(by_blocks(len(blocks), block, n + m)))


#: The blocks of the search for few queries among many targets: three, of 22, 21 and 21 bits;
#: used from this many targets.
_FEW_WIDTHS = (22, 21, 21)
_FEW_TARGETS = 1_000_000


def _few_queries_plan(n: int, m: int, threshold: int) -> tuple[tuple[int, int, int], ...]:
    """Blocks ``(shift, width, allowance)`` for :func:`_few_queries` when the targets are many
    (bucketing them is what costs) and the queries few enough that the values they mark are
    at most a quarter of each block's (so that a quarter of the targets at most are
    candidates); else empty."""
    if threshold > 2 * len(_FEW_WIDTHS) + len(_FEW_WIDTHS) - 1:
        return ()
    # Allowances a with sum(a + 1) == threshold + 1, as even as can be (pigeonhole).
    base, extra = divmod(threshold + 1, len(_FEW_WIDTHS))
    allowances = [base - 1 + (1 if k < extra else 0) for k in range(len(_FEW_WIDTHS))]
    if n < _FEW_TARGETS or any(m * flip_count(w, a) * 4 > 1 << w for w, a in zip(_FEW_WIDTHS, allowances, strict=True)):
        return ()
    shifts = np.cumsum((0, *_FEW_WIDTHS[:-1])).tolist()
    return tuple((s, w, a) for s, w, a in zip(shifts, _FEW_WIDTHS, allowances, strict=True) if a >= 0)


def _few_queries(targets: U64, queries: U64, threshold: int, blocks: tuple[tuple[int, int, int], ...]) -> Pairs:
    """:func:`pairs_between` for few queries: per block, every value within the allowance of a
    query's is marked in a table of the block's values (a byte each, which stays in cache
    where a table of starts would not), the targets on a marked value are the candidates (a
    gather over the targets, no sort of them), and each is checked against the queries of
    its value (where they start among the sorted probes: a second table, asked for the
    candidates only)."""
    m = len(queries)

    def block(number: int) -> list[Pairs]:
        shift, width, allowance = blocks[number]
        variants = np.array(flips(width, allowance), dtype=np.intp)
        probes = (block_values(queries, shift, width)[:, None] ^ variants[None, :]).reshape(-1)
        owners = np.repeat(np.arange(m, dtype=np.int64), len(variants))
        order = np.argsort(probes)  # (a value's queries in any order: the pairs are sorted at the end)
        owners = owners[order]
        # Where each block value's queries start among the sorted probes (a table of the
        # block's values, so that a candidate finds them by two lookups, not a search).
        first = np.zeros((1 << width) + 1, dtype=np.int32)
        np.cumsum(np.bincount(probes, minlength=1 << width), out=first[1:])
        probed = np.zeros(1 << width, dtype=bool)
        probed[probes] = True
        keys = block_values(targets, shift, width)
        candidates = np.flatnonzero(probed[keys])
        if not len(candidates):
            return []
        keys = keys[candidates]
        lo, sizes = first[keys].astype(np.int64), (first[keys + 1] - first[keys]).astype(np.int64)
        target = np.repeat(candidates, sizes)
        at = np.repeat(lo - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))
        query = owners[at]
        x = queries[query] ^ targets[target]
        d = np.bitwise_count(x)
        keep = (d <= threshold) & ~close_on_any(x, blocks[:number])  # found on that earlier block already
        return [(query[keep], target[keep].astype(np.int64), d[keep])]

    # (No table of the targets: a block holds their block values and marks, 9 bytes a target
    # of at most TARGET_PART, and tables of the block's values: side by side at any size.)
    found = by_blocks(len(blocks), block, 0)
    return _sorted(*_concat(found))
