"""Cheap shortcuts that must not change an answer: the order of bits in the search's blocks,
and the coarse bound that rules candidates out before their thumbnails are compared."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from imgindex import hashing, kinds
from imgindex.match import bitorder, search, verify
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


@pytest.fixture(scope="module")
def smooth_hashes() -> np.ndarray:
    pictures = smooth_pictures(7000, 3)
    values = [kinds.to_unsigned(kinds.get("dhash").picture(p)) for p in pictures]
    return np.unique(np.array(values, dtype=np.uint64))


def test_spread_moves_bits_and_keeps_every_distance() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**63, 500, dtype=np.int64).view(np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, 500, dtype=np.int64).view(np.uint64)
    assert np.array_equal(np.bitwise_count(bitorder.spread(a) ^ bitorder.spread(b)), np.bitwise_count(a ^ b))
    singles = np.uint64(1) << np.arange(64, dtype=np.uint64)
    moved = bitorder.spread(singles)
    assert sorted(moved.tolist()) == sorted(singles.tolist())  # one bit to one bit, each once
    assert not np.array_equal(moved, singles)
    stored = np.uint64(1) << np.array(bitorder.SPREAD, dtype=np.uint64)
    assert np.array_equal(bitorder.spread(stored), singles)  # new bit k is stored bit SPREAD[k]
    assert np.array_equal(bitorder.spread(a), bitorder.spread(a.astype(">u8")))  # big-endian input alike
    # Each 16-bit block of the new order holds two bits of each of a dHash's 8 rows.
    for block in range(4):
        rows = [(63 - bitorder.SPREAD[16 * block + k]) // 8 for k in range(16)]
        assert sorted(rows) == sorted(list(range(8)) * 2)


@pytest.mark.parametrize("target_sample", [bitorder.TARGET_SAMPLE, 2048])
def test_spread_makes_fewer_candidates_for_smooth_pictures(
    smooth_hashes: np.ndarray, target_sample: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Counted on all 7,000 pictures, and on a sample of 2,048 of them as on millions.)"""
    monkeypatch.setattr(bitorder, "TARGET_SAMPLE", target_sample)
    blocks = ((0, 16, 1), (16, 16, 1), (32, 16, 1), (48, 16, 2))  # the plan for a few million
    flips = [np.array(search.flips(w, a), dtype=np.intp) for _, w, a in blocks]
    stored = bitorder.candidates_per_query(smooth_hashes, smooth_hashes, blocks, flips)
    spread = bitorder.candidates_per_query(
        bitorder.spread(smooth_hashes), bitorder.spread(smooth_hashes), blocks, flips
    )
    assert spread < stored / 2
    chosen = bitorder.spread_if_cheaper(smooth_hashes, smooth_hashes, blocks, flips)
    assert chosen is not None
    assert np.array_equal(chosen, bitorder.spread(smooth_hashes))


@pytest.mark.parametrize("target_sample", [bitorder.TARGET_SAMPLE, 2048])
def test_the_stored_order_is_kept_when_spreading_gains_little(
    target_sample: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bitorder, "TARGET_SAMPLE", target_sample)
    # Hashes whose bits are independent: either order makes about as many candidates, and the
    # stored one (whose sorted inputs keep lookups in the cache) stays.
    rng = np.random.default_rng(4)
    hashes = np.unique(rng.integers(0, 2**63, 50_000, dtype=np.int64).view(np.uint64) * np.uint64(2))
    blocks = ((0, 16, 1), (16, 16, 1), (32, 16, 1), (48, 16, 2))
    flips = [np.array(search.flips(w, a), dtype=np.intp) for _, w, a in blocks]
    assert bitorder.spread_if_cheaper(hashes, hashes[::3], blocks, flips) is None
    # Nor is it taken when the sample finds no candidate to save.
    assert bitorder.spread_if_cheaper(hashes[:10], hashes[-10:], blocks, flips) is None


@pytest.mark.parametrize("threshold", [3, 8, 10])
def test_searches_in_either_order_find_the_brute_force_pairs(
    monkeypatch: pytest.MonkeyPatch, smooth_hashes: np.ndarray, threshold: int
) -> None:
    monkeypatch.setattr(search, "ORDER_FLOOR_NS", 0.0)  # choose the order even for a small search
    assert search.plan(len(smooth_hashes), len(smooth_hashes), threshold).blocks  # the indexed search runs
    expected = search.pairs_within_brute_force(smooth_hashes, threshold)
    assert len(expected[0]) > 20
    for found in (
        search.pairs_within(smooth_hashes, threshold),
        search.pairs_from(smooth_hashes, np.arange(len(smooth_hashes)), threshold),
    ):
        for a, b in zip(found, expected, strict=True):
            assert np.array_equal(a, b)
    targets, queries = smooth_hashes[::2], smooth_hashes[1::2]
    i, j, d = search.pairs_between(targets, queries, threshold)
    gaps = np.bitwise_count(queries[:, None] ^ targets[None, :])
    qi, tj = np.nonzero(gaps <= threshold)
    assert sorted(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == sorted(
        zip(qi.tolist(), tj.tolist(), gaps[qi, tj].tolist(), strict=True)
    )


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


def test_thumbnails_rows_of_rows_are_the_rows_they_name() -> None:
    """Rows of thumbnails are gathered when a column is asked for: rows of rows (in any order,
    repeated) name the rows of the whole, column by column, and joined ones follow in order."""
    rng = np.random.default_rng(6)
    whole = thumbnails(rng.integers(0, 256, (50, hashing.DESCRIPTOR_BYTES), dtype=np.uint8))
    first = rng.integers(0, 50, 40)
    second = rng.integers(0, 40, 30)
    nested = whole.rows(first).rows(second)
    joined = whole.rows(first) + whole.rows(second)
    for name in ("grey", "chroma", "colourful", "detail", "coarse", "length2", "mean_chroma"):
        column = getattr(whole, name)
        assert np.array_equal(getattr(nested, name), column[first[second]])
        assert np.array_equal(getattr(joined, name), np.concatenate([column[first], column[second]]))


def gradients(n: int, seed: int) -> list[Image.Image]:
    """Pictures that change from top to bottom only (one dHash for all), in colours near each
    other, and grey copies of some at other contrasts, a little noisy: many pairs close to
    every colour, contrast and correlation rule."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 40)[:, None]
    made = []
    for k in range(n):
        top = np.clip(np.array([150, 90, 60]) + rng.integers(-45, 46, 3), 0, 255)
        bottom = np.clip(np.array([40, 60, 110]) + rng.integers(-45, 46, 3), 0, 255)
        rows = top * (1 - ramp) + bottom * ramp
        if k % 5 == 4:  # a grey copy of the one before, at another contrast
            grey = rows @ np.array([0.299, 0.587, 0.114])
            grey = 128 + (grey - grey.mean()) * rng.uniform(0.5, 2.0)
            rows = np.repeat(grey[:, None], 3, axis=1)
        pixels = np.repeat(rows[:, None], 32, axis=1)
        if k % 5 == 4:  # ... a little changed in its broad areas: correlations just under one
            pixels += np.kron(rng.normal(0, rng.uniform(0, 10), (4, 4)), np.ones((10, 8)))[:, :, None]
        made.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB"))
    return made


@pytest.mark.parametrize("level", [0.8, 0.9, 0.97])
def test_the_colour_and_contrast_bounds_change_no_verdict(level: float) -> None:
    """Every pair of many gradients on one hash: the verdict with the bounds that skip the
    pixels (mean chromas, contrasts) is the verdict on the pixels, and the bounds skip most."""
    pictures = gradients(120, 8)
    rows = thumbnails(hashing.descriptor_rows([hashing.descriptor(p) for p in pictures]))
    i, j = np.triu_indices(len(pictures), 1)
    a, b = rows.rows(i), rows.rows(j)
    correlation = np.einsum("ij,ij->i", a.grey.astype(np.float32), b.grey.astype(np.float32))
    on_pixels = verify._verdict(correlation, a, b, level)
    on_pixels &= verify._same_luminance(a, b, correlation, level)
    on_pixels &= (a.detail >= verify.LOW_DETAIL) & (b.detail >= verify.LOW_DETAIL)
    assert np.array_equal(verify._against(a, b, level), on_pixels)
    possible = verify._could_pass(a, b, level)
    assert possible[on_pixels].all()
    colourful = a.colourful & b.colourful
    assert on_pixels[colourful].sum() > 50 and (~possible[colourful]).sum() > 1000
    one = a.colourful ^ b.colourful
    assert on_pixels[one].sum() > 10 and (~possible[one] & (correlation[one] > 0.99)).sum() > 100
    assert (on_pixels[one] & (correlation[one] < 0.99)).any()
