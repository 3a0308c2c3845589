"""Regions: candidates between a region of one picture and another whole picture.

A copy cropped 5-10 % a side, cut on one side, or given a caption bar is not
near its source's hash, but it is near the hash of a region of the source
(:data:`imgindex.hashing.REGIONS`: the middle 90 % of its inside, or the
inside with 12 % cut off one side), and the other way round for a copy that
adds a bar. :func:`region_pairs` finds the pairs of pictures where a region's
hash of one is within the threshold of the other's whole or inside hash;
:func:`box_descriptors` cuts a region's thumbnails (or a moved cut's) out of
the picture's stored grey grid and its inside's colour thumbnail, to verify
such a match on what met. Pure numpy: nothing here knows of files or SQLite.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

from imgindex.arrays import distinct, row_kinds
from imgindex.hashing import COLOUR_SIDE, DESCRIPTOR_BYTES, GREY_SIDE, GRID_SIDE, REGIONS

from .links import Positions, by_group, every_pair, smallest
from .search import I64, U64, Pairs, empty_pairs, pairs_between

#: The largest distance between a region's hash and another picture's (whole or inside): a
#: region is one of several chances to meet, so its link is held closer than today's 10 bits
#: (at 10 the probe's false candidates are 2.8 times as many for 10 % more true ones).
REGION_THRESHOLD = 8
#: ... and the grey correlation a region's thumbnails need with what they met: a picture has
#: twenty chances to meet another by a region (five regions, against a whole picture or an
#: inside, either way round), so, as for the seven orientations of --rotations, the check is
#: held as close as that link's (:data:`.orientations.ROTATION_CORRELATION`).
REGION_CORRELATION = 0.90


#: A region's cut, moved: a copy's bar or cut is not always the 12 % the side regions cut off (a
#: caption bar of 10-18 % of the source's height is 9-15 % of the copy's; a one-sided cut is
#: 8-15 %), nor a crop the middle region's 5 % (2-10 % a side). Its hash still meets the other
#: picture's (within REGION_THRESHOLD), but at 16x16 a cut two per cent off lets a bar in or
#: leaves a strip out, and the correlation falls below REGION_CORRELATION (on the quality
#: corpus's caption bars, 0.97-1.00 at the bar's edge against 0.14-0.76 at 12 %). So where a
#: region's own cut does not confirm a match, its thumbnail is cut again with its edge across
#: the range the region is for, the side regions' from 8 to 16 % in steps of 2 % (a third of a
#: thumbnail's pixel), the middle's margins from 3.5 to 9.5 % in steps of 1.5 %, and the match
#: holds when one of those cuts confirms it by the same rules.
SIDE_CUTS: Final = (0.08, 0.10, 0.14, 0.16)
MIDDLE_MARGINS: Final = (0.035, 0.065, 0.08, 0.095)
Box = tuple[float, float, float, float]


def moved_cuts(k: int) -> tuple[Box, ...]:
    """Region ``k``'s box (:data:`REGIONS`) with its cut edges moved across its range
    (:data:`SIDE_CUTS`, :data:`MIDDLE_MARGINS`), as shares of the inside's width and height."""
    name, _ = REGIONS[k]
    if name == "middle":
        return tuple((m, m, 1 - m, 1 - m) for m in MIDDLE_MARGINS)
    cut: dict[str, Callable[[float], Box]] = {
        "bottom cut": lambda c: (0.0, 0.0, 1.0, 1 - c),
        "top cut": lambda c: (0.0, c, 1.0, 1.0),
        "left cut": lambda c: (c, 0.0, 1.0, 1.0),
        "right cut": lambda c: (0.0, 0.0, 1 - c, 1.0),
    }
    return tuple(cut[name](c) for c in SIDE_CUTS)


def region_pairs(
    regions: npt.NDArray[np.uint64],
    has_regions: npt.NDArray[np.bool_],
    targets: npt.NDArray[np.uint64],
    has_target: npt.NDArray[np.bool_],
    threshold: int,
    focus: npt.NDArray[np.bool_] | None = None,
) -> Pairs:
    """Pairs of units ``u < v`` (each once, at the smallest distance) where a hash of one's
    regions (``regions[u]``, rows of ``len(REGIONS)``, where ``has_regions[u]``) is within
    ``threshold`` of one of the other's hashes ``targets[v]`` (rows: its whole and inside
    hashes, or the hashes of its thumbnail's orientations; where ``has_target``). With
    ``focus``, only pairs with a focus unit on a side.

    Two units with the same hashes (targets and regions) are not paired here: the link
    of their whole pictures has them at distance 0 already, and thousands of files of one
    picture with other bytes (a spacer saved again and again) would otherwise make
    millions of pairs. The search runs over one unit of each such kind. A hash of 0 (the
    hash of any flat picture or region, whatever its colour: blank images, spacers) is
    left out on both sides: such a picture has nothing its thumbnail could confirm a match
    by, and thousands of them would all be candidates of each other."""
    used = np.flatnonzero(has_regions | has_target)
    if not len(used):
        return empty_pairs()
    signature = np.column_stack([targets[used], regions[used], has_regions[used], has_target[used]]).astype(np.uint64)
    first, kind_of = row_kinds(signature)
    del signature
    one = used[first]  # a unit of each kind
    kind_focus = None if focus is None else np.bincount(kind_of, weights=focus[used], minlength=len(one)) > 0
    ku, kv, d = _kind_pairs(one, regions, has_regions, targets, has_target, threshold, kind_focus)
    # Every unit of one kind with every unit of the other; with a focus, only the pairs with a
    # focus unit on a side are made (a focus unit of one kind with every unit of the other, then
    # the others of that kind with its focus units), not all of them first.
    everyone = by_group(used, kind_of, len(one))
    if focus is None:
        u, v, d = every_pair(ku, kv, d, everyone, everyone)
    else:
        chosen = by_group(used, kind_of, len(one), focus[used])
        others = by_group(used, kind_of, len(one), ~focus[used])
        u1, v1, d1 = every_pair(ku, kv, d, chosen, everyone)
        u2, v2, d2 = every_pair(ku, kv, d, others, chosen)
        u, v, d = np.concatenate([u1, u2]), np.concatenate([v1, v2]), np.concatenate([d1, d2])
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    order = np.lexsort((hi, lo))
    return lo[order], hi[order], d[order]


def _kind_pairs(
    one: I64,
    regions: npt.NDArray[np.uint64],
    has_regions: npt.NDArray[np.bool_],
    targets: npt.NDArray[np.uint64],
    has_target: npt.NDArray[np.bool_],
    threshold: int,
    focus: npt.NDArray[np.bool_] | None,
) -> Pairs:
    """:func:`region_pairs` among the kinds, each the unit ``one[k]`` of the columns (whose
    rows are not copied for it: at ten million units, half a gigabyte): ``(k, l, distance)``,
    ``k < l``."""
    n = len(one)
    owners = np.flatnonzero(has_regions[one])
    aimed = np.flatnonzero(has_target[one])
    if not len(owners) or not len(aimed):
        return empty_pairs()
    q_values, q_first, q_members = _by_value(owners, regions, one[owners])
    t_values, t_first, t_members = _by_value(aimed, targets, one[aimed])
    if not len(q_values) or not len(t_values):
        return empty_pairs()
    if focus is None:
        i, j, d = pairs_between(t_values, q_values, threshold)
    else:
        # A focus unit's regions against every target, and every region against a focus unit's
        # targets (those few bucketed, not the many regions).
        q_focus = _touching(q_first, q_members, focus)
        t_focus = _touching(t_first, t_members, focus)
        i1, j1, d1 = pairs_between(t_values, q_values[q_focus], threshold)
        j2, i2, d2 = pairs_between(q_values, t_values[t_focus], threshold)
        i = np.concatenate([q_focus[i1], i2])
        j = np.concatenate([j1, t_focus[j2]])
        d = np.concatenate([d1, d2])
    u, v, d = every_pair(i, j, d, (q_first, q_members), (t_first, t_members))
    keep = u != v
    if focus is not None:
        keep &= focus[u] | focus[v]
    u, v, d = u[keep], v[keep], d[keep]  # (the unfiltered arrays freed before the sort)
    return smallest(u, v, d, n)


def _by_value(units: I64, source: U64, rows: I64) -> tuple[U64, Positions, Positions]:
    """Distinct values but the flat hash 0, and for each the units that have it (CSR:
    ``members[first[k]:first[k + 1]]``), each unit once per value. The values: for each of
    ``units`` (ascending), the row ``rows[k]`` of ``source``. At ten million pictures these are
    tens of millions of values: sorted once, each array made from the one before and let go
    (a pass's peak)."""
    flat = source[rows].reshape(-1).view(np.int64)  # by value as signed numbers, then unit:
    order = np.argsort(flat, kind="stable")  # a stable sort keeps each value's rows ascending
    signed = flat[order]
    del flat
    order //= source.shape[1]
    members = units[order]
    del order
    fresh = signed != 0  # the first of each (value, unit), but the flat hash
    fresh[1:] &= (signed[1:] != signed[:-1]) | (members[1:] != members[:-1])
    if not fresh.all():
        signed = signed[fresh]
        members = members[fresh]
    del fresh
    start = np.ones(len(signed), dtype=bool)
    start[1:] = signed[1:] != signed[:-1]
    # Positions and units in 32 bits where they fit (half the memory of the CSR kept through
    # the pass; :func:`.links.every_pair` widens what it makes).
    first = np.append(np.flatnonzero(start), len(signed))
    if len(signed) < 2**31 and len(source) < 2**31:
        return signed[start].view(np.uint64), first.astype(np.int32), members.astype(np.int32)
    return signed[start].view(np.uint64), first.astype(np.int64), members


def _touching(first: Positions, members: Positions, focus: npt.NDArray[np.bool_]) -> I64:
    """The values (indices) that some focus unit has."""
    owner = np.repeat(np.arange(len(first) - 1), np.diff(first))
    return distinct(owner[focus[members]])


@cache
def _weights(side: int, cells: int, start: float, end: float) -> npt.NDArray[np.float32]:
    """``(cells, side)``: row ``k`` averages the pixels of a ``side``-pixel line over the
    ``k``-th of ``cells`` equal parts of ``[start, end)`` (shares of the line), each pixel by
    how much of it lies there."""
    edges = (start + np.arange(cells + 1) * (end - start) / cells) * side
    lo, hi = np.arange(side), np.arange(side) + 1
    overlap = np.clip(np.minimum(hi, edges[1:, None]) - np.maximum(lo, edges[:-1, None]), 0, None)
    weights: npt.NDArray[np.float32] = (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)
    return weights


def box_descriptors(grids: npt.NDArray[np.uint8], colours: npt.NDArray[np.uint8], box: Box) -> npt.NDArray[np.uint8]:
    """The descriptors (rows of ``DESCRIPTOR_BYTES``) of one box (shares of the inside's width
    and height) of each picture: its 16x16 grey cut out of the picture's grey grid (``grids``,
    ``(m, 32, 32)``, of the inside) and its 8x8 colour out of the inside's 8x8 colour thumbnail
    (``colours``, ``(m, 8, 8, 3)``), both by box weights over the box."""
    m = len(grids)
    out = np.empty((m, DESCRIPTOR_BYTES), dtype=np.uint8)
    grey_bytes = GREY_SIDE * GREY_SIDE
    out[:, :grey_bytes] = box_grey(grids, box)
    x0, y0, x1, y1 = box
    cy, cx = _weights(COLOUR_SIDE, COLOUR_SIDE, y0, y1), _weights(COLOUR_SIDE, COLOUR_SIDE, x0, x1)
    planes = colours.astype(np.float32).transpose(0, 3, 1, 2)  # (m, 3, 8, 8)
    colour = (cy @ planes @ cx.T).transpose(0, 2, 3, 1)  # (m, 8, 8, 3)
    out[:, grey_bytes:] = np.clip(np.rint(colour), 0, 255).reshape(m, -1)
    return out


def box_grey(grids: npt.NDArray[np.uint8] | npt.NDArray[np.float32], box: Box) -> npt.NDArray[np.float32]:
    """The 16x16 grey of one box of each picture's grid (rows of 256 whole numbers, in single
    precision), as :func:`box_descriptors` cuts it: :func:`box_rows`, then :func:`rows_grey`."""
    return rows_grey(box_rows(np.asarray(grids, dtype=np.float32), box), box)


def box_rows(grids: npt.NDArray[np.float32], box: Box) -> npt.NDArray[np.float32]:
    """``(m, 16, 32)``: the grids' rows resampled to the box's 16 rows (boxes with the same top
    and bottom share them: a side region's cuts moved left or right)."""
    _, y0, _, y1 = box
    rows: npt.NDArray[np.float32] = _weights(GRID_SIDE, GREY_SIDE, y0, y1) @ grids
    return rows


def rows_grey(rows: npt.NDArray[np.float32], box: Box) -> npt.NDArray[np.float32]:
    """The 16x16 grey of the box from its rows (:func:`box_rows`): their columns resampled to
    the box's 16, rounded to whole grey levels."""
    x0, _, x1, _ = box
    grey = np.rint(rows @ _weights(GRID_SIDE, GREY_SIDE, x0, x1).T).reshape(len(rows), -1)
    result: npt.NDArray[np.float32] = np.clip(grey, 0, 255, out=grey)
    return result


def box_grids(grids: npt.NDArray[np.uint8], box: Box) -> npt.NDArray[np.float32]:
    """One box (shares) of each picture's grey grid, brought back to the grid's size."""
    x0, y0, x1, y1 = box
    gy, gx = _weights(GRID_SIDE, GRID_SIDE, y0, y1), _weights(GRID_SIDE, GRID_SIDE, x0, x1)
    cut: npt.NDArray[np.float32] = gy @ grids.astype(np.float32) @ gx.T
    return cut
