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

from .hashing import HashSettings, hash_hex
from .index import FileRecord, Index
from .near import as_unsigned, pairs_from, similar
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

    near_ids = _near_matches(index, [r.record for r in results], threshold)
    wanted = {i for ids in exact_ids.values() for i in ids} | {i for m in near_ids for i in m}
    info = index.file_info(sorted(wanted))
    for number, r in enumerate(results):
        exact = exact_ids.get(r.sha256, set()) if r.sha256 else set()
        near = dict(near_ids[number])
        for file_id in exact:
            near.setdefault(file_id, 0)
        matches = []
        for file_id, dist in near.items():
            path, width, height = info[file_id]
            matches.append(Match(path, 0 if file_id in exact else dist, file_id in exact, width, height))
        r.matches = sorted(matches, key=lambda m: (not m.exact, m.distance, m.path))
    return results


def _near_matches(index: Index, records: Sequence[FileRecord | None], threshold: int) -> list[dict[int, int]]:
    """The near matches of each record: ``{file id: distance}``."""
    found: list[dict[int, int]] = [{} for _ in records]
    hashed = [(n, r) for n, r in enumerate(records) if r is not None and r.phash is not None]
    if not hashed:
        return found
    # What each query hash is near among the distinct hashes indexed.
    mine = sorted({h for _, r in hashed for h in _hashes(r.phash, r.trim_hash) if h is not None})
    indexed = index.image_hashes()
    values = np.concatenate([indexed, np.array(mine, dtype=np.int64)])
    _, j, _ = pairs_from(as_unsigned(values), np.arange(len(indexed), len(values)), threshold)
    near_values = sorted({int(v) for v in values[j[j < len(indexed)]].tolist()})
    files = index.files_with_hashes(near_values)
    stored = index.descriptors([f[0] for f in files])
    for number, r in hashed:
        whole, inside = _hashes(r.phash, r.trim_hash)
        for file_id, their_whole, their_trim in files:
            their_inside = their_trim if their_trim is not None else their_whole
            gaps = [
                _distance(whole, their_whole),  # the whole pictures
                _distance(inside, their_inside),  # what is inside their borders
            ]
            theirs = stored.get(file_id)
            verified = []
            for kind, gap in enumerate(gaps):
                if gap > threshold:
                    continue
                if theirs is None or r.descriptor is None:  # hashed before descriptors: the hash decides
                    verified.append(gap)
                    continue
                a = r.descriptor if kind == 0 else (r.trim_descriptor or r.descriptor)
                b = theirs[0] if kind == 0 else (theirs[1] or theirs[0])
                if similar(np.frombuffer(a, np.uint8)[None], np.frombuffer(b, np.uint8)[None])[0]:
                    verified.append(gap)
            if verified:
                found[number][file_id] = min(verified)
    return found


def _hashes(phash: int | None, trim_hash: int | None) -> tuple[int | None, int | None]:
    """A picture's hash, and that of what is inside its border (itself without one)."""
    return phash, phash if trim_hash is None else trim_hash


def _distance(a: int | None, b: int | None) -> int:
    return 64 if a is None or b is None else ((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).bit_count()
