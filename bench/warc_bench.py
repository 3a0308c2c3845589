"""Web archives against files: the same images scanned as records inside WARCs and as files.

    python bench/warc_bench.py [--images 10000] [--runs 3] [--json OUT]

Makes N JPEG pictures (320x240, shapes on colour fields, all distinct) and
writes them twice: as files, 1,000 to a directory, and as response records
in WARC files (gzip per record, 1,000 images to a file, each image record
followed by an HTML page record, as a crawl's WARCs hold pages and images).
Then, in the same run, alternating, each a new index in a process of its own:

- a cold ``imgindex scan`` of the files and of the WARCs (wall time, images
  per second, and their ratio: the WARC path must not be the slow one);
- a rescan of the WARCs with nothing changed: its time and the bytes the
  process read (``rchar`` of /proc/self/io: an unchanged archive is not
  opened);
- the two parsers on these WARCs: listing every record (offset, target URI,
  first payload bytes) with FastWARC's and warcio's iterators, and parsing
  each record's bytes alone (what imgindex does after its own framing).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

OUT = Path(__file__).resolve().parent / "out" / "warc"
PER_FILE = 1000

#: Runs `imgindex` in this process, counting the web archives it opens (an audit hook sees every
#: open), and writes that count and the bytes it read (rchar) to the file named by $COUNT_OUT.
_COUNTING = """
import atexit, os, sys
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)) and os.fsencode(args[0]).endswith(b".warc.gz"):
        opened.append(args[0])
sys.addaudithook(hook)
def report():
    rchar = [line.split()[1] for line in open("/proc/self/io") if line.startswith("rchar:")][0]
    open(os.environ["COUNT_OUT"], "w").write(f"{len(opened)} {rchar}")
atexit.register(report)
from imgindex.cli import run
sys.argv = ["imgindex", *sys.argv[1:]]
run()
"""


def picture(rng: np.random.Generator) -> bytes:
    field = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(field, "RGB").resize((320, 240), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = (int(v) for v in rng.integers(0, 200, 2))
        box = (x0, y0, x0 + int(rng.integers(20, 120)), y0 + int(rng.integers(20, 120)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def make_corpus(work: Path, n: int) -> tuple[Path, Path]:
    """The images as files under work/files and as records under work/warcs."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    files, warcs = work / f"files-{n}", work / f"warcs-{n}"
    if (warcs / ".made").exists():
        return files, warcs
    rng = np.random.default_rng(7)
    page = b"<html><body>" + b"crawled text " * 400 + b"</body></html>"
    for start in range(0, n, PER_FILE):
        folder = files / f"{start // PER_FILE:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        warcs.mkdir(parents=True, exist_ok=True)
        with open(warcs / f"crawl-{start // PER_FILE:05d}.warc.gz", "wb") as out:
            writer = WARCWriter(out, gzip=True)
            for i in range(start, min(n, start + PER_FILE)):
                data = picture(rng)
                (folder / f"{i}.jpg").write_bytes(data)
                http = StatusAndHeaders(
                    "200 OK", [("Content-Type", "image/jpeg"), ("Content-Length", str(len(data)))], protocol="HTTP/1.1"
                )
                url = f"http://example.com/img/{i}.jpg"
                writer.write_record(
                    writer.create_warc_record(url, "response", payload=io.BytesIO(data), http_headers=http)
                )
                http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
                url = f"http://example.com/page/{i}.html"
                writer.write_record(
                    writer.create_warc_record(url, "response", payload=io.BytesIO(page), http_headers=http)
                )
    (warcs / ".made").touch()
    return files, warcs


def scan(tree: Path, db: Path) -> tuple[float, int]:
    """A cold scan into a new index: seconds and images indexed."""
    db.unlink(missing_ok=True)
    seconds, out, _ = peers.timed([sys.executable, "-m", "imgindex", "scan", str(tree), "--db", str(db), "--json"])
    summary = json.loads(out)
    return seconds, int(summary["images"])


def rescan_reads(tree: Path, db: Path) -> tuple[float, int, int, int]:
    """A scan with nothing changed: seconds, archives opened, bytes read by the process (its
    imports and the index included), records read."""
    with tempfile.NamedTemporaryFile() as counter:
        env = {**os.environ, "COUNT_OUT": counter.name}
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _COUNTING, "scan", str(tree), "--db", str(db), "--json"],
            capture_output=True,
            text=True,
            env=env,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"rescan failed: {done.stderr}")
        opened, read = (int(v) for v in Path(counter.name).read_text().split())
    return seconds, opened, read, int(json.loads(done.stdout)["hashed"])


def parsers(warcs: Path) -> dict[str, float]:
    """Seconds to list every record with each parser, and to parse each record's bytes alone."""
    from fastwarc.warc import ArchiveIterator as FastIterator
    from warcio.archiveiterator import ArchiveIterator as WarcioIterator

    paths = sorted(warcs.glob("*.warc.gz"))
    timings: dict[str, float] = {}

    start = time.perf_counter()
    for path in paths:
        for record in FastIterator(str(path), parse_http=True, auto_decode="all"):
            record.headers.get("WARC-Target-URI")
            record.reader.read(32)
    timings["fastwarc_iterate"] = time.perf_counter() - start

    start = time.perf_counter()
    for path in paths:
        with open(path, "rb") as f:
            for record in WarcioIterator(f):
                record.rec_headers.get_header("WARC-Target-URI")
                record.content_stream().read(32)
    timings["warcio_iterate"] = time.perf_counter() - start

    members = []
    for path in paths[:2]:
        data = path.read_bytes()
        while data:
            d = zlib.decompressobj(31)
            members.append(d.decompress(data))
            data = d.unused_data
    for name, parse in (
        ("fastwarc", lambda raw: next(iter(FastIterator(io.BytesIO(raw), parse_http=True))).reader.read()),
        ("warcio", lambda raw: next(iter(WarcioIterator(io.BytesIO(raw)))).content_stream().read()),
    ):
        start = time.perf_counter()
        for raw in members:
            parse(raw)
        timings[f"{name}_per_record_us"] = (time.perf_counter() - start) / len(members) * 1e6
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=OUT)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    files, warcs = make_corpus(work, args.images)
    size = sum(p.stat().st_size for p in warcs.glob("*.warc.gz"))
    print(f"{args.images:,} images; {len(list(warcs.glob('*.warc.gz')))} WARCs, {size / 1e6:.1f} MB with pages")
    times: dict[str, list[float]] = {"files": [], "warcs": []}
    for run in range(args.runs):
        order = [("files", files), ("warcs", warcs)]
        for kind, tree in order if run % 2 == 0 else order[::-1]:
            seconds, images = scan(tree, work / f"{kind}.db")
            if images != args.images:
                raise SystemExit(f"{kind}: {images} images indexed, not {args.images}")
            times[kind].append(seconds)
            print(f"  run {run + 1} {kind}: {seconds:.2f} s ({images / seconds:,.0f} images/s)")
    median = {k: statistics.median(v) for k, v in times.items()}
    ratio = median["files"] / median["warcs"]
    print(f"cold scan, medians: files {median['files']:.2f} s, WARCs {median['warcs']:.2f} s;"
          f" WARC throughput {ratio:.2f}x the files'")  # fmt: skip
    seconds, opened, read, hashed = rescan_reads(warcs, work / "warcs.db")
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    scan(empty, work / "empty.db")
    _, _, baseline, _ = rescan_reads(empty, work / "empty.db")
    print(
        f"rescan of unchanged WARCs: {seconds:.2f} s, {opened} archives opened, {hashed} records read;"
        f" the process read {read / 1e6:.2f} MB (a rescan of an empty tree: {baseline / 1e6:.2f} MB)"
    )
    timings = parsers(warcs)
    print(
        f"listing every record: FastWARC {timings['fastwarc_iterate']:.2f} s, warcio {timings['warcio_iterate']:.2f} s"
        f" ({timings['warcio_iterate'] / timings['fastwarc_iterate']:.1f}x); one record's bytes parsed:"
        f" FastWARC {timings['fastwarc_per_record_us']:.0f} us, warcio {timings['warcio_per_record_us']:.0f} us"
    )
    results: dict[str, Any] = {
        "images": args.images,
        "warc_bytes": size,
        "scan_seconds": times,
        "warc_throughput_ratio": ratio,
        "rescan": {
            "seconds": seconds,
            "archives_opened": opened,
            "bytes_read": read,
            "bytes_read_empty_tree": baseline,
            "records_read": hashed,
        },
        "parsers": timings,
    }
    peers.write_results(args.json, results)


if __name__ == "__main__":
    main()
