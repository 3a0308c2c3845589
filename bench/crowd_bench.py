"""Many distinct pictures on one hash: time and memory as the crowd grows, imgindex against imagededup.

    python bench/crowd_bench.py [--sizes 3000,6000] [--json OUT]

A crawl holds thousands of background gradients (a strip that changes from
top to bottom only, repeated across a page), and horizontal stripes. Their
dHash is 0 whatever their colours, so every two of them are candidates: the
work is quadratic in their number. This bench makes N such pictures of 64x64
pixels in random colours (one in five grey, which by the rules all match each
other: one picture at different contrasts), and measures in the same run, each
tool in a process of its own:

- imgindex: ``imgindex scan TREE`` into a new index (hashing, the pairs and
  the verified matches), then ``imgindex report --near -o out.json``: each
  command's wall time and peak memory, and the matches stored;
- imagededup: ``PHash().encode_images`` and ``find_duplicates`` at 10 bits
  (see bench/requirements.txt), its wall time and peak memory.

The figure that counts is the peak memory as N doubles: the candidates are made
a pass at a time within a budget, so it should grow with the matches kept (the
grey ones' quadratic few), not with the N**2 / 2 candidates.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

OUT = Path(__file__).resolve().parent / "out" / "crowd"
SIDE = 64
GREY_SHARE = 0.2
THRESHOLD = 10


def make_tree(tree: Path, n: int, seed: int) -> int:
    """``n`` gradients under ``tree``, 1,000 to a directory; returns how many are grey."""
    done = tree / ".made"
    if done.exists():
        return int(done.read_text())
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, SIDE)[:, None]
    grey = 0
    for k in range(n):
        top, bottom = rng.integers(0, 256, (2, 3))
        if rng.random() < GREY_SHARE:
            top[:], bottom[:] = top[0], bottom[0]
            grey += 1
        rows = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
        path = tree / f"{k // 1000:04d}" / f"{k:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.repeat(rows[:, None], SIDE, axis=1), "RGB").save(path)
    done.write_text(str(grey))
    return grey


def step_imagededup(tree: str) -> dict[str, Any]:
    found, _, seconds = peers.imagededup_tree(tree, THRESHOLD)
    pairs = sum(len(dups) for dups in found.values()) // 2
    return {"seconds": seconds, "pairs": pairs}


def bench_size(workdir: Path, n: int, seed: int, peer: bool) -> dict[str, Any]:
    tree = workdir / f"tree-{n}"
    peers.log(f"making {n:,} gradients")
    grey = make_tree(tree, n, seed)
    db = workdir / f"index-{n}.db"
    peers.remove_index(db)
    imgindex = peers.imgindex_command()
    peers.log(f"imgindex scan of {n:,}")
    scan_seconds, scan_mb, _ = peers.run_process([*imgindex, "scan", str(tree), "--db", str(db), "-q"])
    peers.log("imgindex report --near")
    report_seconds, report_mb, _ = peers.run_process(
        [*imgindex, "report", "--near", "--db", str(db), "-o", str(workdir / f"near-{n}.json"), "-q"]
    )
    with sqlite3.connect(db) as connection:
        matches = connection.execute("SELECT count(*) FROM near_matches").fetchone()[0]
    run: dict[str, Any] = {
        "images": n,
        "grey": grey,
        "candidates": n * (n - 1) // 2,
        "imgindex": {
            "scan_seconds": scan_seconds,
            "scan_peak_mb": scan_mb,
            "report_seconds": report_seconds,
            "report_peak_mb": report_mb,
            "matches": matches,
        },
    }
    if peer:
        peers.log(f"imagededup encode_images + find_duplicates on {n:,}")
        seconds, peak_mb, out = peers.run_process([sys.executable, __file__, "_imagededup", str(tree)])
        run["imagededup"] = {**json.loads(out), "wall_seconds": seconds, "peak_mb": peak_mb}
    return run


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_imagededup"]:
        print(json.dumps(step_imagededup(argv[1])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="3000,6000", help="how many gradients, for each run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--peer-max",
        type=int,
        default=6000,
        help="run imagededup up to this many (its memory grows with the square: 5.7 GB at 6,000); 0: never",
    )
    parser.add_argument("--workdir", type=Path, default=OUT)
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"cpus": os.cpu_count(), "threshold": THRESHOLD, "runs": []}
    print(f"gradients on one hash ({SIDE} px), {os.cpu_count()} CPUs")
    heads = ("images", "scan s", "scan MB", "report s", "report MB", "matches")
    print(" ".join(f"{h:>9}" for h in heads) + "  imagededup s, MB")
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        run = bench_size(args.workdir, n, args.seed, n <= args.peer_max)
        results["runs"].append(run)
        ours = run["imgindex"]
        theirs = run.get("imagededup")
        peer = f"  {theirs['wall_seconds']:.1f}, {theirs['peak_mb']:.0f}" if theirs else ""
        print(
            f"{n:>9,} {ours['scan_seconds']:>9.1f} {ours['scan_peak_mb']:>9.0f} {ours['report_seconds']:>9.1f}"
            f" {ours['report_peak_mb']:>9.0f} {ours['matches']:>9,}{peer}"
        )
        peers.write_results(args.json, results)  # after each size: a long run keeps what it measured
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
