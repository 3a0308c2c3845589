"""Duplicate reports: queries over the index, never re-reading image files.

:func:`build_report` groups the indexed images (exactly, by SHA-256, or
nearly, by the matcher: :mod:`imgindex.match.matcher`) and chooses which
image of each group to keep. The output formats that write a report are in
:mod:`imgindex.formats`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from imgindex.arrays import digest_units, distinct, lex_order

from .decisions import InForce, in_force, keep_priority, keep_rows, without_apart
from .errors import ReportError
from .hashing import HashSettings
from .match.grouping import Edges, group_by_leaders, no_edges
from .match.matcher import Matcher
from .match.units import Units
from .storage import ImageTable, Index

Mode = Literal["exact", "near"]

#: Measured on the quality benchmark's corpus (bench/quality): with the descriptor
#: check, 10 finds 98 % of the planted copies and few false pairs; see the README.
DEFAULT_THRESHOLD = 10
MAX_THRESHOLD = 32
#: Rules for choosing the image to keep, each as (column, best first is "descending"?).
KEEP_RULES: dict[str, tuple[str, bool]] = {
    "resolution": ("pixels", True),
    "size": ("size", True),
    "oldest": ("mtime_ns", False),
    "newest": ("mtime_ns", True),
    "shortest": ("path_length", False),
}
DEFAULT_KEEP = ("resolution", "size", "oldest", "shortest")


@dataclass(frozen=True)
class ReportOptions:
    mode: Mode = "exact"
    threshold: int | None = None  # near mode only; None: DEFAULT_THRESHOLD
    keep: tuple[str, ...] = DEFAULT_KEEP
    prefer: tuple[bytes, ...] = ()
    under: tuple[bytes, ...] = ()  # only images below these directories
    duplicates_only: bool = False
    rotations: bool = False  # near mode: also match mirrored and quarter-turned copies
    decisions: bool = True  # honour the review's decisions (imgindex.decisions)

    def __post_init__(self) -> None:
        unknown = [r for r in self.keep if r not in KEEP_RULES]
        if unknown:
            raise ReportError(f"unknown --keep rule {unknown[0]!r}; choose from {', '.join(KEEP_RULES)}")
        if self.mode == "exact" and self.threshold is not None:
            raise ReportError("--threshold applies to --near reports only")
        if self.mode == "exact" and self.rotations:
            raise ReportError("--rotations applies to --near reports only")
        if self.threshold is not None and not 0 <= self.threshold <= MAX_THRESHOLD:
            raise ReportError(f"--threshold must be between 0 and {MAX_THRESHOLD}")

    @property
    def effective_threshold(self) -> int | None:
        if self.mode == "exact":
            return None
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold


@dataclass(frozen=True)
class Image:
    id: int
    root_id: int
    path: bytes
    sha256: bytes
    phash: int | None
    width: int | None
    height: int | None
    size: int
    format: str | None
    url: str | None = None  # where it was fetched from, when the index knows it
    archived: bool = False  # a record in a web archive (its path is ARCHIVE#OFFSET)


@dataclass(frozen=True)
class Group:
    """A kept image and its duplicates (each with its distance to the kept one; 0 for exact copies)."""

    kept: Image
    duplicates: list[tuple[Image, int]]


@dataclass
class Report:
    """The groups of one report, laid out as runs of rows of :attr:`table` (kept image first)."""

    options: ReportOptions
    hash_kind: str  # the kind of perceptual hash that was matched
    roots: list[bytes]
    root_paths: dict[int, bytes]
    initial_image_count: int
    final_image_count: int
    group_count: int
    duplicate_count: int
    # Near mode: images with a near candidate but no thumbnails (indexed by an older version,
    # not rescanned since), so matched by hash alone.
    unconfirmed_count: int
    #: Near mode: distinct images whose matches were read from the index (verified when they
    #: were stored); the others' were verified now.
    stored_count: int
    #: Review decisions that changed this report: images kept as decided (in a group), and
    #: matches left out as decided apart.
    kept_by_decision: int
    apart_by_decision: int
    #: Every image, in path order.
    table: ImageTable = field(repr=False)
    _members: npt.NDArray[np.int64] = field(repr=False)
    _member_distance: npt.NDArray[np.uint8] = field(repr=False)
    _starts: npt.NDArray[np.int64] = field(repr=False)
    _matched: _Matched = field(repr=False)

    def regrouped(self, decided: InForce) -> Report:
        """The same images and matches grouped again with other decisions (no image or
        match is read again: what a review does after a decision)."""
        return _group(self.options, self._matched, decided)

    def layout(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """The runs as arrays: the rows of every image (each run's kept image first), their
        distances to it, and where each run starts (with the end last)."""
        return self._members, self._member_distance, self._starts

    @property
    def decisions_applied(self) -> int:
        return self.kept_by_decision + self.apart_by_decision

    def runs(self) -> Iterator[tuple[list[int], list[int]]]:
        """Each group as the rows of its members (kept image first) and their distances,
        in the order of the kept images' paths."""
        starts = self._starts.tolist()
        members = self._members.tolist()
        distances = self._member_distance.tolist()
        for a, b in itertools.pairwise(starts):
            if b - a > 1 or not self.options.duplicates_only:
                yield members[a:b], distances[a:b]

    def path(self, row: int) -> bytes:
        return self.table.path(row)

    def groups(self) -> Iterator[Group]:
        """The groups in the order of their kept image's path."""
        for rows, distances in self.runs():
            images = [self.image(r) for r in rows]
            yield Group(images[0], list(zip(images[1:], distances[1:], strict=True)))

    def image(self, row: int) -> Image:
        t = self.table
        return Image(
            id=int(t.id[row]),
            root_id=int(t.root_id[row]),
            path=self.path(row),
            sha256=t.sha256[row].tobytes(),
            phash=int(t.phash[row]) if t.has_hash[row] else None,
            width=int(t.width[row]) if t.width[row] >= 0 else None,
            height=int(t.height[row]) if t.height[row] >= 0 else None,
            size=int(t.size[row]),
            format=t.format[row],
            url=t.urls[row],
            archived=bool(t.archived[row]),
        )


@dataclass(frozen=True)
class _Matched:
    """What grouping starts from, decisions aside: the images, the keys that rank them by the
    rules (best first), the units of identical bytes, and the verified matches between units."""

    table: ImageTable
    rule_keys: list[npt.NDArray[Any]]  # for np.lexsort, most significant first
    rule_ranking: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None  # _rank(rule_keys), once made
    unit_sha256: npt.NDArray[np.uint8]  # (units, 32), ascending
    unit_of_row: npt.NDArray[np.int64]
    edges: Edges
    unconfirmed: int
    stored_count: int
    root_paths: dict[int, bytes]


def build_report(index: Index, options: ReportOptions, *, stored: bool = True) -> Report:
    """Group the indexed images and choose which to keep; see the README for the rules.

    Near matches come from the index where it holds them verified (``stored=False``:
    every candidate is verified again, as a check of the stored ones)."""
    matched = _match(index, options, stored)
    decided = in_force(index.decisions.in_force()) if options.decisions else InForce()
    return _group(options, matched, decided)


def units_of(sha256: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The distinct SHA-256 values of ``(n, 32)`` rows, ascending, and each row's index among
    them (:func:`~imgindex.arrays.digest_units`)."""
    heads, unit_of_row = digest_units(sha256)
    return sha256[heads], unit_of_row


def _rank(keys: list[npt.NDArray[Any]], n: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The rows best first, and each row's rank."""
    order = np.lexsort(keys[::-1]) if n else np.empty(0, np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return order, rank


def _best_rows(
    order: npt.NDArray[np.int64], rank: npt.NDArray[np.int64], unit_of_row: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Each unit's best rank and best row."""
    n = len(rank)
    unit_count = int(unit_of_row.max()) + 1 if n else 0
    best_rank = np.full(unit_count, n, dtype=np.int64)
    np.minimum.at(best_rank, unit_of_row, rank)
    return best_rank, (order[best_rank] if n else np.empty(0, np.int64))


def _match(index: Index, options: ReportOptions, stored: bool) -> _Matched:
    table = index.images.table(options.under, options.prefer)
    n = len(table)
    pixels = np.where(table.width >= 0, table.width * table.height, -1)
    columns: dict[str, npt.NDArray[Any]] = {
        "pixels": pixels,
        "size": table.size,
        "mtime_ns": table.mtime_ns,
        "path_length": table.path_length,
    }
    # The rules' ranking: --prefer first, then the --keep rules, then path order (the row order).
    keys: list[npt.NDArray[Any]] = [-table.preferred.astype(np.int64)]
    for rule in options.keep:
        column, descending = KEEP_RULES[rule]
        keys.append(-columns[column] if descending else columns[column])
    keys.append(np.arange(n))

    # Byte-identical files form one unit; a unit is matched by one of its images (all have
    # the same bytes, so the same hashes).
    unit_sha256, unit_of_row = units_of(table.sha256)
    threshold = options.effective_threshold
    edges, unconfirmed, stored_count = no_edges(), 0, 0
    ranking = None
    if threshold is not None:
        ranking = _rank(keys, n)
        _, best_row = _best_rows(*ranking, unit_of_row)
        units = Units(
            file_id=table.id[best_row],
            has_hash=table.has_hash[best_row],
            phash=table.phash[best_row],
            has_trim=table.has_trim[best_row],
            trim_hash=table.trim_hash[best_row],
            sha256=table.sha256[best_row],
            params_id=table.params_id[best_row],
        )
        matcher = Matcher(index, units, threshold, rotations=options.rotations, stored=stored)
        edges, unconfirmed, stored_count = matcher.edges, matcher.unconfirmed, matcher.stored_units
    return _Matched(
        table=table,
        rule_keys=keys,
        rule_ranking=ranking,
        unit_sha256=unit_sha256,
        unit_of_row=unit_of_row,
        edges=edges,
        unconfirmed=unconfirmed,
        stored_count=stored_count,
        root_paths={r.id: r.path for r in index.catalog.roots()},
    )


def _group(options: ReportOptions, matched: _Matched, decided: InForce) -> Report:
    """The groups of ``matched`` with the decisions ``decided``: a decision to keep an image
    ranks it before the rules; matches decided apart are left out."""
    table, unit_of_row = matched.table, matched.unit_of_row
    n = len(table)
    named = keep_rows(decided, table.sha256)
    if named.any() or matched.rule_ranking is None:
        order, rank = _rank([-keep_priority(decided, table.sha256, named, table.path), *matched.rule_keys], n)
    else:  # (no decision to keep: the rules' ranking alone)
        order, rank = matched.rule_ranking
    best_rank, best_row = _best_rows(order, rank, unit_of_row)
    unit_order = np.argsort(best_rank)  # (the units' best ranks are distinct: no ties to keep in order)
    edges, apart_count = without_apart(matched.edges, matched.unit_sha256, decided)
    fixed = None
    if named.any():  # a unit decided to keep is never taken from above (see group_by_leaders)
        fixed = np.zeros(len(unit_order), dtype=bool)
        fixed[unit_of_row[named]] = True
    grouping = group_by_leaders(unit_order, edges, fixed)

    # Lay the groups out as runs: each run starts with its kept image, then the
    # duplicates by distance and rank; runs ordered by the kept image's path.
    leader_unit = grouping.leader[unit_of_row]
    kept_row = best_row[leader_unit]
    distance = grouping.distance[unit_of_row]
    is_kept = kept_row == np.arange(n)
    members = lex_order([rank, distance, ~is_kept, kept_row], distinct_rows=True) if n else np.empty(0, np.int64)
    starts = np.flatnonzero(is_kept[members]).astype(np.int64)
    starts = np.append(starts, n)
    kept_count = int(is_kept.sum())
    group_sizes = np.diff(starts)
    # Keep decisions in effect: images a decision names, kept at the head of a group.
    kept_by_decision = 0
    if named.any():  # (a million rows' groups looked up cost a sixth of a second)
        position = np.empty(n, dtype=np.int64)
        position[members] = np.arange(n)
        in_group = group_sizes[np.searchsorted(starts, position, side="right") - 1] > 1
        kept_by_decision = int(np.count_nonzero(named & is_kept & in_group))

    root_paths = matched.root_paths
    used_roots = sorted({root_paths[int(r)] for r in distinct(table.root_id)}) if n else []
    return Report(
        options=options,
        hash_kind=HashSettings().algorithm,
        roots=used_roots if n else sorted(root_paths.values()),
        root_paths=root_paths,
        initial_image_count=n,
        final_image_count=kept_count,
        group_count=int((group_sizes > 1).sum()),
        duplicate_count=n - kept_count,
        unconfirmed_count=matched.unconfirmed,
        stored_count=matched.stored_count,
        kept_by_decision=kept_by_decision,
        apart_by_decision=apart_count,
        table=table,
        _members=members,
        _member_distance=distance[members] if n else np.empty(0, np.uint8),
        _starts=starts,
        _matched=matched,
    )


def parse_keep(text: str) -> tuple[str, ...]:
    """``--keep oldest,resolution``: the given rules first, then the default ones not named."""
    given = tuple(part.strip() for part in text.split(",") if part.strip())
    return given + tuple(r for r in DEFAULT_KEEP if r not in given)
