"""The review page at crawl scale: server time per page on an index with ~100,000 groups.

    python bench/review_bench.py [--images 400000] [--runs 5] [--json OUT]

Builds a synthetic index (bench/near_bench.py's: real SQLite rows, hashes
distributed like the quality corpus's, stand-in thumbnails; no image on
disk), brings its stored matches up to date, then serves the review page
on a real socket and times, from a client on this machine (medians of
``--runs``):

- building the review's groups (the report, once at start and after a
  decision that regroups) and the process's peak memory;
- the overview's first page (default order), sorted by images, filtered by
  path text, "only undecided", the last page; a group's page: the first
  request of each (the view chosen and ordered then) and the median of the
  rest (the view kept);
- decisions: accepting a group (no regrouping), "not a duplicate" (the next
  page regroups), and counting a bulk decision over every byte-identical group.

Then thumbnails on a small real tree (320x240 JPEGs): the first request of
each (decoded and cached) and a repeat (served from the cache).

Target (issue: the review page): a page's server time <= 300 ms with 100,000
groups.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import near_bench
import peers

from imgindex import pairs
from imgindex.report import ReportOptions
from imgindex.review.app import create_app, new_token
from imgindex.review.pictures import Pictures
from imgindex.review.server import address, bind, serving
from imgindex.review.session import Review
from imgindex.scan import ScanOptions, scan
from imgindex.storage import open_index


def timed_gets(url: str, runs: int) -> tuple[float, float]:
    """The seconds of the first GET (a view not asked for before: chosen and ordered then) and
    the median of the others (the body read whole)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=600) as response:
            response.read()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:] or times)


def timed_get(url: str, runs: int) -> float:
    return timed_gets(url, runs)[1]


def timed_post(base: str, token: str, path: str, body: dict[str, Any]) -> tuple[float, Any]:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Imgindex-Token": token},
        method="POST",
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.loads(response.read())
    return time.perf_counter() - start, answer


def pages(db: Path, runs: int) -> dict[str, Any]:
    review = Review(db, ReportOptions(mode="near"))
    start = time.perf_counter()
    snap = review.current()
    built = time.perf_counter() - start
    token = new_token()
    sock = bind("127.0.0.1", 0)
    base = f"http://127.0.0.1:{address(sock)[1]}"
    out: dict[str, Any] = {"groups": len(snap), "images": snap.report.initial_image_count}
    out["build_seconds"] = built
    with serving(create_app(review, Pictures(tempfile.mkdtemp()), token), sock):

        def url(path: str, query: str = "") -> str:
            return f"{base}{path}?{query}&token={token}" if query else f"{base}{path}?token={token}"

        last = -(-len(snap) // 50)
        group = snap.group(len(snap) // 2)
        out["pages_ms (first, then median)"] = {
            name: [round(1000 * t, 1) for t in timed_gets(url(path, query), runs)]
            for name, path, query in [
                ("overview", "/", ""),
                ("sorted by images", "/", "sort=count"),
                ("path text filter", "/", "q=00042%2F"),
                ("only undecided", "/", "undecided=1"),
                ("last page", "/", f"page={last}"),
                ("a group", f"/group/{group.id}", ""),
            ]
        }
        seconds, _ = timed_post(base, token, "/api/decide", {"action": "accept", "group": group.id})
        out["accept_ms"] = 1000 * seconds
        out["overview_after_accept_ms"] = 1000 * timed_get(url("/"), 1)
        other = snap.group(len(snap) // 3)
        seconds, _ = timed_post(
            base, token, "/api/decide", {"action": "apart", "group": other.id, "image": other.duplicates[0].file_id}
        )
        out["apart_ms"] = 1000 * seconds
        out["overview_after_apart_ms"] = 1000 * timed_get(url("/"), 1)  # regroups: the report again
        seconds, answer = timed_post(base, token, "/api/bulk", {"action": "accept", "view": "identical=1"})
        out["bulk_count_ms"] = 1000 * seconds
        out["bulk_groups"] = answer["groups"]
    review.close()
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def thumbnails(workdir: Path, n: int) -> dict[str, Any]:
    """First and repeated thumbnail requests on ``n`` real JPEGs (each with a near copy)."""
    tree = workdir / "thumbs-tree"
    rng = np.random.default_rng(7)
    for i in range(n):
        im = Image.new("RGB", (320, 240), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(im)
        for _ in range(6):
            x, y = (int(v) for v in rng.integers(0, 300, 2))
            draw.rectangle((x, y % 220, x + 40, y % 220 + 30), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        folder = tree / f"{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        im.save(folder / f"{i}.jpg", quality=90)
        im.save(folder / f"{i}-copy.jpg", quality=60)
    db = workdir / "thumbs.db"
    with open_index(db) as index:
        scan(index, [os.fsencode(tree)], ScanOptions(jobs=2))
    review = Review(db, ReportOptions(mode="near"))
    token = new_token()
    sock = bind("127.0.0.1", 0)
    base = f"http://127.0.0.1:{address(sock)[1]}"
    ids = review.current().file_ids()
    with serving(create_app(review, Pictures(workdir / "cache"), token), sock):
        first = [timed_get(f"{base}/picture/{i}/s?token={token}", 1) for i in ids]
        again = [timed_get(f"{base}/picture/{i}/s?token={token}", 1) for i in ids]
    review.close()
    return {
        "images": len(ids),
        "first_ms_median": 1000 * statistics.median(first),
        "cached_ms_median": 1000 * statistics.median(again),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--thumbnails", type=int, default=300, help="real JPEGs (each with a copy) for thumbnails")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "out" / "review")
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    db = args.workdir / f"index-{args.images}.db"
    if not db.exists():
        peers.log(f"building a synthetic index of {args.images:,} images")
        near_bench.build_index(db, near_bench.synthetic_hashes(args.images, 1))
    with open_index(db) as index:
        peers.log("bringing the stored matches up to date")
        pairs.update(index)
    peers.log("timing the review's pages")
    results: dict[str, Any] = {"cpus": os.cpu_count(), "pages": pages(db, args.runs)}
    peers.log("timing thumbnails")
    results["thumbnails"] = thumbnails(Path(tempfile.mkdtemp(dir=args.workdir)), args.thumbnails)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
