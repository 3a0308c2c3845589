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
from typing import Generic, Protocol, Self, TypeVar

import numpy as np
import numpy.typing as npt

from imgindex.arrays import distinct
from imgindex.hashing import COLOUR_SIDE, GRID_SIDE, REGIONS, orient
from imgindex.storage import Index

from .links import NOT_NEAR
from .regions import (
    Box,
    box_descriptors,
    box_grey,
    box_grids,
    moved_cuts,
    region_descriptors,
    region_grids,
    region_pairs,
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

#: Up to this many units, the coarse views of the regions' moved cuts are kept for every chunk
#: of pairs (68 bytes a unit and cut, twenty cuts: at most 89 MB); past it, once per chunk.
MOVED_UNITS = 1 << 16
#: Moved cuts a region may have, at most (keys of the kept coarse views: region * this + cut).
MOVED_KEYS = 8
#: Pairs whose grids are compared at once (8 KB of float32 a pair).
DETAIL_CHUNK = 1 << 12
#: Up to this many units whose regions met something, each region's thumbnails are cut once
#: for all the pairs (about 4 KB a unit for the five regions: at most 128 MB); past it, once
#: per chunk of pairs.
CUT_UNITS = 1 << 15


class RegionCheck:
    """Verifies region candidates over ``regions`` (:meth:`distances`), for the chunks of pairs
    of one matcher. What it cuts of the units' grids is kept between chunks: each region's
    thumbnails of all the ``owners`` (the units whose regions met something) when they are at
    most :data:`CUT_UNITS` (``None``: never all at once, as when the grids are read a part at
    a time), else those of a chunk's units kept while they are few enough; and the coarse views
    of the moved cuts, by the key ``region * MOVED_KEYS + cut``."""

    def __init__(self, regions: Regions, owners: I64 | None) -> None:
        self.regions = regions
        self._cuts: dict[int, tuple[I64, Thumbnails]] = {}
        self._chunk_cuts = _KeptCuts(CUT_UNITS, lambda units, k: thumbnails(regions.descriptors(units, k)))
        self._moved_views = _KeptCuts(MOVED_UNITS, self._moved_coarse)
        self._cut_owners = owners if owners is not None and len(owners) <= CUT_UNITS else None

    def distances(
        self,
        u: I64,
        v: I64,
        targets: npt.NDArray[np.uint64],
        thumbnail: Callable[[I64, int], Thumbnails],
        threshold: int,
        correlation: float,
        turns: int,
    ) -> npt.NDArray[np.uint8]:
        """For each pair of units, the smallest distance of a region of one to a hash of the other
        (``targets``: a column per sort, as :meth:`Regions.pairs` searched them) within
        ``threshold`` whose thumbnails (the region's, cut from the grid) agree at ``correlation``
        with the other's thumbnail of that sort (``thumbnail(units, column)``), and whose grid
        does not differ in one place from the other's (in that sort's orientation: turn
        ``column % turns + 1``, or upright when ``turns`` is 0); :data:`NOT_NEAR` where none does."""
        regions = self.regions
        best = np.full(len(u), NOT_NEAR, dtype=np.uint8)
        # Every way round: which region, whose region (the lower's, the higher's), met what.
        for k in range(len(REGIONS)):
            ways = []
            for owner, other in ((u, v), (v, u)):
                has = regions.has_grid(owner)
                for column in range(targets.shape[1]):
                    gap = np.bitwise_count(regions.hashes[owner, k] ^ targets[other, column]).astype(np.uint8)
                    ways.append((owner, other, column, has & (gap <= threshold), gap))
            wanted = np.concatenate([owner[within] for owner, _, _, within, _ in ways])
            if not len(wanted):
                continue
            cuts = self._cut_regions(k, wanted)
            retries: list[tuple[I64, I64, Thumbnails, int, I64, npt.NDArray[np.uint8]]] = []
            for owner, other, column, within, gap in ways:
                near = np.flatnonzero(within & (gap < best))
                if not len(near):
                    continue
                cut = cuts[1].rows(np.searchsorted(cuts[0], owner[near]))
                target = thumbnail(other[near], column)
                flat = np.zeros(len(near), dtype=bool)
                accepted, _ = confirm(
                    Pictures(cut, cut, flat), Pictures(target, target, flat), ~flat, flat, correlation
                )
                turn = column % turns + 1 if turns else 0
                held = np.flatnonzero(accepted & (cut.colourful == target.colourful))  # see _grids_show
                accepted[held] = ~regions.region_differs_in_one_place(owner[near[held]], other[near[held]], k, turn)
                best[near[accepted]] = gap[near[accepted]]
                refused = np.flatnonzero(~accepted)
                if len(refused):
                    pairs = near[refused]
                    retries.append((owner[pairs], other[pairs], target.rows(refused), turn, pairs, gap[pairs]))
            # Those its own cut did not confirm, at the region's moved cuts (each cut made once
            # for the owners of every way round).
            confirmed = self._moved_cuts_confirm(k, [retry[:4] for retry in retries], correlation)
            for (*_, pairs, gaps), ok in zip(retries, confirmed, strict=True):
                np.minimum.at(best, pairs[ok], gaps[ok])
        return best

    def _cut_regions(self, k: int, wanted: I64) -> tuple[I64, Thumbnails]:
        """The thumbnails of region ``k`` of the units that may need them (sorted), cut once per
        unit, not once per pair (a picture among many like it is in thousands of pairs): of all
        the units whose regions met something, kept for every chunk, when they are few enough;
        else at least of the units ``wanted`` by a chunk of pairs (those whose region ``k`` is
        near the other's hash), kept for the next chunks while they are few enough
        (:class:`_KeptCuts`)."""
        if k in self._cuts:
            return self._cuts[k]
        if self._cut_owners is None:
            return self._chunk_cuts.get(k, wanted)
        owners = self._cut_owners
        self._cuts[k] = (owners, thumbnails(self.regions.descriptors(owners, k)))
        return self._cuts[k]

    def _moved_coarse(self, units: I64, key: int) -> _CoarseViews:
        """The coarse views of a moved cut of sorted units (``key``: its region times
        :data:`MOVED_KEYS`, plus its place in :func:`.regions.moved_cuts`)."""
        k, b = divmod(key, MOVED_KEYS)
        _, coarse, length2, _ = grey_views(self.regions.box_grey(units, moved_cuts(k)[b]))
        return _CoarseViews(coarse, length2)

    def _moved_candidates(
        self,
        box: Box,
        units: I64,
        views: _CoarseViews,
        owner: I64,
        target: Thumbnails,
        left: I64,
        correlation: float,
    ) -> I64:
        """Of the pairs ``left`` (their owners, and the others' ``target`` thumbnails), those whose
        cut ``box`` of the owner (``views``: the coarse views of that cut of ``units``) could
        correlate with the other's at ``correlation``: by the coarse bound, then by the
        correlation itself, as the check computes it (of the grey thumbnails in half precision)."""
        could = left[could_agree(views.rows(np.searchsorted(units, owner[left])), target.rows(left), correlation)]
        if not len(could):
            return could
        few = distinct(owner[could])
        unit, *_ = grey_views(self.regions.box_grey(few, box))
        mine = unit.astype(np.float16)[np.searchsorted(few, owner[could])].astype(np.float32)
        grey = target.rows(could).grey.astype(np.float32)
        result: I64 = could[np.einsum("ij,ij->i", mine, grey) >= correlation]
        return result

    def _moved_cuts_confirm(
        self, k: int, tries: list[tuple[I64, I64, Thumbnails, int]], correlation: float
    ) -> list[npt.NDArray[np.bool_]]:
        """For pairs whose region ``k`` did not confirm a match at its own cut (``tries``: the
        region's owners, the others, the others' thumbnails it met and their orientation), does
        it at one of its moved cuts (:func:`.regions.moved_cuts`), by the same rules (the
        correlation, colour, and no difference in one place from the other's grid in that
        orientation)? Most pairs are ruled out by the coarse bound (:func:`.verify.could_agree`)
        on the coarse view of each cut, made once per owner and kept for the next chunks, more
        by the correlation (as the check computes it) on the grey of the cut alone; only what
        is left is cut whole and judged."""
        regions = self.regions
        accepted = [np.zeros(len(owner), dtype=bool) for owner, *_ in tries]
        if not tries:
            return accepted
        wanted = np.concatenate([owner for owner, *_ in tries])
        for b, box in enumerate(moved_cuts(k)):
            if all(done.all() for done in accepted):
                break
            units, views = self._moved_views.get(k * MOVED_KEYS + b, wanted)
            for (owner, other, target, turn), done in zip(tries, accepted, strict=True):
                left = np.flatnonzero(~done)
                if not len(left):
                    continue
                pairs = self._moved_candidates(box, units, views, owner, target, left, correlation)
                if not len(pairs):
                    continue
                few = distinct(owner[pairs])
                cut = thumbnails(regions.box_descriptors(few, box)).rows(np.searchsorted(few, owner[pairs]))
                theirs = target.rows(pairs)
                flat = np.zeros(len(pairs), dtype=bool)
                ok, _ = confirm(Pictures(cut, cut, flat), Pictures(theirs, theirs, flat), ~flat, flat, correlation)
                held = np.flatnonzero(ok & (cut.colourful == theirs.colourful))  # see _grids_show
                ok[held] = ~regions.compared(
                    regions.has_grid(other[pairs[held]]),
                    partial(_cut_grids, regions, owner[pairs[held]], box),
                    other[pairs[held]],
                    turn,
                )
                done[pairs[ok]] = True
        return accepted


class _Rows(Protocol):
    """Rows of per-unit arrays: a subset of them, and them followed by others."""

    def rows(self, at: I64) -> Self: ...
    def __add__(self, other: Self) -> Self: ...


_Cut = TypeVar("_Cut", bound=_Rows)


@dataclass(frozen=True)
class _CoarseViews:
    """The coarse views and squared lengths of some units' grey thumbnails (of a moved cut of a
    region): what :func:`.verify.could_agree` reads of a side."""

    coarse: npt.NDArray[np.float32]
    length2: npt.NDArray[np.float32]

    def rows(self, at: I64) -> _CoarseViews:
        return _CoarseViews(self.coarse[at], self.length2[at])

    def __add__(self, other: _CoarseViews) -> _CoarseViews:
        return _CoarseViews(np.concatenate([self.coarse, other.coarse]), np.concatenate([self.length2, other.length2]))


class _KeptCuts(Generic[_Cut]):
    """What is cut of the units' grids for chunks of pairs, per cut (a region, or one of its moved
    cuts): a chunk's units are cut when it needs them, and kept for the next chunks (whose pairs
    share many units) while they are at most ``limit`` units; past that, a chunk keeps its own
    units only (those kept already are not cut again). ``cut(units, k)``: what cut ``k`` gives of
    sorted units (for a region, its thumbnails)."""

    def __init__(self, limit: int, cut: Callable[[I64, int], _Cut]) -> None:
        self.limit, self.cut = limit, cut
        self.kept: dict[int, tuple[I64, _Cut]] = {}

    def get(self, k: int, wanted: I64) -> tuple[I64, _Cut]:
        """Sorted units, among them every one of ``wanted``, and what cut ``k`` gives of them."""
        need = distinct(wanted)
        kept = self.kept.get(k)
        fresh = None
        if kept is not None and len(kept[0]):
            owners, cuts = kept
            at = np.minimum(np.searchsorted(owners, need), len(owners) - 1)
            present = owners[at] == need
            missing = need[~present]
            if not len(missing):
                return kept
            if len(owners) + len(missing) <= self.limit:
                owners = np.concatenate([owners, missing])
                order = np.argsort(owners, kind="stable")
                self.kept[k] = (owners[order], (cuts + self.cut(missing, k)).rows(order))
                return self.kept[k]
            # Past the bound: this chunk's units only, the kept ones among them not cut again.
            order = np.argsort(np.concatenate([need[present], missing]), kind="stable")
            fresh = (need, (cuts.rows(at[present]) + self.cut(missing, k)).rows(order))
        if fresh is None:
            fresh = (need, self.cut(need, k))
        if len(need) <= self.limit:
            self.kept[k] = fresh
        else:
            self.kept.pop(k, None)
        return fresh


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

    def region_grids(self, units: I64, k: int) -> npt.NDArray[np.float32]:
        """Region ``k`` of these units' grids (which have grids), normalised."""
        return normalised_grids(region_grids(self._grids[self.slot[units]], k))

    def box_grids(self, units: I64, box: Box) -> npt.NDArray[np.float32]:
        """One box of these units' grids (which have grids), normalised."""
        return normalised_grids(box_grids(self._grids[self.slot[units]], box))

    def box_grey(self, units: I64, box: Box) -> npt.NDArray[np.float32]:
        """The 16x16 grey of one box of these units (which have grids), as its descriptors have it."""
        return box_grey(self._grids[self.slot[units]], box)

    def box_descriptors(self, units: I64, box: Box) -> npt.NDArray[np.uint8]:
        """The descriptors of one box of these units (which have grids), cut as a region's."""
        at = self.slot[units]
        return box_descriptors(self._grids[at], self._colours[at], box)

    def descriptors(self, units: I64, k: int) -> npt.NDArray[np.uint8]:
        """The descriptors of region ``k`` of these units (which have grids)."""
        at = self.slot[units]
        return region_descriptors(self._grids[at], self._colours[at], np.full(len(at), k, dtype=np.int64))

    def differ_in_one_place(self, u: I64, v: I64, turn: int = 0) -> npt.NDArray[np.bool_]:
        """For each pair of units, do their grids (``v``'s in orientation ``turn``) differ in one
        place (:func:`.verify.differ_in_one_place`)? False where either has no grid."""
        judged = self.has_grid(u) & self.has_grid(v)
        if not turn:  # the same grid (thousands of copies of one picture): no difference anywhere
            judged &= ~self.same_grid(u, v)
        return self.compared(judged, lambda at: self.grids(u[at]), v, turn)

    def region_differs_in_one_place(self, owner: I64, other: I64, k: int, turn: int) -> npt.NDArray[np.bool_]:
        """For each pair, does region ``k`` of the owner's grid differ in one place from the
        other's grid (in orientation ``turn``)? False where the other has no grid (the owner,
        whose region this is, has one)."""
        return self.compared(self.has_grid(other), lambda at: self.region_grids(owner[at], k), other, turn)

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
