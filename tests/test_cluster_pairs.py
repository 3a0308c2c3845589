"""The near-pair search on a real Dask LocalCluster (2 worker processes): exactly the local
search's pairs, on synthetic hashes and on an index scanned from pictures."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import Client, LocalCluster

from imgindex import pairs
from imgindex.match.cluster_search import ClusterSearch
from imgindex.match.search import as_signed, pairs_from, pairs_within
from imgindex.storage import open_index

from .test_cluster import a_tree
from .test_report import invoke

ValueSet = set[tuple[int, int, int]]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local,
        Client(local) as c,
    ):
        yield c


def synthetic() -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Random hashes, pairs planted at every distance from 1 to 10 bits (and one bit past), and
    a big bucket: 1,500 hashes that share their lowest 22 bits (the first block of the search),
    most within a few bits of each other."""
    rng = np.random.default_rng(14)
    random = rng.integers(0, 2**64, 2_000, dtype=np.uint64)
    planted = []
    for distance in range(1, 12):
        for source in random[distance * 20 : distance * 20 + 20]:
            bits = rng.choice(64, distance, replace=False)
            planted.append(source ^ np.uint64(sum(1 << int(b) for b in bits)))
    centre = rng.integers(0, 2**64, dtype=np.uint64) & ~np.uint64((1 << 22) - 1)
    bucket = []
    for _ in range(1_500):
        bits = rng.choice(np.arange(22, 64), int(rng.integers(0, 7)), replace=False)
        bucket.append(centre ^ np.uint64(sum(1 << int(b) for b in bits)))
    hashes = np.unique(np.concatenate([random, np.array(planted, np.uint64), np.array(bucket, np.uint64)]))
    return hashes[np.argsort(as_signed(hashes), kind="stable")]  # sorted as the index keeps them


def as_set(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], d: np.ndarray[Any, Any]) -> ValueSet:
    found = set(zip(a.tolist(), b.tolist(), d.tolist(), strict=True))
    assert len(found) == len(a), "a pair was reported twice"
    return found


def local_set(hashes: np.ndarray[Any, Any], queries: np.ndarray[Any, Any] | None, t: int) -> ValueSet:
    signed = as_signed(hashes)
    i, j, d = pairs_within(hashes, t) if queries is None else pairs_from(hashes, queries, t)
    return as_set(np.minimum(signed[i], signed[j]), np.maximum(signed[i], signed[j]), d)


def cluster_set(search: ClusterSearch, hashes: np.ndarray[Any, Any], queries: Any, t: int) -> ValueSet:
    chunks = list(search(as_signed(hashes), queries, t))
    if not chunks:
        return set()
    return as_set(*(np.concatenate([c[k] for c in chunks]) for k in range(3)))


def test_the_cluster_finds_exactly_the_local_pairs(client: Any, tmp_path: Path) -> None:
    hashes = synthetic()
    expected = local_set(hashes, None, 10)
    distances = {d for _, _, d in expected}
    assert distances == set(range(11)) - {0} and len(expected) > 20_000  # planted ones, and the big bucket's
    # As sized for this input (one partition a block), and split small: partitions, row groups
    # of several map tasks, big partitions in chunks of bases, probes a few at a time.
    split = {"bits": 3, "map_rows": 1_000, "table_chunk": 200, "probe_chunk": 300}
    for options in ({}, split):
        search = ClusterSearch(client, tmp_path / "work", **options)  # type: ignore[arg-type]
        assert cluster_set(search, hashes, None, 10) == expected, options
        assert cluster_set(search, hashes, None, 4) == local_set(hashes, None, 4), options
    assert not list((tmp_path / "work").iterdir())  # the job's files are removed
    # Only the pairs of some hashes (an update after a scan added them).
    queries = np.arange(0, len(hashes), 7)
    search = ClusterSearch(client, tmp_path / "work", **split)  # type: ignore[arg-type]
    assert cluster_set(search, hashes, queries, 10) == local_set(hashes, queries, 10)


def stored(db: Path) -> tuple[list[tuple[object, ...]], ...]:
    with sqlite3.connect(db) as conn:
        return tuple(
            conn.execute(sql).fetchall()
            for sql in (
                "SELECT kind, a, b, distance FROM near_pairs ORDER BY 1, 2, 3",
                "SELECT kind, hash FROM near_hashes ORDER BY 1, 2",
                "SELECT kind, a, b, whole, inside FROM near_matches ORDER BY 1, 2, 3",
                "SELECT kind, picture FROM near_pictures ORDER BY 1, 2",
                "SELECT key, value FROM meta WHERE key IN ('near_max_distance', 'near_params') ORDER BY 1",
            )
        )


def test_pairs_dask_stores_what_the_local_update_stores(tree: Path, tmp_path: Path) -> None:
    a_tree(tree, 60)
    local, dask = tmp_path / "local.db", tmp_path / "dask.db"
    for db in (local, dask):
        assert invoke("scan", tree, "--db", db, "-q", "-j", "1")[0] == 3  # the cut PNG
    with sqlite3.connect(dask) as conn:  # as if the scan had not searched its pairs
        conn.execute("DELETE FROM meta WHERE key = 'near_max_distance'")
    code, out, err = invoke("pairs", "--db", dask, "--dask", "local:2", "--work-dir", tmp_path / "work", "--json")
    assert code == 0, err
    assert '"rebuilt": true' in out
    assert stored(dask) == stored(local) and stored(local)[0]
    near = invoke("report", "--near", "--db", local, "-o", "-")
    assert invoke("report", "--near", "--db", dask, "-o", "-") == near and '"duplicates"' in near[1]
    # Nothing is left to search: the local update finds every hash stored.
    with open_index(dask) as index:
        again = pairs.update(index)
    assert (again.added, again.pairs_added, again.rebuilt, again.pictures_added) == (0, 0, False, 0)
    code, out, _ = invoke("pairs", "--db", dask)
    assert code == 0 and "0 searched" in out


def test_a_search_follows_its_own_client_whatever_client_is_current(client: Any, tmp_path: Path) -> None:
    """A caller may have another client entered (``with Client(...)`` makes it the current
    one, as a notebook or a pipeline does): the search waits for its tasks on the loop of the
    client it was given. Here the current client is closed, so waiting on its loop would
    never end (the hang CI once saw when two clients were alive)."""
    hashes = synthetic()[:500]
    found: list[ValueSet] = []

    def search_under_another_current_client() -> None:  # contextvars are per thread
        with Client(client.scheduler.address, set_as_default=True) as other:
            other.close()
            found.append(cluster_set(ClusterSearch(client, tmp_path / "work"), hashes, None, 10))

    thread = threading.Thread(target=search_under_another_current_client, daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the search waited on another client's loop"
    assert found == [local_set(hashes, None, 10)]
