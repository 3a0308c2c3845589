"""The matcher: verified near matches among a set of units, over the index.

A *unit* is one picture to match: for a report, the byte-identical images of
one SHA-256 (represented by the best of them); for a query, one indexed file
or one file looked up. Two units are *candidates* when their hashes of the
whole picture are within the threshold, or those of what is inside their
borders (a picture without a border is its own inside), and with
``rotations`` when one's upright hash is within :data:`ROTATION_THRESHOLD` of
an orientation of the other's. A candidate *matches* only if the thumbnails
of the pictures that matched confirm it (:func:`.verify.confirm`).

Candidate pairs of hash values come from the index's stored pairs where they
can (:func:`.candidates.pairs_among`), thumbnails from its descriptors
(read only for units that have a candidate). Units hashed before descriptors
existed (an index not rescanned since an upgrade) are matched by their hashes
alone, and between themselves only; :attr:`Matcher.unconfirmed` counts them.

Reports, exports, ``dedup`` and ``watch`` group with :meth:`Matcher.grouping`;
``query`` asks :meth:`Matcher.matches` for each file it looks up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from imgindex.hashing import (
    DESCRIPTOR_BYTES,
    ORIENTATIONS,
    HashSettings,
    descriptor_rows,
    orient_descriptors,
    orientation_hashes,
)
from imgindex.storage import Index

from .candidates import pairs_among
from .grouping import NOT_NEAR, Grouping, Links, group_by_leaders
from .search import I64, U8, pairs_from
from .verify import LOW_DETAIL, Pictures, confirm, thumbnails

#: --rotations: the largest distance between one picture's hash and an
#: orientation's of another, and the grey correlation their thumbnails need.
ROTATION_THRESHOLD = 8
ROTATION_CORRELATION = 0.90
#: The kind of hash the index holds (the settings' own).
KIND = HashSettings().algorithm

Descriptors = tuple[bytes, bytes | None]  # of the whole picture, and of its inside when it has a border


@dataclass(frozen=True)
class Units:
    """The units to match, as columns: hashes (signed, as stored), and where their
    thumbnails come from: the index's descriptors of ``file_id``, or ``given``."""

    file_id: I64
    has_hash: npt.NDArray[np.bool_]
    phash: I64  # of the whole picture (0 without one)
    has_trim: npt.NDArray[np.bool_]
    trim_hash: I64  # of what is inside its border (0 without one)
    given: Mapping[int, Descriptors] = field(default_factory=dict)  # unit -> descriptors not in the index

    def __len__(self) -> int:
        return len(self.file_id)


class Matcher:
    """Candidates and their verification for ``units``; see the module docstring.

    ``focus`` (some units, e.g. the files a query looks up) limits the work to
    the candidates of those units: only :meth:`matches` of them is answered.
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
    ) -> None:
        n = len(units)
        self.threshold = threshold
        self.kind = kind
        has_hash = units.has_hash
        whole = units.phash.view(np.uint64)
        has_trim = units.has_trim
        inside = np.where(has_trim, units.trim_hash.view(np.uint64), whole)
        values = np.unique(np.concatenate([whole[has_hash], inside[has_hash]]))
        focus_values = None
        if focus is not None:
            focus_values = np.unique(np.concatenate([whole[focus][has_hash[focus]], inside[focus][has_hash[focus]]]))
        stored = pairs_among(index, values, threshold, kind=kind, focus=focus_values)

        # Thumbnails of the units that have a candidate (all of them for --rotations).
        paired = np.unique(np.concatenate([stored[0], stored[1]]))
        counts = np.unique(whole[has_hash], return_counts=True)
        trim_counts = np.unique(inside[has_hash], return_counts=True)
        paired = np.union1d(paired, np.union1d(counts[0][counts[1] > 1], trim_counts[0][trim_counts[1] > 1]))
        linked = has_hash & (np.isin(whole, paired) | np.isin(inside, paired))
        wanted = np.flatnonzero(has_hash if rotations else linked)
        self.thumbs = _Thumbnails(index, units, wanted, keep=rotations)
        slot = self.thumbs.slot
        #: Units with a candidate but no thumbnails (matched by hash alone).
        self.unconfirmed = int(np.count_nonzero(linked & (slot < 0)))

        # A blank or one-colour picture (or inside) has nothing its thumbnail could confirm a
        # match by: it matches by its bytes only. (Left out here, thousands of blank images of
        # different sizes are not compared with each other in vain.)
        whole_detail, inside_detail = self.thumbs.detail()
        self._has_hash, self._whole, self._inside, self._whole_detail = has_hash, whole, inside, whole_detail
        usable = has_hash & (whole_detail >= LOW_DETAIL)
        self.links = [Links(whole, usable, threshold, stored)]
        self.inside_link = self.rotation_link = -1
        if has_trim.any():
            # Insides: only matches that involve a picture with a border are new here (for two
            # pictures without, the insides are the wholes), so only the pairs that touch one.
            usable_inside = has_hash & (inside_detail >= LOW_DETAIL)
            framed = np.unique(inside[has_trim & usable_inside])
            a, b, d = stored
            touch = np.isin(a, framed) | np.isin(b, framed)
            reach = np.union1d(framed, np.concatenate([a[touch], b[touch]]))
            self.inside_link = len(self.links)
            self.links.append(
                Links(inside, usable_inside & np.isin(inside, reach), threshold, (a[touch], b[touch], d[touch]))
            )
        if rotations:
            described = (slot >= 0) & usable
            turned = orientation_hashes(self.thumbs.descriptors, kind)
            upright = np.zeros(n, dtype=np.uint64)
            upright[described] = turned[slot[described], 0]
            rotation_threshold = min(threshold, ROTATION_THRESHOLD)
            self.rotation_link = len(self.links)
            self.links.append(Links(upright, described, rotation_threshold, _turned_pairs(turned, rotation_threshold)))
            del turned

    def grouping(self, order: I64) -> Grouping:
        """Greedy groups around leaders in ``order`` (best first), each match verified."""
        return group_by_leaders(order, self.links, self.check)

    @staticmethod
    def near_values(index: Index, hashes: Sequence[int], threshold: int, *, kind: str = KIND) -> list[int]:
        """The indexed hash values (signed) within ``threshold`` of any of ``hashes`` (signed), or
        equal to one: where the candidates of pictures that are not in the index lie."""
        probe = np.unique(np.array(hashes, dtype=np.int64).view(np.uint64))
        values = np.union1d(index.images.hashes().view(np.uint64), probe)
        a, b, _ = pairs_among(index, values, threshold, kind=kind, focus=probe)
        near = np.union1d(np.union1d(a, b), probe)
        return [int(v) for v in near.view(np.int64).tolist()]

    def matches(self, unit: int) -> dict[int, int]:
        """Every unit that matches ``unit``, with the smallest distance by which it does:
        the candidates a leader would look at in :meth:`grouping`, verified the same way."""
        candidates, gaps = self._candidates(unit)
        if not len(candidates):
            return {}
        joined = np.where(self.check(unit, candidates, gaps), gaps, NOT_NEAR).min(axis=0)
        return {m: g for m, g in zip(candidates.tolist(), joined.tolist(), strict=True) if g != NOT_NEAR}

    def blind_candidates(self, unit: int) -> list[int]:
        """The units without thumbnails whose hashes (of the whole picture, or of the inside)
        are within the threshold of ``unit``'s, which has some detail: what it would be
        compared with, had they thumbnails."""
        if self._whole_detail[unit] < LOW_DETAIL:
            return []
        blind = np.flatnonzero(self._has_hash & (self.thumbs.slot < 0))
        blind = blind[blind != unit]
        gap = np.minimum(
            np.bitwise_count(self._whole[blind] ^ self._whole[unit]),
            np.bitwise_count(self._inside[blind] ^ self._inside[unit]),
        )
        found: list[int] = blind[gap <= self.threshold].tolist()
        return found

    def _candidates(self, unit: int) -> tuple[I64, U8]:
        """The candidates of one unit and their distance in each link (:data:`NOT_NEAR` where not)."""
        gaps: dict[int, list[int]] = {}
        for k, link in enumerate(self.links):
            if not link.has_hash[unit] or link.pairs is None:
                continue
            mine = link.hashes[unit]
            a, b = np.asarray(link.pairs[0], np.uint64), np.asarray(link.pairs[1], np.uint64)
            d = np.asarray(link.pairs[2], np.uint8)
            within = d <= link.threshold
            near: dict[int, int] = {int(mine): 0}
            for value, gap in zip(
                np.concatenate([b[within & (a == mine)], a[within & (b == mine)]]).tolist(),
                np.concatenate([d[within & (a == mine)], d[within & (b == mine)]]).tolist(),
                strict=True,
            ):
                near[value] = min(gap, near.get(value, gap))
            hashes = link.hashes.tolist()
            listed = np.array(list(near), dtype=np.uint64)
            for other in np.flatnonzero(link.has_hash & np.isin(link.hashes, listed)).tolist():
                if other != unit:
                    row = gaps.setdefault(other, [NOT_NEAR] * len(self.links))
                    row[k] = min(row[k], near[hashes[other]])
        candidates = np.fromiter(gaps, dtype=np.int64, count=len(gaps))
        return candidates, np.array(list(gaps.values()), dtype=np.uint8).T.reshape(len(self.links), -1)

    def check(self, leader: int, candidates: I64, gaps: U8) -> npt.NDArray[np.bool_]:
        """Which of the candidates' hash matches with ``leader`` (per link) the thumbnails confirm."""
        slot, thumbs = self.thumbs.slot, self.thumbs
        verified = np.zeros(gaps.shape, dtype=bool)
        blind = slot[candidates] < 0
        if slot[leader] < 0:
            # Hashed before descriptors existed (an index not rescanned since): the hashes decide,
            # between two such pictures only (newer pictures' hashes may be of another kind).
            verified[:] = (gaps != NOT_NEAR) & blind
            if self.rotation_link >= 0:
                verified[self.rotation_link] = False
            return verified
        seen = np.flatnonzero(~blind)
        if not len(seen):
            return verified
        mine, theirs = thumbs.pictures(np.array([leader])), thumbs.pictures(candidates[seen])
        inside_link = self.inside_link
        near_inside = gaps[inside_link, seen] != NOT_NEAR if inside_link >= 0 else np.zeros(len(seen), bool)
        verified[0, seen], inside_ok = confirm(mine, theirs, gaps[0, seen] != NOT_NEAR, near_inside)
        if inside_link >= 0:
            verified[inside_link, seen] = inside_ok
        if self.rotation_link >= 0:
            todo = seen[gaps[self.rotation_link, seen] != NOT_NEAR]
            for turn in range(1, ORIENTATIONS):
                if not len(todo):
                    break
                everywhere = np.ones(len(todo), bool)
                ok, _ = confirm(
                    mine, thumbs.turned(candidates[todo], turn), everywhere, ~everywhere, ROTATION_CORRELATION
                )
                verified[self.rotation_link, todo[ok]] = True
                todo = todo[~ok]
        return verified


class _Thumbnails:
    """The descriptors of some units, read from the index at once and made ready to compare."""

    def __init__(self, index: Index, units: Units, wanted: I64, *, keep: bool) -> None:
        n = len(units)
        from_index = [u for u in wanted.tolist() if u not in units.given]
        found = index.images.descriptors(units.file_id[from_index].tolist())
        described, whole, framed, insides = [], [], [], []
        for unit, file_id in zip(wanted.tolist(), units.file_id[wanted].tolist(), strict=True):
            pair = units.given.get(unit) or found.pop(file_id, None)
            if pair is None:
                continue  # indexed before descriptors existed
            described.append(unit)
            whole.append(pair[0])
            if pair[1] is not None:
                framed.append(unit)
                insides.append(pair[1])
        #: Row of each unit in the whole pictures' arrays; -1 without a descriptor.
        self.slot = np.full(n, -1, dtype=np.int64)
        self.slot[described] = np.arange(len(described))
        # Row of each unit in the insides' arrays; -1 for a picture without a border (or a descriptor).
        self._inside_slot = np.full(n, -1, dtype=np.int64)
        self._inside_slot[framed] = np.arange(len(framed))
        # One array of thumbnails: the whole pictures', the insides', then a blank row (never
        # accepted: flat), where units without descriptors point.
        blank = bytes(DESCRIPTOR_BYTES)
        pictures, inside_pictures = descriptor_rows([*whole, blank]), descriptor_rows([*insides, blank])
        self._all = thumbnails(np.concatenate([pictures[:-1], inside_pictures]))
        blank_row = len(self._all.grey) - 1
        self._whole_row = np.where(self.slot >= 0, self.slot, blank_row)
        #: Row in ``_all`` of each unit's inside: its whole picture's without a border.
        self._inside_row = np.where(self._inside_slot >= 0, len(described) + self._inside_slot, self._whole_row)
        #: The raw descriptors of the whole pictures (by ``slot``; without the blank row),
        #: when asked to ``keep`` them (for orientations); the insides' with theirs.
        self.descriptors = pictures[:-1] if keep else pictures[:0]
        self._inside_descriptors = inside_pictures if keep else inside_pictures[:0]

    def detail(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Each unit's detail (:class:`.verify.Thumbnails`) of its whole picture and of its inside;
        infinite for a unit without a descriptor (its hashes decide)."""
        known = self.slot >= 0
        whole = np.where(known, self._all.detail[self._whole_row], np.inf).astype(np.float32)
        inside = np.where(known, self._all.detail[self._inside_row], np.inf).astype(np.float32)
        return whole, inside

    def pictures(self, units: I64) -> Pictures:
        """The thumbnails of these units (which have descriptors)."""
        whole, framed = self._all.rows(self._whole_row[units]), self._inside_slot[units] >= 0
        return Pictures(whole, self._all.rows(self._inside_row[units]) if framed.any() else whole, framed)

    def turned(self, units: I64, turn: int) -> Pictures:
        """The thumbnails of these units in orientation ``turn`` (needs ``keep``)."""
        whole = self.descriptors[self.slot[units]]
        at = self._inside_slot[units]
        framed = at >= 0
        inside = np.where(framed[:, None], self._inside_descriptors[at], whole)
        return Pictures.of(orient_descriptors(whole, turn), orient_descriptors(inside, turn), framed)


def _turned_pairs(turned: npt.NDArray[np.uint64], threshold: int) -> tuple[Any, Any, Any]:
    """Pairs of upright hashes (column 0 of ``turned``) where one is within
    ``threshold`` of another picture's hash in another orientation."""
    n = len(turned)
    if n < 2:
        empty = np.empty(0, np.uint64)
        return empty, empty, np.empty(0, np.uint8)
    flat = np.concatenate([turned[:, 0], turned[:, 1:].T.reshape(-1)])
    i, j, d = pairs_from(flat, np.arange(n), threshold)
    keep = j >= n  # an upright hash against a turned one
    i, other, d = i[keep], (j[keep] - n) % n, d[keep]
    return turned[i, 0], turned[other, 0], d
