"""Orientations: candidates between pictures and the mirrored and turned copies of others.

``--rotations`` matches a picture's upright hash with the hashes of another's
thumbnail in its other orientations (:func:`imgindex.hashing.orientation_hashes`):
:func:`turned_pairs` finds those pairs among a set of pictures (a report in
memory), :func:`turned_neighbours` the pictures of a stored set that may be
copies of new ones (an update). Pure numpy: nothing here knows of files or SQLite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from imgindex.hashing import ORIENTATIONS

from .search import I64, pairs_from

#: --rotations: the largest distance between one picture's hash and an
#: orientation's of another, and the grey correlation their thumbnails need.
ROTATION_THRESHOLD = 8
ROTATION_CORRELATION = 0.90


def turned_pairs(
    turned: npt.NDArray[np.uint64], threshold: int, among: npt.NDArray[np.bool_] | None = None
) -> tuple[Any, Any, Any]:
    """Pairs of upright hashes (column 0 of ``turned``) where one is within
    ``threshold`` of another picture's hash in another orientation; with ``among`` (a mask
    of the rows), only the pairs with one of those pictures on a side."""
    n = len(turned)
    if n < 2 or (among is not None and not among.any()):
        empty = np.empty(0, np.uint64)
        return empty, empty, np.empty(0, np.uint8)
    flat = np.concatenate([turned[:, 0], turned[:, 1:].T.reshape(-1)])  # orientation k of row r: k * n + r
    if among is None:
        queries = np.arange(n)
    else:
        rows = np.flatnonzero(among)
        queries = np.concatenate([rows + k * n for k in range(ORIENTATIONS)])
    i, j, d = pairs_from(flat, queries, threshold)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    keep = (lo < n) & (hi >= n)  # an upright hash against a turned one
    upright, other, d = lo[keep], (hi[keep] - n) % n, d[keep]
    return turned[upright, 0], turned[other, 0], d


def turned_neighbours(mine: npt.NDArray[np.uint64], others: npt.NDArray[np.uint64], threshold: int) -> I64:
    """The rows of ``others`` (orientation hashes, rows of :data:`ORIENTATIONS`) that may be
    mirrored or turned copies of one of ``mine``: an upright hash equal to one of theirs, or
    within ``threshold`` of an orientation of it, or an orientation within ``threshold`` of
    their upright hash. Every picture that --rotations could match with one of ``mine`` is
    among them (the matcher then decides which are)."""
    m, n = len(mine), len(others)
    if not m or not n:
        return np.empty(0, np.int64)
    turns = ORIENTATIONS - 1
    found = [np.flatnonzero(np.isin(others[:, 0], mine[:, 0]))]
    # My upright hashes against their other orientations ...
    _, j, _ = pairs_from(np.concatenate([mine[:, 0], others[:, 1:].reshape(-1)]), np.arange(m), threshold)
    found.append((j[j >= m] - m) // turns)
    # ... and my other orientations against their upright hashes.
    flat = np.concatenate([others[:, 0], mine[:, 1:].reshape(-1)])
    _, j, _ = pairs_from(flat, np.arange(n, n + m * turns), threshold)
    found.append(j[j < n])
    return np.unique(np.concatenate(found)).astype(np.int64)
