"""Which candidates the thumbnails confirm: every link's pairs of units judged at once.

The matcher (:mod:`.matcher`) finds *candidates*: pairs of units whose hashes
meet by one of its links (whole pictures, insides, one's inside against the
other's whole, regions, orientations; :class:`LinkSlots` says where each sits
in its list). :class:`CandidateCheck` judges them on the units' thumbnails
and grids, vectorised over all the pairs of a link (the rules themselves are
:mod:`.verify`'s, and a region's :mod:`.region_check`'s); it reads nothing
from the index but the thumbnails and grids of the parts it verifies by, past
:data:`.matcher.THUMBNAIL_UNITS` units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from imgindex.arrays import union
from imgindex.hashing import ORIENTATIONS
from imgindex.storage import Index

from .links import NOT_NEAR, Candidates, CrossLink, FoundLink, Link
from .orientations import ROTATION_CORRELATION, ROTATION_THRESHOLD
from .region_check import RegionCheck, Regions
from .regions import REGION_CORRELATION, REGION_THRESHOLD
from .search import I64
from .units import Units, UnitThumbnails
from .verify import Pictures, Thumbnails, confirm, other_shapes

#: Candidate pairs verified at once (bounds the memory of the thumbnails' arrays).
VERIFY_CHUNK = 1 << 15
#: Region candidates checked at once before the passes (bounds the arrays of their rows).
REGION_PAIRS = 1 << 22


@dataclass
class LinkSlots:
    """Where each sort of link sits in the matcher's list of links (the whole pictures' is
    the first); -1 where there is none."""

    inside: int = -1
    #: One's inside against the other's whole picture (the lower unit's inside, the higher's).
    cross: tuple[int, int] = (-1, -1)
    region: int = -1
    #: With ``rotations``: orientations of the whole pictures, of the insides, one's inside
    #: turned against the other's whole (both ways), and a region against an orientation.
    rotation: int = -1
    inside_rotation: int = -1
    cross_rotation: tuple[int, int] = (-1, -1)
    region_rotation: int = -1

    @property
    def turned(self) -> tuple[int, ...]:
        """The orientation links of whole pictures and insides, in :meth:`CandidateCheck.verify`'s order."""
        return (self.rotation, self.inside_rotation, *self.cross_rotation)


class RegionLink(NamedTuple):
    """A region link (``link``: its place; -1 without one) and what its pairs are checked by
    (:meth:`.RegionCheck.distances`)."""

    link: int
    targets: npt.NDArray[np.uint64]
    thumbnail: Callable[[I64, int], Thumbnails]
    framed: npt.NDArray[np.bool_]
    threshold: int
    correlation: float
    turns: int


class CandidateCheck:
    """Judges the candidates of the links ``slots`` describes, on ``thumbs`` and the grids of
    ``regions``. ``region_targets``: what a region of one meets of the other (its whole and
    inside hashes, as columns); ``turned_of``: with rotations, the hashes of the other's
    orientations it meets. With ``parts`` (lists of units), the thumbnails and grids are
    read two parts at a time as the candidates are verified (``thumbs`` holds none then)."""

    def __init__(
        self,
        index: Index,
        units: Units,
        thumbs: UnitThumbnails,
        regions: Regions,
        slots: LinkSlots,
        threshold: int,
        region_targets: npt.NDArray[np.uint64],
        turned_of: npt.NDArray[np.uint64],
        parts: list[I64],
    ) -> None:
        self._index, self._units = index, units
        self.thumbs, self.regions, self.slots, self.threshold = thumbs, regions, slots, threshold
        self._region_targets, self._turned_of = region_targets, turned_of
        self._parts = parts
        self._region_check = RegionCheck(regions)
        self._regions_checked = False

    def check_regions_first(self, links: list[Link | CrossLink | FoundLink]) -> None:
        """When every unit's thumbnails and grids are held, check the region links' pairs now,
        all at once (each owner's cuts made once, not once a pass), leaving in ``links`` those
        that hold at the distance of the nearest region that confirms them; else a pass's are
        checked as its parts are read."""
        if self._parts:
            return
        self._regions_checked = True
        for region in self.region_links():
            if region.link >= 0:
                by_regions = links[region.link]
                assert isinstance(by_regions, FoundLink)
                links[region.link] = self._checked(by_regions, region)

    def verify(self, found: Candidates) -> npt.NDArray[np.bool_]:
        """Which candidates' hash matches (per link) the thumbnails confirm: ``(links, pairs)``.
        The distances of region links are set to those of the region that confirms them."""
        return self._verify_by_parts(found) if self._parts else self._verify(found)

    def _verify_by_parts(self, found: Candidates) -> npt.NDArray[np.bool_]:
        """:meth:`_verify` with the thumbnails and grids of two parts of the units at a time
        (``self._parts``): the candidates between parts ``a`` and ``b`` (``a <= b``) with
        the units of those two parts that they touch read. Each part is read about as many
        times as there are parts, each in the order of its files (the rows of one part lie near
        each other in the index), for memory bounded by :data:`.matcher.THUMBNAIL_UNITS`. Verdicts and
        distances are those of :meth:`_verify` over all at once: a candidate is judged on its
        two units alone."""
        n, count = len(self._units), len(self._parts)
        part_of = np.zeros(n, dtype=np.int64)
        in_a_part = np.zeros(n, dtype=bool)
        for k, part in enumerate(self._parts):
            part_of[part] = k
            in_a_part[part] = True
        pu, pv = part_of[found.u], part_of[found.v]
        low, high = np.minimum(pu, pv), np.maximum(pu, pv)
        verified = np.zeros(found.gaps.shape, dtype=bool)
        for a in range(count):
            for b in range(a, count):
                at = np.flatnonzero((low == a) & (high == b))
                if not len(at):
                    continue
                # Only the units of parts a and b these candidates touch: a share's candidates
                # between two parts may touch a third of their units, or less.
                held = union(found.u[at], found.v[at])
                held = held[in_a_part[held]]
                del self.thumbs  # (before the next are read: two parts' at once, not four)
                self.thumbs = UnitThumbnails(self._index, self._units, held, keep=False)
                self.regions.read_grids(self._index, self._units, held)
                some = Candidates(found.u[at], found.v[at], found.gaps[:, at])
                verified[:, at] = self._verify(some)
                found.gaps[:, at] = some.gaps  # (the region links' distances, set by their verification)
        self.thumbs = UnitThumbnails(self._index, self._units, np.empty(0, np.int64), keep=False)
        self.regions.read_grids(self._index, self._units, np.empty(0, np.int64))
        return verified

    def _verify(self, found: Candidates) -> npt.NDArray[np.bool_]:
        """:meth:`verify` with every unit's thumbnails and grids held."""
        slot, thumbs, gaps, slots = self.thumbs.slot, self.thumbs, found.gaps, self.slots
        verified = np.zeros(gaps.shape, dtype=bool)
        blind_u, blind_v = slot[found.u] < 0, slot[found.v] < 0
        # Hashed before descriptors existed (an index not rescanned since): the hashes decide,
        # between two such pictures only (newer pictures' hashes may be of another kind).
        blind = np.flatnonzero(blind_u & blind_v)
        verified[:, blind] = gaps[:, blind] != NOT_NEAR
        for link in slots.turned:
            if link >= 0:
                verified[link, blind] = False
        seen = np.flatnonzero(~blind_u & ~blind_v)
        # Regions against the other's whole and inside, then (--rotations) against its
        # orientations (column c: turn c % 7 + 1), all at once (RegionCheck takes them by blocks
        # of the regions' owners). The distance of a region match is that of the nearest region
        # that confirms it (not of the nearest region), so that a lower threshold keeps what it
        # would find.
        for region in self.region_links():
            link = region.link
            todo = seen[gaps[link, seen] != NOT_NEAR] if link >= 0 else np.empty(0, np.int64)
            if not len(todo):
                continue
            if self._regions_checked:  # (checked before the passes: their distances are the confirmed ones)
                verified[link, todo] = True
                continue
            best = self._region_distances(region, found.u[todo], found.v[todo])
            gaps[link, todo] = best
            verified[link, todo[best != NOT_NEAR]] = True
        inside_link = slots.inside
        for start in range(0, len(seen), VERIFY_CHUNK):
            at = seen[start : start + VERIFY_CHUNK]
            mine, theirs = thumbs.pictures(found.u[at]), thumbs.pictures(found.v[at])
            near_inside = gaps[inside_link, at] != NOT_NEAR if inside_link >= 0 else np.zeros(len(at), bool)
            verified[0, at], inside_ok = confirm(mine, theirs, gaps[0, at] != NOT_NEAR, near_inside)
            if inside_link >= 0:
                verified[inside_link, at] = inside_ok
            for link, lower in zip(slots.cross, (True, False), strict=True):
                todo = np.flatnonzero(gaps[link, at] != NOT_NEAR) if link >= 0 else np.empty(0, np.int64)
                if len(todo):
                    everywhere = np.ones(len(todo), bool)
                    ok, _ = confirm(*_crossed(mine.rows(todo), theirs.rows(todo), lower), everywhere, ~everywhere)
                    verified[link, at[todo[ok]]] = True
            self._verify_turned(found, at, mine, verified)
            self._refuse_one_place_differences(found, at, mine, theirs, verified)
        self._refuse_other_shapes(found, seen, verified)
        return verified

    def _refuse_other_shapes(self, found: Candidates, at: I64, verified: npt.NDArray[np.bool_]) -> None:
        """Refuse the matches, by any link, among the candidates ``at`` whose pictures (both
        without a border) have shapes too far apart (:func:`.verify.other_shapes`); by an
        orientation link, the shapes are compared either way round."""
        shape = self.thumbs.shape
        u, v = found.u[at], found.v[at]
        turned_links = {*self.slots.turned, self.slots.region_rotation} - {-1}
        upright = other_shapes(shape[u], shape[v], turned=False)
        if not upright.any():
            return
        turned = other_shapes(shape[u], shape[v], turned=True) if turned_links else upright
        for link in range(verified.shape[0]):
            verified[link, at[turned if link in turned_links else upright]] = False

    def _verify_turned(self, found: Candidates, at: I64, mine: Pictures, verified: npt.NDArray[np.bool_]) -> None:
        """The orientation links among the candidates ``at`` (``mine``: the lower units'
        thumbnails): whole pictures, insides, then the lower's inside against the higher's
        whole picture and the other way round; the higher unit turned."""
        gaps, thumbs = found.gaps, self.thumbs
        sides = ("whole", "inside", "lower inside", "higher inside")
        for link, side in zip(self.slots.turned, sides, strict=True):
            if link < 0:
                continue
            todo = np.flatnonzero(gaps[link, at] != NOT_NEAR)
            for turn in range(1, ORIENTATIONS):
                if not len(todo):
                    break
                everywhere = np.ones(len(todo), bool)
                first, second = mine.rows(todo), thumbs.turned(found.v[at[todo]], turn)
                # What the grids show (one's inside against the other's whole: on the insides).
                shown = _grids_show(first, second, side != "whole")
                if side in ("lower inside", "higher inside"):
                    first, second = _crossed(first, second, side == "lower inside")
                wholes, within = confirm(
                    first,
                    second,
                    everywhere & (side != "inside"),
                    everywhere & (side == "inside"),
                    ROTATION_CORRELATION,
                )
                ok = within if side == "inside" else wholes
                judged = np.flatnonzero(ok & shown)
                held = todo[judged]
                ok[judged] = ~self.regions.differ_in_one_place(found.u[at[held]], found.v[at[held]], turn)
                verified[link, at[todo[ok]]] = True
                todo = todo[~ok]

    def region_links(self) -> list[RegionLink]:
        """The region links (a region against the other's whole and inside; with rotations,
        against its orientations: column c is turn c % 7 + 1), each with what
        :meth:`.RegionCheck.distances` checks them by."""
        thumbs = self.thumbs
        framed = thumbs.framed()
        return [
            RegionLink(
                self.slots.region,
                self._region_targets,
                thumbs.of_sort,
                framed,
                min(self.threshold, REGION_THRESHOLD),
                REGION_CORRELATION,
                0,
            ),
            RegionLink(
                self.slots.region_rotation,
                self._turned_of,
                thumbs.of_turned_sort,
                framed,
                min(self.threshold, ROTATION_THRESHOLD),
                ROTATION_CORRELATION,
                ORIENTATIONS - 1,
            ),
        ]

    def _region_distances(self, region: RegionLink, u: I64, v: I64) -> npt.NDArray[np.uint8]:
        """:meth:`.RegionCheck.distances` of these pairs by one region link."""
        return self._region_check.distances(
            u,
            v,
            region.targets,
            region.thumbnail,
            region.framed,
            region.threshold,
            region.correlation,
            region.turns,
        )

    def _checked(self, found: FoundLink, region: RegionLink) -> FoundLink:
        """A region link's pairs checked all at once (:data:`REGION_PAIRS` at a time), each at the
        distance of the nearest region that confirms it; those none confirms left out. Pairs of
        two units without thumbnails stay as found (their hashes decide, as in :meth:`_verify`);
        a pair of one with and one without can never be confirmed."""
        slot = self.thumbs.slot
        seen = (slot[found.u] >= 0) & (slot[found.v] >= 0)
        blind = (slot[found.u] < 0) & (slot[found.v] < 0)
        at = np.flatnonzero(seen)
        best = np.full(len(at), NOT_NEAR, dtype=np.uint8)
        for start in range(0, len(at), REGION_PAIRS):
            part = at[start : start + REGION_PAIRS]
            best[start : start + len(part)] = self._region_distances(region, found.u[part], found.v[part])
        keep = np.zeros(len(found.u), dtype=bool)
        keep[at[best != NOT_NEAR]] = True
        keep |= blind
        d = found.d.copy()
        d[at] = best
        return FoundLink(found.u[keep], found.v[keep], d[keep])

    def _refuse_one_place_differences(
        self, found: Candidates, at: I64, mine: Pictures, theirs: Pictures, verified: npt.NDArray[np.bool_]
    ) -> None:
        """Refuse the upright matches (of whole pictures, of insides, of one's inside against the
        other's whole) among the candidates ``at`` (``mine``, ``theirs``: their thumbnails)
        whose grids differ in one place (:func:`.verify.differ_in_one_place`): pictures on one
        template. Only where the grids show what matched (:func:`_grids_show`). Turned matches
        are judged as they are verified, on the grid turned, and region matches on the region
        cut from the grid; pictures without a grid (under 16 px a side) are not judged."""
        # One's inside against the other's whole (both with borders): the other's whole has no
        # grid, so on the insides, as its own inside link would be.
        links = ((0, False), (self.slots.inside, True), *((link, True) for link in self.slots.cross))
        for link, insides in links:
            if link < 0:
                continue
            held = np.flatnonzero(verified[link, at] & _grids_show(mine, theirs, insides))
            refused = self.regions.differ_in_one_place(found.u[at[held]], found.v[at[held]])
            verified[link, at[held[refused]]] = False


def _grids_show(a: Pictures, b: Pictures, insides: bool) -> npt.NDArray[np.bool_]:
    """Where two pictures' grids (of their insides) show what a match of their insides
    (``insides``) or of their whole pictures compared: always for insides; for whole
    pictures, where both or neither have a border. And not between a grey picture and a
    colourful one: a grey copy may be made by another formula than the grids' luma, which
    differs from it where one colour is (such pairs have their own closer rule,
    :data:`.verify.GREY_COPY_CORRELATION`)."""
    sides = (a.inside, b.inside) if insides else (a.whole, b.whole)
    shown: npt.NDArray[np.bool_] = sides[0].colourful == sides[1].colourful
    if not insides:
        shown &= a.framed == b.framed
    return shown


def _crossed(lower: Pictures, higher: Pictures, lower_inside: bool) -> tuple[Pictures, Pictures]:
    """The two sides of a cross link, each as pictures without borders: the lower unit's inside
    and the higher's whole picture, or the lower's whole picture and the higher's inside."""
    if lower_inside:
        return lower.insides(), higher.wholes()
    return lower.wholes(), higher.insides()
