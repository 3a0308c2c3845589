"""Is this image already in the collection? Look files up in the index without adding them.

Each file is read and hashed as a scan would (same statuses for bad files),
then matched against the index: byte-identical files by SHA-256, near
duplicates as a near report matches them (hashes of the whole picture, or of
what is inside its border, within the threshold, and descriptors that agree).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .formats import path_fields
from .hashing import HashSettings
from .kinds import hash_hex
from .match.matcher import Matcher
from .match.units import Units
from .reading import Reading, read_item
from .sources import FileStat
from .sources.directory import DirectorySource
from .storage import Index


@dataclass(frozen=True)
class Match:
    path: bytes
    distance: int  # Hamming distance of the perceptual hashes (0 for exact copies)
    exact: bool  # byte-identical
    width: int | None
    height: int | None
    url: str | None = None  # where it was fetched from, when the index knows it

    def to_json(self) -> dict[str, Any]:
        return {
            **path_fields(self.path),
            "exact": self.exact,
            "distance": self.distance,
            "width": self.width,
            "height": self.height,
            **({} if self.url is None else {"url": self.url}),
        }


@dataclass
class QueryResult:
    path: bytes
    status: str  # as a scan would record it: ok, not_image, corrupt, ...
    error: str | None = None
    sha256: bytes | None = None
    phash: int | None = None
    matches: list[Match] = field(default_factory=list)
    # Indexed images near by hash but without thumbnails (an index not rescanned since an
    # upgrade): not matched, as their hash may be of another kind.
    unconfirmed: int = 0
    reading: Reading | None = field(default=None, repr=False)

    @property
    def failed(self) -> bool:
        """Not read and hashed whole (a truncated file is still matched exactly, by its bytes)."""
        return self.status != "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            **path_fields(self.path),
            "status": self.status,
            "error": self.error,
            "sha256": self.sha256.hex() if self.sha256 else None,
            "phash": None if self.phash is None else hash_hex(self.phash),
            "matches": [m.to_json() for m in self.matches],
            "unconfirmed": self.unconfirmed,
        }


def read_query(path: bytes, settings: HashSettings) -> QueryResult:
    """Hash one file the way a scan does."""
    try:
        st = os.stat(path)
    except OSError as e:
        return QueryResult(path, "unreadable", e.strerror or str(e))
    reading = read_item(DirectorySource(follow_symlinks=True), path, FileStat.of(st), "full", settings)
    if reading is None:
        return QueryResult(path, "unreadable", "vanished while being read")
    return QueryResult(path, reading.status, reading.error, reading.sha256, reading.phash, reading=reading)


def query(
    index: Index,
    paths: Sequence[bytes],
    threshold: int,
    settings: HashSettings | None = None,
    *,
    rotations: bool = False,
) -> list[QueryResult]:
    """The indexed images that are exact or near (within ``threshold``) duplicates of each file.

    Call inside the caller's snapshot. Matches come nearest first.
    """
    settings = settings or HashSettings()
    results = [read_query(p, settings) for p in paths]
    exact_ids: dict[bytes, set[int]] = {}
    digests = sorted({r.sha256 for r in results if r.sha256})
    for file_id, digest in index.images.with_sha256(digests):
        exact_ids.setdefault(digest, set()).add(file_id)

    near_ids, unconfirmed = _near_matches(index, [r.reading for r in results], threshold, rotations)
    wanted = {i for ids in exact_ids.values() for i in ids} | {i for m in near_ids for i in m}
    info = index.images.file_info(sorted(wanted))
    for number, r in enumerate(results):
        exact = exact_ids.get(r.sha256, set()) if r.sha256 else set()
        r.unconfirmed = len(unconfirmed[number] - exact)
        near = dict(near_ids[number])
        for file_id in exact:
            near.setdefault(file_id, 0)
        matches = []
        for file_id, dist in near.items():
            path, width, height, url = info[file_id]
            matches.append(Match(path, 0 if file_id in exact else dist, file_id in exact, width, height, url))
        r.matches = sorted(matches, key=lambda m: (not m.exact, m.distance, m.path))
    return results


def _near_matches(
    index: Index, readings: Sequence[Reading | None], threshold: int, rotations: bool
) -> tuple[list[dict[int, int]], list[set[int]]]:
    """The near matches of each reading (``{file id: distance}``) by the matcher, and the
    indexed images without thumbnails that each one's hashes are near (not matched).

    The units are the files looked up and the indexed files near them by hash (every
    indexed image with ``rotations``, whose orientations are made from thumbnails)."""
    found: list[dict[int, int]] = [{} for _ in readings]
    unconfirmed: list[set[int]] = [set() for _ in readings]
    probes = [(n, r) for n, r in enumerate(readings) if r is not None and r.phash is not None and r.descriptor]
    if not probes:
        return found, unconfirmed
    indexed: list[tuple[int, int | None, int | None]]
    if rotations:
        indexed = list(index.images.hashed_files())
    else:
        hashes = [h for _, r in probes for h in (r.phash, r.trim_hash) if h is not None]
        indexed = index.images.with_hashes(Matcher.near_values(index, hashes, threshold))
        # ... and those a region link may match them with.
        regions = [r.regions for _, r in probes if r.regions is not None]
        known = {i for i, _, _ in indexed}
        more = [i for i in Matcher.near_by_regions(index, hashes, regions, threshold) if i not in known]
        indexed += index.images.hashes_of(more)
    n = len(probes)
    file_ids = np.array([-1] * n + [i for i, _, _ in indexed], dtype=np.int64)
    whole = [r.phash for _, r in probes] + [h for _, h, _ in indexed]
    trims = [r.trim_hash for _, r in probes] + [t for _, _, t in indexed]
    units = Units(
        file_id=file_ids,
        has_hash=np.array([h is not None for h in whole], dtype=bool),
        phash=np.array([0 if h is None else h for h in whole], dtype=np.int64),
        has_trim=np.array([t is not None for t in trims], dtype=bool),
        trim_hash=np.array([0 if t is None else t for t in trims], dtype=np.int64),
        given={u: (r.descriptor, r.trim_descriptor) for u, (_, r) in enumerate(probes) if r.descriptor},
        given_regions={u: (r.regions, r.grid) for u, (_, r) in enumerate(probes) if r.regions and r.grid},
        given_sizes={u: (r.width, r.height) for u, (_, r) in enumerate(probes) if r.width and r.height},
    )
    matcher = Matcher(index, units, threshold, rotations=rotations, focus=np.arange(n))
    for unit, (number, _) in enumerate(probes):
        for other, gap in matcher.matches(unit).items():
            if other >= n:
                found[number][int(file_ids[other])] = gap
        unconfirmed[number] = {int(file_ids[u]) for u in matcher.blind_candidates(unit) if u >= n}
    return found, unconfirmed
