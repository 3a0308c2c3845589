"""The stored near pairs: keeping them up to date, and reading them back.

The index keeps every pair of distinct perceptual hashes within
:data:`MAX_DISTANCE` bits (tables ``near_hashes`` and ``near_pairs``), among
the hashes of whole pictures and of what is inside their borders alike (a
report picks the pairs of each kind it needs), so a near report is a query,
and adding a thousand images searches a thousand hashes against the rest
instead of all pairs again. :func:`update` runs after each scan and watch
batch; :func:`pairs_among` gives a report the pairs it needs, searching in
memory whatever is not stored yet (an update that did not run, or a
threshold above the stored maximum).

An update reads, searches outside any transaction, then writes pairs before
marking their hashes as stored, so whatever stops it, or whatever another
process writes meanwhile, the next update finds the difference again: a
hash is in ``near_hashes`` only once all its pairs are stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .hashing import HashSettings
from .match.search import U64, as_signed, as_unsigned, pairs_from, pairs_within
from .storage import Index

#: The largest distance of a stored pair: reports up to this threshold are
#: queries over stored pairs; above it they search all hashes in memory.
MAX_DISTANCE = 10
#: The kind of hash the index holds (the settings' own).
KIND = HashSettings().algorithm


@dataclass(frozen=True)
class PairsUpdate:
    hashes: int  # distinct perceptual hashes in the index
    added: int  # hashes searched and stored by this update
    removed: int  # hashes no image has any more, forgotten with their pairs
    pairs_added: int
    pairs_removed: int
    rebuilt: bool  # everything was searched again (first update, or a new maximum distance)
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def stored_max_distance(index: Index) -> int | None:
    return index.pairs.state()[0]


def update(
    index: Index, max_distance: int = MAX_DISTANCE, *, kind: str = KIND, stop: Callable[[], bool] | None = None
) -> PairsUpdate:
    """Bring the stored pairs up to date with the images in the index."""
    start = time.perf_counter()
    store = index.pairs
    for _attempt in range(3):  # again if another process resets the pairs under us
        with index.snapshot():
            present = index.images.hashes()
            stored = store.hashes(kind)
            stored_max, generation = store.state()
        rebuilt = stored_max != max_distance
        if rebuilt:
            stored = stored[:0]
        added = np.setdiff1d(present, stored, assume_unique=True)
        removed = np.setdiff1d(stored, present, assume_unique=True)
        if not rebuilt and len(removed) > len(present):
            rebuilt, added, removed = True, present, stored[:0]  # cheaper to start again than to delete
        if rebuilt:
            new_generation = store.reset(max_distance, generation)
            if new_generation is None:
                continue
            generation = new_generation
        break

    pairs_removed = store.remove_hashes(kind, removed) if len(removed) else 0
    pairs_added = 0
    if len(added) and not (stop and stop()):
        hashes = as_unsigned(present)
        if len(added) == len(present):
            i, j, d = pairs_within(hashes, max_distance)
        else:
            i, j, d = pairs_from(hashes, np.searchsorted(present, added), max_distance)
        a = np.minimum(present[i], present[j])
        b = np.maximum(present[i], present[j])
        store.add_pairs(kind, a, b, d)
        pairs_added = len(a)
        if not store.add_hashes(kind, added, generation):
            added = added[:0]  # reset meanwhile by another process: the next update searches them
    else:
        added = added[:0]
    return PairsUpdate(
        hashes=len(present),
        added=len(added),
        removed=len(removed),
        pairs_added=pairs_added,
        pairs_removed=pairs_removed,
        rebuilt=rebuilt,
        seconds=time.perf_counter() - start,
    )


def pairs_among(
    index: Index, values: U64, threshold: int, *, kind: str = KIND, focus: U64 | None = None
) -> tuple[U64, U64, npt.NDArray[np.uint8]]:
    """Every pair of ``values`` (distinct, sorted perceptual hashes) within ``threshold``;
    with ``focus`` (some of the values), only the pairs that have one of them on a side.

    Stored pairs when the threshold allows it, plus a search in memory for
    the values whose pairs are not stored; a search over all values otherwise.
    Call inside the caller's snapshot so that it sees one state of the index.
    """
    signed = as_signed(values)
    at = None if focus is None else np.searchsorted(values, np.asarray(focus, dtype=np.uint64))
    stored_max = stored_max_distance(index)
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
