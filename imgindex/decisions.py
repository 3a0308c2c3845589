"""What people decided when they reviewed duplicates, and what that does to a report.

Decisions are about pictures (SHA-256), never paths, so they survive rescans,
renames and moves, and one whose pictures are gone does nothing:

- **keep** a picture: it ranks before every other when groups are formed,
  so it leads the group it is in (the latest keep first when two meet); with
  a path, that one of its identical copies is kept;
- **apart**: two pictures are not duplicates; their match is left out before
  grouping, so neither joins the other's group;
- **same**: two pictures are duplicates (a group accepted as it is); this
  changes no report, it marks the group as decided in the review.

A later decision about the same picture (keep) or pair (apart, same)
overrides an earlier one; undoing a batch brings back what it overrode.
Storage is :class:`imgindex.storage.Decisions`; the review page
(:mod:`imgindex.review`) makes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .match.grouping import Edges
from .storage import StoredDecision

#: A decision as stored: (kind, sha256, other, path).
Row = tuple[str, bytes, bytes, bytes | None]


@dataclass(frozen=True)
class InForce:
    """The decisions in force: the latest about each picture (keep) and each pair."""

    keep: dict[bytes, tuple[int, bytes | None]] = field(default_factory=dict)  # sha256 -> (batch, path)
    pairs: dict[tuple[bytes, bytes], str] = field(default_factory=dict)  # (lower, higher) -> 'apart' | 'same'

    def __len__(self) -> int:
        return len(self.keep) + len(self.pairs)

    def verdict(self, a: bytes, b: bytes) -> str | None:
        """'apart', 'same', or None (undecided) for two pictures."""
        return self.pairs.get(pair_key(a, b))

    def same_pictures(self) -> list[bytes]:
        """Every picture in a "same" decision."""
        return sorted({s for pair, kind in self.pairs.items() if kind == "same" for s in pair})

    def apart(self) -> list[tuple[bytes, bytes]]:
        return [p for p, kind in self.pairs.items() if kind == "apart"]


def in_force(stored: Iterable[StoredDecision]) -> InForce:
    """The decisions in force, from the stored ones of the batches not undone (oldest first)."""
    result = InForce()
    for d in stored:
        if d.kind == "keep":
            result.keep[d.sha256] = (d.batch_id, d.path)
        else:
            result.pairs[(d.sha256, d.other)] = d.kind
    return result


def pair_key(a: bytes, b: bytes) -> tuple[bytes, bytes]:
    return (a, b) if a <= b else (b, a)


def keep(sha256: bytes, path: bytes | None = None) -> list[Row]:
    return [("keep", sha256, b"", path)]


def apart(sha256: bytes, others: Iterable[bytes]) -> list[Row]:
    """``sha256`` is a duplicate of none of ``others`` (its identical copies stay its duplicates)."""
    return [("apart", *pair_key(sha256, o), None) for o in sorted(set(others)) if o != sha256]


def all_apart(pictures: Iterable[bytes]) -> list[Row]:
    """No two of ``pictures`` are duplicates."""
    distinct = sorted(set(pictures))
    return [("apart", a, b, None) for i, a in enumerate(distinct) for b in distinct[i + 1 :]]


def same(kept: bytes, duplicates: Iterable[bytes]) -> list[Row]:
    """Each of ``duplicates`` is a duplicate of ``kept`` (identical copies included)."""
    return [("same", *pair_key(kept, d), None) for d in sorted(set(duplicates))]


def keep_priority(
    decided: InForce, sha256: npt.NDArray[np.uint8], named: npt.NDArray[np.bool_], path_of: Callable[[int], bytes]
) -> npt.NDArray[np.int64]:
    """For each image (its SHA-256, ``(n, 32)``; ``named``: :func:`keep_rows`; ``path_of`` a
    row's path, asked only of the named rows): how strongly a decision says keep it (0: none;
    later decisions higher, the named copy above its twins)."""
    priority = np.zeros(len(sha256), dtype=np.int64)
    for row in np.flatnonzero(named).tolist():
        batch, path = decided.keep[sha256[row].tobytes()]
        priority[row] = 2 * batch + (1 if path is not None and path_of(row) == path else 0)
    return priority


def keep_rows(decided: InForce, sha256: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Which images a keep decision names (by picture)."""
    return _rows_of(sha256, list(decided.keep))


def without_apart(edges: Edges, unit_sha256: npt.NDArray[np.uint8], decided: InForce) -> tuple[Edges, int]:
    """``edges`` between units (their pictures' SHA-256 sorted ascending, as ``np.unique``
    gives them) without the matches decided apart, and how many were left out."""
    pairs = decided.apart()
    if not pairs or not len(edges):
        return edges, 0
    units = _as_void(unit_sha256)
    a = _as_void(np.frombuffer(b"".join(p[0] for p in pairs), np.uint8).reshape(-1, 32))
    b = _as_void(np.frombuffer(b"".join(p[1] for p in pairs), np.uint8).reshape(-1, 32))
    ia, ib = np.searchsorted(units, a), np.searchsorted(units, b)
    n = len(units)
    known = (ia < n) & (ib < n)
    known[known] &= (units[ia[known]] == a[known]) & (units[ib[known]] == b[known])
    lo = np.minimum(ia[known], ib[known]).astype(np.int64)
    hi = np.maximum(ia[known], ib[known]).astype(np.int64)
    decided_codes = lo * n + hi
    codes = np.minimum(edges.u, edges.v) * n + np.maximum(edges.u, edges.v)
    out = np.isin(codes, decided_codes)
    if not out.any():
        return edges, 0
    keep_ = ~out
    return Edges(edges.u[keep_], edges.v[keep_], edges.distance[keep_]), int(out.sum())


def _as_void(sha256: npt.NDArray[np.uint8]) -> npt.NDArray[np.void]:
    return np.ascontiguousarray(sha256).view(np.dtype((np.void, 32))).reshape(-1)


def _rows_of(sha256: npt.NDArray[np.uint8], digests: list[bytes]) -> npt.NDArray[np.bool_]:
    if not digests or not len(sha256):
        return np.zeros(len(sha256), dtype=bool)
    wanted = _as_void(np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32))
    return np.isin(_as_void(sha256), wanted)
