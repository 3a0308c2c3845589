"""Set operations by sorting give numpy's answers."""

from __future__ import annotations

import numpy as np
import pytest

from imgindex import arrays
from imgindex.arrays import common, concatenate_consumed, digest_units, distinct, lex_order, row_kinds, union


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.uint8])
@pytest.mark.parametrize("n", [0, 1, 2, 1000])
def test_distinct_union_and_common_are_numpys(dtype: type, n: int) -> None:
    rng = np.random.default_rng(n)
    info = np.iinfo(dtype)
    for spread in (3, int(info.max)):  # many repeats, and almost none (the ends of the range included)
        high = min(int(info.min) + spread, int(info.max))
        a = rng.integers(int(info.min), high, n, dtype=dtype, endpoint=True)
        b = np.concatenate([rng.integers(int(info.min), high, n, dtype=dtype, endpoint=True), a[: n // 3]])
        for got, expected in (
            (distinct(a), np.unique(a)),
            (union(a, b), np.union1d(a, b)),
            (union(a, b, a[::2]), np.union1d(np.union1d(a, b), a[::2])),
            (common(a, b), np.intersect1d(a, b)),
        ):
            assert got.dtype == expected.dtype and np.array_equal(got, expected)
    grid = np.arange(12, dtype=dtype).reshape(3, 4)
    assert np.array_equal(distinct(grid), np.unique(grid))  # flattened, as numpy does
    shuffled = np.arange(20, 0, -1).astype(dtype)
    distinct(shuffled)
    assert shuffled.tolist() == list(range(20, 0, -1))  # its input left as it was


@pytest.mark.parametrize("collide", [False, True])
def test_row_kinds_groups_rows_as_numpys_unique_does(collide: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each row's kind is its distinct row's, each kind's first row the lowest; when two
    different rows share the mixed number (forced here: every row mixed to 0), the rows are
    grouped whole."""
    if collide:
        monkeypatch.setattr(arrays, "_mix", lambda values: values.fill(0))
    rng = np.random.default_rng(7)
    for n, spread in ((0, 3), (1, 3), (500, 3), (500, 2**64 - 1)):
        rows = rng.integers(0, spread, (n, 4), dtype=np.uint64, endpoint=True)
        rows[::7, 1] = rows[::7, 0]  # rows alike but for where their values sit
        rows[1::7, 0], rows[1::7, 1] = rows[::7, 1][: len(rows[1::7])], rows[::7, 0][: len(rows[1::7])]
        first, kind_of = row_kinds(rows)
        _, heads, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        assert sorted(first.tolist()) == sorted(heads.tolist())
        assert np.array_equal(rows[first[kind_of]], rows)  # each row is its kind's
        assert len(set(map(tuple, rows[first].tolist()))) == len(first)  # kinds differ
        assert np.array_equal(first[kind_of], heads[inverse.reshape(-1)])  # and each first is the lowest


@pytest.mark.parametrize("shared_prefix", [False, True])
def test_digest_units_are_numpys_unique_rows(shared_prefix: bool) -> None:
    """Distinct digests ascending byte by byte, each one's lowest row, each row's unit; also
    when digests share their first 8 bytes (they are then grouped whole)."""
    rng = np.random.default_rng(3)
    for n in (1, 2, 700):
        rows = rng.integers(0, 4, (n, 32), dtype=np.uint8)
        rows[:, :30] = 0 if shared_prefix else rows[:, :30]  # few kinds: many repeats
        heads, unit_of_row = digest_units(rows)
        void = np.ascontiguousarray(rows).view(np.dtype((np.void, 32))).reshape(n)
        _, first, inverse = np.unique(void, return_index=True, return_inverse=True)
        assert heads.tolist() == first.tolist()
        assert unit_of_row.tolist() == inverse.reshape(-1).tolist()


@pytest.mark.parametrize("distinct_rows", [False, True])
def test_lex_order_is_lexsort(distinct_rows: bool) -> None:
    """The order of np.lexsort (ties in row order), keys narrow enough for one number a row
    or not (then by np.lexsort itself)."""
    rng = np.random.default_rng(5)
    for n in (0, 1, 2, 1000):
        last = rng.permutation(n) if distinct_rows else rng.integers(-3, 3, n)  # ties, unless distinct
        for spread in (5, 2**40, 2**55):  # one number a row, then too wide for one
            keys = [last, rng.integers(-spread, spread, n), rng.random(n) < 0.5, rng.integers(0, 70, n)]
            assert lex_order(keys, distinct_rows=distinct_rows).tolist() == np.lexsort(keys).tolist()
        high = rng.integers(2**63, 2**63 + 9, n, dtype=np.uint64)  # unsigned past int64's end, a narrow range
        floats = rng.random(n)  # (not integers: np.lexsort itself)
        for keys in ([last, high], [last, floats, high.astype(np.uint8)]):
            assert lex_order(keys, distinct_rows=distinct_rows).tolist() == np.lexsort(keys).tolist()


def test_concatenate_consumed_is_concatenate_and_lets_the_parts_go() -> None:
    rng = np.random.default_rng(3)
    parts = [rng.integers(0, 9, (k, 3)) for k in (4, 0, 7, 1)]
    expected = np.concatenate(parts)
    given = list(parts)
    assert np.array_equal(concatenate_consumed(given), expected) and given == []
    with pytest.raises(ValueError):
        concatenate_consumed([])
