"""Orientations: candidates between pictures and the mirrored and turned copies of others.

``--rotations`` matches a picture's upright hash with the hashes of another's
thumbnail in its other orientations (:func:`imgindex.hashing.orientation_hashes`):
:func:`turned_rows` finds those pairs among rows of orientation hashes,
:func:`turned_pairs_with_insides` among a set of pictures' wholes and insides
(a report in memory), :func:`turned_neighbours` the pictures of a stored set
that may be copies of new ones (an update). Pure numpy: nothing here knows of files or SQLite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from imgindex.arrays import distinct
from imgindex.hashing import ORIENTATIONS

from .search import I64, pairs_from

#: --rotations: the largest distance between one picture's hash and an
#: orientation's of another, and the grey correlation their thumbnails need.
ROTATION_THRESHOLD = 8
ROTATION_CORRELATION = 0.90


def turned_pairs_with_insides(
    whole: npt.NDArray[np.uint64], inside: npt.NDArray[np.uint64], framed: npt.NDArray[np.bool_], threshold: int
) -> tuple[tuple[Any, Any, Any], tuple[Any, Any, Any], tuple[Any, Any, Any]]:
    """:func:`turned_rows`' pairs of the whole pictures' orientations (``whole``); those of the
    insides' (``inside``: the whole's rows where not ``framed``) with a picture with a border
    on a side; and the pairs of one's inside with another's whole picture, both with borders
    (an upright hash of each, in no order): in one search (the insides' rows that differ
    join the wholes')."""
    n = len(whole)
    own = np.flatnonzero(framed)
    a, b, d, x, y = turned_rows(np.concatenate([whole, inside[own]]), threshold)
    # Which picture each row is of, and whether it stands for the inside: an inside's own row,
    # or the whole's of a picture without a border.
    picture = np.concatenate([np.arange(n), own])
    is_inside = np.concatenate([~framed, np.ones(len(own), dtype=bool)])
    plain = (x < n) & (y < n)
    insides = is_inside[x] & is_inside[y] & (framed[picture[x]] | framed[picture[y]])
    framed_whole = np.concatenate([framed, np.zeros(len(own), dtype=bool)])  # a framed picture's whole row
    cross = ((x >= n) & framed_whole[y]) | ((y >= n) & framed_whole[x])
    return (a[plain], b[plain], d[plain]), (a[insides], b[insides], d[insides]), (a[cross], b[cross], d[cross])


def turned_rows(turned: npt.NDArray[np.uint64], threshold: int) -> tuple[Any, Any, Any, Any, Any]:
    """Pairs of rows ``(x, y)`` where row ``x``'s upright hash (column 0 of ``turned``) is
    within ``threshold`` of row ``y``'s hash in another orientation: their upright hashes,
    distance, ``x`` and ``y``."""
    n = len(turned)
    if n < 2:
        empty, rows = np.empty(0, np.uint64), np.empty(0, np.int64)
        return empty, empty, np.empty(0, np.uint8), rows, rows
    flat = np.concatenate([turned[:, 0], turned[:, 1:].T.reshape(-1)])
    i, j, d = pairs_from(flat, np.arange(n), threshold)
    keep = j >= n  # an upright hash against a turned one
    x, y, d = i[keep], (j[keep] - n) % n, d[keep]
    return turned[x, 0], turned[y, 0], d, x, y


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
    return distinct(np.concatenate(found)).astype(np.int64)
