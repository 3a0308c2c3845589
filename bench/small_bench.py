"""Small real images, end to end: many tiny pictures scanned and reported, imgindex against imagededup.

    python bench/small_bench.py [--sizes 20000] [--large 200000] [--json OUT]

A crawl dump holds many icons, spacers and thumbnails, where the cost of each
file counts more than the cost of each pixel. This bench makes N pictures of
48x48 pixels (smooth random colour fields with a shape on them, all
distinct), one in ten a planted variant of another (a JPEG re-encoding at
quality 60-90, or brightness +-10 %), 1,000 to a directory, and measures in
the same run, each tool in a process of its own:

- imgindex: ``imgindex scan TREE`` into a new index, then ``imgindex report
  --near -o out.json`` (the two commands' wall time together);
- imagededup: ``PHash().encode_images(TREE, recursive=True)`` and
  ``find_duplicates(max_distance_threshold=10)`` (see bench/requirements.txt);

and how many planted pairs each finds, and how many other pairs it reports.
With ``--large N``, a tree of N such pictures is scanned once and ``imgindex
report --near`` timed on it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

OUT = Path(__file__).resolve().parent / "out" / "small"
SIDE = 48
VARIANT_SHARE = 0.1
THRESHOLD = 10


def source(rng: np.random.Generator) -> Image.Image:
    """A smooth random colour field with an ellipse or a rectangle of another colour on it."""
    field = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(field, "RGB").resize((SIDE, SIDE), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    x0, y0 = (int(v) for v in rng.integers(0, SIDE // 2, 2))
    x1, y1 = x0 + int(rng.integers(8, SIDE // 2)), y0 + int(rng.integers(8, SIDE // 2))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    return image


def make_tree(tree: Path, n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` pictures under ``tree``; returns the planted pairs (relative paths)."""
    done = tree / ".made"
    labels = tree.parent / f"{tree.name}.pairs.json"
    if done.exists() and labels.exists():
        return [tuple(p) for p in json.loads(labels.read_text())]  # type: ignore[misc]
    rng = np.random.default_rng(seed)
    planted: list[tuple[str, str]] = []
    sources: list[tuple[str, Image.Image]] = []
    for k in range(n):
        name = f"{k // 1000:04d}/{k:07d}.png"
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if sources and rng.random() < VARIANT_SHARE:
            original_name, original = sources[int(rng.integers(len(sources)))]
            if rng.random() < 0.5:
                path = path.with_suffix(".jpg")
                original.save(path, "JPEG", quality=int(rng.integers(60, 91)))
            else:
                factor = 1 + float(rng.choice([-1, 1])) * 0.1
                ImageEnhance.Brightness(original).enhance(factor).save(path, "PNG")
            planted.append((original_name, path.relative_to(tree).as_posix()))
        else:
            image = source(rng)
            image.save(path, "PNG")
            if len(sources) < 5000:
                sources.append((name, image))
            else:
                sources[int(rng.integers(len(sources)))] = (name, image)
    labels.write_text(json.dumps(planted))
    done.touch()
    return planted


def score(found: set[frozenset[str]], planted: list[tuple[str, str]]) -> dict[str, Any]:
    wanted = {frozenset(p) for p in planted}
    return {"planted": len(wanted), "found": len(found & wanted), "other_pairs": len(found - wanted)}


def imgindex_pairs(report: Path, tree: Path) -> set[frozenset[str]]:
    """Every two images of one group of an imgindex JSON report, as relative paths."""
    data = json.loads(report.read_text())
    pairs: set[frozenset[str]] = set()
    for kept in data["images"]:
        members = [kept["path"], *(d["path"] for d in kept.get("duplicates", []))]
        names = [Path(p).relative_to(tree).as_posix() for p in members]
        pairs |= {frozenset((a, b)) for i, a in enumerate(names) for b in names[i + 1 :]}
    return pairs


def step_imagededup(tree: str) -> dict[str, Any]:
    found, encoded, seconds = peers.imagededup_tree(tree, THRESHOLD)
    pairs = sorted({tuple(sorted((a, b))) for a, dups in found.items() for b in dups})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "encode_seconds": encoded, "pairs": pairs, "peak_mb": peak}


def bench_size(workdir: Path, n: int, seed: int) -> dict[str, Any]:
    tree = workdir / f"tree-{n}"
    peers.log(f"making {n:,} pictures")
    planted = make_tree(tree, n, seed)
    db = workdir / f"index-{n}.db"
    peers.remove_index(db)
    report = workdir / f"near-{n}.json"
    imgindex = peers.imgindex_command()
    peers.log(f"imgindex scan + report --near on {n:,}")
    scan_seconds, scan_mb, _ = peers.run_process([*imgindex, "scan", str(tree), "--db", str(db), "-q"])
    report_seconds, report_mb, _ = peers.run_process(
        [*imgindex, "report", "--near", "--db", str(db), "-o", str(report), "-q"]
    )
    ours = score(imgindex_pairs(report, tree), planted)
    peers.log(f"imagededup encode_images + find_duplicates on {n:,}")
    theirs_seconds, theirs_mb, out = peers.run_process([sys.executable, __file__, "_imagededup", str(tree)])
    theirs = json.loads(out)
    theirs_pairs = {frozenset(p) for p in theirs.pop("pairs")}
    work_seconds = theirs.pop("seconds")  # its hashing and search alone, inside the process
    return {
        "images": n,
        "imgindex": {
            "scan_seconds": scan_seconds,
            "report_seconds": report_seconds,
            "seconds": scan_seconds + report_seconds,
            "peak_mb": max(scan_mb, report_mb),
            **ours,
        },
        # (The whole process, as imgindex's commands are timed.)
        "imagededup": {
            **theirs,
            "seconds": theirs_seconds,
            "work_seconds": work_seconds,
            "peak_mb": theirs_mb,
            **score(theirs_pairs, planted),
        },
        "ratio": theirs_seconds / (scan_seconds + report_seconds),
    }


def bench_large(workdir: Path, n: int, seed: int) -> dict[str, Any]:
    tree = workdir / f"tree-{n}"
    peers.log(f"making {n:,} pictures")
    make_tree(tree, n, seed)
    db = workdir / f"index-{n}.db"
    peers.remove_index(db)
    imgindex = peers.imgindex_command()
    peers.log(f"imgindex scan of {n:,}")
    scan_seconds, _, _ = peers.run_process([*imgindex, "scan", str(tree), "--db", str(db), "-q"])
    report = workdir / f"near-{n}.json"
    runs = []
    for _ in range(3):
        seconds, peak_mb, _ = peers.run_process(
            [*imgindex, "report", "--near", "--db", str(db), "-o", str(report), "-q"]
        )
        runs.append((seconds, peak_mb))
    return {
        "images": n,
        "scan_seconds": scan_seconds,
        "report_seconds": sorted(s for s, _ in runs)[1],
        "report_peak_mb": max(m for _, m in runs),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_imagededup"]:
        print(json.dumps(step_imagededup(argv[1])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000", help="tree sizes for the end-to-end comparison")
    parser.add_argument("--large", type=int, default=0, help="also time report --near alone on this many")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=OUT)
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"cpus": os.cpu_count(), "threshold": THRESHOLD, "runs": []}
    print(f"small pictures ({SIDE} px), end to end, {os.cpu_count()} CPUs")
    print(f"{'images':>9} {'imgindex s':>11} {'imagededup s':>13} {'ratio':>7}  planted found (imgindex / imagededup)")
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        run = bench_size(args.workdir, n, args.seed)
        results["runs"].append(run)
        ours, theirs = run["imgindex"], run["imagededup"]
        print(
            f"{n:>9,} {ours['seconds']:>11.2f} {theirs['seconds']:>13.2f} {run['ratio']:>6.1f}x"
            f"  {ours['found']}/{ours['planted']} ({ours['other_pairs']} other pairs)"
            f" / {theirs['found']}/{theirs['planted']} ({theirs['other_pairs']} other pairs)"
        )
    if args.large:
        large = bench_large(args.workdir, args.large, args.seed)
        results["large"] = large
        print(
            f"{args.large:,} pictures: scan {large['scan_seconds']:.1f} s;"
            f" report --near {large['report_seconds']:.2f} s (median of 3), {large['report_peak_mb']:,.0f} MB"
        )
    peers.write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
