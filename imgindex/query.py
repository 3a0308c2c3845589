"""Is this image already in the collection? Look files up in the index without adding them.

Each file is read and hashed as a scan would (same statuses for bad files),
then matched against the index: byte-identical files by SHA-256, near
duplicates by perceptual-hash distance over the distinct hashes indexed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .hashing import HashSettings, hash_hex
from .index import Index
from .near import as_unsigned, pairs_from
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
    return QueryResult(path, record.status, record.error, record.sha256, record.phash)


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

    near_ids: dict[int, dict[int, int]] = {}  # query hash -> {file id: distance}
    hashed = sorted({r.phash for r in results if r.phash is not None})
    if hashed:
        indexed = index.image_hashes()
        values = np.concatenate([indexed, np.array(hashed, dtype=np.int64)])
        queries = np.arange(len(indexed), len(values))
        i, j, d = pairs_from(as_unsigned(values), queries, threshold)
        inside = j < len(indexed)  # pairs between two query files are not matches
        found: dict[int, dict[int, int]] = {}
        for qi, other, dist in zip(i[inside].tolist(), j[inside].tolist(), d[inside].tolist(), strict=True):
            found.setdefault(int(values[other]), {})[int(values[qi])] = dist
        for file_id, value in index.files_with_hashes(sorted(found)):
            for qhash, dist in found[value].items():
                near_ids.setdefault(qhash, {})[file_id] = dist

    wanted = {i for ids in exact_ids.values() for i in ids} | {i for m in near_ids.values() for i in m}
    info = index.file_info(sorted(wanted))
    for r in results:
        exact = exact_ids.get(r.sha256, set()) if r.sha256 else set()
        near = dict(near_ids.get(r.phash, {})) if r.phash is not None else {}
        for file_id in exact:
            near.setdefault(file_id, 0)
        matches = []
        for file_id, dist in near.items():
            path, width, height = info[file_id]
            matches.append(Match(path, 0 if file_id in exact else dist, file_id in exact, width, height))
        r.matches = sorted(matches, key=lambda m: (not m.exact, m.distance, m.path))
    return results
