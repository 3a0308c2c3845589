"""Measure near-duplicate match quality end to end: corpus, scan, report, imagededup, scores.

    python bench/quality/run.py [--threshold T] [--json OUT]

1. builds the labelled corpus with make_corpus.py (``--out``, default
   ``bench/out/quality-corpus``) unless one built with the same options is
   there;
2. ``imgindex scan`` of it into a fresh index in ``--workdir`` (default
   ``bench/out/quality-run``);
3. ``imgindex report --near`` (``--threshold`` passed through; imgindex's own
   default when not given), and the same with ``--rotations`` (column
   "+rotations");
4. imagededup's PHash on the same corpus (``encode_images`` with
   ``recursive=True``, ``find_duplicates`` at ``--imagededup-threshold``, 10);
5. scores both with score.py and prints the tables, with the time of each step
   and the scan's throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import make_corpus  # bench/quality/make_corpus.py: this script runs as bench/quality/run.py
import score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import peers

DEFAULT_WORKDIR = Path(__file__).resolve().parent.parent / "out" / "quality-run"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    make_corpus.add_arguments(parser)
    parser.add_argument("--rebuild", action="store_true", help="build the corpus again even if it is there")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="index and reports (emptied first)")
    parser.add_argument("-t", "--threshold", type=int, help="imgindex report --threshold (default: imgindex's)")
    parser.add_argument("-j", "--jobs", type=int, help="imgindex scan --jobs (default: imgindex's, all cores)")
    parser.add_argument("--imagededup-threshold", type=int, default=score.IMAGEDEDUP_THRESHOLD)
    parser.add_argument("--no-imagededup", action="store_true", help="score imgindex alone")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write everything as JSON")
    args = parser.parse_args(argv)

    seconds: dict[str, float] = {}
    labels_path = args.out / "labels.json"
    options = (args.sources, args.seed, args.variant_share, args.distractor_scale)
    if args.rebuild or not make_corpus.options_match(labels_path, *options):
        peers.log(f"building the corpus in {args.out}")
        start = time.perf_counter()
        make_corpus.build(args.out, *options, log=peers.log)
        seconds["build_corpus"] = time.perf_counter() - start
    else:
        peers.log(f"using the corpus in {args.out}")
    labels = score.load_labels(labels_path)
    n_files = len(labels.files)

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "index.db"
    for stale in (db, workdir / "index.db-wal", workdir / "index.db-shm"):
        stale.unlink(missing_ok=True)
    cli = peers.imgindex_command()

    scan = [*cli, "scan", "--db", str(db), "--json", str(labels.root)]
    if args.jobs:
        scan[2:2] = ["--jobs", str(args.jobs)]
    peers.log("imgindex scan")
    seconds["imgindex_scan"], out, _ = peers.timed(scan, ok=(0, 3))
    summary = json.loads(out.strip().splitlines()[-1])

    near = workdir / "near.json"
    report = [*cli, "report", "--near", "--db", str(db), "-o", str(near)]
    if args.threshold is not None:
        report += ["--threshold", str(args.threshold)]
    peers.log("imgindex report --near")
    seconds["imgindex_report"], _, _ = peers.timed(report)
    scores = {"imgindex": score.score(labels, score.imgindex_found(near, labels))}
    turned = workdir / "near-rotations.json"
    rotations = [*cli, "report", "--near", "--rotations", "--db", str(db), "-o", str(turned)]
    if args.threshold is not None:
        rotations += ["--threshold", str(args.threshold)]
    peers.log("imgindex report --near --rotations")
    seconds["imgindex_report_rotations"], _, _ = peers.timed(rotations)
    scores["+rotations"] = score.score(labels, score.imgindex_found(turned, labels), orientations=True)

    extra: dict[str, Any] = {
        "commands": {"scan": scan, "report": report, "report_rotations": rotations},
        "scan_summary": summary,
    }
    if not args.no_imagededup:
        peers.log("imagededup encode_images + find_duplicates")
        encodings, duplicates, dd = score.run_imagededup(labels.root, args.imagededup_threshold)
        seconds["imagededup_encode"], seconds["imagededup_find"] = dd["encode"], dd["find"]
        found = score.imagededup_found(encodings, duplicates, args.imagededup_threshold, labels)
        scores["imagededup"] = score.score(labels, found)
        (workdir / "imagededup.json").write_text(json.dumps(duplicates) + "\n", encoding="utf-8")

    rate = n_files / seconds["imgindex_scan"]
    header = [
        f"near-duplicate quality benchmark (seed {args.seed}, {args.sources} sources; {os.cpu_count()} CPUs)",
        "seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()),
        f"imgindex scan: {n_files:,} files in {seconds['imgindex_scan']:.2f} s = {rate:,.0f} files/s"
        f" (whole process; statuses {summary.get('by_status')})"
        + (
            f"; imagededup encode_images: {n_files / seconds['imagededup_encode']:,.0f} files/s"
            if "imagededup_encode" in seconds
            else ""
        ),
    ]
    print(score.format_tables(labels, scores, header))
    if args.json:
        extra.update({"seconds": {k: round(v, 3) for k, v in seconds.items()}, "scan_files_per_second": round(rate, 1)})
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(score.results_json(labels, scores, extra), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
