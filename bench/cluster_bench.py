"""Hashing on a Dask cluster against the local process pool, on this machine.

    python bench/cluster_bench.py [--images 4000] [--runs 3] [--json OUT]

Makes N decode-bound pictures (JPEGs of 1024x768, all distinct) once, then,
in the same run, alternating, a cold ``imgindex scan`` of them into a new
index, each in a process of its own, with:

- the local pool: ``-j 1`` and ``-j 2``;
- a LocalCluster started by the scan: ``--dask local:1`` and ``--dask local:2``;

and the time of a scan of an empty directory with ``--dask local:2`` (starting
and stopping the cluster: what a scan on a running cluster does not pay). Reported: medians, images per
second, the scaling from 1 to 2 Dask workers, and the Dask scan's time
against the local pool's (with and without the cluster's start-up).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

OUT = Path(__file__).resolve().parent / "out" / "cluster"
MODES = {
    "pool -j 1": ["-j", "1"],
    "pool -j 2": ["-j", "2"],
    "dask local:1": ["--dask", "local:1"],
    "dask local:2": ["--dask", "local:2"],
}


def make_tree(tree: Path, n: int) -> None:
    if (tree / ".made").exists():
        return
    rng = np.random.default_rng(5)
    for i in range(n):
        field = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(field, "RGB").resize((1024, 768), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y = (int(v) for v in rng.integers(0, 900, 2))
            draw.ellipse((x, y, x + 120, y + 90), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=88)
        path = tree / f"{i // 500:03d}" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(out.getvalue())
    (tree / ".made").touch()


def cluster_start_stop(work: Path) -> float:
    """A scan of an empty directory with --dask local:2: what starting and stopping the cluster
    costs a command (a scan on a running cluster does not pay it)."""
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    db = work / "empty.db"
    db.unlink(missing_ok=True)
    seconds, _, _ = peers.timed([sys.executable, "-m", "imgindex", "scan", str(empty), "--db", str(db), "-q",
                                 "--dask", "local:2"])  # fmt: skip
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=OUT)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    tree = args.work / f"tree-{args.images}"
    make_tree(tree, args.images)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for run in range(args.runs):
        order = list(MODES) if run % 2 == 0 else list(reversed(MODES))
        for mode in order:
            db = args.work / "scan.db"
            db.unlink(missing_ok=True)
            seconds, _, _ = peers.timed(
                [sys.executable, "-m", "imgindex", "scan", str(tree), "--db", str(db), "-q", *MODES[mode]]
            )
            times[mode].append(seconds)
            print(f"  run {run + 1} {mode}: {seconds:.2f} s ({args.images / seconds:,.0f} images/s)", flush=True)
    startup = statistics.median(cluster_start_stop(args.work) for _ in range(3))
    median = {mode: statistics.median(v) for mode, v in times.items()}
    scaling = median["dask local:1"] / median["dask local:2"]
    steady = (median["dask local:1"] - startup) / (median["dask local:2"] - startup)
    overhead = median["dask local:2"] / median["pool -j 2"]
    steady_overhead = (median["dask local:2"] - startup) / median["pool -j 2"]
    for mode, seconds in median.items():
        print(f"{mode:>14}: {seconds:6.2f} s  {args.images / seconds:6.0f} images/s")
    print(f"LocalCluster of 2 started and stopped: {startup:.2f} s")
    print(f"Dask 1 -> 2 workers: {scaling:.2f}x ({steady:.2f}x without the start-up)")
    print(
        f"Dask local:2 against the pool's -j 2: {overhead:.2f}x the time ({steady_overhead:.2f}x without the start-up)"
    )
    results: dict[str, Any] = {
        "images": args.images,
        "seconds": times,
        "cluster_start_stop": startup,
        "scaling_1_to_2": scaling,
        "scaling_1_to_2_steady": steady,
        "dask_over_pool": overhead,
        "dask_over_pool_steady": steady_overhead,
    }
    peers.write_results(args.json, results)


if __name__ == "__main__":
    main()
