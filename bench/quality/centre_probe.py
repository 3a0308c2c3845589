"""A probe for candidates that survive crops, caption bars and padding: extra hashes of a region.

    python bench/quality/centre_probe.py [--parts tuning,heldout] [--out DIR] [--run NAME]

Bench only: imgindex itself is not changed. The moderate edits that add or
remove a band (5-10 % crops, one side cut, a caption bar added, padding to a
square) move the dHash of the whole picture by a median of 10-22 bits, beyond
the threshold: the pair never becomes a candidate. This probe decodes every
file of a corpus part as imgindex does (``hashing.decode``, ``trim_box``, the
``dhash`` kind's function over the picture, ``hashing.descriptor``) and makes,
besides the two hashes imgindex has today (``W`` the whole picture, ``I``
what is inside its uniform border, the whole where it has none), a few extra
hashes of a region:

- ``C50`` ... ``C90``: the middle 50-90 % of each side of the inside;
- ``B``: the inside without a band on one side (a caption bar, a pad): lines
  from an edge that are mostly (``BAND_SHARE``) the colour of the edge line,
  the deepest ending on a clean line (``BAND_CLEAN``), 3-40 % of the side;
  what is left is trimmed again;
- ``S``: the largest box without uniform lines on any side, each side judged
  against its own edge colour (bars of different colours, or on one side only,
  which the trim by the corners' colour leaves).

An extra hash becomes a link in one of two ways: ``same`` (the extra hashes of
two pictures are near: a small rotation keeps the middle where it was) or
``cross`` (one picture's extra hash is near the other's whole or inside hash,
or its extra hash: a variant cut 8 % a side is the middle 84 % of its source).

For each part, with today's links at 10 bits (imgindex's threshold) and the extra link at
10 or 8, per planted
transform: how many planted pairs are *missed by the hash today* (neither
``W``-``W`` nor ``I``-``I`` within the threshold), and how many of those the
extra link brings within it, and of those how many imgindex's own check
(``verify.confirm`` on the 16x16 / 8x8 descriptors of the two regions that
met) confirms; and the *new false candidates*: pairs of files of different
families within the threshold by the extra link and not by today's, with
how many of those the check confirms. A report's misses (pairs not grouped,
from the run's ``near.json``) are given beside, when the run is there.

With ``--grid``, each extra region's descriptor is not made from the region's
pixels but cut out of what one picture would store for all of them: a 32x32
grey thumbnail of the inside (``GRID_SIDE``, 1 KB) for the 16x16 grey part,
and the inside's 8x8 colour thumbnail for the colour part, each resampled over
the region's box (fractional box weights). Run with and without it, the
confirmed counts say whether the stored grid checks regions as well as their
own pixels do.

Also the time of the extra hashing per image against today's pipeline
(decode, trim, two hashes and descriptors), single process, and the bytes
each extra sort would store (8 for its hash, ``DESCRIPTOR_BYTES`` for a
descriptor to check it by).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import score
from PIL import Image

from imgindex import kinds
from imgindex.hashing import COLOUR_SIDE, DESCRIPTOR_BYTES, GREY_SIDE, HashSettings, decode, descriptor, trim_box
from imgindex.match.verify import Pictures, confirm

OUT = Path(__file__).resolve().parent.parent / "out"
#: Middle shares of each side hashed as ``C<percent>``.
CENTRES = (50, 60, 70, 80, 90)
#: Per-channel difference from a band's edge colour below which a pixel is of the band.
BAND_TOLERANCE = 24
#: A line belongs to a band when this share of its pixels has the edge's colour (text on a bar).
BAND_SHARE = 0.5
#: The band ends on a line with this share (the bar's clean margin).
BAND_CLEAN = 0.95
BAND_MIN, BAND_MAX = 0.03, 0.40
#: A line is uniform, for ``S``, when this share of its pixels has its side's edge colour.
SIDE_SHARE = 0.98
SIDE_MAX = 0.45
#: ``Kb``, ``Kt``, ``Kl``, ``Kr``: the inside with this share cut off the bottom, top, left, right.
SIDE_CUT = 0.12
#: ``--grid``: the side of the one grey thumbnail of the inside that regions' descriptors are cut from.
GRID_SIDE = 32
#: imgindex's threshold, for today's links (whole, inside); the extra links are tried at each of THRESHOLDS.
TODAY = 10
THRESHOLDS = (10, 8)
ROWS = ("crop", "standard", "crop_more", "crop_side", "caption_bar", "pad_square", "rotate", "moderate")

U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]
#: A region: from the whole picture and its inside, which of the two it is cut from
#: (``"W"`` or ``"I"``) and its box there, or None when the picture has no such region.
Region = Callable[[Image.Image, Image.Image], tuple[str, Box] | None]


def _lines(a: npt.NDArray[np.int16], side: int) -> npt.NDArray[np.int16]:
    """The picture's lines from one edge inwards (0 bottom, 1 top, 2 left, 3 right): ``(lines, length, 3)``."""
    if side == 0:
        return a[::-1]
    if side == 1:
        return a
    turned: npt.NDArray[np.int16] = np.swapaxes(a, 0, 1)
    return turned if side == 2 else turned[::-1]


def _shares(lines: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    """Per line, the share of its pixels of the edge line's (median) colour."""
    edge = np.median(lines[0], axis=0).astype(np.int16)
    d = np.abs(lines - edge)
    near = np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2]) <= BAND_TOLERANCE
    shares: npt.NDArray[np.float64] = near.mean(axis=1)
    return shares


def band_depth(lines: npt.NDArray[np.int16]) -> int:
    """Lines of a band at the edge (a bar with text on it), 0 without one."""
    n = len(lines)
    limit = int(n * BAND_MAX)
    shares = _shares(lines[: limit + 1])[:limit]
    broken = np.flatnonzero(shares < BAND_SHARE)
    end = int(broken[0]) if len(broken) else limit
    clean = np.flatnonzero(shares[:end] >= BAND_CLEAN)
    depth = int(clean[-1]) + 1 if len(clean) else 0
    return depth if depth >= max(2, BAND_MIN * n) else 0


def _side_box(size: tuple[int, int], side: int, depth: int) -> Box:
    w, h = size
    return {0: (0, 0, w, h - depth), 1: (0, depth, w, h), 2: (depth, 0, w, h), 3: (0, 0, w - depth, h)}[side]


def without_band(_: Image.Image, inside: Image.Image) -> tuple[str, Box] | None:
    """``B``: the inside without its deepest band on one side, trimmed again; None without a band."""
    a = np.asarray(inside, dtype=np.int16)
    if min(a.shape[:2]) < 8:
        return None
    depths = [band_depth(_lines(a, side)) for side in range(4)]
    side = int(np.argmax(depths))
    if not depths[side]:
        return None
    cut = _side_box(inside.size, side, depths[side])
    box = trim_box(inside.crop(cut))
    if box is None:
        return "I", cut
    return "I", (cut[0] + box[0], cut[1] + box[1], cut[0] + box[2], cut[1] + box[3])


def uniform_sides(picture: Image.Image, _: Image.Image) -> tuple[str, Box] | None:
    """``S``: the largest box of the whole picture with no uniform line on a side (each side
    against its own edge colour); None when no side has one."""
    a = np.asarray(picture, dtype=np.int16)
    h, w = a.shape[:2]
    cut = [0, 0, 0, 0]  # bottom, top, left, right
    for side in range(4):
        lines = _lines(a, side)
        shares = _shares(lines[: int(len(lines) * SIDE_MAX) + 1])
        mixed = np.flatnonzero(shares < SIDE_SHARE)
        cut[side] = int(mixed[0]) if len(mixed) else 0
    if not any(cut) or h - cut[0] - cut[1] < 4 or w - cut[2] - cut[3] < 4:
        return None
    return "W", (cut[2], cut[1], w - cut[3], h - cut[0])


def centre(share: float) -> Region:
    def region(_: Image.Image, inside: Image.Image) -> tuple[str, Box] | None:
        w, h = inside.size
        dx, dy = round(w * (1 - share) / 2), round(h * (1 - share) / 2)
        if w - 2 * dx < 4 or h - 2 * dy < 4:
            return None
        return "I", (dx, dy, w - dx, h - dy)

    return region


def side_cut(side: int) -> Region:
    def region(_: Image.Image, inside: Image.Image) -> tuple[str, Box] | None:
        n = inside.size[1] if side < 2 else inside.size[0]
        depth = round(n * SIDE_CUT)
        return ("I", _side_box(inside.size, side, depth)) if depth and n - depth >= 4 else None

    return region


EXTRAS: dict[str, Region] = (
    {f"C{p}": centre(p / 100) for p in CENTRES}
    | {"B": without_band, "S": uniform_sides}
    | {f"K{name}": side_cut(side) for side, name in enumerate("btlr")}
)
SORTS = ("W", "I", *EXTRAS)


@dataclass
class Part:
    paths: list[str]
    family: npt.NDArray[np.int64]
    hashes: dict[str, U64]  # per sort, (n,)
    descriptors: dict[str, U8]  # per sort, (n, DESCRIPTOR_BYTES)
    own: dict[str, npt.NDArray[np.bool_]]  # per extra sort: the region exists (else it is the inside)
    seconds_today: float
    seconds_extra: dict[str, float]


def span_weights(size: int, start: float, end: float, cells: int) -> npt.NDArray[np.float32]:
    """``(cells, size)``: row ``k`` averages pixels ``0 .. size`` (unit spans) over the ``k``-th of
    ``cells`` equal parts of ``[start, end)`` (fractional: a pixel counts by how much it overlaps)."""
    edges = start + np.arange(cells + 1) * (end - start) / cells
    lo, hi = np.arange(size), np.arange(size) + 1
    overlap = np.clip(np.minimum(hi, edges[1:, None]) - np.maximum(lo, edges[:-1, None]), 0, None)
    weights: npt.NDArray[np.float32] = (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)
    return weights


def grid_descriptor(inside: Image.Image, box: Box) -> npt.NDArray[np.uint8]:
    """``--grid``: the descriptor of the region ``box`` of the inside, cut out of the inside's
    32x32 grey and 8x8 colour thumbnails."""
    w, h = inside.size
    grid = np.asarray(inside.convert("L").resize((GRID_SIDE, GRID_SIDE), Image.Resampling.BOX), dtype=np.float32)
    colour = np.asarray(inside.resize((COLOUR_SIDE, COLOUR_SIDE), Image.Resampling.BOX), dtype=np.float32)
    x0, y0, x1, y1 = (box[0] / w, box[1] / h, box[2] / w, box[3] / h)

    def cut(a: npt.NDArray[np.float32], out: int) -> npt.NDArray[np.float32]:
        n = a.shape[0]
        wy, wx = span_weights(n, y0 * n, y1 * n, out), span_weights(n, x0 * n, x1 * n, out)
        if a.ndim == 2:
            return (wy @ a @ wx.T).astype(np.float32)
        return np.stack([wy @ a[..., c] @ wx.T for c in range(a.shape[2])], axis=-1).astype(np.float32)

    grey = np.clip(np.round(cut(grid, GREY_SIDE)), 0, 255).astype(np.uint8)
    rgb = np.clip(np.round(cut(colour, COLOUR_SIDE)), 0, 255).astype(np.uint8)
    return np.concatenate([grey.reshape(-1), rgb.reshape(-1)])


def hash_part(labels: score.Labels, grid: bool = False) -> Part:
    """Every file's hashes and descriptors, of every sort (an extra sort without its region: the inside's)."""
    dhash = kinds.get("dhash").picture
    paths = sorted(labels.files)
    n = len(paths)
    hashes = {s: np.zeros(n, dtype=np.uint64) for s in SORTS}
    descriptors = {s: np.zeros((n, DESCRIPTOR_BYTES), dtype=np.uint8) for s in SORTS}
    own = {s: np.zeros(n, dtype=bool) for s in EXTRAS}
    today, extra = 0.0, dict.fromkeys(EXTRAS, 0.0)
    settings = HashSettings()

    def put(sort: str, i: int, region: Image.Image) -> None:
        hashes[sort][i] = np.int64(dhash(region)).view(np.uint64)
        descriptors[sort][i] = np.frombuffer(descriptor(region), dtype=np.uint8)

    def put_region(sort: str, i: int, base: Image.Image, box: Box) -> None:
        put(sort, i, base.crop(box))
        if grid:
            descriptors[sort][i] = grid_descriptor(base, box)

    for i, rel in enumerate(paths):
        data = (labels.root / rel).read_bytes()
        start = time.perf_counter()
        picture, _, _ = decode(data, None, settings)
        box = trim_box(picture)
        inside = picture.crop(box) if box else picture
        put("W", i, picture)
        put("I", i, inside)
        today += time.perf_counter() - start
        for sort, make in EXTRAS.items():
            start = time.perf_counter()
            region = make(picture, inside)
            if region is not None:
                put_region(sort, i, picture if region[0] == "W" else inside, region[1])
            extra[sort] += time.perf_counter() - start
            if region is None:
                hashes[sort][i], descriptors[sort][i] = hashes["I"][i], descriptors["I"][i]
            own[sort][i] = region is not None
    names = {f: k for k, f in enumerate(sorted({labels.family(p) for p in paths}))}
    family = np.array([names[labels.family(p)] for p in paths], dtype=np.int64)
    return Part(paths, family, hashes, descriptors, own, today, extra)


def distances(a: U64, b: U64) -> U8:
    d: U8 = np.bitwise_count(a[:, None] ^ b[None, :]).astype(np.uint8)
    return d


@dataclass
class Link:
    """Distances of every pair of files by a link (the smallest over its pairs of sorts), and each
    pair of sorts it compares (``a`` of one file against ``b`` of the other) with its distances."""

    d: U8
    sorts: list[tuple[str, str, U8]]


def link(part: Part, pairs: list[tuple[str, str]], cache: dict[tuple[str, str], U8]) -> Link:
    """The smallest distance over pairs of sorts (each taken both ways round)."""
    sorts = []
    for x, y in dict.fromkeys((x, y) for p in pairs for (x, y) in (p, p[::-1])):
        if (x, y) not in cache:
            cache[x, y] = cache[y, x].T if (y, x) in cache else distances(part.hashes[x], part.hashes[y])
        sorts.append((x, y, cache[x, y]))
    d: U8 = np.minimum.reduce([m for _, _, m in sorts])
    return Link(d, sorts)


def extra_pairs(sorts: tuple[str, ...], mode: str) -> list[tuple[str, str]]:
    """The pairs of sorts a link of extra sorts compares: ``same`` each with itself, ``cross`` also
    with the whole and the inside."""
    pairs = [(s, s) for s in sorts]
    if mode == "cross":
        pairs += [(s, t) for s in sorts for t in ("W", "I")]
    return pairs


def confirmed(
    part: Part, lk: Link, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], t: int
) -> npt.NDArray[np.bool_]:
    """imgindex's check on the descriptors of two regions whose hashes are within ``t``: a pair
    holds when one such pair of regions is confirmed."""
    out = np.zeros(len(a), dtype=bool)
    for x, y, d in lk.sorts:
        at = np.flatnonzero(~out & (d[a, b] <= t))
        if not len(at):
            continue
        da = part.descriptors[x][a[at]]
        db = part.descriptors[y][b[at]]
        flat = np.zeros(len(at), dtype=bool)
        out[at] = confirm(Pictures.of(da, da, flat), Pictures.of(db, db, flat), ~flat, flat)[0]
    return out


def planted_rows(labels: score.Labels, index: dict[str, int]) -> dict[str, tuple[npt.NDArray[np.int64], ...]]:
    """Per row of the table, the planted pairs (indices of source and variant)."""
    rows: dict[str, list[tuple[int, int]]] = {r: [] for r in ROWS}
    standard = [(a, b, t) for a, b, t in labels.planted if t in labels.standard]
    for a, b, t in standard + labels.moderate:
        pair = (index[a], index[b])
        if t in rows:
            rows[t].append(pair)
        rows["standard" if t in labels.standard else "moderate"].append(pair)
    return {r: (np.array([p[0] for p in v], np.int64), np.array([p[1] for p in v], np.int64)) for r, v in rows.items()}


def probe(part: Part, labels: score.Labels, report: score.Found | None, links: dict[str, Link]) -> dict[str, Any]:
    """For each threshold and each extra link: recall gained over today's hash misses per row, and
    the new false candidates."""
    index = {p: i for i, p in enumerate(part.paths)}
    rows = planted_rows(labels, index)
    today = links["today"]
    n = len(part.paths)
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    other = part.family[:, None] != part.family[None, :]
    result: dict[str, Any] = {}
    for t in THRESHOLDS:
        missed = {r: today.d[a, b] > TODAY for r, (a, b) in rows.items()}
        table: dict[str, Any] = {
            "pairs": {r: len(a) for r, (a, _) in rows.items()},
            "hash_missed": {r: int(m.sum()) for r, m in missed.items()},
            "false_candidates_today": int((upper & other & (today.d <= TODAY)).sum()),
        }
        lost = {r: np.zeros(len(a), dtype=bool) for r, (a, _) in rows.items()}
        if report is not None:
            lost = {
                r: np.array([not report.together(part.paths[x], part.paths[y]) for x, y in zip(a, b, strict=True)])
                for r, (a, b) in rows.items()
            }
            table["report_missed"] = {r: int(m.sum()) for r, m in lost.items()}
            # Misses of the report that today's hash makes near and the check (of the two
            # descriptors that met, without the framed rules) confirms: the grouping's, or the
            # framed rules'.
            table["report_missed_near_and_confirmed_today"] = {
                r: int(confirmed(part, today, a[lost[r] & ~missed[r]], b[lost[r] & ~missed[r]], TODAY).sum())
                for r, (a, b) in rows.items()
            }
        for name, lk in links.items():
            if name == "today":
                continue
            gained: dict[str, list[int]] = {}
            for r, (a, b) in rows.items():
                near = lk.d[a, b] <= t
                ok = np.zeros(len(a), dtype=bool)
                ok[near] = confirmed(part, lk, a[near], b[near], t)
                hit = missed[r] & near
                # [hash misses made near, of them confirmed, report misses made near and confirmed]
                gained[r] = [int(hit.sum()), int((hit & ok).sum()), int((lost[r] & ok).sum())]
            fa, fb = np.nonzero(upper & other & (today.d > TODAY) & (lk.d <= t))
            table[name] = {
                "gained": gained,
                "false": [len(fa), int(confirmed(part, lk, fa, fb, t).sum())],
            }
        result[str(t)] = table
    return result


def candidate_links(part: Part) -> dict[str, Link]:
    cache: dict[tuple[str, str], U8] = {}
    today = link(part, [("W", "W"), ("I", "I")], cache)
    links = {"today": today}
    specs: list[tuple[str, tuple[str, ...], str]] = [(f"{s} same", (s,), "same") for s in EXTRAS if s.startswith("C")]
    specs += [(f"{s} cross", (s,), "cross") for s in EXTRAS if not s.startswith("K")]
    specs += [("C80+C90 cross", ("C80", "C90"), "cross"), ("B+S cross", ("B", "S"), "cross")]
    specs += [("C90+B cross", ("C90", "B"), "cross"), ("C90+B+S cross", ("C90", "B", "S"), "cross")]
    specs += [("K (4 sides) cross", ("Kb", "Kt", "Kl", "Kr"), "cross")]
    specs += [("C90+B+S+Kb cross", ("C90", "B", "S", "Kb"), "cross"), ("C90+S+Kb cross", ("C90", "S", "Kb"), "cross")]
    specs += [("C90+S+K cross", ("C90", "S", "Kb", "Kt", "Kl", "Kr"), "cross")]
    specs += [("C90+K cross", ("C90", "Kb", "Kt", "Kl", "Kr"), "cross")]
    for name, sorts, mode in specs:
        links[name] = link(part, extra_pairs(sorts, mode), cache)
    return links


def _cell(g: list[int], missed: int, report: bool) -> str:
    return f"{g[0]}/{missed} ({g[1]})" + (f"; {g[2]}" if report else "")


def format_table(part: str, t: str, table: dict[str, Any]) -> str:
    head = ["link", *ROWS, "new false candidates (checked)"]
    lines = [
        f"### {part}: today's links at {TODAY} bits, the extra link at {t}",
        "",
        "Per transform: gained / missed by the hash today (of them, confirmed by imgindex's 16x16 check on"
        " the two regions that met); after ';', of the report's misses, how many the link makes near and the"
        " check confirms.",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
        "| pairs | " + " | ".join(str(table["pairs"][r]) for r in ROWS) + " | |",
    ]
    if "report_missed" in table:
        lines.append("| missed by the report | " + " | ".join(str(table["report_missed"][r]) for r in ROWS) + " | |")
        grouping = table["report_missed_near_and_confirmed_today"]
        lines.append("| of them near and confirmed today | " + " | ".join(str(grouping[r]) for r in ROWS) + " | |")
    lines.append(
        "| missed by the hash | "
        + " | ".join(str(table["hash_missed"][r]) for r in ROWS)
        + f" | today: {table['false_candidates_today']:,} false candidates |"
    )
    for name, v in table.items():
        if not isinstance(v, dict) or "gained" not in v:
            continue
        cells = [_cell(v["gained"][r], table["hash_missed"][r], "report_missed" in table) for r in ROWS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {v['false'][0]:,} ({v['false'][1]:,}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="tuning,heldout")
    parser.add_argument("--out", type=Path, default=OUT, help="the bench output folder with the corpora and runs")
    parser.add_argument("--run", default="quality-run", help="the run folder under --out whose near.json to read")
    parser.add_argument("--json", type=Path, default=OUT / "quality-run" / "centre-probe.json")
    parser.add_argument(
        "--grid", action="store_true", help="regions' descriptors cut from one 32x32 grey of the inside"
    )
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"thresholds": THRESHOLDS, "extras": list(EXTRAS)}
    for part in [p.strip() for p in args.parts.split(",") if p.strip()]:
        start = time.perf_counter()
        labels = score.load_labels(args.out / f"quality-corpus-{part}" / "labels.json")
        near = args.out / args.run / part / "near.json"
        report = score.imgindex_found(near, labels) if near.exists() else None
        data = hash_part(labels, args.grid)
        n = len(data.paths)
        found = probe(data, labels, report, candidate_links(data))
        timing = {
            "today_ms_per_image": round(1000 * data.seconds_today / n, 2),
            "extra_ms_per_image": {s: round(1000 * v / n, 3) for s, v in data.seconds_extra.items()},
        }
        own = {s: round(float(v.mean()), 3) for s, v in data.own.items()}
        results[part] = {"files": n, "timing": timing, "own_region_share": own, "thresholds": found}
        print(f"## {part}: {n} files, {time.perf_counter() - start:.0f} s", file=sys.stderr)
        extras = timing["extra_ms_per_image"]
        print(f"time per image: today's pipeline {timing['today_ms_per_image']} ms; extras {extras}")
        print(f"share of pictures with their own region (else the inside's hash): {own}\n")
        for t, table in found.items():
            print(format_table(part, t, table))
    results["bytes_per_extra_sort"] = {"hash": 8, "descriptor": DESCRIPTOR_BYTES}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
