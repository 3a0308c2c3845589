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
confirm it (:func:`.verify.confirm`).

Candidate pairs of hash values come from the index's stored pairs where they
can (:func:`.candidates.pairs_among`), thumbnails from its descriptors
(read only for units that have a candidate). Units hashed before descriptors
existed (an index not rescanned since an upgrade) are matched by their hashes
alone, and between themselves only; :attr:`Matcher.unconfirmed` counts them.

Reports, exports, ``dedup`` and ``watch`` group with :meth:`Matcher.grouping`;
``query`` asks :meth:`Matcher.matches` for each file it looks up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, NamedTuple, Protocol, Self, TypeVar

import numpy as np
import numpy.typing as npt

from imgindex.arrays import common, concatenate_consumed, distinct, union
from imgindex.hashing import (
    COLOUR_SIDE,
    DESCRIPTOR_BYTES,
    GREY_SIDE,
    GRID_SIDE,
    ORIENTATIONS,
    REGIONS,
    HashSettings,
    descriptor_rows,
    grid_rows,
    orient,
    orient_descriptors,
    orientation_hashes,
    region_rows,
)
from imgindex.storage import Index, picture_alone, picture_keys, turned_kind

from .candidates import pairs_among
from .grouping import Edges, Grouping, group_by_leaders
from .links import NOT_NEAR, Candidates, CrossLink, FoundLink, Link, candidates, unit_degrees
from .orientations import ROTATION_CORRELATION, ROTATION_THRESHOLD, turned_pairs_with_insides
from .regions import (
    REGION_CORRELATION,
    REGION_THRESHOLD,
    Box,
    box_descriptors,
    box_grey,
    box_grids,
    moved_cuts,
    region_descriptors,
    region_grids,
    region_pairs,
)
from .search import I64, pairs_between
from .verify import (
    LOW_DETAIL,
    VERIFICATION,
    Pictures,
    Thumbnails,
    confirm,
    could_agree,
    differ_in_one_place,
    grey_views,
    joined_thumbnails,
    normalised_grids,
    thumbnails,
)

#: Up to this many units, the coarse views of the regions' moved cuts are kept for every chunk
#: of pairs (68 bytes a unit and cut, twenty cuts: at most 89 MB); past it, once per chunk.
MOVED_UNITS = 1 << 16
#: Moved cuts a region may have, at most (keys of the kept coarse views: region * this + cut).
MOVED_KEYS = 8
#: Candidate pairs verified at once (bounds the memory of the thumbnails' arrays).
VERIFY_CHUNK = 1 << 15
#: Pairs whose grids are compared at once (8 KB of float32 a pair).
DETAIL_CHUNK = 1 << 12
#: Up to this many units whose regions met something, each region's thumbnails are cut once
#: for all the pairs (about 4 KB a unit for the five regions: at most 128 MB); past it, once
#: per chunk of pairs.
CUT_UNITS = 1 << 15
#: Candidate pairs of units made in one pass, counted by the units' degrees (bounds the candidates' arrays).
CANDIDATE_BUDGET = 2_000_000
#: Units whose descriptors or grids are read from the index at once (their bytes, some
#: 130 MB, are let go once they are made into arrays).
READ_UNITS = 1 << 16
#: Units whose thumbnails and grids are held at once (about 2 KB a unit: 1 GB). With more
#: units to verify, they are read a part at a time (see :meth:`Matcher._verify_by_parts`).
THUMBNAIL_UNITS = 1 << 19
#: The kind of hash the index holds (the settings' own).
KIND = HashSettings().algorithm

Descriptors = tuple[bytes, bytes | None]  # of the whole picture, and of its inside when it has a border


@dataclass(frozen=True)
class Units:
    """The units to match, as columns: hashes (signed, as stored), and where their
    thumbnails come from: the index's descriptors of ``file_id``, or ``given``.

    With ``sha256`` and ``params_id`` (the hash settings of each unit's
    hashes), the matches the index has stored for them can be used."""

    file_id: I64
    has_hash: npt.NDArray[np.bool_]
    phash: I64  # of the whole picture (0 without one)
    has_trim: npt.NDArray[np.bool_]
    trim_hash: I64  # of what is inside its border (0 without one)
    given: Mapping[int, Descriptors] = field(default_factory=dict)  # unit -> descriptors not in the index
    #: unit -> the hashes of its regions and its grid (hashing.regions), for units not in the index
    given_regions: Mapping[int, tuple[bytes, bytes]] = field(default_factory=dict)
    sha256: npt.NDArray[np.uint8] | None = None  # (n, 32)
    params_id: I64 | None = None
    #: The hashes of the units' regions (rows of ``len(REGIONS)``) and which units have them,
    #: when read already (:func:`unit_regions`): the passes of a full verification read them once.
    regions: tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]] | None = None

    def __len__(self) -> int:
        return len(self.file_id)


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
        self.inside_link = self.rotation_link = self.inside_rotation_link = self.region_link = -1
        #: With ``rotations``: a region of one against an orientation of the other.
        self.region_rotation_link = -1
        #: The links of one's inside with the other's whole picture (the lower unit's inside, the
        #: higher's); with ``rotations``, the same of their orientations.
        self.cross_links: tuple[int, int] = (-1, -1)
        self.cross_rotation_links: tuple[int, int] = (-1, -1)
        from_store = _no_sorts()
        in_focus: npt.NDArray[np.bool_] | None = None
        if focus is not None:
            in_focus = np.zeros(n, dtype=bool)
            in_focus[focus] = True
        #: With ``rotations``: the units whose thumbnails were read, and the hashes of each one's
        #: thumbnail in its orientations (rows of :data:`ORIENTATIONS`, identity first), of the
        #: whole picture and of the inside (the whole's again for a picture without a border).
        self.orientations = Orientations.empty()
        if stored and focus is None and (not rotations or index.pairs.rotations()):
            known, from_store = _stored_matches(index, units, threshold, kind, rotations=rotations)
            rest = has_hash & ~known
            # Orientation matches are stored only for all pictures at once: with one picture
            # not stored, they are all searched here.
            if rotations and rest.any():
                known, from_store = np.zeros(n, dtype=bool), _no_sorts()
            self.stored_units = int(np.count_nonzero(known))
            if self.stored_units:
                in_focus = has_hash & ~known
        if in_focus is not None and not (in_focus & has_hash).any():
            self.thumbs = _Thumbnails(index, units, np.empty(0, np.int64), keep=False)
            self._whole_detail = np.full(n, np.inf, dtype=np.float32)
            self._set_edges(from_store, _no_sorts())
            return
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
        self.regions = _Regions.read(index, units, kind)
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
            self.thumbs = _Thumbnails(index, units, np.empty(0, np.int64), keep=False)
            self._described, whole_detail, inside_detail = _detail_by_parts(index, units, self._parts)
        else:
            self.thumbs = _Thumbnails(index, units, wanted, keep=rotations)
            self._described = self.thumbs.slot >= 0
            whole_detail, inside_detail = self.thumbs.detail()
        slot = self.thumbs.slot
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
            self.inside_link = len(links)
            links.append(Link(inside, usable_inside, threshold, near, framed))
            # One's inside against the other's whole picture, both with borders (a picture without
            # one is its own inside: the link of insides has those), from the same pairs.
            self.cross_links = (len(links), len(links) + 1)
            links += CrossLink.both(inside, framed, whole, usable & has_trim, threshold, near)
        region_units = union(found_regions[0], found_regions[1])
        if len(found_regions[0]):
            self.region_link = len(links)
            links.append(FoundLink(*found_regions))
        if rotations:
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
                    self.rotation_link = len(links)
                else:  # only pairs with a framed picture on a side are new here
                    self.inside_rotation_link = len(links)
                links.append(Link(upright, described, rotation_threshold, pairs, own))
            # One's inside turned against the other's whole picture (both with borders).
            (whole_up, whole_described), (inside_up, inside_described) = uprights
            self.cross_rotation_links = (len(links), len(links) + 1)
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
            if len(found_turned[0]):
                self.region_rotation_link = len(links)
                links.append(FoundLink(*found_turned))
                region_units = union(region_units, union(found_turned[0], found_turned[1]))
            del turned, turned_inside
        # Grids: to cut the regions' thumbnails, and to see where two pictures differ.
        self._index, self._units = index, units
        if not self._parts:
            self.regions.read_grids(index, units, union(region_units, wanted))
        # Each region's thumbnails, cut once per unit for every chunk of pairs when the units
        # whose regions may be cut are few enough to keep them (a share of all the candidates).
        self._cuts: dict[int, tuple[I64, Thumbnails]] = {}
        self._chunk_cuts = _KeptCuts(CUT_UNITS, lambda owners, k: thumbnails(self.regions.descriptors(owners, k)))
        #: The coarse views of the regions' moved cuts (68 bytes a unit and cut), by the key
        #: ``region * MOVED_KEYS + cut``.
        self._moved_views = _KeptCuts(MOVED_UNITS, self._moved_coarse)
        owners = region_units[self.regions.has_grid(region_units)]
        self._cut_owners = owners if len(owners) <= CUT_UNITS and not self._parts else None
        # The candidates a pass at a time, each pass the pairs with a unit of its share on a side
        # and none of an earlier share's (those were its pass's), so that pictures crowded
        # within a few bits of each other (thousands of gradients on one hash) never need all
        # their candidate pairs at once: the shares are cut where the pairs their units are on
        # a side of reach the budget.
        searched = np.flatnonzero(has_hash if in_focus is None else in_focus & has_hash)
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
            verified = self._verify_by_parts(found) if self._parts else self._verify(found)
            sorts = [np.where(verified[k], found.gaps[k], NOT_NEAR).astype(np.uint8) for k in range(len(links))]
            joined = np.minimum.reduce(sorts)
            keep = joined != NOT_NEAR
            apart = np.full(int(keep.sum()), NOT_NEAR, np.uint8)
            turns = (self.rotation_link, self.inside_rotation_link, *self.cross_rotation_links)
            both_turns = [sorts[k][keep] for k in (*turns, self.region_rotation_link) if k >= 0]
            insides = [sorts[k][keep] for k in (self.inside_link, *self.cross_links) if k >= 0]
            verified_parts.append(
                _Sorts(
                    found.u[keep],
                    found.v[keep],
                    sorts[0][keep],
                    np.minimum.reduce(insides) if insides else apart,
                    np.minimum.reduce(both_turns) if both_turns else apart,
                    sorts[self.region_link][keep] if self.region_link >= 0 else apart,
                    joined[keep],
                )
            )
        self._set_edges(from_store, _Sorts(*(np.concatenate(parts) for parts in zip(*verified_parts, strict=True))))

    def _set_edges(self, stored: _Sorts, verified: _Sorts) -> None:
        both = _Sorts(*(np.concatenate([x, y]) for x, y in zip(stored, verified, strict=True)))
        keep = both.joined != NOT_NEAR
        #: The verified matches, each with the distance of each sort that holds (whole
        #: pictures, insides; :data:`NOT_NEAR` where it does not) and the smallest of all.
        self.sorts = _Sorts(*(column[keep] for column in both))
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

    def _verify_by_parts(self, found: Candidates) -> npt.NDArray[np.bool_]:
        """:meth:`_verify` with the thumbnails and grids of two parts of the units at a time
        (``self._parts``): the candidates between parts ``a`` and ``b`` (``a <= b``) with
        the units of those two parts that they touch read. Each part is read about as many
        times as there are parts, each in the order of its files (the rows of one part lie near
        each other in the index), for memory bounded by :data:`THUMBNAIL_UNITS`. Verdicts and
        distances are those of :meth:`_verify` over all at once: a candidate is judged on its
        two units alone."""
        n, count = len(self._described), len(self._parts)
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
                self.thumbs = _Thumbnails(self._index, self._units, held, keep=False)
                self.regions.read_grids(self._index, self._units, held)
                some = Candidates(found.u[at], found.v[at], found.gaps[:, at])
                verified[:, at] = self._verify(some)
                found.gaps[:, at] = some.gaps  # (the region links' distances, set by their verification)
        self.thumbs = _Thumbnails(self._index, self._units, np.empty(0, np.int64), keep=False)
        self.regions.read_grids(self._index, self._units, np.empty(0, np.int64))
        return verified

    def _verify(self, found: Candidates) -> npt.NDArray[np.bool_]:
        """Which candidates' hash matches (per link) the thumbnails confirm: ``(links, pairs)``."""
        slot, thumbs, gaps = self.thumbs.slot, self.thumbs, found.gaps
        verified = np.zeros(gaps.shape, dtype=bool)
        blind_u, blind_v = slot[found.u] < 0, slot[found.v] < 0
        # Hashed before descriptors existed (an index not rescanned since): the hashes decide,
        # between two such pictures only (newer pictures' hashes may be of another kind).
        blind = np.flatnonzero(blind_u & blind_v)
        verified[:, blind] = gaps[:, blind] != NOT_NEAR
        for link in (self.rotation_link, self.inside_rotation_link, *self.cross_rotation_links):
            if link >= 0:
                verified[link, blind] = False
        seen = np.flatnonzero(~blind_u & ~blind_v)
        inside_link = self.inside_link
        for start in range(0, len(seen), VERIFY_CHUNK):
            at = seen[start : start + VERIFY_CHUNK]
            mine, theirs = thumbs.pictures(found.u[at]), thumbs.pictures(found.v[at])
            near_inside = gaps[inside_link, at] != NOT_NEAR if inside_link >= 0 else np.zeros(len(at), bool)
            verified[0, at], inside_ok = confirm(mine, theirs, gaps[0, at] != NOT_NEAR, near_inside)
            if inside_link >= 0:
                verified[inside_link, at] = inside_ok
            for link, lower in zip(self.cross_links, (True, False), strict=True):
                todo = np.flatnonzero(gaps[link, at] != NOT_NEAR) if link >= 0 else np.empty(0, np.int64)
                if len(todo):
                    everywhere = np.ones(len(todo), bool)
                    ok, _ = confirm(*_crossed(mine.rows(todo), theirs.rows(todo), lower), everywhere, ~everywhere)
                    verified[link, at[todo[ok]]] = True
            # Regions against the other's whole and inside, then (--rotations) against its
            # orientations (column c: turn c % 7 + 1). The distance of a region match is that of
            # the nearest region that confirms it (not of the nearest region), so that a lower
            # threshold keeps what it would find.
            region_links = (
                (self.region_link, self._region_targets, thumbs.of_sort, REGION_THRESHOLD, REGION_CORRELATION, 0),
                (
                    self.region_rotation_link,
                    self._turned_of,
                    thumbs.of_turned_sort,
                    ROTATION_THRESHOLD,
                    ROTATION_CORRELATION,
                    ORIENTATIONS - 1,
                ),
            )
            for link, targets, thumbnail, threshold, correlation, turns in region_links:
                todo = np.flatnonzero(gaps[link, at] != NOT_NEAR) if link >= 0 else np.empty(0, np.int64)
                if len(todo):
                    best = self._region_distances(
                        found.u[at[todo]],
                        found.v[at[todo]],
                        targets,
                        thumbnail,
                        min(self.threshold, threshold),
                        correlation,
                        turns,
                    )
                    gaps[link, at[todo]] = best
                    verified[link, at[todo[best != NOT_NEAR]]] = True
            # Orientations: whole pictures, insides, then the lower's inside against the higher's
            # whole picture and the other way round; the higher unit turned.
            sides = ("whole", "inside", "lower inside", "higher inside")
            rotation_links = (self.rotation_link, self.inside_rotation_link, *self.cross_rotation_links)
            for link, side in zip(rotation_links, sides, strict=True):
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
                    ok[judged] = ~self._differ_in_one_place(found.u[at[held]], found.v[at[held]], turn)
                    verified[link, at[todo[ok]]] = True
                    todo = todo[~ok]
            self._refuse_one_place_differences(found, at, mine, theirs, verified)
        return verified

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
        links = ((0, False), (self.inside_link, True), *((link, True) for link in self.cross_links))
        for link, insides in links:
            if link < 0:
                continue
            held = np.flatnonzero(verified[link, at] & _grids_show(mine, theirs, insides))
            refused = self._differ_in_one_place(found.u[at[held]], found.v[at[held]])
            verified[link, at[held[refused]]] = False

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

    def _region_differs_in_one_place(self, owner: I64, other: I64, k: int, turn: int) -> npt.NDArray[np.bool_]:
        """For each pair, does region ``k`` of the owner's grid differ in one place from the
        other's grid (in orientation ``turn``)? False where the other has no grid (the owner,
        whose region this is, has one)."""
        return _compared(
            self.regions.has_grid(other), lambda at: self.regions.region_grids(owner[at], k), other, turn, self.regions
        )

    def _differ_in_one_place(self, u: I64, v: I64, turn: int = 0) -> npt.NDArray[np.bool_]:
        """For each pair of units, do their grids (``v``'s in orientation ``turn``) differ in one
        place (:func:`.verify.differ_in_one_place`)? False where either has no grid."""
        judged = self.regions.has_grid(u) & self.regions.has_grid(v)
        if not turn:  # the same grid (thousands of copies of one picture): no difference anywhere
            judged &= ~self.regions.same_grid(u, v)
        return _compared(judged, lambda at: self.regions.grids(u[at]), v, turn, self.regions)

    def _region_distances(
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
        (``targets``: a column per sort, as :meth:`_Regions.pairs` searched them) within
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
                accepted[held] = ~self._region_differs_in_one_place(owner[near[held]], other[near[held]], k, turn)
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
                ok[held] = ~_compared(
                    regions.has_grid(other[pairs[held]]),
                    partial(_cut_grids, regions, owner[pairs[held]], box),
                    other[pairs[held]],
                    turn,
                    regions,
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


class _Regions:
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
    def read(cls, index: Index, units: Units, kind: str) -> _Regions:
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
        wanted = wanted[self.has[wanted]]
        self.slot[:] = -1
        self._grids = self._grids[:0].copy()
        self._colours = self._colours[:0].copy()
        have: list[int] = []
        grids, colours = [self._grids], [self._colours]
        for start in range(0, len(wanted), READ_UNITS):  # (a share at a time, as the thumbnails)
            share = wanted[start : start + READ_UNITS]
            found = index.images.grids(units.file_id[share].tolist())
            blobs = []
            for u, f in zip(share.tolist(), units.file_id[share].tolist(), strict=True):
                if u in units.given_regions and u in units.given:  # a file looked up: its own grid and inside
                    whole, inside = units.given[u]
                    have.append(u)
                    blobs.append((units.given_regions[u][1], inside or whole))
                elif f in found:
                    have.append(u)
                    blobs.append(found.pop(f))
            del found
            grids.append(grid_rows([g for g, _ in blobs]))
            joined = b"".join(d[GREY_SIDE * GREY_SIDE :] for _, d in blobs)
            colours.append(np.frombuffer(joined, dtype=np.uint8).reshape(-1, COLOUR_SIDE, COLOUR_SIDE, 3))
            del blobs, joined
        self.slot[have] = np.arange(len(have))
        self._grids = concatenate_consumed(grids)
        self._grid_keys = _grid_keys(self._grids)
        self._colours = concatenate_consumed(colours)

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


def unit_regions(index: Index, units: Units, kind: str) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]]:
    """The hashes of the regions of the units with a hash (rows of ``len(REGIONS)``), given or
    from the index, and which units have them (regions are of dHash values: of another kind, none)."""
    n = len(units)
    hashes = np.zeros((n, len(REGIONS)), dtype=np.uint64)
    has = np.zeros(n, dtype=bool)
    if kind != "dhash" or not n:
        return hashes, has
    for unit, (blob, _) in units.given_regions.items():
        hashes[unit], has[unit] = region_rows([blob])[0], True
    indexed = np.flatnonzero(units.has_hash & (units.file_id >= 0))
    ids, rows = index.images.regions(units.file_id[indexed])
    if len(ids):
        order = np.argsort(units.file_id[indexed], kind="stable")
        sorted_ids = units.file_id[indexed][order]
        where = np.searchsorted(sorted_ids, ids)
        # Each file read once; several units may share a file id (never in practice).
        at = indexed[order[where]]
        hashes[at], has[at] = rows, True
    return hashes, has


def _compared(
    judged: npt.NDArray[np.bool_],
    first: Callable[[I64], npt.NDArray[np.float32]],
    other: I64,
    turn: int,
    regions: _Regions,
) -> npt.NDArray[np.bool_]:
    """For each pair where ``judged``: does ``first(rows)`` (normalised grids of those rows) differ
    in one place from the grid of ``other`` in orientation ``turn``? False elsewhere. A chunk of
    pairs at a time (bounded float32 temporaries)."""
    result = np.zeros(len(judged), dtype=bool)
    both = np.flatnonzero(judged)
    for start in range(0, len(both), DETAIL_CHUNK):
        at = both[start : start + DETAIL_CHUNK]
        theirs = regions.grids(other[at])
        result[at] = differ_in_one_place(first(at), orient(theirs, turn) if turn else theirs)
    return result


def _cut_grids(regions: _Regions, units: I64, box: Box, at: I64) -> npt.NDArray[np.float32]:
    """``box`` of the grids of ``units[at]``, normalised (for :func:`_compared`)."""
    return regions.box_grids(units[at], box)


def _grid_keys(grids: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """A 64-bit key of each grid: Python's hash of its bytes (SipHash, this process's)."""
    return np.fromiter((hash(grid.tobytes()) for grid in grids), dtype=np.int64, count=len(grids))


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


class _Sorts(NamedTuple):
    """Verified matches between units (``u < v``): the distance by which each sort of match
    holds, :data:`NOT_NEAR` where it does not; ``joined``, the smallest of all sorts."""

    u: I64
    v: I64
    whole: npt.NDArray[np.uint8]
    inside: npt.NDArray[np.uint8]
    turned: npt.NDArray[np.uint8]  # an upright hash and an orientation's (with rotations)
    region: npt.NDArray[np.uint8]  # a region's hash of one and the other's whole or inside
    joined: npt.NDArray[np.uint8]


def _no_sorts() -> _Sorts:
    empty = np.empty(0, np.int64)
    none = np.empty(0, np.uint8)
    return _Sorts(empty, empty, none, none, none, none, none)


def _stored_matches(
    index: Index, units: Units, threshold: int, kind: str, *, rotations: bool = False
) -> tuple[npt.NDArray[np.bool_], _Sorts]:
    """Which units' matches are all in the index, and those matches between them within
    ``threshold`` (with ``rotations``, those of mirrored and turned copies too, within
    :data:`ROTATION_THRESHOLD`). A unit counts when its picture's matches are stored, were
    verified under the hash settings of its hashes and by this version of the verification rule
    (:data:`.verify.VERIFICATION`), it was not written since (pending), and no
    other unit has its picture key."""
    n = len(units)
    known = np.zeros(n, dtype=bool)
    stored_max, _ = index.pairs.state()
    params = index.pairs.match_params(VERIFICATION)
    if units.sha256 is None or units.params_id is None or stored_max is None or params is None:
        return known, _no_sorts()
    if threshold > stored_max:
        return known, _no_sorts()
    keys = picture_keys(units.sha256)
    listed = _listed(keys, index.pairs.pictures(kind))
    if rotations:
        listed &= _listed(keys, index.pairs.pictures(turned_kind(kind)))
    # Written since the last update of the matches: theirs may be out of date.
    pending = np.isin(keys, picture_keys(index.pairs.pending()[1]))
    known = units.has_hash & picture_alone(keys) & (units.params_id == params) & listed & ~pending
    order = np.argsort(keys)  # (keys alike are never known: picture_alone)
    k_order = order[known[order]]
    if not len(k_order):
        return known, _no_sorts()
    k_keys = keys[k_order]
    stored = index.pairs.matches(kind, threshold)
    lo, hi, ours = _as_units(k_keys, k_order, stored.a, stored.b)
    whole, inside, none = stored.whole[ours], stored.inside[ours], np.full(len(lo), NOT_NEAR, np.uint8)
    region = np.where(stored.region[ours] <= min(threshold, REGION_THRESHOLD), stored.region[ours], NOT_NEAR)
    region = region.astype(np.uint8)
    parts = [_Sorts(lo, hi, whole, inside, none, region, np.minimum.reduce([whole, inside, region]))]
    if rotations:
        turned_matches = index.pairs.matches(turned_kind(kind), min(threshold, ROTATION_THRESHOLD))
        lo, hi, ours = _as_units(k_keys, k_order, turned_matches.a, turned_matches.b)
        none = np.full(len(lo), NOT_NEAR, np.uint8)
        turned = turned_matches.whole[ours]
        parts.append(_Sorts(lo, hi, none, none, turned, none, turned))
    return known, _Sorts(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def _as_units(k_keys: I64, k_order: I64, a: I64, b: I64) -> tuple[I64, I64, npt.NDArray[np.bool_]]:
    """Stored matches between picture keys ``a`` and ``b`` as pairs of units (``lo < hi``), for
    the matches whose two pictures are among the sorted ``k_keys`` (units ``k_order``), which
    are marked in the mask returned."""
    ia = np.minimum(np.searchsorted(k_keys, a), len(k_keys) - 1)
    ib = np.minimum(np.searchsorted(k_keys, b), len(k_keys) - 1)
    ours = (k_keys[ia] == a) & (k_keys[ib] == b)
    ua, ub = k_order[ia[ours]], k_order[ib[ours]]
    return np.minimum(ua, ub), np.maximum(ua, ub), ours


def _listed(keys: I64, stored: I64) -> npt.NDArray[np.bool_]:
    """Which of ``keys`` are among the sorted ``stored``."""
    if not len(stored):
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(stored, keys), len(stored) - 1)
    found: npt.NDArray[np.bool_] = stored[at] == keys
    return found


def _parts(units: Units, wanted: I64) -> list[I64]:
    """``wanted`` units in parts of at most half :data:`THUMBNAIL_UNITS` (two are held at
    once), by their files' ids (read in order, a part's rows lie near each other), each sorted."""
    by_file = wanted[np.argsort(units.file_id[wanted], kind="stable")]
    count = -(-len(by_file) // max(1, THUMBNAIL_UNITS // 2))
    return [np.sort(part) for part in np.array_split(by_file, count)]


def _detail_by_parts(
    index: Index, units: Units, parts: list[I64]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Which units have a descriptor and the detail of each one's whole picture and inside
    (:meth:`_Thumbnails.detail`), the thumbnails of a part at a time read and let go."""
    n = len(units)
    described = np.zeros(n, dtype=bool)
    whole = np.full(n, np.inf, dtype=np.float32)
    inside = np.full(n, np.inf, dtype=np.float32)
    for part in parts:
        thumbs = _Thumbnails(index, units, part, keep=False)
        described[part] = thumbs.slot[part] >= 0
        whole[part], inside[part] = thumbs.detail(part)
        del thumbs
    return described, whole, inside


class _Thumbnails:
    """The descriptors of some units, read from the index (a share at a time) and made ready to compare."""

    def __init__(self, index: Index, units: Units, wanted: I64, *, keep: bool) -> None:
        n = len(units)
        described: list[int] = []
        framed: list[int] = []
        whole_parts: list[Thumbnails] = []
        inside_parts: list[Thumbnails] = []
        raw_wholes: list[npt.NDArray[np.uint8]] = []
        raw_insides: list[npt.NDArray[np.uint8]] = []
        # A share of the units at a time: the bytes read of each share let go once its
        # thumbnails are made (at millions of units, the bytes of all were gigabytes).
        for start in range(0, len(wanted), READ_UNITS):
            share = wanted[start : start + READ_UNITS]
            from_index = [u for u in share.tolist() if u not in units.given]
            found = index.images.descriptors(units.file_id[from_index].tolist())
            wholes, insides = [], []
            for unit, file_id in zip(share.tolist(), units.file_id[share].tolist(), strict=True):
                pair = units.given.get(unit) or found.pop(file_id, None)
                if pair is None:
                    continue  # indexed before descriptors existed
                described.append(unit)
                wholes.append(pair[0])
                if pair[1] is not None:
                    framed.append(unit)
                    insides.append(pair[1])
            del found
            for texts, parts, raw in ((wholes, whole_parts, raw_wholes), (insides, inside_parts, raw_insides)):
                rows = descriptor_rows(texts)
                texts.clear()
                parts.append(thumbnails(rows))
                if keep:
                    raw.append(rows)
        #: Row of each unit in the whole pictures' arrays; -1 without a descriptor.
        self.slot = np.full(n, -1, dtype=np.int64)
        self.slot[described] = np.arange(len(described))
        # Row of each unit in the insides' arrays; -1 for a picture without a border (or a descriptor).
        self._inside_slot = np.full(n, -1, dtype=np.int64)
        self._inside_slot[framed] = np.arange(len(framed))
        # One array of thumbnails: the whole pictures', the insides', then a blank row (never
        # accepted: flat), where units without descriptors point.
        blank = descriptor_rows([bytes(DESCRIPTOR_BYTES)])
        self._all = joined_thumbnails([*whole_parts, *inside_parts, thumbnails(blank)])
        del whole_parts, inside_parts
        self._described = len(described)
        #: The raw descriptors of the whole pictures (by ``slot``), when asked to ``keep`` them
        #: (for orientations); the insides' with theirs, then the blank row (where ``-1`` points).
        nothing = np.empty((0, DESCRIPTOR_BYTES), np.uint8)
        self.descriptors = concatenate_consumed(raw_wholes) if keep and raw_wholes else nothing
        self._inside_descriptors = concatenate_consumed([*raw_insides, blank]) if keep else nothing

    def detail(self, units: I64 | None = None) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The detail (:class:`.verify.Thumbnails`) of the whole picture and of the inside of
        ``units`` (all when not given); infinite for a unit without a descriptor (its hashes decide)."""
        units = np.arange(len(self.slot)) if units is None else units
        known = self.slot[units] >= 0
        whole = np.where(known, self._all.detail[self._whole_rows(units)], np.inf).astype(np.float32)
        inside = np.where(known, self._all.detail[self._inside_rows(units)], np.inf).astype(np.float32)
        return whole, inside

    def _whole_rows(self, units: I64) -> I64:
        """The rows in ``_all`` of these units' whole pictures (the blank row, the last, without
        a descriptor). (Made when asked: an array of every unit's is 80 MB at ten million.)"""
        slot = self.slot[units]
        return np.where(slot >= 0, slot, len(self._all.grey) - 1)

    def _inside_rows(self, units: I64) -> I64:
        """The rows in ``_all`` of these units' insides: their whole pictures' without a border."""
        at = self._inside_slot[units]
        return np.where(at >= 0, self._described + at, self._whole_rows(units))

    def pictures(self, units: I64) -> Pictures:
        """The thumbnails of these units (which have descriptors)."""
        whole, framed = self._all.rows(self._whole_rows(units)), self._inside_slot[units] >= 0
        return Pictures(whole, self._all.rows(self._inside_rows(units)) if framed.any() else whole, framed)

    def framed_insides(self) -> tuple[I64, npt.NDArray[np.uint8]]:
        """The units with a border: their slots (rows in :attr:`descriptors`) and the raw
        descriptors of their insides (needs ``keep``)."""
        framed = np.flatnonzero(self._inside_slot >= 0)
        return self.slot[framed], self._inside_descriptors[self._inside_slot[framed]]

    def of_sort(self, units: I64, column: int) -> Thumbnails:
        """The thumbnails of these units behind column ``column`` of ``Matcher._region_targets``:
        of the whole pictures (0), of the insides (1; the whole's without a border)."""
        pictures = self.pictures(units)
        return pictures.whole if column == 0 else pictures.inside

    def of_turned_sort(self, units: I64, column: int) -> Thumbnails:
        """The same behind column ``column`` of ``Matcher._turned_of``: turn ``column % 7 + 1`` of
        the whole pictures (the first 7 columns) or of the insides (needs ``keep``)."""
        turns = ORIENTATIONS - 1
        turned = self.turned(units, column % turns + 1)
        return turned.whole if column < turns else turned.inside

    def turned(self, units: I64, turn: int) -> Pictures:
        """The thumbnails of these units in orientation ``turn`` (needs ``keep``)."""
        whole = self.descriptors[self.slot[units]]
        at = self._inside_slot[units]
        framed = at >= 0
        inside = np.where(framed[:, None], self._inside_descriptors[at], whole)
        return Pictures.of(orient_descriptors(whole, turn), orient_descriptors(inside, turn), framed)
