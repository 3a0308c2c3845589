"""Why planted grey copies are missed, and what a rule would cost, on a quality run's indexes.

For each planted ``grey`` pair of a part that the run's report did not put in one group, it
prints what decided it: no hash candidate (both the whole and the inside hashes more than
the threshold apart), refused by verification (and by which rule: grey correlation,
colourful flags, the framed/foreground rules, low detail) or matched but split by the
grouping. Then it re-matches the part with imgindex's verification as it is (no stored
matches: every candidate verified again, no scan) and scores the report as run.py does:
standard and grey recall, false pairs, template-family false pairs.

    python bench/quality/grey_probe.py [--parts tuning] [--workdir DIR] [--corpus DIR]

This is a bench: it changes nothing in imgindex.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from imgindex import report as report_module
from imgindex.hashing import DESCRIPTOR_BYTES, GREY_SIDE
from imgindex.match import verify
from imgindex.storage import open_index

sys.path.insert(0, str(Path(__file__).resolve().parent))
import score  # bench/quality/score.py
from grouping_probe import found_of, summary

BENCH = Path(__file__).resolve().parent.parent
THRESHOLD = 10


def _distance(x: int, y: int) -> int:
    return ((x ^ y) & ((1 << 64) - 1)).bit_count()


def _chroma(descriptor: bytes) -> float:
    rgb = np.frombuffer(descriptor[GREY_SIDE * GREY_SIDE :], dtype=np.uint8).astype(np.float32).reshape(-1, 3)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    return float(np.hypot(r - g, (r + g) / 2 - b).mean())


def _why(a: verify.Pictures, b: verify.Pictures, near_whole: bool, near_inside: bool) -> str:
    """Which rule refused a candidate (a and b: one row each)."""
    reasons = []
    for name, x, y, near in (("whole", a.whole, b.whole, near_whole), ("inside", a.inside, b.inside, near_inside)):
        if not near:
            continue
        corr = float(np.dot(x.grey[0].astype(np.float32), y.grey[0].astype(np.float32)))
        diff = y.chroma.astype(np.float32) - x.chroma.astype(np.float32)
        rms = float(np.sqrt((diff * diff).sum() / 64))
        one = bool(x.colourful[0]) != bool(y.colourful[0])
        if min(x.detail[0], y.detail[0]) < verify.LOW_DETAIL:
            reasons.append(f"{name}: low detail")
        elif corr < verify.GREY_CORRELATION:
            reasons.append(f"{name}: corr {corr:.3f} < {verify.GREY_CORRELATION}")
        elif x.colourful[0] and y.colourful[0] and rms > verify.COLOUR_DIFFERENCE:
            reasons.append(f"{name}: both colourful, colour rms {rms:.1f}")
        elif x.colourful[0] and y.colourful[0] and verify.colour_residual(x, y)[0] > verify.COLOUR_DIFFERENCE:
            reasons.append(f"{name}: both colourful, colour where drawn {verify.colour_residual(x, y)[0]:.1f}")
        elif one and not verify._same_luminance(x, y, np.array([corr], np.float32), verify.GREY_CORRELATION)[0]:
            ratio = max(x.detail[0], y.detail[0]) / max(min(x.detail[0], y.detail[0]), 1e-6)
            reasons.append(f"{name}: grey vs colourful, corr {corr:.3f}, contrast x{ratio:.2f}")
        elif name == "whole" and a.framed[0] and b.framed[0]:
            reasons.append("whole: framed/foreground rule")
        else:
            reasons.append(f"{name}: ?")
    return "; ".join(reasons)


class _Pairs:
    """The numbers of any two files of a part's index (by path relative to the corpus root)."""

    def __init__(self, labels: score.Labels, index: Any) -> None:
        self.index = index
        self.table = table = index.images.table()
        root = os.fspath(labels.root)
        self.row_of = {os.path.relpath(os.fsdecode(table.path(r)), root): r for r in range(len(table))}

    def numbers(self, x: str, y: str) -> dict[str, Any]:
        table = self.table
        ra, rb = self.row_of[x], self.row_of[y]
        ids = [int(table.id[ra]), int(table.id[rb])]
        desc = self.index.images.descriptors(ids)
        whole = np.frombuffer(b"".join(desc[i][0] for i in ids), np.uint8).reshape(2, DESCRIPTOR_BYTES)
        framed = np.array([desc[i][1] is not None for i in ids])
        inside = np.frombuffer(b"".join(desc[i][1] or desc[i][0] for i in ids), np.uint8).reshape(2, DESCRIPTOR_BYTES)
        pics = verify.Pictures.of(whole, inside, framed)
        a, b = pics.rows(np.array([0])), pics.rows(np.array([1]))
        h = [int(table.phash[r]) for r in (ra, rb)]
        th = [int(table.trim_hash[r]) if table.has_trim[r] else int(table.phash[r]) for r in (ra, rb)]
        d_whole, d_inside = _distance(*h), _distance(*th)
        near_whole, near_inside = d_whole <= THRESHOLD, d_inside <= THRESHOLD
        ok_whole, ok_inside = verify.confirm(a, b, np.array([near_whole]), np.array([near_inside]))
        if not (near_whole or near_inside):
            verdict = "no candidate"
        elif ok_whole[0] or ok_inside[0]:
            verdict = "match"
        else:
            verdict = "refused: " + _why(a, b, near_whole, near_inside)
        return {
            "d_whole": d_whole,
            "d_inside": d_inside,
            "corr": float(np.dot(a.whole.grey[0].astype(np.float32), b.whole.grey[0].astype(np.float32))),
            "corr_inside": float(np.dot(a.inside.grey[0].astype(np.float32), b.inside.grey[0].astype(np.float32))),
            "chroma": (_chroma(desc[ids[0]][0]), _chroma(desc[ids[1]][0])),
            "detail": (float(a.whole.detail[0]), float(b.whole.detail[0])),
            "framed": (bool(framed[0]), bool(framed[1])),
            "verdict": verdict,
        }


def diagnose(labels: score.Labels, index: Any, found: score.Found, transform: str = "grey") -> list[dict[str, Any]]:
    """One row per missed planted pair of ``transform``: its numbers, why, and the numbers of
    the variant against the kept image of the source's group when the source is not kept."""
    pairs = _Pairs(labels, index)
    kept = {m: g[0] for g in found.groups for m in g}
    rows = []
    for source, variant, t in labels.planted:
        if t != transform or found.together(source, variant):
            continue
        row = pairs.numbers(source, variant)
        row.update(source=source, variant=variant, category=labels.category(source))
        row["cause"] = row["verdict"]
        leader = kept.get(source, source)
        if row["verdict"] == "match":
            row["cause"] = "split by grouping"
            if leader != source:
                vs = pairs.numbers(leader, variant)
                row["cause"] += (
                    f" (source under {labels.files[leader]['transform']} {leader}: d {vs['d_whole']}/{vs['d_inside']}"
                    f" corr {vs['corr']:.3f}, {vs['verdict']})"
                )
        rows.append(row)
    return rows


def rescore(labels: score.Labels, index: Any) -> dict[str, Any]:
    """The part's report made again with every candidate verified now, scored."""
    options = report_module.ReportOptions(mode="near")
    matched = report_module._match(index, options, False)
    rep = report_module._group(options, matched, report_module.InForce())
    found = found_of(rep, labels)
    s = score.score(labels, found)
    r = summary(labels, found, False)
    r["fp"] = s["false_pairs"]
    r["found"] = found
    return r


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="tuning")
    parser.add_argument("--workdir", type=Path, default=BENCH / "out" / "quality-run")
    parser.add_argument("--corpus", type=Path, default=BENCH / "out", help="holds quality-corpus-<part>/")
    parser.add_argument("--transform", default="grey")
    args = parser.parse_args(argv)
    for part in args.parts.split(","):
        labels = score.load_labels(args.corpus / f"quality-corpus-{part}" / "labels.json")
        index = open_index(args.workdir / part / "index.db", create=False)
        r = rescore(labels, index)
        missed = diagnose(labels, index, r["found"], args.transform)
        print(f"{part}: {args.transform} missed {len(missed)}")
        print("  d_whole d_in  corr  corr_in  chroma(src,var)  detail(src,var)  framed  category  cause")
        for m in missed:
            print(
                f"  {m['d_whole']:5} {m['d_inside']:5} {m['corr']:6.3f} {m['corr_inside']:6.3f}"
                f"  {m['chroma'][0]:5.1f},{m['chroma'][1]:5.1f}   {m['detail'][0]:5.1f},{m['detail'][1]:5.1f}"
                f"  {'F' if m['framed'][0] else '-'}{'F' if m['framed'][1] else '-'}  {m['category']:10} {m['cause']}"
                f"  [{m['source']} / {m['variant']}]"
            )
        fp = r["fp"]
        tint = sum(n for k, n in fp["involving"].items() if "tint" in k)
        print(
            f"  standard {r['standard']:.3f} {args.transform} {r['transforms'].get(args.transform, 0):.3f}"
            f" brightness {r['transforms'].get('brightness', 0):.3f} contrast {r['transforms'].get('contrast', 0):.3f}"
            f" false pairs {r['false_pairs']} template-family {fp['template_family']} tinted icons {tint}"
        )
        index.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
