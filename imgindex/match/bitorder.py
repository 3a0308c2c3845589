"""The order of a hash's bits in the search's blocks: as stored, or spread.

Multi-index hashing (:mod:`.search`) cuts each hash into blocks of bits and
looks up buckets by a block's value; it costs what those buckets hold. Any
assignment of the 64 bits to blocks finds the same pairs (a Hamming distance
does not depend on the order of the bits), but not at the same cost: a
dHash's bits come row by row, 8 to a row, and neighbouring bits of a
picture's rows agree far more often than chance (a smooth picture's rows are
runs of 0s or 1s), so a block of two whole rows takes few values and its
buckets are crowded. :data:`SPREAD` deals each row's bits, and each column's,
evenly over the blocks instead.

Which order is cheaper is a property of the hashes, so it is measured, not
assumed (:func:`spread_if_cheaper`): the candidates each order would make for a
sample of the queries, counted in the targets' buckets, and the spread one
is taken only when it makes clearly fewer. On 20,000 small smooth pictures'
regions against their whole pictures, the spread order made 15 million
candidates where the stored one made 241 million; on hashes whose bits are
drawn independently it is no better (the synthetic indexes of
``bench/near_bench.py``), and there the stored order is kept.
"""

from __future__ import annotations

from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
Blocks = tuple[tuple[int, int, int], ...]


def _spread_order() -> tuple[int, ...]:
    """For each new bit position (0 = lowest), the stored bit it takes: the dHash bit of row
    ``r`` and column ``c`` (stored at ``63 - (8r + c)``) goes to the ``b``-th quarter, where
    ``b = (c + 2r) % 4``: each quarter (a 16-bit block) holds two bits of every row and of
    every column; a wider block takes the next quarter's first rows too."""
    order: list[int] = []
    for quarter in range(4):
        for row in range(8):
            order += [63 - (8 * row + column) for column in range(8) if (column + 2 * row) % 4 == quarter]
    return tuple(order)


#: New bit ``k`` is stored bit ``SPREAD[k]``.
SPREAD: Final = _spread_order()


@cache
def _tables() -> npt.NDArray[np.uint64]:
    """``(4, 65536)``: for each 16 bits of a stored hash (the lowest first) and their value, the
    bits they set in the :data:`SPREAD` order (2 MB, made at the first use: 14 ms)."""
    target = np.empty(64, dtype=np.uint64)
    target[list(SPREAD)] = np.arange(64, dtype=np.uint64)
    values = np.arange(1 << 16, dtype=np.uint64)
    tables = np.zeros((4, 1 << 16), dtype=np.uint64)
    for part in range(4):
        for bit in range(16):
            tables[part] |= ((values >> np.uint64(bit)) & np.uint64(1)) << target[16 * part + bit]
    return tables


def spread(hashes: U64) -> U64:
    """The hashes with their bits in the :data:`SPREAD` order (distances between them kept): a
    table lookup for each 16 bits (824,000 hashes: 30 ms, where one a byte, with shifts and
    masks, took 90)."""
    tables = _tables()
    parts = np.ascontiguousarray(hashes, dtype="<u8").view("<u2").reshape(-1, 4)
    out: U64 = tables[0][parts[:, 0]]
    for part in range(1, 4):
        out |= tables[part][parts[:, part]]
    return out


def block_values(hashes: U64, shift: int, width: int) -> npt.NDArray[np.intp]:
    """Each hash's block of ``width`` bits from bit ``shift`` (``shift + width <= 64``, ``width < 63``)."""
    # As signed integers: the bits shifted in from the left are masked off, and the result
    # is an index already (no conversion pass over millions of hashes).
    signed = hashes.view(np.int64) if hashes.dtype in (np.uint64, np.int64) else hashes.astype(np.int64)
    return ((signed >> shift) & ((1 << width) - 1)).astype(np.intp, copy=False)


#: Queries whose lookups are counted to compare the orders: at most this many, and no more
#: than make :data:`SAMPLE_LOOKUPS` lookups in a block (a block of 22 bits allowed 3 takes
#: 1,794 values around each query's, so 146 queries), but at least :data:`SAMPLE_LEAST`.
SAMPLE = 1024
SAMPLE_LOOKUPS = 1 << 18
SAMPLE_LEAST = 64
#: Targets the counts are made on (an even sample of them beyond): the share of the candidates
#: each order leaves is estimated as well on a quarter of a million targets as on all, and a
#: search of a few new pictures' hashes against millions costs less than counting them all.
TARGET_SAMPLE = 1 << 18


def candidates_per_query(targets: U64, sample: U64, blocks: Blocks, flips: list[npt.NDArray[np.intp]]) -> float:
    """The candidates a search by ``blocks`` among ``targets`` checks for each query of
    ``sample``, on average (``flips[b]``: the values within block ``b``'s allowance)."""
    total = 0
    for (shift, width, _), values in zip(blocks, flips, strict=True):
        counts = np.bincount(block_values(targets, shift, width), minlength=1 << width)
        keys = block_values(sample, shift, width)
        total += int(counts[keys[:, None] ^ values[None, :]].sum())
    return total / max(len(sample), 1)


#: The spread order is taken when it leaves at most this share of the stored order's
#: candidates. The stored order keeps what else makes a search fast: hashes come sorted, so
#: neighbouring queries look up the same buckets of the last block while they are in the
#: cache. On the synthetic million-image index the spread order made 12 % fewer candidates
#: and took about 10 % longer; on small smooth pictures it makes 16 times fewer.
SPREAD_SHARE = 2 / 3


def spread_if_cheaper(targets: U64, queries: U64, blocks: Blocks, flips: list[npt.NDArray[np.intp]]) -> U64 | None:
    """``targets`` in the :func:`spread` order when a search of ``queries`` by ``blocks`` would
    check clearly fewer candidates so (:data:`SPREAD_SHARE`, as counted for an even sample of
    the queries among an even sample of the targets); None when the stored order stays. The
    caller spreads its queries itself."""
    count = max(SAMPLE_LEAST, min(SAMPLE, SAMPLE_LOOKUPS // max(len(v) for v in flips)))
    sample = queries[:: max(1, len(queries) // count)]
    seen = targets[:: max(1, len(targets) // TARGET_SAMPLE)]
    stored = candidates_per_query(seen, sample, blocks, flips)
    if stored and candidates_per_query(spread(seen), spread(sample), blocks, flips) <= SPREAD_SHARE * stored:
        return spread(targets)
    return None
