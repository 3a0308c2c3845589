"""A contact sheet of a quality run: the worst false pairs and the worst missed pairs, side by side.

    python bench/quality/contact_sheet.py RESULTS.json [--part tuning] [--tool imgindex] [--rows 16]

``RESULTS.json`` is what ``run.py --json`` (or ``score.py --json``) wrote; with
``run.py --parts`` it holds several parts, and ``--part`` picks one. For
the tool picked it draws two columns of rows (Pillow), each row the two
pictures of a pair (on a checkerboard where transparent) with what they
are:

- **false pairs**: put together, not one picture; the closest hashes first
  (the most confidently wrong), taken in turn from each kind of pair (the
  two files' categories) so that one kind does not fill the sheet;
- **missed pairs**: planted (standard, moderate or template-family copies),
  not found; the closest hashes first (what a check let down, rather than
  what the hash could never reach), taken in turn from each transform.

The PNG goes to ``bench/out/contact-<part>-<tool>.png`` unless ``-o``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parent.parent / "out"
CELL = 150
TEXT = 250


def interleave(rows: list[dict[str, Any]], key: str, n: int) -> list[dict[str, Any]]:
    """``n`` rows, the closest first within each ``key``, taken in turn from each."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (r["distance"] is None, r["distance"] or 0)):
        by[str(r[key])].append(r)
    order = sorted(by, key=lambda k: (by[k][0]["distance"] is None, by[k][0]["distance"] or 0))
    out = [r for batch in zip_longest(*(by[k] for k in order)) for r in batch if r is not None]
    return out[:n]


def tile(path: Path) -> Image.Image:
    """The picture fitted in a CELL square, on a light checkerboard where transparent."""
    board = Image.new("RGB", (CELL, CELL), (235, 235, 235))
    draw = ImageDraw.Draw(board)
    for y in range(0, CELL, 10):
        for x in range(0, CELL, 10):
            if (x + y) // 10 % 2:
                draw.rectangle([x, y, x + 9, y + 9], fill=(205, 205, 205))
    try:
        im = Image.open(path)
        im.load()
    except OSError:
        draw.text((8, CELL // 2), "unreadable", fill=(200, 0, 0))
        return board
    size = f"{im.width}x{im.height}"
    im = im.convert("RGBA")
    im.thumbnail((CELL - 4, CELL - 16))
    board.paste(im, ((CELL - im.width) // 2, (CELL - 12 - im.height) // 2), im)
    draw.text((3, CELL - 12), size, fill=(0, 0, 0))
    return board


def describe(labels: dict[str, dict[str, Any]], rel: str) -> str:
    f = labels.get(rel, {})
    what = f.get("transform", "?")
    return f"{f.get('source', '?')} {what} {f.get('category', '?')} {f.get('template') or ''}".strip()


def sheet(
    root: Path, labels: dict[str, dict[str, Any]], false_rows: list[dict[str, Any]], missed_rows: list[dict[str, Any]]
) -> Image.Image:
    row_h = CELL + 4
    col_w = 2 * CELL + TEXT + 12
    n = max(len(false_rows), len(missed_rows))
    img = Image.new("RGB", (2 * col_w + 20, 30 + n * row_h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((6, 8), "FALSE PAIRS (put together, not one picture)", fill=(180, 0, 0), font=font)
    draw.text((col_w + 26, 8), "MISSED PAIRS (one picture, not found)", fill=(0, 0, 160), font=font)
    for column, rows in enumerate((false_rows, missed_rows)):
        x0 = column * (col_w + 20)
        for i, r in enumerate(rows):
            y = 30 + i * row_h
            a, b = (r["a"], r["b"]) if "a" in r else (r["source"], r["variant"])
            img.paste(tile(root / a), (x0, y))
            img.paste(tile(root / b), (x0 + CELL + 4, y))
            if "a" in r:
                lines = [
                    r["kinds"],
                    f"distance {r['distance']}",
                    "A: " + describe(labels, a),
                    "B: " + describe(labels, b),
                ]
            else:
                detail = labels.get(b, {}).get("detail", "")
                lines = [f"{r['transform']} ({r['class']})", f"distance {r['distance']}", r["category"], str(detail)]
            for k, line in enumerate(lines):
                draw.text((x0 + 2 * CELL + 10, y + 4 + 14 * k), line[:44], fill=(0, 0, 0), font=font)
    return img


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="run.py --json output")
    parser.add_argument("--part", help="the part, when the run has several (default: the first)")
    parser.add_argument("--tool", default="imgindex")
    parser.add_argument("--rows", type=int, default=16, help="rows per column")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args(argv)
    document = json.loads(args.results.read_text(encoding="utf-8"))
    part = args.part
    if "parts" in document:
        part = part or next(iter(document["parts"]))
        document = document["parts"][part]
    part = part or "run"
    raw = json.loads(Path(document["labels"]).read_text(encoding="utf-8"))
    root = Path(document["labels"]).parent / raw["root"]
    labels = {f["path"]: f for f in raw["files"]}
    s = document["scores"][args.tool]
    false_rows = interleave(s["false_pairs"]["pairs"], "kinds", args.rows)
    missed = [dict(m, **{"class": "standard/hard"}) for m in s["missed"]]
    for key, cls in (("moderate", "moderate"), ("family_copies", "family copy")):
        missed += [dict(m, **{"class": cls}) for m in s.get(key, {}).get("missed", [])]
    missed_rows = interleave(missed, "transform", args.rows)
    out = args.output or OUT / f"contact-{part}-{args.tool}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet(root, labels, false_rows, missed_rows).save(out)
    print(f"{out}: {len(false_rows)} false pairs, {len(missed_rows)} missed pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
