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

from .hashing import HashSettings, descriptor_rows, hash_hex
from .index import FileRecord, Index
from .near import LOW_DETAIL, NOT_NEAR, Pictures, as_unsigned, confirm, distances, pairs_from
from .report import path_fields
from .scan import Task, read_file
from .walk import FileStat


@dataclass(frozen=True)
class Match:
    path: bytes
    distance: int  # Hamming distance of the perceptual hashes (0 for exact copies)
    exact: bool  # byte-identical
    width: int | None
    height: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            **path_fields(self.path),
            "exact": self.exact,
            "distance": self.distance,
            "width": self.width,
            "height": self.height,
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
    record: FileRecord | None = field(default=None, repr=False)

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
    record = read_file(Task(0, os.path.basename(path), path, FileStat.of(st), "full", True), settings, 0)
    if record is None:
        return QueryResult(path, "unreadable", "vanished while being read")
    return QueryResult(path, record.status, record.error, record.sha256, record.phash, record=record)


def query(
    index: Index, paths: Sequence[bytes], threshold: int, settings: HashSettings | None = None
) -> list[QueryResult]:
    """The indexed images that are exact or near (within ``threshold``) duplicates of each file.

    Call inside the caller's snapshot. Matches come nearest first.
    """
    settings = settings or HashSettings()
    results = [read_query(p, settings) for p in paths]
    exact_ids: dict[bytes, set[int]] = {}
    digests = sorted({r.sha256 for r in results if r.sha256})
    for file_id, digest in index.files_with_sha256(digests):
        exact_ids.setdefault(digest, set()).add(file_id)

    near_ids, unconfirmed = _near_matches(index, [r.record for r in results], threshold)
    wanted = {i for ids in exact_ids.values() for i in ids} | {i for m in near_ids for i in m}
    info = index.file_info(sorted(wanted))
    for number, r in enumerate(results):
        exact = exact_ids.get(r.sha256, set()) if r.sha256 else set()
        r.unconfirmed = len(unconfirmed[number] - exact)
        near = dict(near_ids[number])
        for file_id in exact:
            near.setdefault(file_id, 0)
        matches = []
        for file_id, dist in near.items():
            path, width, height = info[file_id]
            matches.append(Match(path, 0 if file_id in exact else dist, file_id in exact, width, height))
        r.matches = sorted(matches, key=lambda m: (not m.exact, m.distance, m.path))
    return results


def _near_matches(
    index: Index, records: Sequence[FileRecord | None], threshold: int
) -> tuple[list[dict[int, int]], list[set[int]]]:
    """The near matches of each record (``{file id: distance}``), and the indexed images
    without thumbnails that each one's hashes are near (not matched)."""
    found: list[dict[int, int]] = [{} for _ in records]
    unconfirmed: list[set[int]] = [set() for _ in records]
    hashed = [(n, r) for n, r in enumerate(records) if r is not None and r.phash is not None]
    if not hashed:
        return found, unconfirmed
    # What each query hash is near among the distinct hashes indexed.
    queried = sorted({h for _, r in hashed for h in _hashes(r.phash, r.trim_hash) if h is not None})
    indexed = index.image_hashes()
    values = np.concatenate([indexed, np.array(queried, dtype=np.int64)])
    _, j, _ = pairs_from(as_unsigned(values), np.arange(len(indexed), len(values)), threshold)
    near_values = sorted({int(v) for v in values[j[j < len(indexed)]].tolist()})
    candidates = index.files_with_hashes(near_values)
    stored = index.descriptors([f[0] for f in candidates])
    # Files without descriptors were hashed by an older imgindex (perhaps another kind of
    # hash) and not rescanned since: nothing to match them by.
    files = [(i, w, w if t is None else t) for i, w, t in candidates if i in stored and w is not None]
    unknown = [(i, w, w if t is None else t) for i, w, t in candidates if i not in stored and w is not None]
    ids = [f[0] for f in files]
    theirs = Pictures.of(
        descriptor_rows([stored[i][0] for i in ids]),
        descriptor_rows([stored[i][1] or stored[i][0] for i in ids]),
        np.array([stored[i][1] is not None for i in ids], dtype=bool),
    )
    their_whole, their_inside = as_unsigned([f[1] for f in files]), as_unsigned([f[2] for f in files])
    unknown_whole, unknown_inside = as_unsigned([u[1] for u in unknown]), as_unsigned([u[2] for u in unknown])
    for number, r in hashed:
        whole, inside = _hashes(r.phash, r.trim_hash)
        if r.descriptor is None or whole is None or inside is None:
            continue
        mine = Pictures.of(
            descriptor_rows([r.descriptor]),
            descriptor_rows([r.trim_descriptor or r.descriptor]),
            np.array([r.trim_descriptor is not None]),
        )
        if mine.whole.detail[0] >= LOW_DETAIL:  # a blank picture matches by its bytes only, thumbnails or not
            gap = np.minimum(
                distances(unknown_whole, as_unsigned([whole])), distances(unknown_inside, as_unsigned([inside]))
            )
            unconfirmed[number] = {unknown[k][0] for k in np.flatnonzero(gap <= threshold).tolist()}
        by_whole = distances(their_whole, as_unsigned([whole]))
        by_inside = distances(their_inside, as_unsigned([inside]))
        whole_ok, inside_ok = confirm(mine, theirs, by_whole <= threshold, by_inside <= threshold)
        gap = np.minimum(np.where(whole_ok, by_whole, NOT_NEAR), np.where(inside_ok, by_inside, NOT_NEAR))
        for k in np.flatnonzero(gap != NOT_NEAR).tolist():
            found[number][ids[k]] = int(gap[k])
    return found, unconfirmed


def _hashes(phash: int | None, trim_hash: int | None) -> tuple[int | None, int | None]:
    """A picture's hash, and that of what is inside its border (itself without one)."""
    return phash, phash if trim_hash is None else trim_hash
