"""Verification: do two pictures' tiny thumbnails show the same picture?

A hash match is only a candidate; it holds when the pictures' descriptors
(:func:`imgindex.hashing.descriptor`: 16x16 grey and 8x8 colour thumbnails)
agree by the rules and constants below. Pure numpy: nothing here knows of
files or SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from imgindex.arrays import concatenate_columns_consumed

#: Verification of a hash match on the pictures' descriptors (see hashing.descriptor).
GREY_CORRELATION = 0.80  # Pearson correlation of the 16x16 grey thumbnails, at least
COLOURFUL = 5.0  # mean chroma of the 8x8 thumbnail from which a picture counts as colourful
COLOUR_DIFFERENCE = 30.0  # RMS chroma difference of two colourful pictures, at most
#: A grey picture against a colourful one has no colour to compare: it must correlate more
#: closely, and have about the same contrast (standard deviations of the grey thumbnails within
#: GREY_COPY_CONTRAST of each other). A grey copy is made of its source's luminance (ITU-R 601
#: luma, as the grey thumbnails are; averages or desaturation stay within that factor on most
#: pictures), while a tinted icon, or another picture on one template, often has the same shapes
#: at other levels. Measured on the quality corpus's tuning part.
GREY_COPY_CORRELATION = 0.95
GREY_COPY_CONTRAST = 1.5
#: Two colourful pictures must also agree in colour where they have it: a tinted icon on a white
#: or transparent page differs from one in another tint only where it is drawn, and the
#: colourless page, the same in both, dilutes that difference in a plain mean. So the
#: difference of their colour thumbnails is also taken weighted by each cell's colour (the
#: stronger chroma of the two), after scaling one picture's colours by the factor that fits
#: them best within GREY_COPY_CONTRAST (about the same contrast, as for grey copies): a
#: brightness or contrast change scales every opponent-colour pair by one factor, a tint does
#: not. Its weighted RMS must be at most COLOUR_DIFFERENCE too (:func:`colour_residual`).
#: Where two pictures differ: a copy differs from its source a little everywhere (noise,
#: resampling, a shift by a crop or a turn of a few degrees), while two pictures on one
#: template (signs of one frame, cards of one deck, buttons with other labels) are the same
#: but in one place, where they differ much. So a match whose thumbnails agree must not also
#: differ in one cell much more than in the rest: on the inside's 32x32 grey grids, each
#: normalised to mean 0 and deviation 1 (the deviation at least DETAIL_STD_FLOOR grey levels),
#: the mean absolute difference in each of DETAIL_CELLS x DETAIL_CELLS cells; the largest may
#: be at most DETAIL_CONCENTRATION times the median cell's (the median at least DETAIL_FLOOR).
#: The bound is a rule's: the 99th percentile of this figure over the true links the matches
#: made before it on the quality corpus's tuning part (5.90; held-out part never used).
DETAIL_CELLS = 4
DETAIL_STD_FLOOR = 8.0
DETAIL_FLOOR = 0.05
DETAIL_CONCENTRATION = 5.9
#: The version of the rule above: bump it when a change to the rule or its constants changes
#: which matches hold, so that an index verifies its stored matches again. (3: mirrored and
#: turned copies are also matched on the insides of pictures with a border; 4: one's inside
#: against the other's whole picture; 5: a region of one against the other's whole or inside;
#: 6: where the pictures differ, DETAIL_CONCENTRATION; 7: colour compared where it is, the
#: weighted colour residual; 8: a region also at its moved cuts, regions.moved_cuts;
#: 9: the pictures' shapes, SHAPE_FACTOR.)
VERIFICATION = 9
#: Two pictures without a border whose shapes (width over height) differ by more than this
#: factor are not copies of each other, whatever their thumbnails (squeezed to squares) say:
#: the edits a match is made to survive change a shape by at most a crop of 10 % off two
#: opposite sides (1 / 0.8) with a bar of 18 % added the other way (1.18), 1.47 in all. (A
#: banner of 880 x 200 and one of 336 x 280 on one gradient agree at 16 x 16.) With a border,
#: what matched may be the inside, whose shape the index does not keep: not judged.
SHAPE_FACTOR = 1.5
#: Below this standard deviation (grey levels, in the 16x16 thumbnail) a picture is blank or
#: one colour: its thumbnail cannot confirm a match, so it matches by its bytes only. (On the
#: quality corpus, one-colour pictures are at 0 and the faintest real ones, low-contrast
#: textures and line art, at 0.6 and up.)
LOW_DETAIL = 0.25
#: Two pictures with borders whose whole thumbnails agree (a canvas shared by different
#: pictures makes them agree) must also correlate this much over their foreground: the
#: cells inside the areas that differ from their background (the median of the corners)
#: by more than FOREGROUND_TOLERANCE grey levels in either, when there are at least
#: FOREGROUND_CELLS of them, both with FOREGROUND_CONTRAST; otherwise their insides must
#: agree at FRAMED_INSIDE_CORRELATION (and in colour), unless one of them is nearly flat
#: (a one-colour product), when the wholes decide. Measured on the quality corpus and on
#: pictures padded onto one canvas.
FOREGROUND_CORRELATION = 0.9
FOREGROUND_TOLERANCE = 16
FOREGROUND_CELLS = 16
FOREGROUND_CONTRAST = 4.0  # grey levels of spread in each foreground, or in each inside, to compare them by
FRAMED_INSIDE_CORRELATION = 0.7
_GREY = 16 * 16
_CORNERS = [0, 15, 240, 255]  # of the 16x16 grey thumbnail
_CHROMA = 8 * 8 * 2
#: The coarse view of a grey thumbnail that bounds a correlation before it is computed
#: (:func:`could_agree`): the means of its COARSE_CELLS x COARSE_CELLS blocks.
COARSE_CELLS = 4
#: What the bound (:func:`could_agree`) allows for: it is computed on the thumbnails before
#: they are rounded to half precision (each value within 2**-11 of itself, so a unit vector
#: within 5e-4), while the correlation is of the rounded ones; the squared distances it
#: compares then differ by at most 5e-3 (and single precision adds ~1e-5).
_BOUND_SLACK = 1e-2


class Thumbnails:
    """Descriptors made ready to compare (see :func:`thumbnails`): per picture, its grey
    thumbnail centred and scaled to unit length (zero for a flat picture), its colours as
    opponent-colour pairs, and whether it is colourful. Half-precision: 768 bytes a picture,
    and 68 more for the coarse view that rules most candidates out cheaply (:func:`could_agree`).

    ``rows(at)`` gathers nothing until a column is asked for, and then that column alone: the
    coarse bound, asked first, rules out most candidates, whose 768 bytes are then never copied."""

    def __init__(
        self,
        grey: npt.NDArray[np.float16],
        chroma: npt.NDArray[np.float16],
        colourful: npt.NDArray[np.bool_],
        detail: npt.NDArray[np.float32],
        coarse: npt.NDArray[np.float32],
        length2: npt.NDArray[np.float32],
        mean_chroma: npt.NDArray[np.float32],
        at: npt.NDArray[np.int64] | None = None,
    ) -> None:
        self._columns = (grey, chroma, colourful, detail, coarse, length2, mean_chroma)
        self._at = at  # the rows of the columns these are (all, when None)

    def _column(self, k: int) -> npt.NDArray[Any]:
        column = self._columns[k]
        return column if self._at is None else column[self._at]

    @cached_property
    def grey(self) -> npt.NDArray[np.float16]:  # (n, 256)
        return self._column(0)

    @cached_property
    def chroma(self) -> npt.NDArray[np.float16]:  # (n, 128): (R - G, (R + G) / 2 - B) per pixel of the 8x8
        return self._column(1)

    @cached_property
    def colourful(self) -> npt.NDArray[np.bool_]:  # (n,)
        return self._column(2)

    @cached_property
    def detail(self) -> npt.NDArray[np.float32]:  # (n,): standard deviation of the grey thumbnail, in grey levels
        return self._column(3)

    @cached_property
    def coarse(self) -> npt.NDArray[np.float32]:
        """(n, COARSE_CELLS ** 2): ``grey`` projected on the thumbnails constant on each block (the
        block means, in coordinates of unit length), in single precision, of the values before
        their rounding to half precision."""
        return self._column(4)

    @cached_property
    def length2(self) -> npt.NDArray[np.float32]:
        """(n,): the squared length of ``grey``, likewise."""
        return self._column(5)

    @cached_property
    def mean_chroma(self) -> npt.NDArray[np.float32]:
        """(n, 2): the mean of ``chroma``'s pairs, of the values rounded to half precision."""
        return self._column(6)

    def rows(self, at: npt.NDArray[np.int64]) -> Thumbnails:
        at = np.flatnonzero(at) if at.dtype == bool else at  # (indices compose; masks would not)
        return Thumbnails(*self._columns, at=at if self._at is None else self._at[at])

    def __add__(self, other: Thumbnails) -> Thumbnails:
        """These rows, then ``other``'s."""
        return Thumbnails(*(np.concatenate([self._column(k), other._column(k)]) for k in range(len(self._columns))))


def joined_thumbnails(parts: list[Thumbnails]) -> Thumbnails:
    """The rows of ``parts`` in turn, as one :class:`Thumbnails` (``Thumbnails.__add__`` over
    many), emptying ``parts`` as it goes (:func:`~imgindex.arrays.concatenate_columns_consumed`)."""
    columns = [tuple(part._column(k) for k in range(len(part._columns))) for part in parts]
    parts.clear()
    grey, chroma, colourful, detail, coarse, length2, mean_chroma = concatenate_columns_consumed(columns)
    return Thumbnails(grey, chroma, colourful, detail, coarse, length2, mean_chroma)


def thumbnails(descriptors: npt.NDArray[np.uint8]) -> Thumbnails:
    """Rows of ``DESCRIPTOR_BYTES`` made ready for :func:`confirm`."""
    n = len(descriptors)
    grey = np.empty((n, _GREY), dtype=np.float16)
    chroma = np.empty((n, _CHROMA), dtype=np.float16)
    colourful = np.empty(n, dtype=bool)
    detail = np.empty(n, dtype=np.float32)
    coarse = np.empty((n, COARSE_CELLS * COARSE_CELLS), dtype=np.float32)
    length2 = np.empty(n, dtype=np.float32)
    mean_chroma = np.empty((n, 2), dtype=np.float32)
    for start in range(0, n, 1 << 16):  # bounded float32 temporaries
        part = descriptors[start : start + (1 << 16)]
        unit, part_coarse, part_length2, part_detail = grey_views(part[:, :_GREY].astype(np.float32))
        grey[start : start + len(part)] = unit
        detail[start : start + len(part)] = part_detail
        length2[start : start + len(part)] = part_length2
        coarse[start : start + len(part)] = part_coarse
        rgb = part[:, _GREY:].astype(np.float32).reshape(len(part), -1, 3)
        r, gg, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        pairs = np.stack([r - gg, (r + gg) / 2 - b], axis=-1)  # (m, 64, 2)
        chroma[start : start + len(part)] = pairs.reshape(len(part), -1)
        rounded = chroma[start : start + len(part)].astype(np.float32).reshape(len(part), -1, 2)
        mean_chroma[start : start + len(part)] = rounded.mean(axis=1)
        colourful[start : start + len(part)] = np.hypot(pairs[..., 0], pairs[..., 1]).mean(axis=1) >= COLOURFUL
    return Thumbnails(grey, chroma, colourful, detail, coarse, length2, mean_chroma)


def grey_views(
    grey: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.floating[Any]]]:
    """16x16 grey thumbnails (rows of 256, in single precision; changed in place) as
    :class:`Thumbnails` has them, in single precision: centred and scaled to unit length (zero
    for a flat one), their coarse views (:func:`could_agree`), squared lengths and details."""
    grey -= grey.mean(axis=1, keepdims=True)
    norm = np.sqrt((grey * grey).sum(axis=1, keepdims=True))
    unit = np.divide(grey, norm, out=np.zeros_like(grey), where=norm > 0)
    length2: npt.NDArray[np.float32] = np.einsum("ij,ij->i", unit, unit)
    detail: npt.NDArray[np.floating[Any]] = norm[:, 0] / np.sqrt(_GREY)
    return unit, unit @ _coarse_projection(), length2, detail


@cache
def _coarse_projection() -> npt.NDArray[np.float32]:
    """``(256, COARSE_CELLS ** 2)``: a 16x16 thumbnail's coordinates on the orthonormal basis of
    the thumbnails constant on each block (a block's sum over the square root of its size)."""
    block = 16 // COARSE_CELLS
    rows, columns = np.divmod(np.arange(_GREY), 16)
    projection = np.zeros((_GREY, COARSE_CELLS * COARSE_CELLS), dtype=np.float32)
    projection[np.arange(_GREY), (rows // block) * COARSE_CELLS + columns // block] = 1 / block
    return projection


class CoarseViewed(Protocol):
    """What :func:`could_agree` reads of a side: the coarse views and squared lengths."""

    @property
    def coarse(self) -> npt.NDArray[np.float32]: ...
    @property
    def length2(self) -> npt.NDArray[np.float32]: ...


def could_agree(
    a: CoarseViewed, b: CoarseViewed, grey_correlation: float | npt.NDArray[np.float32]
) -> npt.NDArray[np.bool_]:
    """Which rows could correlate at ``grey_correlation`` (a superset, never less): the grey
    thumbnails are centred vectors of unit length (or zero), so correlation c means a squared
    distance of ``|a|^2 + |b|^2 - 2c``, and their projections on the block-constant
    thumbnails are no farther apart than they are (give or take :data:`_BOUND_SLACK`).
    Sixteen numbers a row instead of 384: most candidates of a hash search differ already in
    their block means."""
    gap = a.coarse - b.coarse
    bound = a.length2 + b.length2 - 2 * grey_correlation + _BOUND_SLACK
    result: npt.NDArray[np.bool_] = np.einsum("ij,ij->i", gap, gap) <= bound
    return result


@dataclass(frozen=True)
class Pictures:
    """Thumbnails of some pictures: of the whole picture, and of what is inside its
    border (the whole picture's again where it has no border, ``framed`` False)."""

    whole: Thumbnails
    inside: Thumbnails
    framed: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, whole: npt.NDArray[np.uint8], inside: npt.NDArray[np.uint8], framed: npt.NDArray[np.bool_]) -> Pictures:
        """From descriptor rows (``inside`` holds the whole picture's where not ``framed``)."""
        return cls(thumbnails(whole), thumbnails(inside), framed)

    def rows(self, at: npt.NDArray[np.int64]) -> Pictures:
        return Pictures(self.whole.rows(at), self.inside.rows(at), self.framed[at])

    def wholes(self) -> Pictures:
        """The whole pictures alone, as pictures without borders."""
        return Pictures(self.whole, self.whole, np.zeros(len(self.framed), dtype=bool))

    def insides(self) -> Pictures:
        """What is inside the borders alone, as pictures without borders."""
        return Pictures(self.inside, self.inside, np.zeros(len(self.framed), dtype=bool))

    def __len__(self) -> int:
        return len(self.framed)


def confirm(
    a: Pictures,
    b: Pictures,
    near_whole: npt.NDArray[np.bool_],
    near_inside: npt.NDArray[np.bool_],
    grey_correlation: float = GREY_CORRELATION,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Which hash matches of picture ``i`` of ``a`` with picture ``i`` of ``b`` their thumbnails
    confirm, for every ``i`` at once (the verdict is the same either way round).

    ``near_whole``/``near_inside``: whose hashes of the whole picture / of the
    inside are within the threshold. A match of the whole pictures needs the
    whole thumbnails to agree (:func:`_verdict`) and, when both pictures have a
    border, their foregrounds to correlate (:data:`FOREGROUND_CORRELATION`),
    or with too little foreground to tell, their insides to agree at
    :data:`FRAMED_INSIDE_CORRELATION` (a canvas shared by different pictures
    makes their wholes agree); a match of the insides needs the insides to
    agree. A picture (or inside) with almost no detail
    (:data:`LOW_DETAIL`) confirms nothing.
    """
    wholes = _against(a.whole, b.whole, grey_correlation)
    if not a.framed.any() and not b.framed.any():  # the insides are the wholes
        return near_whole & wholes, near_inside & wholes
    insides = _against(a.inside, b.inside, grey_correlation)
    both = np.flatnonzero(a.framed & b.framed)
    if len(both):
        # A canvas shared by different pictures makes their wholes agree: their foregrounds
        # must correlate too, or, with too little foreground to tell, their insides agree.
        ai, bi = a.inside.rows(both), b.inside.rows(both)
        similar = _against(ai, bi, min(grey_correlation, FRAMED_INSIDE_CORRELATION))
        foreground, judged = _foreground_correlation(a.whole.rows(both), b.whole.rows(both))
        # Flat insides (a one-colour product on a canvas) have no structure to compare beyond
        # what the wholes showed: the wholes decide.
        flat = (ai.detail < FOREGROUND_CONTRAST) | (bi.detail < FOREGROUND_CONTRAST)
        wholes[both] &= np.where(judged, foreground >= FOREGROUND_CORRELATION, similar | flat)
    return near_whole & wholes, near_inside & insides


def _foreground(t: Thumbnails) -> npt.NDArray[np.bool_]:
    """(n, 256): the cells of each grey thumbnail inside the areas that differ from its
    background (the median of its corners) by more than FOREGROUND_TOLERANCE grey levels."""
    grey = t.grey.astype(np.float32)  # centred, and scaled by 1 / (16 * detail)
    levels = np.abs(grey - np.median(grey[:, _CORNERS], axis=1, keepdims=True)) * (16 * t.detail[:, None])
    # (Levels are whole or half numbers, recovered to within about 0.1 from half precision.)
    differs = (levels > FOREGROUND_TOLERANCE + 0.25).reshape(-1, 16, 16)
    # Only cells inside the foreground: those on its edge follow the shape of the canvas.
    inner = differs.copy()
    inner[:, 1:] &= differs[:, :-1]
    inner[:, :-1] &= differs[:, 1:]
    inner[:, :, 1:] &= differs[:, :, :-1]
    inner[:, :, :-1] &= differs[:, :, 1:]
    result: npt.NDArray[np.bool_] = inner.reshape(-1, _GREY)
    return result


def _foreground_correlation(a: Thumbnails, b: Thumbnails) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """The correlation of each row of ``a``'s grey thumbnails with the same row of ``b``'s over
    the cells that are foreground in either: what is on a shared canvas, not the canvas; and
    where there were enough such cells to tell (elsewhere the correlation is 1)."""
    mask = _foreground(a) | _foreground(b)  # (m, 256)
    x = np.where(mask, a.grey.astype(np.float32), 0)
    y = np.where(mask, b.grey.astype(np.float32), 0)
    count = mask.sum(axis=1)
    sx, sy = x.sum(axis=1), y.sum(axis=1)
    safe = np.maximum(count, 1)
    covariance = (x * y).sum(axis=1) - sx * sy / safe
    variances = ((x * x).sum(axis=1) - sx * sx / safe) * ((y * y).sum(axis=1) - sy * sy / safe)
    result = np.ones(len(count), dtype=np.float32)
    # Enough cells, and structure in both: their spread in grey levels (the thumbnails are
    # centred and scaled by 1 / (16 * detail)).
    spread_a = np.sqrt(np.maximum((x * x).sum(axis=1) - sx * sx / safe, 0) / safe) * (16 * a.detail)
    spread_b = np.sqrt(np.maximum((y * y).sum(axis=1) - sy * sy / safe, 0) / safe) * (16 * b.detail)
    judged = (count >= FOREGROUND_CELLS) & (np.minimum(spread_a, spread_b) >= FOREGROUND_CONTRAST)
    judged &= variances > 0
    result[judged] = covariance[judged] / np.sqrt(variances[judged])
    return result, judged


def _against(a: Thumbnails, b: Thumbnails, grey_correlation: float) -> npt.NDArray[np.bool_]:
    """Each picture of ``a`` against the same row of ``b``: :func:`_verdict` with the detail
    guard; computed only on the rows that could pass (:func:`_could_pass`)."""
    possible = _could_pass(a, b, grey_correlation)
    accepted = np.zeros(len(possible), dtype=bool)
    at = np.flatnonzero(possible)
    if not len(at):
        return accepted
    few = 2 * len(at) < len(possible)  # taking the few rows out costs less than comparing them all
    if few:
        a, b = a.rows(at), b.rows(at)
    correlations: npt.NDArray[np.float32] = np.einsum("ij,ij->i", a.grey.astype(np.float32), b.grey.astype(np.float32))
    verdict = _verdict(correlations, a, b, grey_correlation)
    verdict &= _same_luminance(a, b, correlations, grey_correlation)
    if few:
        accepted[at] = verdict
        return accepted
    return verdict & possible


def _could_pass(a: Thumbnails, b: Thumbnails, grey_correlation: float) -> npt.NDArray[np.bool_]:
    """Which rows could pass :func:`_verdict` and :func:`_same_luminance` (a superset, never
    less), from a few numbers a row: both with detail; the coarse bound (:func:`could_agree`)
    at the correlation the row needs; for two colourful pictures, mean chromas within
    :data:`COLOUR_DIFFERENCE` (the length of a difference's mean is at most its RMS); for a
    colourful and a grey one, their contrasts within :data:`GREY_COPY_CONTRAST`. Thousands
    of gradients on one hash in other colours are refused here, not pixel by pixel."""
    one = a.colourful ^ b.colourful
    needed = np.where(one, max(grey_correlation, GREY_COPY_CORRELATION), grey_correlation).astype(np.float32)
    possible = could_agree(a, b, needed) & (a.detail >= LOW_DETAIL) & (b.detail >= LOW_DETAIL)
    both = a.colourful & b.colourful
    gap = a.mean_chroma - b.mean_chroma
    possible &= ~both | (np.einsum("ij,ij->i", gap, gap) <= (COLOUR_DIFFERENCE + _BOUND_SLACK) ** 2)
    possible &= ~one | (_contrast(a, b) <= GREY_COPY_CONTRAST)
    return possible


def _verdict(
    correlation: npt.NDArray[np.float32], a: Thumbnails, b: Thumbnails, grey_correlation: float
) -> npt.NDArray[np.bool_]:
    """Do two pictures' thumbnails show the same picture, given their grey correlation? The grey
    thumbnails must correlate; two colourful pictures must also agree in colour (flags with the
    same stripes in other colours, tinted icons): the RMS of their opponent-colour difference,
    and its residual weighted by where the colour is (:func:`colour_residual`), at most
    :data:`COLOUR_DIFFERENCE`. A grey picture against a colourful one is judged on luminance
    (:func:`_same_luminance`)."""
    accepted: npt.NDArray[np.bool_] = correlation >= grey_correlation
    both = np.flatnonzero(accepted & a.colourful & b.colourful)
    if len(both):
        x, y = a.rows(both), b.rows(both)
        difference = y.chroma.astype(np.float32) - x.chroma.astype(np.float32)
        rms = np.sqrt((difference * difference).sum(axis=1) / (_CHROMA // 2))
        accepted[both] = (rms <= COLOUR_DIFFERENCE) & (colour_residual(x, y) <= COLOUR_DIFFERENCE)
    return accepted


def colour_residual(a: Thumbnails, b: Thumbnails) -> npt.NDArray[np.float32]:
    """For each row, how far ``b``'s colours are from ``a``'s scaled by one factor within
    :data:`GREY_COPY_CONTRAST` (or ``a``'s from ``b``'s, whichever is nearer): the RMS over the
    8x8 cells of the opponent-colour residual, each cell weighted by the stronger chroma of the
    two there (see the constant's note). Zero for two colourless rows."""
    n = len(a.colourful)
    x = a.chroma.astype(np.float32).reshape(n, -1, 2)
    y = b.chroma.astype(np.float32).reshape(n, -1, 2)
    xx, yy = (x * x).sum(axis=2), (y * y).sum(axis=2)
    tiny = np.float32(1e-6)
    weight = np.sqrt(np.maximum(xx, yy))
    total = np.maximum(weight.sum(axis=1), tiny)
    wxx, wyy = (weight * xx).sum(axis=1), (weight * yy).sum(axis=1)
    wxy = (weight * (x * y).sum(axis=2)).sum(axis=1)
    residuals = []
    for own, other in ((wxx, wyy), (wyy, wxx)):  # other ~ scale * own, best scale in the range
        scale = np.clip(wxy / np.maximum(own, tiny), 1 / GREY_COPY_CONTRAST, GREY_COPY_CONTRAST)
        residuals.append(other - 2 * scale * wxy + scale * scale * own)
    residual: npt.NDArray[np.float32] = np.sqrt(np.maximum(np.minimum(*residuals), 0) / total).astype(np.float32)
    return residual


def _same_luminance(
    a: Thumbnails, b: Thumbnails, correlation: npt.NDArray[np.float32], grey_correlation: float
) -> npt.NDArray[np.bool_]:
    """For each row where one picture is colourful and the other not: could the grey one be made
    of the colourful one's luminance (see :data:`GREY_COPY_CORRELATION`)? True elsewhere."""
    one = a.colourful ^ b.colourful
    close = (correlation >= max(grey_correlation, GREY_COPY_CORRELATION)) & (_contrast(a, b) <= GREY_COPY_CONTRAST)
    result: npt.NDArray[np.bool_] = ~one | close
    return result


def _contrast(a: Thumbnails, b: Thumbnails) -> npt.NDArray[np.floating[Any]]:
    """How many times one picture's detail is the other's (at least 1)."""
    return np.maximum(a.detail, b.detail) / np.maximum(np.minimum(a.detail, b.detail), np.float32(1e-6))


def other_shapes(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], turned: bool) -> npt.NDArray[np.bool_]:
    """Which pairs of pictures have shapes too far apart to be copies (:data:`SHAPE_FACTOR`):
    ``a``, ``b``, the natural logarithm of each one's width over its height (NaN where it is
    not judged: never too far). ``turned``: the pictures may be a quarter turn apart, so
    either way round."""
    gap = np.abs(a - b)
    if turned:
        gap = np.minimum(gap, np.abs(a + b))
    with np.errstate(invalid="ignore"):
        result: npt.NDArray[np.bool_] = gap > np.float32(np.log(SHAPE_FACTOR))
    return result


def normalised_grids(grids: npt.NDArray[np.uint8] | npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Grey grids ``(n, side, side)`` at mean 0 and deviation 1 (see :data:`DETAIL_CONCENTRATION`)."""
    g = grids.astype(np.float32)
    g -= g.mean(axis=(1, 2), keepdims=True)
    g /= np.maximum(np.sqrt((g * g).mean(axis=(1, 2), keepdims=True)), DETAIL_STD_FLOOR)
    return g


def differ_in_one_place(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """For normalised grids (:func:`normalised_grids`) ``a[i]`` and ``b[i]``: do they differ in one
    cell far more than in the rest (:data:`DETAIL_CONCENTRATION`), as two pictures on one
    template do and a copy does not?"""
    n, side = len(a), a.shape[-1]
    cell = side // DETAIL_CELLS
    cells = np.abs(a - b).reshape(n, DETAIL_CELLS, cell, DETAIL_CELLS, cell).mean(axis=(2, 4)).reshape(n, -1)
    median = np.maximum(np.median(cells, axis=1), DETAIL_FLOOR)
    result: npt.NDArray[np.bool_] = cells.max(axis=1) > DETAIL_CONCENTRATION * median
    return result
