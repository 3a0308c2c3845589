"""The stored near pairs: keeping them up to date, and reading them back.

The index keeps every pair of distinct perceptual hashes within
:data:`MAX_DISTANCE` bits (tables ``near_hashes`` and ``near_pairs``), among
the hashes of whole pictures and of what is inside their borders alike (a
report picks the pairs of each kind it needs), so a near report is a query,
and adding a thousand images searches a thousand hashes against the rest
instead of all pairs again. :func:`update` runs after each scan and watch
batch; :func:`imgindex.match.candidates.pairs_among` reads them back for the
matcher.

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

from .hashing import HashSettings
from .match.matcher import Matcher, Units
from .match.search import as_unsigned, pairs_from, pairs_within
from .storage import Index, picture_keys

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
    pictures: int = 0  # distinct pictures whose matches can be stored
    pictures_added: int = 0  # pictures verified against the rest by this update
    matches_added: int = 0  # verified matches stored
    matches_removed: int = 0

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
    matches = _update_matches(index, kind, stop) if not (stop and stop()) else (0, 0, 0, 0)
    return PairsUpdate(
        hashes=len(present),
        added=len(added),
        removed=len(removed),
        pairs_added=pairs_added,
        pairs_removed=pairs_removed,
        rebuilt=rebuilt,
        seconds=time.perf_counter() - start,
        pictures=matches[0],
        pictures_added=matches[1],
        matches_added=matches[2],
        matches_removed=matches[3],
    )


def _update_matches(index: Index, kind: str, stop: Callable[[], bool] | None) -> tuple[int, int, int, int]:
    """Bring the verified matches up to date with the pictures of the index: verify the new
    pictures against all (within the stored pairs' distance) and store what holds.

    As for the pairs: matches are written before their pictures are marked, and a
    reset by another process meanwhile leaves them unmarked for the next update.
    Returns (pictures, pictures added, matches added, matches removed).
    """
    store = index.pairs
    params = index.catalog.params_id(HashSettings().key())
    for _attempt in range(3):
        with index.snapshot():
            found = index.images.pictures(params)
            stored = store.pictures(kind)
            stored_params = store.match_params()
            max_distance, generation = store.state()
        if max_distance is None:
            return 0, 0, 0, 0
        if stored_params != params:
            new_generation = store.reset_matches(params, generation)
            if new_generation is None:
                continue
            generation, stored = new_generation, stored[:0]
        break
    else:
        return 0, 0, 0, 0
    keys = picture_keys(found.sha256)
    order = np.argsort(keys, kind="stable")
    alone = np.ones(len(keys), dtype=bool)
    twice = keys[order[1:]] == keys[order[:-1]]
    alone[order[1:][twice]] = alone[order[:-1][twice]] = False  # two pictures, one key: never stored
    present = np.unique(keys[alone])
    added = np.setdiff1d(present, stored, assume_unique=True)
    removed = np.setdiff1d(stored, present, assume_unique=True)
    matches_removed = store.remove_pictures(kind, removed) if len(removed) else 0
    if not len(added) or (stop and stop()):
        return len(present), 0, 0, matches_removed
    units = Units(
        file_id=found.file_id,
        has_hash=alone,
        phash=found.phash,
        has_trim=found.has_trim,
        trim_hash=found.trim_hash,
    )
    focus = np.flatnonzero(alone & np.isin(keys, added))
    with index.snapshot():
        matcher = Matcher(index, units, max_distance, kind=kind, focus=None if len(focus) == len(present) else focus)
    sorts = matcher.sorts
    a, b = keys[sorts.u], keys[sorts.v]
    store.add_matches(kind, np.minimum(a, b), np.maximum(a, b), sorts.whole, sorts.inside)
    if not store.add_pictures(kind, added, generation):
        return len(present), 0, len(a), matches_removed
    return len(present), len(added), len(a), matches_removed
