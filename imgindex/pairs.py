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

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from imgindex.arrays import distinct

from .hashing import ORIENTATIONS, REGIONS, HashSettings, descriptor_rows, orientation_hashes
from .match.links import NOT_NEAR
from .match.matcher import Matcher
from .match.orientations import ROTATION_THRESHOLD, turned_neighbours
from .match.regions import REGION_THRESHOLD
from .match.search import I64, U8, as_unsigned, pairs_between, pairs_from, pairs_within
from .match.units import Units, unit_regions
from .match.verify import VERIFICATION
from .storage import NO_MATCH, Index, picture_alone, picture_keys, turned_kind
from .storage.images import Pictures

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
    pictures: int = 0  # distinct pictures whose matches are stored
    pictures_added: int = 0  # pictures verified against the rest by this update
    matches_added: int = 0  # verified matches stored
    matches_removed: int = 0
    #: Another process started the pairs or the matches again while this update ran: what this
    #: one found is not marked, and the next update does that work (the index is as correct).
    superseded: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def stored_max_distance(index: Index) -> int | None:
    return index.pairs.state()[0]


#: A search of pairs: given the distinct hashes (sorted, signed), the indices of those whose
#: pairs are wanted (None: all) and the distance, yields chunks of pairs of hash values
#: ``(a, b, distance)`` with ``a < b``, each pair once.
PairSearch = Callable[[I64, I64 | None, int], Iterator[tuple[I64, I64, U8]]]


def local_search(hashes: I64, queries: I64 | None, threshold: int) -> Iterator[tuple[I64, I64, U8]]:
    """The search in this process (:mod:`imgindex.match.search`), as one chunk."""
    unsigned = as_unsigned(hashes)
    i, j, d = pairs_within(unsigned, threshold) if queries is None else pairs_from(unsigned, queries, threshold)
    yield np.minimum(hashes[i], hashes[j]), np.maximum(hashes[i], hashes[j]), d


def update(
    index: Index,
    max_distance: int = MAX_DISTANCE,
    *,
    kind: str = KIND,
    stop: Callable[[], bool] | None = None,
    search: PairSearch = local_search,
) -> PairsUpdate:
    """Bring the stored pairs up to date with the images in the index; the pairs of the
    hashes to add are found by ``search`` (on a cluster: :mod:`imgindex.match.cluster_search`)."""
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
    superseded = False
    if len(added) and not (stop and stop()):
        queries = None if len(added) == len(present) else np.searchsorted(present, added)
        with store.bulk():
            for a, b, d in search(present, queries, max_distance):
                store.add_pairs(kind, a, b, d)
                pairs_added += len(a)
        if not store.add_hashes(kind, added, generation):
            added = added[:0]  # reset meanwhile by another process: the next update searches them
            superseded = True
    else:
        added = added[:0]
    if not (stop and stop()):
        store.keep_hashes(kind)  # (for the next update to read: its blob made again when due)
    matches = _update_matches(index, kind, stop, present) if not (stop and stop()) else _Verified()
    return PairsUpdate(
        hashes=len(present),
        added=len(added),
        removed=len(removed),
        pairs_added=pairs_added,
        pairs_removed=pairs_removed,
        rebuilt=rebuilt,
        seconds=time.perf_counter() - start,
        pictures=matches.pictures,
        pictures_added=matches.added,
        matches_added=matches.matches_added,
        matches_removed=matches.matches_removed,
        superseded=superseded or matches.superseded,
    )


def set_rotations(index: Index, on: bool) -> bool:
    """Store the matches of mirrored and turned copies (``report --rotations`` a query then),
    or stop storing them; whether that changed anything. Turning them on leaves every
    picture to verify again by the next :func:`update` (which then finds them too)."""
    for _attempt in range(3):  # again if another process resets the pairs under us
        if index.pairs.rotations() == on:
            return False
        if index.pairs.set_rotations(on, index.pairs.state()[1]) is not None:
            return True
    return False


#: Past this share of the pictures pending, an update verifies every picture again (one
#: search over all is cheaper than many lookups).
FULL_SHARE = 0.2
#: Pictures verified in one pass when every picture is (the rest wait for the next pass).
FULL_CHUNK = 1_000_000


class _Verified(NamedTuple):
    """What an update of the verified matches did (see :class:`PairsUpdate`)."""

    pictures: int = 0
    added: int = 0
    matches_added: int = 0
    matches_removed: int = 0
    superseded: bool = False


def _left(stop: Callable[[], bool] | None, pictures: int = 0, matches_removed: int = 0) -> _Verified:
    """An update that marked nothing new: asked to stop, or else another process started the
    matches again meanwhile (superseded)."""
    return _Verified(pictures, 0, 0, matches_removed, superseded=not (stop and stop()))


def _update_matches(index: Index, kind: str, stop: Callable[[], bool] | None, present: I64 | None = None) -> _Verified:
    """Bring the verified matches up to date with the pictures of the index: verify the
    pictures written since the last update (``near_pending``) against all, within the
    stored pairs' distance, and store what holds; forget the pictures no file has any more.
    ``present``: the index's whole and inside values, as the pair update read them.

    As for the pairs: matches are written before their pictures are marked, pending rows
    cleared last, and a reset by another process meanwhile leaves the pictures unmarked
    for the next update.
    """
    store = index.pairs
    params = index.catalog.params_id(HashSettings().key())
    with index.snapshot():
        max_distance, generation = store.state()
        stored_params = store.match_params(VERIFICATION)
        if stored_params != params:  # every picture is verified again: which are pending is moot
            last, pending, stored_count = store.last_pending(), None, 0
        else:  # (their distinct digests: at ten million pending, minutes and gigabytes)
            last, pending = store.pending()
            # Enough stored pictures that the pending ones are at most FULL_SHARE of them?
            enough = math.ceil(len(pending) / FULL_SHARE) if FULL_SHARE > 0 else 0
            stored_count = store.picture_count(kind, at_most=enough)
    if max_distance is None:
        return _Verified()
    if pending is None or len(pending) > FULL_SHARE * max(stored_count, 1):
        return _verify_all(index, kind, params, generation, last, stop)

    # Only the pending pictures: verified again if a file has them, forgotten if not.
    with index.snapshot():
        targets = index.images.pictures(params, [row.tobytes() for row in pending])
    rotations = store.rotations()
    matches_removed = 0
    if len(pending):
        gone = picture_keys(pending)
        matches_removed = store.remove_pictures(kind, gone)
        if rotations:
            matches_removed += store.remove_pictures(turned_kind(kind), gone)
            store.remove_orientations(kind, gone)
    keys = picture_keys(targets.sha256)
    # A picture whose key another picture has is never stored (nor that other one).
    alone = picture_alone(keys)
    for k in np.flatnonzero(alone).tolist():  # ... nor one indexed already
        digest = targets.sha256[k].tobytes()
        alone[k] = index.images.digests_with_prefix(digest[:8]) == [digest]
    added = keys[alone]
    if not len(added) or (stop and stop()):
        if not len(added):
            store.clear_pending(last)
        return _Verified(store.picture_count(kind), 0, 0, matches_removed)
    whole = targets.phash[alone]
    inside = targets.trim_hash[alone][targets.has_trim[alone]]
    values = distinct(np.concatenate([whole, inside]))
    with index.snapshot():
        if not store.stored_among(kind, values).all():  # their pairs not stored yet: search all
            return _verify_all(index, kind, params, generation, last, stop)
        a, b, _ = store.pairs_touching(kind, values, max_distance)
        near = distinct(np.concatenate([values, a, b]))
        neighbours = index.images.pictures_near(params, near.tolist())
        if rotations:  # and the stored pictures that may be mirrored or turned copies of them
            neighbours = _with_turned_neighbours(index, kind, params, targets, alone, neighbours, max_distance)
        # ... and those a region of one of them is near, or that have a region near one of them.
        neighbours = _with_region_neighbours(index, kind, params, targets, alone, neighbours, max_distance, present)
    # The units: the targets, then their neighbours that are stored pictures.
    neighbour_keys = picture_keys(neighbours.sha256)
    others = ~np.isin(neighbour_keys, keys) & store.pictures_among(kind, neighbour_keys)
    units = Units(
        file_id=np.concatenate([targets.file_id[alone], neighbours.file_id[others]]),
        has_hash=np.ones(len(added) + int(others.sum()), dtype=bool),
        phash=np.concatenate([whole, neighbours.phash[others]]),
        has_trim=np.concatenate([targets.has_trim[alone], neighbours.has_trim[others]]),
        trim_hash=np.concatenate([targets.trim_hash[alone], neighbours.trim_hash[others]]),
    )
    unit_keys = np.concatenate([added, neighbour_keys[others]])
    focus = np.arange(len(added))
    matches_added = _verify_and_store(index, kind, units, unit_keys, focus, max_distance, generation, rotations, stop)
    if matches_added is None:
        return _left(stop, store.picture_count(kind), matches_removed)
    store.clear_pending(last)
    return _Verified(store.picture_count(kind), len(added), matches_added, matches_removed)


def _verify_all(
    index: Index, kind: str, params: int, generation: int, last: int, stop: Callable[[], bool] | None
) -> _Verified:
    """Verify every picture against all: after new hash settings, or when most are pending."""
    store = index.pairs
    new_generation = store.reset_matches(generation)
    if new_generation is None:
        return _Verified(superseded=True)  # reset by another process meanwhile: the next update does it
    with index.snapshot():
        found = index.images.pictures(params)
        max_distance = store.state()[0]
    if max_distance is None or (stop and stop()):
        return _left(stop)
    keys = picture_keys(found.sha256)
    alone = picture_alone(keys)
    file_id, phash, has_trim, trim_hash = found.file_id, found.phash, found.has_trim, found.trim_hash
    del found  # (its digests: 32 bytes a picture, through every pass)
    rotations = store.rotations()
    # A pass per chunk of pictures (bounded memory): each verified against those of its own
    # and later chunks (its matches with earlier ones were found in their passes).
    added = 0
    chunks = np.array_split(np.flatnonzero(alone), max(1, -(-int(alone.sum()) // FULL_CHUNK)))
    regions = None
    if len(chunks) > 1:  # the regions of all, read once for every pass
        every = Units(file_id=file_id, has_hash=alone, phash=phash, has_trim=has_trim, trim_hash=trim_hash)
        with index.snapshot():
            regions = unit_regions(index, every, kind)
    for k, chunk in enumerate(chunks):
        if stop and stop():
            return _Verified()
        remaining = alone.copy()
        for earlier in chunks[:k]:
            remaining[earlier] = False
        units = Units(
            file_id=file_id, has_hash=remaining, phash=phash, has_trim=has_trim, trim_hash=trim_hash, regions=regions
        )
        focus = None if len(chunks) == 1 else chunk
        done = _verify_and_store(index, kind, units, keys, focus, max_distance, new_generation, rotations, stop)
        if done is None:
            return _left(stop)
        added += done
    if not store.finish_matches(params, new_generation, VERIFICATION):
        return _Verified(superseded=True)
    store.clear_pending(last)
    return _Verified(int(alone.sum()), int(alone.sum()), added, 0)


def _verify_and_store(
    index: Index,
    kind: str,
    units: Units,
    keys: npt.NDArray[np.int64],
    focus: npt.NDArray[np.int64] | None,
    max_distance: int,
    generation: int,
    rotations: bool = False,
    stop: Callable[[], bool] | None = None,
) -> int | None:
    """Verify the matches of the ``focus`` units (all, without) among ``units``, store them,
    and mark the focus units' pictures: the matches stored, or None if the store was reset
    by another process meanwhile, or ``stop`` said to stop while they were written (nothing
    marked: the next update does them again). With ``rotations``, the matches of
    mirrored and turned copies too (under their own kind), and the pictures' orientation hashes."""
    with index.snapshot():
        matcher = Matcher(index, units, max_distance, kind=kind, focus=focus, rotations=rotations)
    sorts = matcher.sorts
    a, b = keys[sorts.u], keys[sorts.v]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    plain = (sorts.whole != NOT_NEAR) | (sorts.inside != NOT_NEAR) | (sorts.region != NOT_NEAR)
    if not index.pairs.add_matches(
        kind, lo[plain], hi[plain], sorts.whole[plain], sorts.inside[plain], sorts.region[plain], stop=stop
    ):
        return None
    marked = keys[units.has_hash] if focus is None else keys[focus]
    stored = len(lo[plain])
    if rotations:
        turned = sorts.turned != NOT_NEAR
        none = np.full(int(turned.sum()), NO_MATCH, np.uint8)
        if not index.pairs.add_matches(
            turned_kind(kind), lo[turned], hi[turned], sorts.turned[turned], none, stop=stop
        ):
            return None
        stored += len(none)
        described, hashes, inside = matcher.orientations
        mine = np.isin(keys[described], marked)
        index.pairs.add_orientations(kind, keys[described][mine], hashes[mine], inside[mine])
        if not index.pairs.add_pictures(turned_kind(kind), distinct(marked), generation):
            return None
    if not index.pairs.add_pictures(kind, distinct(marked), generation):
        return None
    return stored


def _with_region_neighbours(
    index: Index,
    kind: str,
    params: int,
    targets: Pictures,
    chosen: npt.NDArray[np.bool_],
    neighbours: Pictures,
    max_distance: int,
    present: I64 | None = None,
) -> Pictures:
    """``neighbours`` and the stored pictures that a region link (:mod:`.match.regions`) may
    match with one of the ``chosen`` targets: a target's region near their whole or inside
    hash, or their region near the target's (``present``: every whole and inside value of the
    index, when read already)."""
    if kind != "dhash":
        return neighbours
    t = min(max_distance, REGION_THRESHOLD)
    near_values: list[npt.NDArray[np.int64]] = []
    _, rows = index.images.regions(targets.file_id[chosen])
    if len(rows):  # the targets' regions against every whole and inside value
        values = index.images.hashes() if present is None else present
        _, j, _ = pairs_between(values.view(np.uint64), rows.reshape(-1), t)
        near_values.append(values[distinct(j)])
    mine = distinct(np.concatenate([targets.phash[chosen], targets.trim_hash[chosen & targets.has_trim]]))
    ids, stored = index.images.all_regions()
    parts = [neighbours]
    if len(stored) and len(mine):  # the targets' whole and inside values against every stored region
        _, j, _ = pairs_between(stored.reshape(-1), mine.view(np.uint64), t)
        files = ids[distinct(j) // len(REGIONS)]
        if len(files):
            parts.append(index.images.pictures_of_files(params, files.tolist()))
    if near_values and len(near_values[0]):
        parts.append(index.images.pictures_near(params, near_values[0].tolist()))
    return _joined(parts)


def _joined(parts: list[Pictures]) -> Pictures:
    """Pictures from several lists, each once (the first of each)."""
    if len(parts) == 1:
        return parts[0]
    sha256 = np.concatenate([p.sha256 for p in parts])
    _, first = np.unique(picture_keys(sha256), return_index=True)
    first = np.sort(first)
    return Pictures(
        file_id=np.concatenate([p.file_id for p in parts])[first],
        sha256=sha256[first],
        phash=np.concatenate([p.phash for p in parts])[first],
        has_trim=np.concatenate([p.has_trim for p in parts])[first],
        trim_hash=np.concatenate([p.trim_hash for p in parts])[first],
    )


def _with_turned_neighbours(
    index: Index,
    kind: str,
    params: int,
    targets: Pictures,
    chosen: npt.NDArray[np.bool_],
    neighbours: Pictures,
    max_distance: int,
) -> Pictures:
    """``neighbours`` and the stored pictures that --rotations may match with one of the
    ``chosen`` targets: found by the orientation hashes of the targets' thumbnails against
    the stored ones, and (dHash) a target's orientations near their regions or a target's
    regions near their orientations (a region of one against an orientation of the other)."""
    t = min(max_distance, ROTATION_THRESHOLD)
    ids = targets.file_id[chosen].tolist()
    found = index.images.descriptors(ids)
    wholes = [found[i][0] for i in ids if i in found]
    insides = [own for i in ids if i in found and (own := found[i][1]) is not None]
    stored_keys, stored_turned, framed_keys, framed_turned = index.pairs.orientations(kind)
    mine = orientation_hashes(descriptor_rows(wholes + insides), kind) if wholes else None
    keys = np.concatenate([stored_keys, framed_keys])
    others = np.concatenate([stored_turned, framed_turned])
    parts = [neighbours]
    if mine is not None and len(stored_keys):
        # The wholes' and the insides' orientations on both sides, in one search: a few more
        # candidates (a whole against an inside) than the matcher's links, which then decide.
        near = distinct(keys[turned_neighbours(mine, others, t)])
        near = near[~np.isin(near, picture_keys(neighbours.sha256))]
        if len(near):
            parts.append(index.images.pictures_with_keys(params, near.tolist()))
    if kind == "dhash":
        if mine is not None:  # the targets' orientations against every stored region
            region_ids, stored = index.images.all_regions()
            if len(stored):
                _, j, _ = pairs_between(stored.reshape(-1), mine[:, 1:].reshape(-1), t)
                files = region_ids[distinct(j) // len(REGIONS)]
                if len(files):
                    parts.append(index.images.pictures_of_files(params, files.tolist()))
        _, rows = index.images.regions(ids)
        if len(rows) and len(keys):  # the targets' regions against every stored orientation
            _, j, _ = pairs_between(others[:, 1:].reshape(-1), rows.reshape(-1), t)
            near = distinct(keys[distinct(j) // (ORIENTATIONS - 1)])
            near = near[~np.isin(near, picture_keys(np.concatenate([p.sha256 for p in parts])))]
            if len(near):
                parts.append(index.images.pictures_with_keys(params, near.tolist()))
    return _joined(parts)
