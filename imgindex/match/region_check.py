"""Region checks: which region candidates the pictures' grids confirm.

A region candidate (:mod:`.regions`: a region's hash of one picture near the
other's whole or inside hash) holds when the region's thumbnails, cut from
the picture's stored grid, confirm it against the other's thumbnail by the
verification's rules (:func:`.verify.confirm`, at the region's correlation),
and the region's grid does not differ in one place from the other's
(:func:`.verify.differ_in_one_place`). Where the region's own cut does not
confirm it, the cut is moved across the range the region is for
(:func:`.regions.moved_cuts`).

:class:`Regions` holds the units' regions' hashes and their grids (read for
the units that need them: also what whole-picture matches are judged by, for
differences in one place); :class:`RegionCheck` verifies region candidates
over them. Pure numpy over what :mod:`.units` reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from imgindex.arrays import distinct
from imgindex.hashing import COLOUR_SIDE, GRID_SIDE, REGIONS, orient
from imgindex.storage import Index

from .links import NOT_NEAR
from .regions import (
    Box,
    box_descriptors,
    box_grids,
    box_rows,
    moved_cuts,
    region_pairs,
    rows_grey,
)
from .search import I64
from .units import Units, read_grids, unit_regions
from .verify import (
    Pictures,
    Thumbnails,
    confirm,
    could_agree,
    differ_in_one_place,
    grey_views,
    normalised_grids,
    thumbnails,
)

#: A region's pairs are checked a block of owners at a time, each owner's cuts made once for
#: the block: at most this many owners (4 KB an owner for its grid in single precision, 2 KB for
#: its rows resampled, 580 bytes for a cut's views, :class:`_CutViews`) ...
REGION_BLOCK = 1 << 13
#: ... and this many pairs (the others' thumbnails gathered for them).
BLOCK_PAIRS = 1 << 15
#: Pairs whose grids are compared at once (8 KB of float32 a pair).
DETAIL_CHUNK = 1 << 12


class RegionCheck:
    """Verifies region candidates over ``regions`` (:meth:`distances`). A region's pairs are
    taken in the order of their owners (whose region it is), a block of at most
    :data:`REGION_BLOCK` owners and :data:`BLOCK_PAIRS` pairs at a time, so that each owner's
    region is cut once for all its pairs in a call, at its own cut and at each moved cut (a
    picture among many like it is in thousands of pairs), and what is cut first is only what
    the coarse bound and the correlation read: most pairs end there."""

    def __init__(self, regions: Regions) -> None:
        self.regions = regions

    def distances(
        self,
        u: I64,
        v: I64,
        targets: npt.NDArray[np.uint64],
        thumbnail: Callable[[I64, int], Thumbnails],
        framed: npt.NDArray[np.bool_],
        threshold: int,
        correlation: float,
        turns: int,
    ) -> npt.NDArray[np.uint8]:
        """For each pair of units, the smallest distance of a region of one to a hash of the other
        (``targets``: a column per sort, as :meth:`Regions.pairs` searched them) within
        ``threshold`` whose thumbnails (the region's, cut from the grid) agree at ``correlation``
        with the other's thumbnail of that sort (``thumbnail(units, column)``), and whose grid
        does not differ in one place from the other's (in that sort's orientation: turn
        ``column % turns + 1``, or upright when ``turns`` is 0); :data:`NOT_NEAR` where none does.

        The second half of the columns are the first half's sorts of the insides: for a unit
        not ``framed`` (no border, by its thumbnails) with the same hash there, the same
        thumbnail too, so it is met once, by the first."""
        regions = self.regions
        best = np.full(len(u), NOT_NEAR, dtype=np.uint8)
        # Every way round: whose region (the lower's, the higher's) met which sort of the other.
        owner, other = np.concatenate([u, v]), np.concatenate([v, u])
        pair = np.concatenate([np.arange(len(u)), np.arange(len(u))])
        has = regions.has_grid(owner)
        half = targets.shape[1] // 2
        repeated = [np.zeros(len(owner), dtype=bool)] * half
        plain = ~framed[other]
        repeated += [plain & (targets[other, c] == targets[other, c - half]) for c in range(half, targets.shape[1])]
        for k in range(len(REGIONS)):
            ways, columns, gaps = [], [], []
            mine = regions.hashes[owner, k]
            for column in range(targets.shape[1]):
                gap = np.bitwise_count(mine ^ targets[other, column]).astype(np.uint8)
                at = np.flatnonzero(has & (gap <= threshold) & ~repeated[column])
                ways.append(at)
                columns.append(np.full(len(at), column, dtype=np.int64))
                gaps.append(gap[at])
            way = np.concatenate(ways)
            order = np.argsort(owner[way], kind="stable")
            way, column_of, gap_of = way[order], np.concatenate(columns)[order], np.concatenate(gaps)[order]
            for block in _blocks(owner[way]):
                at = way[block]
                rows = (owner[at], other[at], pair[at], column_of[block], gap_of[block])
                self._block(k, *rows, best, thumbnail, correlation, turns)
        return best

    def _block(
        self,
        k: int,
        owner: I64,
        other: I64,
        pair: I64,
        column: I64,
        gap: npt.NDArray[np.uint8],
        best: npt.NDArray[np.uint8],
        thumbnail: Callable[[I64, int], Thumbnails],
        correlation: float,
        turns: int,
    ) -> None:
        """Region ``k`` of a block of owners against what each met of the other (``column``, at
        ``gap`` bits; ``pair``: where in ``best``, lowered where a row is confirmed): at the
        region's own cut, then, for what that refused, at its moved cuts
        (:func:`.regions.moved_cuts`), by the same rules (the correlation, colour, and no
        difference in one place from the other's grid in that sort's orientation). Each cut is
        judged first on what it takes of the owners' grey alone (:class:`_CutViews`: most rows
        are ruled out by the coarse bound, more by the correlation as the check computes it);
        only what is left is cut whole and judged."""
        regions = self.regions
        live = np.flatnonzero(gap < best[pair])
        sorts = [(live[column[live] == c], c) for c in distinct(column[live]).tolist()]
        # Per sort of the other: the rows, the others' thumbnails, the orientation, what is confirmed.
        tries = [(rows, thumbnail(other[rows], c), c % turns + 1 if turns else 0) for rows, c in sorts]
        accepted = [np.zeros(len(rows), dtype=bool) for rows, _ in sorts]
        # The owners' grids, and their rows resampled for the last box (a side region's cuts
        # moved left or right share them), made once for every cut.
        few = distinct(owner[live])
        grids = regions.float_grids(few)
        resampled: tuple[tuple[float, float], npt.NDArray[np.float32]] | None = None
        slots = [np.searchsorted(few, owner[rows]) for rows, _, _ in tries]
        for box in (REGIONS[k][1], *moved_cuts(k)):
            left_of = [np.flatnonzero(~done) for done in accepted]
            if not any(len(left) for left in left_of):
                break
            if resampled is None or resampled[0] != (box[1], box[3]):
                resampled = ((box[1], box[3]), box_rows(grids, box))
            views = _CutViews.of(rows_grey(resampled[1], box))
            for (rows, target, turn), slot, left, done in zip(tries, slots, left_of, accepted, strict=True):
                if not len(left):
                    continue
                could = self._candidates(views, slot, target, left, correlation)
                if not len(could):
                    continue
                at = rows[could]
                some = distinct(owner[at])
                cut = thumbnails(regions.box_descriptors(some, box)).rows(np.searchsorted(some, owner[at]))
                theirs = target.rows(could)
                flat = np.zeros(len(could), dtype=bool)
                ok, _ = confirm(Pictures(cut, cut, flat), Pictures(theirs, theirs, flat), ~flat, flat, correlation)
                held = np.flatnonzero(ok & (cut.colourful == theirs.colourful))  # see _grids_show
                ok[held] = ~regions.compared(
                    regions.has_grid(other[at[held]]),
                    partial(_cut_grids, regions, owner[at[held]], box),
                    other[at[held]],
                    turn,
                )
                done[could[ok]] = True
        for (rows, _, _), done in zip(tries, accepted, strict=True):
            np.minimum.at(best, pair[rows[done]], gap[rows[done]])

    def _candidates(self, views: _CutViews, slot: I64, target: Thumbnails, left: I64, correlation: float) -> I64:
        """Of the rows ``left`` (their owners' rows in ``views``, the views of a cut, at ``slot``;
        the others' ``target`` thumbnails), those whose cut could correlate with the other's at
        ``correlation``: by the coarse bound, then by the correlation itself, as the check
        computes it (of the grey thumbnails in half precision)."""
        could = left[could_agree(views.bounds(slot[left]), target.rows(left), correlation)]
        if not len(could):
            return could
        mine = views.grey[slot[could]].astype(np.float16).astype(np.float32)
        grey = target.rows(could).grey.astype(np.float32)
        result: I64 = could[np.einsum("ij,ij->i", mine, grey) >= correlation]
        return result


def _blocks(owner: I64) -> list[slice]:
    """Runs of the sorted ``owner`` (rows of pairs), each of at most :data:`REGION_BLOCK`
    owners and :data:`BLOCK_PAIRS` rows (an owner with more rows spans several)."""
    if not len(owner):
        return []
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    blocks, begin = [], 0
    while begin < len(owner):
        end = min(begin + BLOCK_PAIRS, len(owner))
        first = np.searchsorted(starts, begin, side="right")  # the next owner's first row, past begin
        if first + REGION_BLOCK - 1 < len(starts):
            end = min(end, int(starts[first + REGION_BLOCK - 1]))
        blocks.append(slice(begin, end))
        begin = end
    return blocks


@dataclass(frozen=True)
class _CutViews:
    """What a cut's checks read of some owners' cut before they cut it whole: its grey
    thumbnails centred and of unit length (single precision: the check's are these rounded to
    half), their coarse views and squared lengths (:func:`.verify.could_agree`)."""

    grey: npt.NDArray[np.float32]
    coarse: npt.NDArray[np.float32]
    length2: npt.NDArray[np.float32]

    @classmethod
    def of(cls, grey: npt.NDArray[np.float32]) -> _CutViews:
        unit, coarse, length2, _ = grey_views(grey)
        return cls(unit, coarse, length2)

    def bounds(self, at: I64) -> _Bounds:
        """What the coarse bound reads of these rows (not their grey)."""
        return _Bounds(self.coarse[at], self.length2[at])


class _Bounds(NamedTuple):
    """Rows of a cut's coarse views and squared lengths: a side of the coarse bound."""

    coarse: npt.NDArray[np.float32]
    length2: npt.NDArray[np.float32]


class Regions:
    """The hashes of the units' regions (``hashes``, rows of ``len(REGIONS)``, where ``has``),
    and the grids their thumbnails are cut from, read for the units that need them."""

    def __init__(self, hashes: npt.NDArray[np.uint64], has: npt.NDArray[np.bool_]) -> None:
        self.hashes, self.has = hashes, has
        n = len(has)
        self.slot = np.full(n, -1, dtype=np.int64)
        self._grids = np.empty((0, GRID_SIDE, GRID_SIDE), np.uint8)
        self._grid_keys = np.empty(0, np.int64)
        self._colours = np.empty((0, COLOUR_SIDE, COLOUR_SIDE, 3), np.uint8)

    @classmethod
    def read(cls, index: Index, units: Units, kind: str) -> Regions:
        """The regions' hashes of the units with a hash (:func:`unit_regions`; given, or read)."""
        if units.regions is not None:
            hashes, has = units.regions
            return cls(hashes, has & units.has_hash)
        return cls(*unit_regions(index, units, kind))

    def pairs(
        self,
        targets: npt.NDArray[np.uint64],
        has_target: npt.NDArray[np.bool_],
        focus: npt.NDArray[np.bool_] | None,
        threshold: int,
        owners: npt.NDArray[np.bool_] | None = None,
    ) -> tuple[I64, I64, npt.NDArray[np.uint8]]:
        """The candidate pairs of units (``u < v``) by a region of one (of the ``owners``, when
        given) near one of the other's ``targets`` (rows of hashes: its whole and inside, or its
        orientations), with a focus unit on a side when given."""
        has = self.has if owners is None else self.has & owners
        return region_pairs(self.hashes, has, targets, has_target, threshold, focus)

    def read_grids(self, index: Index, units: Units, wanted: I64) -> None:
        """Read the grids (and the insides' colour thumbnails) of the ``wanted`` units that have
        regions (those of an earlier read are let go)."""
        self.slot[:] = -1
        self._grids, self._colours = self._grids[:0].copy(), self._colours[:0].copy()  # (the old let go first)
        have, self._grids, self._colours = read_grids(index, units, wanted[self.has[wanted]])
        self.slot[have] = np.arange(len(have))
        self._grid_keys = _grid_keys(self._grids)

    def same_grid(self, u: I64, v: I64) -> npt.NDArray[np.bool_]:
        """For pairs of units that have grids: are their grids the same (by a 64-bit key of
        each, :func:`_grid_keys`: two different grids share one with a chance of about 2**-64)?"""
        result: npt.NDArray[np.bool_] = self._grid_keys[self.slot[u]] == self._grid_keys[self.slot[v]]
        return result

    def has_grid(self, units: I64) -> npt.NDArray[np.bool_]:
        """Which of these units have a grid (read by :meth:`read_grids`, which reads only the
        grids of units with regions)."""
        result: npt.NDArray[np.bool_] = self.slot[units] >= 0
        return result

    def grids(self, units: I64) -> npt.NDArray[np.float32]:
        """The grids of these units (which have grids), normalised (:func:`.verify.normalised_grids`)."""
        return normalised_grids(self._grids[self.slot[units]])

    def box_grids(self, units: I64, box: Box) -> npt.NDArray[np.float32]:
        """One box of these units' grids (which have grids), normalised."""
        return normalised_grids(box_grids(self._grids[self.slot[units]], box))

    def float_grids(self, units: I64) -> npt.NDArray[np.float32]:
        """The grids of these units (which have grids), in single precision (as cuts read them)."""
        return self._grids[self.slot[units]].astype(np.float32)

    def box_descriptors(self, units: I64, box: Box) -> npt.NDArray[np.uint8]:
        """The descriptors of one box of these units (which have grids), cut as a region's."""
        at = self.slot[units]
        return box_descriptors(self._grids[at], self._colours[at], box)

    def differ_in_one_place(self, u: I64, v: I64, turn: int = 0) -> npt.NDArray[np.bool_]:
        """For each pair of units, do their grids (``v``'s in orientation ``turn``) differ in one
        place (:func:`.verify.differ_in_one_place`)? False where either has no grid."""
        judged = self.has_grid(u) & self.has_grid(v)
        if not turn:  # the same grid (thousands of copies of one picture): no difference anywhere
            judged &= ~self.same_grid(u, v)
        return self.compared(judged, lambda at: self.grids(u[at]), v, turn)

    def compared(
        self,
        judged: npt.NDArray[np.bool_],
        first: Callable[[I64], npt.NDArray[np.float32]],
        other: I64,
        turn: int,
    ) -> npt.NDArray[np.bool_]:
        """For each pair where ``judged``: does ``first(rows)`` (normalised grids of those rows) differ
        in one place from the grid of ``other`` in orientation ``turn``? False elsewhere. A chunk of
        pairs at a time (bounded float32 temporaries)."""
        result = np.zeros(len(judged), dtype=bool)
        both = np.flatnonzero(judged)
        for start in range(0, len(both), DETAIL_CHUNK):
            at = both[start : start + DETAIL_CHUNK]
            theirs = self.grids(other[at])
            result[at] = differ_in_one_place(first(at), orient(theirs, turn) if turn else theirs)
        return result


def _cut_grids(regions: Regions, units: I64, box: Box, at: I64) -> npt.NDArray[np.float32]:
    """``box`` of the grids of ``units[at]``, normalised (for :meth:`Regions.compared`)."""
    return regions.box_grids(units[at], box)


def _grid_keys(grids: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """A 64-bit key of each grid: Python's hash of its bytes (SipHash, this process's)."""
    return np.fromiter((hash(grid.tobytes()) for grid in grids), dtype=np.int64, count=len(grids))
