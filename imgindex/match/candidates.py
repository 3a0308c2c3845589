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

from .search import U64, as_signed, as_unsigned, pairs_from, pairs_within


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
    if at is None:
        a, b, d = index.pairs.pairs(kind, threshold)
    else:
        a, b, d = index.pairs.pairs_touching(kind, signed[at], threshold)
    missing = np.flatnonzero(~np.isin(signed, index.pairs.hashes(kind), assume_unique=True))
    if len(missing):
        i, j, dd = pairs_from(values, missing, threshold)
        if at is not None:
            touching = np.isin(i, at) | np.isin(j, at)
            i, j, dd = i[touching], j[touching], dd[touching]
        a = np.concatenate([a, signed[i]])
        b = np.concatenate([b, signed[j]])
        d = np.concatenate([d, dd])
    return as_unsigned(a), as_unsigned(b), d
