"""Measure near-duplicate match quality end to end: corpus, scan, report, peers, scores.

    python bench/quality/run.py [--threshold T] [--json OUT]
    python bench/quality/run.py --parts tuning,heldout [--json OUT]

1. builds the labelled corpus with make_corpus.py (``--out``, default
   ``bench/out/quality-corpus``; with ``--parts``, ``bench/out/quality-corpus-<part>``
   per part) unless one built with the same options is there;
2. ``imgindex scan`` of it into a fresh index in ``--workdir`` (default
   ``bench/out/quality-run``, with ``--parts`` a subfolder per part);
3. ``imgindex report --near`` (``--threshold`` passed through; imgindex's own
   default when not given), and the same with ``--rotations`` (column
   "+rotations");
4. imagededup's PHash on the same corpus (``encode_images`` with
   ``recursive=True``, ``find_duplicates`` at ``--imagededup-threshold``, 10),
   and with ``--czkawka`` (the default with ``--parts``) czkawka's Python
   bindings at similarity ``--czkawka-level`` (10);
5. scores them with score.py and prints the tables, with the time of each step
   and the scan's throughput; with several parts, a summary with the parts side
   by side at the end.

``--parts``: ``round1`` is the first corpus; ``tuning`` is it plus template
families and moderate edits, the part to tune on; ``heldout`` has the same
classes drawn with another seed, fonts, sizes, glyphs, symbols and words, and
is not to be tuned on.
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


def run_part(args: argparse.Namespace, part: str, out: Path, workdir: Path, seed: int) -> dict[str, Any]:
    """Build (if needed), scan, report and score one part; print its tables; return its results."""
    seconds: dict[str, float] = {}
    labels_path = out / "labels.json"
    options = (args.sources, seed, args.variant_share, args.distractor_scale)
    if args.rebuild or not make_corpus.options_match(labels_path, *options, part=part):
        peers.log(f"building the {part} corpus in {out}")
        start = time.perf_counter()
        make_corpus.build(out, *options, log=peers.log, part=part)
        seconds["build_corpus"] = time.perf_counter() - start
    else:
        peers.log(f"using the {part} corpus in {out}")
    labels = score.load_labels(labels_path)
    n_files = len(labels.files)

    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "index.db"
    peers.remove_index(db)
    cli = peers.imgindex_command()

    scan = [*cli, "scan", "--db", str(db), "--json", str(labels.root)]
    if args.jobs:
        scan[2:2] = ["--jobs", str(args.jobs)]
    peers.log(f"{part}: imgindex scan")
    seconds["imgindex_scan"], stdout, _ = peers.timed(scan, ok=(0, 3))
    summary = json.loads(stdout.strip().splitlines()[-1])

    near = workdir / "near.json"
    report = [*cli, "report", "--near", "--db", str(db), "-o", str(near)]
    if args.threshold is not None:
        report += ["--threshold", str(args.threshold)]
    peers.log(f"{part}: imgindex report --near")
    seconds["imgindex_report"], _, _ = peers.timed(report)
    scores = {"imgindex": score.score(labels, score.imgindex_found(near, labels))}
    turned = workdir / "near-rotations.json"
    rotations = [*cli, "report", "--near", "--rotations", "--db", str(db), "-o", str(turned)]
    if args.threshold is not None:
        rotations += ["--threshold", str(args.threshold)]
    peers.log(f"{part}: imgindex report --near --rotations")
    seconds["imgindex_report_rotations"], _, _ = peers.timed(rotations)
    scores["+rotations"] = score.score(labels, score.imgindex_found(turned, labels), orientations=True)

    extra: dict[str, Any] = {
        "part": part,
        "commands": {"scan": scan, "report": report, "report_rotations": rotations},
        "scan_summary": summary,
    }
    if not args.no_imagededup:
        peers.log(f"{part}: imagededup encode_images + find_duplicates")
        encodings, duplicates, dd = score.run_imagededup(labels.root, args.imagededup_threshold)
        seconds["imagededup_encode"], seconds["imagededup_find"] = dd["encode"], dd["find"]
        found = score.imagededup_found(encodings, duplicates, args.imagededup_threshold, labels)
        scores["imagededup"] = score.score(labels, found)
        (workdir / "imagededup.json").write_text(json.dumps(duplicates) + "\n", encoding="utf-8")
    if args.czkawka:
        peers.log(f"{part}: czkawka ImageSimilarity.find_similar")
        try:
            found, cz = score.run_czkawka(labels, workdir / "czkawka-view", args.czkawka_level)
        except ImportError as e:
            extra["czkawka_error"] = f"cannot import czkawka: {e}"
            peers.log(extra["czkawka_error"])
        else:
            seconds["czkawka_find"], seconds["czkawka_hash_each"] = cz["find_similar"], cz["hash_each"]
            scores["czkawka"] = score.score(labels, found)

    rate = n_files / seconds["imgindex_scan"]
    header = [
        f"near-duplicate quality benchmark, part {part} (seed {seed}, {args.sources} sources; {os.cpu_count()} CPUs)",
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
    print()
    extra.update({"seconds": {k: round(v, 3) for k, v in seconds.items()}, "scan_files_per_second": round(rate, 1)})
    return score.results_json(labels, scores, extra)


def _lowest_standard(s: dict[str, Any]) -> float | None:
    rates = [r["recall"] for t, r in s["transforms"].items() if t not in make_corpus.HARD and r["recall"] is not None]
    return min(rates) if rates else None


def summary_table(results: dict[str, dict[str, Any]]) -> str:
    """The headline figures of each part side by side: recall per class, false pairs."""
    parts = list(results)
    tools = list(results[parts[0]]["scores"])
    columns = [(p, t) for p in parts for t in tools]
    width = 34
    lines = ["SUMMARY (recall; false pairs = pairs put together that are not one picture)"]
    lines.append(f"  {'':{width}}" + "".join(f" {p[:11]:>11}" for p, _ in columns))
    lines.append(f"  {'':{width}}" + "".join(f" {t[:11]:>11}" for _, t in columns))

    def row(name: str, get: Any) -> None:
        cells = []
        for p, t in columns:
            try:
                v = get(results[p]["scores"][t])
            except KeyError:
                v = None
            cells.append("-" if v is None else f"{v:,.3f}" if isinstance(v, float) else f"{v:,}")
        lines.append(f"  {name:{width}}" + "".join(f" {c:>11}" for c in cells))

    row("standard transforms", lambda s: s["standard"]["recall"])
    row("  lowest single transform", _lowest_standard)
    row("hard (mirror, rot90)", lambda s: s["hard"]["recall"])
    edits = list(dict.fromkeys(e for p in parts for e in results[p]["scores"][tools[0]]["moderate"]["transforms"]))
    row("moderate edits, all", lambda s: s["moderate"]["total"]["recall"])
    for e in edits:
        row(f"  {e}", lambda s, e=e: s["moderate"]["transforms"][e]["recall"])
    row("template-family copies", lambda s: s["family_copies"]["total"]["recall"])
    row("false pairs", lambda s: s["false_pairs"]["count"])
    row("  two members of one family", lambda s: s["false_pairs"]["template_family"])
    kinds = sorted({k for p in parts for t in tools for k in results[p]["scores"][t]["false_pairs"]["by_family"]})
    for k in kinds:
        row(f"    {k}", lambda s, k=k: s["false_pairs"]["by_family"].get(k, 0))
    row("  involving a family picture", lambda s: s["false_pairs"]["involving_family"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    make_corpus.add_arguments(parser)
    parser.add_argument("--parts", help="comma-separated parts to build and score in one run, e.g. tuning,heldout")
    parser.add_argument("--rebuild", action="store_true", help="build the corpus again even if it is there")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="index and reports (emptied first)")
    parser.add_argument("-t", "--threshold", type=int, help="imgindex report --threshold (default: imgindex's)")
    parser.add_argument("-j", "--jobs", type=int, help="imgindex scan --jobs (default: imgindex's, all cores)")
    parser.add_argument("--imagededup-threshold", type=int, default=score.IMAGEDEDUP_THRESHOLD)
    parser.add_argument("--no-imagededup", action="store_true", help="score imgindex alone")
    parser.add_argument(
        "--czkawka",
        action=argparse.BooleanOptionalAction,
        help="run czkawka's Python bindings too (default: with --parts)",
    )
    parser.add_argument("--czkawka-level", type=int, default=score.CZKAWKA_LEVEL)
    parser.add_argument("--json", type=Path, metavar="OUT", help="write everything as JSON")
    args = parser.parse_args(argv)
    if args.czkawka is None:
        args.czkawka = bool(args.parts)

    if not args.parts:
        seed = make_corpus.default_seed(args)
        document = run_part(args, args.part, args.out, args.workdir, seed)
    else:
        parts = [p.strip() for p in args.parts.split(",") if p.strip()]
        unknown = [p for p in parts if p not in make_corpus.PARTS]
        if unknown:
            parser.error(f"unknown part(s) {unknown}: choose from {make_corpus.PARTS}")
        base = make_corpus.DEFAULT_OUT if args.out == make_corpus.DEFAULT_OUT else args.out
        results = {}
        for part in parts:
            seed = args.seed if args.seed is not None else make_corpus.HELDOUT_SEED if part == "heldout" else 1
            if part == "heldout" and args.seed is not None and "tuning" in parts:
                seed = args.seed + 1  # never the tuning part's seed
            out = base.parent / f"{base.name}-{part}"
            results[part] = run_part(args, part, out, args.workdir / part, seed)
        print(summary_table(results))
        document = {"parts": results}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
