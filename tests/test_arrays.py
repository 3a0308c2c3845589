"""Set operations by sorting give numpy's answers."""

from __future__ import annotations

import numpy as np
import pytest

from imgindex.arrays import common, distinct, union


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
