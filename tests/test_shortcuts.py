"""Cheap shortcuts that must not change an answer: the coarse bound that rules candidates out
before their thumbnails are compared."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from imgindex import hashing
from imgindex.match.verify import could_agree, thumbnails


def smooth_pictures(n: int, seed: int) -> list[Image.Image]:
    """Small smooth colour fields (a few random colours blurred together), as a crawl's
    spacers, buttons and backgrounds are: their dHashes' rows are mostly runs."""
    rng = np.random.default_rng(seed)
    pictures = []
    for _ in range(n):
        coarse = rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)
        picture = Image.fromarray(coarse, "RGB").resize((48, 48), Image.Resampling.BICUBIC)
        pictures.append(picture.filter(ImageFilter.GaussianBlur(2)))
    return pictures


def test_coarse_bound_never_refuses_what_correlates_and_refuses_most_of_the_rest() -> None:
    pictures = smooth_pictures(300, 5)
    # Copies a little off (noise, a shift of a pixel), and every other picture.
    rng = np.random.default_rng(2)
    copies = []
    for p in pictures:
        noisy = np.clip(np.asarray(p, np.int16) + rng.integers(-12, 13, (48, 48, 3)), 0, 255).astype(np.uint8)
        copies.append(Image.fromarray(noisy, "RGB").transform((48, 48), Image.Transform.AFFINE, (1, 0, 1, 0, 1, 0)))
    mine = thumbnails(hashing.descriptor_rows([hashing.descriptor(p) for p in pictures]))
    theirs = thumbnails(hashing.descriptor_rows([hashing.descriptor(p) for p in copies + pictures[1:] + pictures[:1]]))
    rows = np.arange(len(pictures))
    a = mine.rows(np.concatenate([rows, rows]))
    b = theirs.rows(np.concatenate([rows, rows + len(pictures)]))
    correlation = np.einsum("ij,ij->i", a.grey.astype(np.float32), b.grey.astype(np.float32))
    for level in (0.5, 0.8, 0.9, 0.95):
        possible = could_agree(a, b, level)
        assert possible[correlation >= level].all()
    possible = could_agree(a, b, 0.9)
    assert possible[: len(pictures)].mean() > 0.9  # the copies correlate and pass
    refused = ~possible[len(pictures) :] & (correlation[len(pictures) :] < 0.9)
    assert refused.mean() > 0.5  # most other pictures are refused without their full thumbnails
