"""Stored matches: what the index holds of the matches between some units.

A report over an index whose matches are up to date reads them
(:func:`stored_matches`), as :class:`Sorts`, the same columns the matcher
makes of what it verifies itself; only the units whose matches are not all
stored are searched and verified again.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from imgindex.storage import Index, picture_alone, picture_keys, turned_kind

from .links import NOT_NEAR
from .orientations import ROTATION_THRESHOLD
from .regions import REGION_THRESHOLD
from .search import I64
from .units import Units
from .verify import VERIFICATION


class Sorts(NamedTuple):
    """Verified matches between units (``u < v``): the distance by which each sort of match
    holds, :data:`NOT_NEAR` where it does not; ``joined``, the smallest of all sorts."""

    u: I64
    v: I64
    whole: npt.NDArray[np.uint8]
    inside: npt.NDArray[np.uint8]
    turned: npt.NDArray[np.uint8]  # an upright hash and an orientation's (with rotations)
    region: npt.NDArray[np.uint8]  # a region's hash of one and the other's whole or inside
    joined: npt.NDArray[np.uint8]


def no_sorts() -> Sorts:
    empty = np.empty(0, np.int64)
    none = np.empty(0, np.uint8)
    return Sorts(empty, empty, none, none, none, none, none)


def stored_matches(
    index: Index, units: Units, threshold: int, kind: str, *, rotations: bool = False
) -> tuple[npt.NDArray[np.bool_], Sorts]:
    """Which units' matches are all in the index, and those matches between them within
    ``threshold`` (with ``rotations``, those of mirrored and turned copies too, within
    :data:`ROTATION_THRESHOLD`). A unit counts when its picture's matches are stored, were
    verified under the hash settings of its hashes and by this version of the verification rule
    (:data:`.verify.VERIFICATION`), it was not written since (pending), and no
    other unit has its picture key."""
    n = len(units)
    known = np.zeros(n, dtype=bool)
    stored_max, _ = index.pairs.state()
    params = index.pairs.match_params(VERIFICATION)
    if units.sha256 is None or units.params_id is None or stored_max is None or params is None:
        return known, no_sorts()
    if threshold > stored_max:
        return known, no_sorts()
    keys = picture_keys(units.sha256)
    listed = _listed(keys, index.pairs.pictures(kind))
    if rotations:
        listed &= _listed(keys, index.pairs.pictures(turned_kind(kind)))
    # Written since the last update of the matches: theirs may be out of date.
    pending = np.isin(keys, picture_keys(index.pairs.pending()[1]))
    known = units.has_hash & picture_alone(keys) & (units.params_id == params) & listed & ~pending
    order = np.argsort(keys)  # (keys alike are never known: picture_alone)
    k_order = order[known[order]]
    if not len(k_order):
        return known, no_sorts()
    k_keys = keys[k_order]
    stored = index.pairs.matches(kind, threshold)
    lo, hi, ours = _as_units(k_keys, k_order, stored.a, stored.b)
    whole, inside, none = stored.whole[ours], stored.inside[ours], np.full(len(lo), NOT_NEAR, np.uint8)
    region = np.where(stored.region[ours] <= min(threshold, REGION_THRESHOLD), stored.region[ours], NOT_NEAR)
    region = region.astype(np.uint8)
    parts = [Sorts(lo, hi, whole, inside, none, region, np.minimum.reduce([whole, inside, region]))]
    if rotations:
        turned_matches = index.pairs.matches(turned_kind(kind), min(threshold, ROTATION_THRESHOLD))
        lo, hi, ours = _as_units(k_keys, k_order, turned_matches.a, turned_matches.b)
        none = np.full(len(lo), NOT_NEAR, np.uint8)
        turned = turned_matches.whole[ours]
        parts.append(Sorts(lo, hi, none, none, turned, none, turned))
    return known, Sorts(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def _as_units(k_keys: I64, k_order: I64, a: I64, b: I64) -> tuple[I64, I64, npt.NDArray[np.bool_]]:
    """Stored matches between picture keys ``a`` and ``b`` as pairs of units (``lo < hi``), for
    the matches whose two pictures are among the sorted ``k_keys`` (units ``k_order``), which
    are marked in the mask returned."""
    ia = np.minimum(np.searchsorted(k_keys, a), len(k_keys) - 1)
    ib = np.minimum(np.searchsorted(k_keys, b), len(k_keys) - 1)
    ours = (k_keys[ia] == a) & (k_keys[ib] == b)
    ua, ub = k_order[ia[ours]], k_order[ib[ours]]
    return np.minimum(ua, ub), np.maximum(ua, ub), ours


def _listed(keys: I64, stored: I64) -> npt.NDArray[np.bool_]:
    """Which of ``keys`` are among the sorted ``stored``."""
    if not len(stored):
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(stored, keys), len(stored) - 1)
    found: npt.NDArray[np.bool_] = stored[at] == keys
    return found
