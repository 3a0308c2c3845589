"""Kinds of perceptual hash: a registry of name, size and function.

A kind turns a picture into a hash; code that needs "the hash" asks the
registry by the name in :class:`imgindex.hashing.HashSettings`, never an if
on a string. The difference hash (dHash) also has a function over grey
thumbnails, the same bits from cells averaged out of a 16x16 thumbnail, so
that ``--rotations`` hashes each orientation of a stored thumbnail without
decoding anything. A new kind goes here: its name, its bits, its function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import imagehash
import numpy as np
import numpy.typing as npt
from PIL import Image

Grey = npt.NDArray[np.float32]


@dataclass(frozen=True)
class HashKind:
    name: str
    bits: int
    #: The hash of a decoded picture (RGB, already shrunk), as a signed 64-bit integer.
    picture: Callable[[Image.Image], int]
    #: The hashes of grey thumbnails ``(n, side, side)``, or None when the kind has none.
    grey: Callable[[Grey], npt.NDArray[np.uint64]] | None = None


def to_signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def to_unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def hash_hex(value: int) -> str:
    return f"{to_unsigned(value):016x}"


_WEIGHTS: Final = np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64)


def difference_bits(cells: npt.NDArray[Any]) -> npt.NDArray[np.uint64]:
    """``(n, 8, 9)`` cells to ``n`` 64-bit hashes: a bit per cell brighter than the one to
    its left, row by row, the first bit the most significant (imagehash's order)."""
    bits = (cells[:, :, 1:] > cells[:, :, :-1]).reshape(len(cells), 64)
    hashes: npt.NDArray[np.uint64] = (bits.astype(np.uint64) * _WEIGHTS).sum(axis=1, dtype=np.uint64)
    return hashes


def _dhash_picture(picture: Image.Image) -> int:
    # As imagehash.dhash: the grey picture resized to 9x8 with Lanczos, compared as uint8 (a
    # bit per cell brighter than its left neighbour, packed first bit highest).
    grey = picture if picture.mode == "L" else picture.convert("L")
    cells = np.frombuffer(grey.resize((9, 8), Image.Resampling.LANCZOS).tobytes(), dtype=np.uint8).reshape(8, 9)
    return to_signed(int.from_bytes(np.packbits(cells[:, 1:] > cells[:, :-1]).tobytes(), "big"))


def _box_weights(size: int, cells: int) -> npt.NDArray[np.float32]:
    """``(cells, size)``: each row averages the pixels under one of ``cells`` equal spans."""
    edges = np.arange(cells + 1) * size / cells
    starts, ends = np.arange(size), np.arange(size) + 1
    overlap = np.clip(np.minimum(ends, edges[1:, None]) - np.maximum(starts, edges[:-1, None]), 0, None)
    weights: npt.NDArray[np.float32] = (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)
    return weights


def _dhash_grey(grey: Grey) -> npt.NDArray[np.uint64]:
    side = grey.shape[1]
    cells = _box_weights(side, 8) @ grey @ _box_weights(side, 9).T  # (n, 8, 9)
    return difference_bits(cells)


def _phash_picture(picture: Image.Image) -> int:
    return to_signed(int(str(imagehash.phash(picture, hash_size=8, highfreq_factor=4)), 16))


KINDS: Final[dict[str, HashKind]] = {
    "dhash": HashKind("dhash", 64, _dhash_picture, _dhash_grey),
    # The hash of imgindex before version 3's dHash; kept so that settings naming it still work.
    "phash": HashKind("phash", 64, _phash_picture),
}


def get(name: str) -> HashKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown hash kind {name!r}; known: {', '.join(KINDS)}") from None
