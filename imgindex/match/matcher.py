"""The matcher: verified near matches among a set of units, over the index.

A *unit* is one picture to match: for a report, the byte-identical images of
one SHA-256 (represented by the best of them); for a query, one indexed file
or one file looked up. Two units are *candidates* when their hashes of the
whole picture are within the threshold, or those of what is inside their
borders (a picture without a border is its own inside), or one's inside and
the other's whole picture (a copy padded or framed against its source), and with
``rotations`` when one's upright hash is within :data:`ROTATION_THRESHOLD` of
an orientation of the other's, of the whole pictures or of their insides (a
turned copy of a picture padded or framed in one of the two). And when a
region's hash of one (:data:`imgindex.hashing.REGIONS`: a copy cropped, cut
on one side or given a bar) is within :data:`.regions.REGION_THRESHOLD` of
the other's whole or inside hash. A candidate
*matches* only if the thumbnails of the pictures (or insides) that matched
confirm it (:func:`.verify.confirm`), as :class:`.candidate_check.CandidateCheck` judges
every link's candidates.

Candidate pairs of hash values come from the index's stored pairs where they
can (:func:`.candidates.pairs_among`), thumbnails from its descriptors
(read only for units that have a candidate). Units hashed before descriptors
existed (an index not rescanned since an upgrade) are matched by their hashes
alone, and between themselves only; :attr:`Matcher.unconfirmed` counts them.

Reports, exports, ``dedup`` and ``watch`` group with :meth:`Matcher.grouping`;
``query`` asks :meth:`Matcher.matches` for each file it looks up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from imgindex.arrays import common, distinct, union
from imgindex.hashing import ORIENTATIONS, REGIONS, HashSettings, orientation_hashes, region_rows
from imgindex.storage import Index

from .candidate_check import CandidateCheck, LinkSlots
from .candidates import pairs_among
from .grouping import Edges, Grouping, group_by_leaders
from .links import NOT_NEAR, CrossLink, FoundLink, Link, candidates, unit_degrees
from .orientations import ROTATION_THRESHOLD, turned_pairs_with_insides
from .region_check import Regions
from .regions import REGION_THRESHOLD
from .search import I64, pairs_between
from .stored_matches import Sorts, no_sorts, stored_matches
from .units import Units, UnitThumbnails, detail_by_parts
from .verify import LOW_DETAIL

#: Candidate pairs of units made in one pass, counted by the units' degrees (bounds the candidates' arrays).
CANDIDATE_BUDGET = 2_000_000
#: Units whose thumbnails and grids are held at once (about 2 KB a unit: 1 GB). With more
#: units to verify, they are read a part at a time (see :class:`.CandidateCheck`).
THUMBNAIL_UNITS = 1 << 19
#: The kind of hash the index holds (the settings' own).
KIND = HashSettings().algorithm


class Matcher:
    """Candidates and their verification for ``units``; see the module docstring.

    ``focus`` (some units, e.g. the files a query looks up) limits the work to
    the candidates of those units: only :meth:`matches` of them is answered.
    With ``stored``, the matches the index holds (between units whose
    pictures' matches are all stored) are read, not verified again, and only
    the other units are searched and verified here.
    """

    def __init__(
        self,
        index: Index,
        units: Units,
        threshold: int,
        *,
        rotations: bool = False,
        kind: str = KIND,
        focus: npt.NDArray[np.int64] | None = None,
        stored: bool = False,
    ) -> None:
        n = len(units)
        self.threshold = threshold
        self.kind = kind
        has_hash = units.has_hash
        whole = units.phash.view(np.uint64)
        has_trim = units.has_trim
        inside = np.where(has_trim, units.trim_hash.view(np.uint64), whole)
        self._has_hash, self._whole, self._inside = has_hash, whole, inside
        #: Units with a candidate but no thumbnails (matched by hash alone).
        self.unconfirmed = 0
        #: How many units' matches came from the index, not verified here.
        self.stored_units = 0
        #: Where each sort of link sits in the list of links.
        self.slots = LinkSlots()
        from_store = no_sorts()
        in_focus: npt.NDArray[np.bool_] | None = None
        if focus is not None:
            in_focus = np.zeros(n, dtype=bool)
            in_focus[focus] = True
        #: With ``rotations``: the units whose thumbnails were read, and the hashes of each one's
        #: thumbnail in its orientations (rows of :data:`ORIENTATIONS`, identity first), of the
        #: whole picture and of the inside (the whole's again for a picture without a border).
        self.orientations = Orientations.empty()
        if stored and focus is None and (not rotations or index.pairs.rotations()):
            known, from_store = stored_matches(index, units, threshold, kind, rotations=rotations)
            rest = has_hash & ~known
            # Orientation matches are stored only for all pictures at once: with one picture
            # not stored, they are all searched here.
            if rotations and rest.any():
                known, from_store = np.zeros(n, dtype=bool), no_sorts()
            self.stored_units = int(np.count_nonzero(known))
            if self.stored_units:
                in_focus = has_hash & ~known
        if in_focus is not None and not (in_focus & has_hash).any():
            self.thumbs = UnitThumbnails(index, units, np.empty(0, np.int64), keep=False)
            self._whole_detail = np.full(n, np.inf, dtype=np.float32)
            self._set_edges(from_store, no_sorts())
            return
        links = self._links(index, units, in_focus, rotations)
        self._check = CandidateCheck(
            index,
            units,
            self.thumbs,
            self.regions,
            self.slots,
            threshold,
            self._region_targets,
            self._turned_of,
            self._parts,
        )
        # Region candidates are verified over the grids, by blocks of the regions' owners.
        self._check.check_regions_first(links)
        searched = np.flatnonzero(has_hash if in_focus is None else in_focus & has_hash)
        self._set_edges(from_store, self._passes(links, searched))

    def _links(
        self, index: Index, units: Units, in_focus: npt.NDArray[np.bool_] | None, rotations: bool
    ) -> list[Link | CrossLink | FoundLink]:
        """The candidate links (their pairs of hash values and what each pair is between), with
        the thumbnails, the regions and the grids of the units they touch read (or, past
        :data:`THUMBNAIL_UNITS`, the parts they are read by): whole pictures, insides, one's
        inside against the other's whole, regions, and with ``rotations`` the orientations."""
        n, threshold, kind = len(units), self.threshold, self.kind
        has_hash, whole, inside, has_trim = self._has_hash, self._whole, self._inside, units.has_trim
        values = distinct(np.concatenate([whole[has_hash], inside[has_hash]]))
        focus_values = None
        if in_focus is not None:
            chosen = in_focus & has_hash
            focus_values = distinct(np.concatenate([whole[chosen], inside[chosen]]))
        stored_pairs = pairs_among(index, values, threshold, kind=kind, focus=focus_values)

        # Thumbnails of the units that have a candidate (all of them for --rotations).
        counts = np.unique(whole[has_hash], return_counts=True)
        trim_counts = np.unique(inside[has_hash], return_counts=True)
        shared = union(counts[0][counts[1] > 1], trim_counts[0][trim_counts[1] > 1])
        # ... and a value that is one's inside and another's whole picture (both with borders).
        shared = union(shared, common(whole[has_hash], inside[has_hash & has_trim]))
        paired = distinct(np.concatenate([stored_pairs[0], stored_pairs[1]]))
        if focus_values is None:
            paired = union(paired, shared)
        else:
            paired = union(paired, common(focus_values, shared))
        linked = has_hash & (np.isin(whole, paired) | np.isin(inside, paired))
        # A region of one near the other's whole picture or inside: searched here (the regions'
        # hashes are not among the stored pairs' values).
        self.regions = Regions.read(index, units, kind)
        #: What a region of one meets of the other: its whole and inside hashes, as columns.
        self._region_targets = np.column_stack([whole, inside])
        #: With ``rotations``: what a region meets of the other's orientations (set below).
        self._turned_of = np.zeros((n, 0), dtype=np.uint64)
        found_regions = self.regions.pairs(
            self._region_targets,
            has_hash,
            None if in_focus is None else in_focus & has_hash,
            min(threshold, REGION_THRESHOLD),
            owners=has_hash,
        )
        if len(found_regions[0]):
            linked[found_regions[0]] = linked[found_regions[1]] = True
        wanted = np.flatnonzero(has_hash if rotations else linked)
        # Too many units to hold their thumbnails and grids at once (a full verification at
        # millions of pictures): their detail first, a part at a time; the thumbnails and grids
        # then by pairs of parts, as the candidates are verified.
        self._parts = [] if rotations or len(wanted) <= THUMBNAIL_UNITS else _parts(units, wanted)
        if self._parts:
            self.thumbs = UnitThumbnails(index, units, np.empty(0, np.int64), keep=False)
            self._described, whole_detail, inside_detail = detail_by_parts(index, units, self._parts)
        else:
            self.thumbs = UnitThumbnails(index, units, wanted, keep=rotations)
            self._described = self.thumbs.slot >= 0
            whole_detail, inside_detail = self.thumbs.detail()
        self.unconfirmed = int(np.count_nonzero(linked & ~self._described))

        # A blank or one-colour picture (or inside) has nothing its thumbnail could confirm a
        # match by: it matches by its bytes only. (Left out here, thousands of blank images of
        # different sizes are not compared with each other in vain.)
        self._whole_detail = whole_detail
        usable = has_hash & (whole_detail >= LOW_DETAIL)
        links: list[Link | CrossLink | FoundLink] = [Link(whole, usable, threshold, stored_pairs)]
        if has_trim.any():
            # Insides: only matches that involve a picture with a border are new here (for two
            # pictures without, the insides are the wholes), so only the pairs that touch one.
            usable_inside = has_hash & (inside_detail >= LOW_DETAIL)
            framed = has_trim & usable_inside
            a, b, d = stored_pairs
            framed_values = distinct(inside[framed])
            touch = np.isin(a, framed_values) | np.isin(b, framed_values)
            near = (a[touch], b[touch], d[touch])
            self.slots.inside = len(links)
            links.append(Link(inside, usable_inside, threshold, near, framed))
            # One's inside against the other's whole picture, both with borders (a picture without
            # one is its own inside: the link of insides has those), from the same pairs.
            self.slots.cross = (len(links), len(links) + 1)
            links += CrossLink.both(inside, framed, whole, usable & has_trim, threshold, near)
        region_units = union(found_regions[0], found_regions[1])
        if len(found_regions[0]):
            self.slots.region = len(links)
            links.append(FoundLink(*found_regions))
        if rotations:
            turned_units = self._rotation_links(links, units, whole_detail, inside_detail, in_focus)
            region_units = union(region_units, turned_units)
        # Grids: to cut the regions' thumbnails, and to see where two pictures differ.
        if not self._parts:
            self.regions.read_grids(index, units, union(region_units, wanted))
        return links

    def _rotation_links(
        self,
        links: list[Link | CrossLink | FoundLink],
        units: Units,
        whole_detail: npt.NDArray[np.float32],
        inside_detail: npt.NDArray[np.float32],
        in_focus: npt.NDArray[np.bool_] | None,
    ) -> I64:
        """``--rotations``' links, added to ``links``: orientations of the whole pictures and of
        the insides, one's inside turned against the other's whole, and a region of one against
        an orientation of the other. The units of the last (whose grids are read)."""
        n, kind, threshold, slot = len(units), self.kind, self.threshold, self.thumbs.slot
        has_hash, has_trim = self._has_hash, units.has_trim
        # Orientations of the whole pictures, and of the insides of those with a border: a
        # turned copy of a picture that the other shows padded or framed meets its inside.
        turned = orientation_hashes(self.thumbs.descriptors, kind)
        framed_slot, framed_insides = self.thumbs.framed_insides()
        turned_inside = turned.copy()
        turned_inside[framed_slot] = orientation_hashes(framed_insides, kind)
        has = slot >= 0
        self.orientations = Orientations(np.flatnonzero(has), turned[slot[has]], turned_inside[slot[has]])
        rotation_threshold = min(threshold, ROTATION_THRESHOLD)
        framed_rows = np.zeros(len(turned), dtype=bool)
        framed_rows[framed_slot] = True
        both = turned_pairs_with_insides(turned, turned_inside, framed_rows, rotation_threshold)
        uprights = []
        for hashes, detail, own, pairs in (
            (turned, whole_detail, None, both[0]),
            (turned_inside, inside_detail, has_trim, both[1]),
        ):
            described = has & has_hash & (detail >= LOW_DETAIL)
            upright = np.zeros(n, dtype=np.uint64)
            upright[described] = hashes[slot[described], 0]
            uprights.append((upright, described))
            if own is None:
                self.slots.rotation = len(links)
            else:  # only pairs with a framed picture on a side are new here
                self.slots.inside_rotation = len(links)
            links.append(Link(upright, described, rotation_threshold, pairs, own))
        # One's inside turned against the other's whole picture (both with borders).
        (whole_up, whole_described), (inside_up, inside_described) = uprights
        self.slots.cross_rotation = (len(links), len(links) + 1)
        links += CrossLink.both(
            inside_up,
            inside_described & has_trim,
            whole_up,
            whole_described & has_trim,
            rotation_threshold,
            both[2],
        )
        # A region of one against an orientation of the other (a turned copy of a picture
        # whose copy with a bar added leads its group meets that copy's cut region): per unit,
        # the hashes of turns 1-7 of its whole picture, then of its inside.
        turned_of = np.zeros((n, 2 * (ORIENTATIONS - 1)), dtype=np.uint64)
        turned_of[has] = np.concatenate([turned[slot[has], 1:], turned_inside[slot[has], 1:]], axis=1)
        self._turned_of = turned_of
        found_turned = self.regions.pairs(turned_of, has & has_hash, in_focus, rotation_threshold)
        if not len(found_turned[0]):
            return np.empty(0, np.int64)
        self.slots.region_rotation = len(links)
        links.append(FoundLink(*found_turned))
        return union(found_turned[0], found_turned[1])

    def _passes(self, links: list[Link | CrossLink | FoundLink], searched: I64) -> Sorts:
        """The candidates of the ``searched`` units verified a pass at a time: their matches
        with the distance of each sort that holds."""
        n = len(self._has_hash)
        # The candidates a pass at a time, each pass the pairs with a unit of its share on a side
        # and none of an earlier share's (those were its pass's), so that pictures crowded
        # within a few bits of each other (thousands of gradients on one hash) never need all
        # their candidate pairs at once: the shares are cut where the pairs their units are on
        # a side of reach the budget.
        cost = sum((unit_degrees(link, n) for link in links), np.zeros(n, np.int64))[searched]
        ends = np.cumsum(cost)
        step = (ends - cost) // CANDIDATE_BUDGET
        done = np.zeros(n, dtype=bool)
        verified_parts = []
        for share in np.split(searched, np.flatnonzero(np.diff(step)) + 1):
            mask = np.zeros(n, dtype=bool)
            mask[share] = True
            found = candidates(n, links, mask, exclude=done if done.any() else None)
            done[share] = True
            verified = self._check.verify(found)
            sorts = [np.where(verified[k], found.gaps[k], NOT_NEAR).astype(np.uint8) for k in range(len(links))]
            joined = np.minimum.reduce(sorts)
            keep = joined != NOT_NEAR
            apart = np.full(int(keep.sum()), NOT_NEAR, np.uint8)
            slots = self.slots
            both_turns = [sorts[k][keep] for k in (*slots.turned, slots.region_rotation) if k >= 0]
            insides = [sorts[k][keep] for k in (slots.inside, *slots.cross) if k >= 0]
            verified_parts.append(
                Sorts(
                    found.u[keep],
                    found.v[keep],
                    sorts[0][keep],
                    np.minimum.reduce(insides) if insides else apart,
                    np.minimum.reduce(both_turns) if both_turns else apart,
                    sorts[slots.region][keep] if slots.region >= 0 else apart,
                    joined[keep],
                )
            )
        return Sorts(*(np.concatenate(parts) for parts in zip(*verified_parts, strict=True)))

    def _set_edges(self, stored: Sorts, verified: Sorts) -> None:
        both = Sorts(*(np.concatenate([x, y]) for x, y in zip(stored, verified, strict=True)))
        keep = both.joined != NOT_NEAR
        #: The verified matches, each with the distance of each sort that holds (whole
        #: pictures, insides; :data:`NOT_NEAR` where it does not) and the smallest of all.
        self.sorts = Sorts(*(column[keep] for column in both))
        self.edges = Edges(self.sorts.u, self.sorts.v, self.sorts.joined)

    def grouping(self, order: I64) -> Grouping:
        """Greedy groups around leaders in ``order`` (best first), each match verified."""
        return group_by_leaders(order, self.edges)

    @staticmethod
    def near_values(index: Index, hashes: Sequence[int], threshold: int, *, kind: str = KIND) -> list[int]:
        """The indexed hash values (signed) within ``threshold`` of any of ``hashes`` (signed), or
        equal to one: where the candidates of pictures that are not in the index lie."""
        probe = distinct(np.array(hashes, dtype=np.int64).view(np.uint64))
        values = union(index.images.hashes().view(np.uint64), probe)
        a, b, _ = pairs_among(index, values, threshold, kind=kind, focus=probe)
        near = union(union(a, b), probe)
        return [int(v) for v in near.view(np.int64).tolist()]

    @staticmethod
    def near_by_regions(
        index: Index, hashes: Sequence[int], regions: Sequence[bytes], threshold: int, *, kind: str = KIND
    ) -> list[int]:
        """The indexed files a region link may match with pictures not in the index: whose whole
        or inside hash is near one of ``regions`` (their regions' hashes), or whose regions are
        near one of ``hashes`` (signed)."""
        if kind != "dhash":
            return []
        t = min(threshold, REGION_THRESHOLD)
        files: set[int] = set()
        if regions:
            values = index.images.hashes()
            _, j, _ = pairs_between(values.view(np.uint64), region_rows(regions).reshape(-1), t)
            near = values[distinct(j)].tolist()
            files.update(i for i, _, _ in index.images.with_hashes(near))
        if len(hashes):
            ids, rows = index.images.all_regions()
            if len(rows):
                probes = np.array(hashes, dtype=np.int64).view(np.uint64)
                _, j, _ = pairs_between(rows.reshape(-1), probes, t)
                files.update(ids[distinct(j) // len(REGIONS)].tolist())
        return sorted(files)

    def matches(self, unit: int) -> dict[int, int]:
        """Every unit that matches ``unit``, with the distance by which it does: the units a
        leader takes into its group in :meth:`grouping`, when free."""
        e = self.edges
        mine = (e.u == unit) | (e.v == unit)
        others = np.where(e.u[mine] == unit, e.v[mine], e.u[mine])
        return dict(zip(others.tolist(), e.distance[mine].tolist(), strict=True))

    def blind_candidates(self, unit: int) -> list[int]:
        """The units without thumbnails whose hashes (of the whole picture, or of the inside)
        are within the threshold of ``unit``'s, which has some detail: what it would be
        compared with, had they thumbnails."""
        if self._whole_detail[unit] < LOW_DETAIL:
            return []
        blind = np.flatnonzero(self._has_hash & ~self._described)
        blind = blind[blind != unit]
        gap = np.minimum(
            np.bitwise_count(self._whole[blind] ^ self._whole[unit]),
            np.bitwise_count(self._inside[blind] ^ self._inside[unit]),
        )
        found: list[int] = blind[gap <= self.threshold].tolist()
        return found


class Orientations(NamedTuple):
    """Units and the hashes of their thumbnails in each orientation (rows of
    :data:`ORIENTATIONS`, identity first): of the whole picture, and of the inside (the
    whole's where the picture has no border)."""

    units: I64
    whole: npt.NDArray[np.uint64]
    inside: npt.NDArray[np.uint64]

    @classmethod
    def empty(cls) -> Orientations:
        none = np.empty((0, ORIENTATIONS), np.uint64)
        return cls(np.empty(0, np.int64), none, none)


def _parts(units: Units, wanted: I64) -> list[I64]:
    """``wanted`` units in parts of at most half :data:`THUMBNAIL_UNITS` (two are held at
    once), by their files' ids (read in order, a part's rows lie near each other), each sorted."""
    by_file = wanted[np.argsort(units.file_id[wanted], kind="stable")]
    count = -(-len(by_file) // max(1, THUMBNAIL_UNITS // 2))
    return [np.sort(part) for part in np.array_split(by_file, count)]
