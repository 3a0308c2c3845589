"""The units a matcher matches, and what is read of them from the index.

A *unit* is one picture to match (:class:`Units`: its hashes, and where its
thumbnails come from). :class:`UnitThumbnails` reads the descriptors of some
units and makes them ready to compare; :func:`unit_regions` reads the hashes
of their regions and :func:`read_grids` their grids. Each reads
:data:`READ_UNITS` units at a time, so that the bytes of millions of rows are
never held at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from imgindex.arrays import concatenate_consumed
from imgindex.hashing import (
    COLOUR_SIDE,
    DESCRIPTOR_BYTES,
    GREY_SIDE,
    GRID_SIDE,
    ORIENTATIONS,
    REGIONS,
    descriptor_rows,
    grid_rows,
    orient_descriptors,
    region_rows,
)
from imgindex.storage import Index

from .search import I64
from .verify import Pictures, Thumbnails, joined_thumbnails, thumbnails

#: Units whose descriptors or grids are read from the index at once (their bytes, some
#: 130 MB, are let go once they are made into arrays).
READ_UNITS = 1 << 16

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
    #: unit -> the width and height of its picture, for units not in the index
    given_sizes: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    sha256: npt.NDArray[np.uint8] | None = None  # (n, 32)
    params_id: I64 | None = None
    #: The hashes of the units' regions (rows of ``len(REGIONS)``) and which units have them,
    #: when read already (:func:`unit_regions`): the passes of a full verification read them once.
    regions: tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]] | None = None

    def __len__(self) -> int:
        return len(self.file_id)


class UnitThumbnails:
    """The descriptors of some units, read from the index (a share at a time) and made ready to compare."""

    def __init__(self, index: Index, units: Units, wanted: I64, *, keep: bool) -> None:
        n = len(units)
        described: list[int] = []
        framed: list[int] = []
        #: The natural logarithm of each unit's width over its height (:func:`.verify.other_shapes`);
        #: NaN where it is not known or has a border (its whole picture's shape is not what matched).
        self.shape = np.full(n, np.nan, dtype=np.float32)
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
            shapes: list[tuple[int, int, int]] = []
            for unit, file_id in zip(share.tolist(), units.file_id[share].tolist(), strict=True):
                given = units.given.get(unit)
                read = None if given else found.pop(file_id, None)
                pair = given or read
                if pair is None:
                    continue  # indexed before descriptors existed
                described.append(unit)
                wholes.append(pair[0])
                if pair[1] is not None:
                    framed.append(unit)
                    insides.append(pair[1])
                    continue
                if read is None:
                    width, height = units.given_sizes.get(unit, (0, 0))
                else:
                    width, height = read[2] or 0, read[3] or 0
                if width > 0 and height > 0:
                    shapes.append((unit, width, height))
            del found
            if shapes:
                at, widths, heights = np.array(shapes, dtype=np.int64).T
                self.shape[at] = np.log(widths / heights)
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
        framed = np.flatnonzero(self.framed())
        return self.slot[framed], self._inside_descriptors[self._inside_slot[framed]]

    def framed(self) -> npt.NDArray[np.bool_]:
        """Which units have a border (their inside's thumbnails are not their whole picture's)."""
        result: npt.NDArray[np.bool_] = self._inside_slot >= 0
        return result

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


def detail_by_parts(
    index: Index, units: Units, parts: list[I64]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Which units have a descriptor and the detail of each one's whole picture and inside
    (:meth:`UnitThumbnails.detail`), the thumbnails of a part at a time read and let go."""
    n = len(units)
    described = np.zeros(n, dtype=bool)
    whole = np.full(n, np.inf, dtype=np.float32)
    inside = np.full(n, np.inf, dtype=np.float32)
    for part in parts:
        thumbs = UnitThumbnails(index, units, part, keep=False)
        described[part] = thumbs.slot[part] >= 0
        whole[part], inside[part] = thumbs.detail(part)
        del thumbs
    return described, whole, inside


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


def read_grids(
    index: Index, units: Units, wanted: I64
) -> tuple[list[int], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """The grids of the ``wanted`` units that have one, and the colour thumbnails of their insides:
    those units, their grids (rows of ``GRID_SIDE`` x ``GRID_SIDE``) and colours (rows of
    ``COLOUR_SIDE`` x ``COLOUR_SIDE`` x 3), in that order. A file looked up has its own."""
    have: list[int] = []
    grids = [np.empty((0, GRID_SIDE, GRID_SIDE), np.uint8)]
    colours = [np.empty((0, COLOUR_SIDE, COLOUR_SIDE, 3), np.uint8)]
    for start in range(0, len(wanted), READ_UNITS):
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
    return have, concatenate_consumed(grids), concatenate_consumed(colours)
