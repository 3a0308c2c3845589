"""Candidates: the pairs of hash values a matcher must look at, from the index where it can.

The index stores every pair of distinct hash values within its maximum
distance (:mod:`imgindex.pairs` keeps them up to date); what is not stored
yet (an update that did not run, another process writing) or lies beyond
the maximum is searched in memory, so a report never waits and is never
wrong because an update is missing.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from imgindex.storage import Index

from .search import U64, as_signed, as_unsigned, pairs_between, pairs_from, pairs_within


def pairs_among(
    index: Index, values: U64, threshold: int, *, kind: str, focus: U64 | None = None
) -> tuple[U64, U64, npt.NDArray[np.uint8]]:
    """Every pair of ``values`` (distinct, sorted perceptual hashes) within ``threshold``;
    with ``focus`` (some of the values), only the pairs that have one of them on a side.

    Stored pairs when the threshold allows it, plus a search in memory for
    the values whose pairs are not stored; a search over all values otherwise.
    Call inside the caller's snapshot so that it sees one state of the index.
    """
    signed = as_signed(values)
    at = None if focus is None else np.searchsorted(values, np.asarray(focus, dtype=np.uint64))
    stored_max, _ = index.pairs.state()
    # The same pair can come both from storage and from the search (an update that
    # stored pairs but had not marked their hashes yet): the grouping takes either.
    if stored_max is None or threshold > stored_max:
        i, j, d = pairs_within(values, threshold) if at is None else pairs_from(values, at, threshold)
        return values[i], values[j], d
    is_stored = index.pairs.stored_among(kind, signed)
    if at is None:
        a, b, d = index.pairs.pairs(kind, threshold)
        i, j, dd = pairs_from(values, np.flatnonzero(~is_stored), threshold)
    else:
        # Only the pairs of a few values: those stored, a search of the others against
        # everything, and of the stored ones against the values not stored yet (their
        # pairs with those are not in storage until those are marked).
        known = at[is_stored[at]]
        a, b, d = index.pairs.pairs_touching(kind, signed[known], threshold)
        i, j, dd = pairs_from(values, at[~is_stored[at]], threshold)
        # (Only against those: two stored values have their pair stored, and at ten million
        # a pass's focus is millions of values, whose search among themselves took minutes.)
        unstored = np.flatnonzero(~is_stored)
        lk, lu, ld = pairs_between(values[unstored], values[known], threshold)
        i, j, dd = np.concatenate([i, known[lk]]), np.concatenate([j, unstored[lu]]), np.concatenate([dd, ld])
    if len(i):
        a = np.concatenate([a, signed[i]])
        b = np.concatenate([b, signed[j]])
        d = np.concatenate([d, dd])
    return as_unsigned(a), as_unsigned(b), d
