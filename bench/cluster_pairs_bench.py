"""The near-pair search on a Dask cluster against the local search, on this machine.

    python bench/cluster_pairs_bench.py [--hashes 10000000] [--workers 2] [--json OUT]

Makes N distinct synthetic 64-bit hashes (uniform random bits, and 1 % of
them planted within 1 to 10 bits of another), then, each in a process of its
own, finds every pair within 10 bits (what ``pairs.update`` stores):

- ``local``: :func:`imgindex.match.search.pairs_within`, in one process;
- ``dask``: :class:`imgindex.match.cluster_search.ClusterSearch` on a
  LocalCluster of ``--workers`` worker processes (one thread each), its work
  directory under ``--work``.

Reported: wall time (the Dask search without and with starting the
cluster), peak resident memory of the process (``getrusage``) and of each
Dask worker (its ``VmHWM``: ``getrusage`` in a worker reports its parent's
peak when that was higher, since Linux keeps it across ``exec``), the job's files and probe reads, and whether
the two found the same pairs (the count and a digest of the sorted pairs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

from imgindex.match.cluster_search import ClusterSearch
from imgindex.match.search import as_signed, pairs_within

THRESHOLD = 10
OUT = Path(__file__).resolve().parent / "out" / "cluster_pairs"


def synthetic(n: int, seed: int = 14) -> np.ndarray[Any, np.dtype[np.int64]]:
    """N distinct hashes, sorted as signed integers (as the index gives them to a search)."""
    rng = np.random.default_rng(seed)
    planted = n // 100
    hashes = rng.integers(0, 2**64, n - planted, dtype=np.uint64)
    sources = hashes[:planted]
    flips = np.zeros(planted, np.uint64)
    distance = rng.integers(1, THRESHOLD + 1, planted)
    for bit in range(THRESHOLD):  # up to `distance` distinct random bits each
        chosen = rng.integers(0, 64, planted).astype(np.uint64)
        flips |= np.where(bit < distance, np.uint64(1) << chosen, np.uint64(0))
    values = np.unique(as_signed(np.concatenate([hashes, sources ^ flips])))
    return values


def digest(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], d: np.ndarray[Any, Any]) -> str:
    order = np.lexsort((b, a))
    h = hashlib.sha256()
    for column in (a[order], b[order], d[order].astype(np.int64)):
        h.update(np.ascontiguousarray(column).tobytes())
    return h.hexdigest()[:16]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_peak_mb() -> float:
    """This process's own peak resident memory (VmHWM). Not getrusage: Linux keeps ru_maxrss
    across exec, so a worker process spawned by a client that held a gigabyte reports the
    client's peak, not its own."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_local(n: int) -> dict[str, Any]:
    hashes = synthetic(n)
    start = time.perf_counter()
    i, j, d = pairs_within(hashes.view(np.uint64), THRESHOLD)
    a, b = np.minimum(hashes[i], hashes[j]), np.maximum(hashes[i], hashes[j])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "pairs": len(a), "digest": digest(a, b, d), "peak_mb": peak_mb()}


def run_dask(n: int, workers: int, work: Path) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    hashes = synthetic(n)
    started = time.perf_counter()
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        start = time.perf_counter()
        search = ClusterSearch(client, work)
        chunks = list(search(hashes, None, THRESHOLD))
        a, b, d = (np.concatenate([c[k] for c in chunks]) for k in range(3))
        seconds = time.perf_counter() - start
        worker_mb = list(client.run(worker_peak_mb).values())
    return {
        "seconds": seconds,
        "seconds_with_cluster_start": time.perf_counter() - started,
        "pairs": len(a),
        "digest": digest(a, b, d),
        "peak_mb": peak_mb(),
        "worker_peak_mb": worker_mb,
        **search.stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hashes", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=OUT)
    parser.add_argument("--skip-local", action="store_true", help="Only the Dask search.")
    parser.add_argument(
        "--skip-dask", action="store_true", help="Only the local search (its digest compares with a Dask run's)."
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--run", choices=("local", "dask"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run == "local":
        print(json.dumps(run_local(args.hashes)))
        return
    if args.run == "dask":
        print(json.dumps(run_dask(args.hashes, args.workers, args.work)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"hashes": args.hashes, "workers": args.workers, "threshold": THRESHOLD}
    modes = [m for m, skip in (("local", args.skip_local), ("dask", args.skip_dask)) if not skip]
    for mode in modes:
        peers.log(f"{mode}: {args.hashes:,} hashes")
        with tempfile.TemporaryDirectory(dir=args.work) as work:
            argv = [sys.executable, __file__, "--run", mode, "--hashes", str(args.hashes),
                    "--workers", str(args.workers), "--work", work]  # fmt: skip
            wall, peak, out = peers.run_process(argv)
        results[mode] = {**json.loads(out), "process_seconds": wall, "process_peak_mb": peak}
        peers.log(f"{mode}: {results[mode]}")
    local, dask = results.get("local"), results.get("dask")
    print(f"{args.hashes:,} hashes, pairs within {THRESHOLD} bits:")
    if local:
        print(f"  local search: {local['seconds']:.1f} s, peak {local['process_peak_mb']:,.0f} MB,"
              f" {local['pairs']:,} pairs, digest {local['digest']}")  # fmt: skip
    if dask:
        print(
            f"  dask on local:{args.workers}: {dask['seconds']:.1f} s"
            f" ({dask['seconds_with_cluster_start']:.1f} s with the cluster's start),"
            f" client peak {dask['process_peak_mb']:,.0f} MB, workers' peaks"
            f" {', '.join(f'{m:,.0f}' for m in dask['worker_peak_mb'])} MB, {dask['pairs']:,} pairs;"
            f" {dask['bytes_written'] / 1e6:,.0f} MB written, {dask['probes_read']:,} probes read,"
            f" {dask['map_tasks']} map and {dask['reduce_tasks']} reduce tasks, digest {dask['digest']}"
        )
    if local and dask:
        results["same_pairs"] = local["pairs"] == dask["pairs"] and local["digest"] == dask["digest"]
        print(f"  same pairs: {results['same_pairs']}")
    peers.write_results(args.json, results)


if __name__ == "__main__":
    main()
