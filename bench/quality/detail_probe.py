"""A probe for a second verification stage: look where two pictures differ, at a size where a symbol shows.

    python bench/quality/detail_probe.py [--parts tuning,heldout] [--side 32] [--grid 4]

Bench only: imgindex itself is not changed. For each part (the corpora and
``imgindex report --near`` outputs that ``run.py --parts tuning,heldout``
leaves in ``bench/out/quality-corpus-<part>`` and ``bench/out/quality-run/<part>``)
it takes the kept -> duplicate links of imgindex's report (the candidates its
hash and 16x16 check let through), reads both pictures from the corpus files
and judges each link again:

- each picture decoded as imgindex decodes it (at most 256 px, alpha
  flattened), grey, reduced to ``side`` x ``side`` px (box filter), once whole
  and once inside its uniform border (imgindex's own ``trim_box``; the whole
  again where there is none);
- each of those normalised to mean 0 and standard deviation 1 (the deviation
  floored at ``STD_FLOOR`` grey levels, so flat pictures are not blown up):
  grey copies, brightness and contrast changes leave it (nearly) unchanged;
- the link's **detail difference**: the largest, over a ``grid`` x ``grid``
  division of the picture into cells, of the mean absolute difference of the
  two normalised pictures in a cell (in standard deviations), taken for the
  wholes and for the insides, the smaller of the two. A different symbol in
  one place makes one cell differ much, however alike the rest is; a
  re-encode or a slight shift makes every cell differ a little. With
  ``--shift N``, each cell of one picture may move up to N px to meet the
  other (both ways round): crops, small rotations and rescaling move
  content by a pixel or two at this size, a different symbol stays different.

The one threshold comes from a rule, on the first part (tuning) only: the
99th percentile of the detail difference over the true links imgindex's
defaults make there (a link between two files of one family), i.e. a budget of
1 % of the pairs imgindex already finds. The same threshold is then applied,
unchanged, to the other parts (held out). A link above it is cut: the
duplicate leaves the group. Recall and false pairs are then scored as
score.py scores imgindex (every pair of a group).

``--align`` judges each link at the best fit of one picture on the other (the insides, not
normalised first): cut on one side or on all four (2-16 %), or turned by 2.5 degrees either
way, both ways round: the moderate edits registered before they are compared.

``--stat`` sums the cells up otherwise (``ratio``: how much more the pictures differ in
their most different cell than in the median one; ``excess``: the largest less the median);
``--stored`` judges on the 32x32 grids of the insides the run's index stores, as imgindex's
own check does (``match/verify.py``: ``--stat ratio --stored`` with the rule's bound), with
``--pool`` and ``--register`` as variants tried.

Bytes per image the stage would store: ``side`` x ``side`` grey bytes for the
whole picture, and as many again for the inside when it has a border.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import score
from PIL import Image

from imgindex.hashing import HashSettings, decode, trim_box

OUT = Path(__file__).resolve().parent.parent / "out"
#: The floor of a picture's standard deviation, in grey levels, when it is normalised.
STD_FLOOR = 8.0
#: Share of imgindex's true links the stage may cut on the tuning part: the rule for its threshold.
BUDGET = 0.01


def normalised(grey: Image.Image, side: int) -> np.ndarray:
    a = np.asarray(grey.resize((side, side), Image.Resampling.BOX), dtype=np.float32)
    return (a - a.mean()) / max(float(a.std()), STD_FLOOR)


def pictures(root: Path, rel: str, side: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(whole, inside, framed) of one file: its normalised ``side`` x ``side`` grey pictures."""
    data = (root / rel).read_bytes()
    picture, _, _ = decode(data, None, HashSettings())
    grey = picture.convert("L")
    box = trim_box(picture)
    whole = normalised(grey, side)
    return whole, normalised(grey.crop(box), side) if box else whole, box is not None


def _cells(d: np.ndarray, grid: int) -> np.ndarray:
    cell = d.shape[-1] // grid
    d = d[..., : cell * grid, : cell * grid]
    return d.reshape(*d.shape[:-2], grid, cell, grid, cell).mean(axis=(-3, -1))


#: How a link's cell differences are summed up: ``max`` (the largest cell), ``excess`` (the largest
#: less the median cell: a difference in one place above the picture's general level), ``ratio``
#: (the largest over the median, the median floored at ``RATIO_FLOOR``).
STAT = "max"
RATIO_FLOOR = 0.05
#: With --quantile Q: the cell at that quantile stands for the general level (0.5: the median).
QUANTILE = 0.5


def _summary(cells: np.ndarray) -> float:
    flat = cells.reshape(-1)
    top = float(flat.max())
    if STAT == "max":
        return top
    middle = float(np.quantile(flat, QUANTILE))
    if STAT == "excess":
        return top - middle
    return top / max(middle, RATIO_FLOOR)


#: With --register K: also compare with one of the two pictures cut by 1..K px on every side
#: (resampled back to the grid's size), and take the least figure: a crop registered.
REGISTER = 0


def _normal(a: np.ndarray) -> np.ndarray:
    return (a - a.mean()) / max(float(a.std()), STD_FLOOR)


def _cut(raw: np.ndarray, k: int) -> np.ndarray:
    side = raw.shape[0]
    image = Image.fromarray(raw.astype(np.float32), mode="F")
    return np.asarray(image.resize((side, side), Image.Resampling.BILINEAR, box=(k, k, side - k, side - k)))


def registered_difference(a_raw: np.ndarray, b_raw: np.ndarray, grid: int) -> float:
    """The figure at the best registration (the least mean difference): as they are, or either
    cut by 1..REGISTER px."""
    tries = [(_normal(a_raw), _normal(b_raw))]
    for k in range(1, REGISTER + 1):
        tries += [(_normal(_cut(a_raw, k)), _normal(b_raw)), (_normal(a_raw), _normal(_cut(b_raw, k)))]
    differences = [np.abs(x - y) for x, y in tries]
    best = min(differences, key=lambda d: float(d.mean()))
    return _summary(_cells(best, grid))


def relative_difference(a: np.ndarray, b: np.ndarray, grid: int) -> float:
    """``--stat relative``/``relratio``: each cell's mean absolute difference over the cell's own
    detail (the mean of the two pictures' deviations in it, at least 0.1), then the largest
    (relative) or the largest over the median (relratio, the median at least RATIO_FLOOR)."""
    cell = a.shape[-1] // grid

    def cells(x: np.ndarray) -> np.ndarray:
        return x.reshape(grid, cell, grid, cell).transpose(0, 2, 1, 3).reshape(grid * grid, cell * cell)

    ca, cb = cells(a), cells(b)
    detail = np.maximum((ca.std(axis=1) + cb.std(axis=1)) / 2, 0.1)
    rel = np.abs(ca - cb).mean(axis=1) / detail
    if STAT == "relative":
        return float(rel.max())
    return float(rel.max() / max(float(np.median(rel)), RATIO_FLOOR))


def detail_difference(a: np.ndarray, b: np.ndarray, grid: int, shift: int = 0) -> float:
    """The largest mean absolute difference over ``grid`` x ``grid`` cells; with ``shift``,
    each cell's difference is the least over moving the other picture by up to ``shift`` px
    each way (a cell may move on its own: crops, rotations and rescaling move content a
    little, a different symbol stays different), taken both ways round."""
    if not shift:
        return _summary(_cells(np.abs(a - b), grid))
    side = a.shape[0]

    def one_way(x: np.ndarray, y: np.ndarray) -> float:
        padded = np.pad(y, shift, mode="edge")
        moved = np.stack(
            [
                padded[shift + dy : shift + dy + side, shift + dx : shift + dx + side]
                for dy in range(-shift, shift + 1)
                for dx in range(-shift, shift + 1)
            ]
        )
        return _summary(_cells(np.abs(x[None] - moved), grid).min(axis=0))

    return max(one_way(a, b), one_way(b, a))


#: With --align: the other picture is also cut (one side alone, or all four by half as much;
#: 2-16 % of its side in steps of 2) and turned by +-2.5 degrees, both ways round, and the
#: figure taken at the best fit (the least mean difference): the moderate edits registered.
ALIGN = False
ALIGN_SHARES = (0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.14, 0.16)
ALIGN_TURNS = (-2.5, 2.5)


def raw_inside(root: Path, rel: str, side: int) -> np.ndarray:
    """The ``side`` x ``side`` grey picture of a file's inside (its whole where it has no border),
    not normalised (see :func:`aligned_difference`)."""
    picture, _, _ = decode((root / rel).read_bytes(), None, HashSettings())
    grey = picture.convert("L")
    box = trim_box(picture)
    inside = grey.crop(box) if box else grey
    return np.asarray(inside.resize((side, side), Image.Resampling.BOX), dtype=np.float32)


def _fits(raw: np.ndarray) -> list[np.ndarray]:
    """``raw`` as it is, cut (see :data:`ALIGN`) and turned, each back at its side, normalised."""
    side = raw.shape[0]
    image = Image.fromarray(raw, mode="F")
    boxes: list[tuple[float, float, float, float]] = []
    for share in ALIGN_SHARES:
        c = side * share
        boxes += [(0, 0, side, side - c), (0, c, side, side), (0, 0, side - c, side), (c, 0, side, side)]
        boxes += [(c / 2, c / 2, side - c / 2, side - c / 2)]
    fits = [raw] + [np.asarray(image.resize((side, side), Image.Resampling.BILINEAR, box=b)) for b in boxes]
    fits += [
        np.asarray(image.rotate(t, Image.Resampling.BILINEAR, fillcolor=float(np.median(raw)))) for t in ALIGN_TURNS
    ]
    return [_normal(f) for f in fits]


def aligned_difference(a_raw: np.ndarray, b_raw: np.ndarray, grid: int) -> float:
    """The figure (:func:`_summary` of the cells) at the best fit of one picture on the other."""
    tries = [
        np.abs(_normal(a_raw)[None] - np.stack(_fits(b_raw))),
        np.abs(_normal(b_raw)[None] - np.stack(_fits(a_raw))),
    ]
    differences = np.concatenate(tries)
    best = differences[int(np.argmin(differences.mean(axis=(1, 2))))]
    return _summary(_cells(best, grid))


#: With --stored: the grids averaged over POOL x POOL px before they are compared.
POOL = 1


def stored_grids(part: str) -> dict[str, np.ndarray]:
    """By path relative to the corpus, the 32x32 grey grid of each picture's inside that the
    run's index stores (``descriptors.grid``), normalised as :func:`normalised` does."""
    with sqlite3.connect(OUT / "quality-run" / part / "index.db") as db:
        rows = db.execute(
            "SELECT p.path, d.grid FROM file_paths p JOIN descriptors d ON d.file_id = p.id WHERE d.grid IS NOT NULL"
        ).fetchall()
    root = os.fsencode(OUT / f"quality-corpus-{part}" / "dump") + b"/"
    grids = {}
    for path, blob in rows:
        a = np.frombuffer(blob, dtype=np.uint8).reshape(32, 32).astype(np.float32)
        a = a.reshape(32 // POOL, POOL, 32 // POOL, POOL).mean(axis=(1, 3))
        # Raw with --register (normalised after each cut), else normalised.
        grids[os.fsdecode(bytes(path).removeprefix(root))] = a if REGISTER else _normal(a)
    return grids


def probe_part(part: str, side: int, grid: int, shift: int = 0, stored: bool = False) -> dict[str, Any]:
    """Every link of imgindex's report with its detail difference and whether it is true
    (with ``stored``, judged on the grids the index stores, as imgindex itself would)."""
    labels = score.load_labels(OUT / f"quality-corpus-{part}" / "labels.json")
    found = score.imgindex_found(OUT / "quality-run" / part / "near.json", labels)
    cache: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
    grids = stored_grids(part) if stored else {}

    def get(rel: str) -> tuple[np.ndarray, np.ndarray, bool]:
        if rel not in cache:
            if ALIGN:
                raw = raw_inside(labels.root, rel, side)
                cache[rel] = (raw, raw, False)
            elif stored:
                g = grids.get(rel, np.zeros((32 // POOL, 32 // POOL), dtype=np.float32))
                cache[rel] = (g, g, False)
            else:
                cache[rel] = pictures(labels.root, rel, side)
        return cache[rel]

    links = []
    for group in found.groups:
        kept = group[0]
        for dup in group[1:]:
            (wa, ia, _), (wb, ib, _) = get(kept), get(dup)
            if ALIGN:
                d = aligned_difference(wa, wb, grid)
            elif STAT in ("relative", "relratio"):
                d = relative_difference(wa, wb, grid)
            elif stored and REGISTER:
                d = registered_difference(wa, wb, grid)
            else:
                d = min(detail_difference(wa, wb, grid, shift), detail_difference(ia, ib, grid, shift))
            true = labels.family(kept) == labels.family(dup)
            links.append({"kept": kept, "duplicate": dup, "difference": round(d, 4), "true": true})
    framed = sum(f for _, _, f in cache.values())
    return {"labels": labels, "found": found, "links": links, "framed_share": framed / max(1, len(cache))}


def filtered(found: score.Found, links: list[dict[str, Any]], threshold: float) -> score.Found:
    """imgindex's groups without the duplicates whose link the stage cuts (they stand alone)."""
    cut = {(x["kept"], x["duplicate"]) for x in links if x["difference"] > threshold}
    group: dict[str, int] = {}
    pairs: set[tuple[str, str]] = set()
    links_kept: set[tuple[str, str]] = set()
    groups = []
    for number, members in enumerate(found.groups):
        kept = [members[0]] + [m for m in members[1:] if (members[0], m) not in cut]
        for m in kept:
            group[m] = number
        if len(kept) > 1:
            groups.append(kept)
        links_kept.update(score._pair(kept[0], m) for m in kept[1:])
        pairs.update(score._pair(a, b) for i, a in enumerate(kept) for b in kept[i + 1 :])
    return score.Found(
        name="imgindex+detail",
        threshold=found.threshold,
        together=lambda a, b: a in group and group.get(a) == group.get(b),
        pairs=pairs,
        links=links_kept,
        hashes=found.hashes,
        missing=found.missing,
        groups=groups,
    )


def headline(s: dict[str, Any]) -> dict[str, Any]:
    fp = s["false_pairs"]
    return {
        "standard": s["standard"]["recall"],
        "lowest_standard": min(r["recall"] for t, r in s["transforms"].items() if t not in ("mirror", "rot90")),
        "moderate": s["moderate"]["total"]["recall"],
        "moderate_by_edit": {t: r["recall"] for t, r in s["moderate"]["transforms"].items()},
        "family_copies": s["family_copies"]["total"]["recall"],
        "false_pairs": fp["count"],
        "template_family": fp["template_family"],
        "by_family": fp["by_family"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="tuning,heldout", help="the first sets the threshold, the others use it")
    parser.add_argument("--side", type=int, default=32, help="side of the grey pictures compared (default 32)")
    parser.add_argument("--grid", type=int, default=4, help="cells per side over which the largest difference is taken")
    parser.add_argument("--shift", type=int, default=0, help="let each cell move up to this many px (default 0)")
    stats = ("max", "excess", "ratio", "relative", "relratio")
    parser.add_argument("--stat", choices=stats, default="max", help="how cells sum up")
    parser.add_argument("--quantile", type=float, default=0.5, help="the general level's quantile (0.5)")
    parser.add_argument("--stored", action="store_true", help="judge on the grids the run's index stores")
    parser.add_argument("--register", type=int, default=0, help="with --stored: also cut 1..N px a side")
    parser.add_argument("--pool", type=int, default=1, help="with --stored: average the grids over N x N px first")
    parser.add_argument("--align", action="store_true", help="judge at the best fit of cuts and small turns")
    parser.add_argument("--threshold", type=float, help="use this threshold instead of the rule's")
    parser.add_argument("--json", type=Path, default=OUT / "quality-run" / "detail-probe.json")
    args = parser.parse_args(argv)
    global STAT, POOL, REGISTER, QUANTILE, ALIGN
    STAT, POOL, REGISTER, QUANTILE, ALIGN = args.stat, args.pool, args.register, args.quantile, args.align
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    threshold = args.threshold
    results: dict[str, Any] = {
        "side": args.side,
        "grid": args.grid,
        "shift": args.shift,
        "stat": args.stat,
        "std_floor": STD_FLOOR,
        "budget": BUDGET,
    }
    for n, part in enumerate(parts):
        start = time.perf_counter()
        p = probe_part(part, args.side, args.grid, args.shift, args.stored)
        true = sorted(x["difference"] for x in p["links"] if x["true"])
        false = sorted(x["difference"] for x in p["links"] if not x["true"])
        if threshold is None and n == 0:
            threshold = float(np.quantile(true, 1 - BUDGET, method="higher")) if true else 0.0
            results["threshold_rule"] = f"{1 - BUDGET:.0%} quantile of the true links' detail difference on {part}"
        assert threshold is not None
        before = score.score(p["labels"], p["found"])
        after = score.score(p["labels"], filtered(p["found"], p["links"], threshold))
        sweep = {}
        for t in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0):
            s = score.score(p["labels"], filtered(p["found"], p["links"], t))
            sweep[str(t)] = {
                "standard": s["standard"]["recall"],
                "moderate": s["moderate"]["total"]["recall"],
                "false_pairs": s["false_pairs"]["count"],
            }
        labels = p["labels"]
        by_transform: dict[str, list[float]] = {}
        by_kinds: dict[str, list[float]] = {}
        for x in p["links"]:
            if x["true"]:
                t = labels.files[x["duplicate"]]["transform"]
                t = labels.files[x["kept"]]["transform"] if t == "source" else t
                by_transform.setdefault(t, []).append(x["difference"])
            else:
                k = " ~ ".join(sorted((labels.category(x["kept"]), labels.category(x["duplicate"]))))
                by_kinds.setdefault(k, []).append(x["difference"])
        results[part] = {
            "true_by_transform": {
                t: {"links": len(v), "median": float(np.median(v)), "p90": float(np.quantile(v, 0.9)), "max": max(v)}
                for t, v in sorted(by_transform.items(), key=lambda kv: -float(np.quantile(kv[1], 0.9)))
            },
            "false_by_kinds": {k: sorted(v) for k, v in sorted(by_kinds.items(), key=lambda kv: -len(kv[1]))},
            "links": len(p["links"]),
            "true_links": len(true),
            "false_links": len(false),
            "true_difference_quantiles": {q: float(np.quantile(true, q)) for q in (0.5, 0.9, 0.99)} if true else {},
            "false_difference_quantiles": {q: float(np.quantile(false, q)) for q in (0.1, 0.5, 0.9)} if false else {},
            "false_links_cut": sum(d > threshold for d in false),
            "true_links_cut": sum(d > threshold for d in true),
            "framed_share": round(p["framed_share"], 3),
            "before": headline(before),
            "after": headline(after),
            "sweep_for_information": sweep,
            "cut_true_links": [x for x in p["links"] if x["true"] and x["difference"] > threshold],
            "seconds": round(time.perf_counter() - start, 1),
        }
        r = results[part]
        how = "rule, set here" if n == 0 and args.threshold is None else "as given"
        print(
            f"{part}: threshold {threshold:.3f} ({how});"
            f" {r['links']} links ({r['true_links']} true): cuts {r['false_links_cut']} of {r['false_links']} false"
            f" and {r['true_links_cut']} true links ({r['seconds']} s)"
        )
        for key in ("standard", "lowest_standard", "moderate", "family_copies", "false_pairs", "template_family"):
            b, a = r["before"][key], r["after"][key]
            print(f"  {key:18} {b:>9.3f} -> {a:.3f}" if isinstance(b, float) else f"  {key:18} {b:>9,} -> {a:,}")
        for t, v in r["before"]["moderate_by_edit"].items():
            print(f"    {t:16} {v:>9.3f} -> {r['after']['moderate_by_edit'][t]:.3f}")
        print(f"  template-family false pairs by kind: {r['before']['by_family']} -> {r['after']['by_family']}")
        print(f"  for information, other thresholds: {sweep}")
        print("  true links by transform (the duplicate's, else the kept one's): median/p90/max difference")
        for t, v in r["true_by_transform"].items():
            print(f"    {t:16} {v['links']:>5}  {v['median']:.2f}/{v['p90']:.2f}/{v['max']:.2f}")
        print("  false links by kinds: their differences")
        for k, v in list(r["false_by_kinds"].items())[:8]:
            print(f"    {k[:48]:48} {len(v):>4}  " + " ".join(f"{d:.2f}" for d in v[:24]))
    whole = args.side * args.side
    results["threshold"] = threshold
    framed = max(results[p]["framed_share"] for p in parts)
    results["bytes_per_image"] = {"unframed": whole, "framed": 2 * whole, "mean": round(whole * (1 + framed))}
    print(
        f"stored: {whole} bytes per picture without a border, {2 * whole} with one (whole and inside);"
        f" {framed:.0%} of the linked pictures have one: about {whole * (1 + framed):,.0f} bytes on average"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
