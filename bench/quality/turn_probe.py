"""Would a check on a turned grid find the copies turned by 2-3 degrees? (imgindex is not changed.)

A copy turned by a few degrees (the corpus's ``rotate`` edit: 2-3 degrees, size kept,
corners white) differs from its source a little everywhere, and in a wide banner much: its
ends move up and down by a share of its height. The verification compares 16x16 thumbnails
as they are, so some turned copies correlate below the check's bar. This probe decodes every
file of a part as imgindex does and, on the inside's 32x32 grid (the one imgindex stores),
turns one picture of a pair back by each of a few angles (in the picture's own proportions:
the grid is resampled, so a turn in pixels is a shear in the grid) and takes the best
correlation of the 16x16 thumbnails made of it, against the plain one:

- for the planted ``rotate`` pairs (of them, those with a hash candidate: the whole or the
  inside hashes within the threshold);
- for the false candidates: files of different sources whose whole hashes are within the
  threshold (either way round turned).

It prints, for a few bars of the turned correlation, how many turned copies below the
check's bar (0.80) it would lift over the bar, and how many false candidates below the bar
it would let through to the other rules (colour, detail, foreground).

    python bench/quality/turn_probe.py [--parts tuning,heldout] [--corpus DIR] [--side 32|16]

``--side 16`` turns the 16x16 thumbnail of the whole picture instead (no grid needed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from imgindex import hashing

BENCH = Path(__file__).resolve().parent.parent
THRESHOLD = 10
CORRELATION = 0.80  # imgindex's verify.GREY_CORRELATION
ANGLES = (-3.0, -2.5, -2.0, -1.5, 1.5, 2.0, 2.5, 3.0)
BARS = (0.80, 0.85, 0.90, 0.93, 0.95)

Floats = npt.NDArray[np.float64]


def _unit(x: Floats) -> Floats:
    """Rows centred and of unit length (as the check's grey thumbnails)."""
    flat = x.reshape(len(x), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-9)


def _sixteen(squares: Floats) -> Floats:
    side = squares.shape[1]
    if side == 16:
        return squares
    f = side // 16
    return squares.reshape(len(squares), 16, f, 16, f).mean(axis=(2, 4))


def turned(squares: Floats, sizes: Floats, degrees: float) -> Floats:
    """Each square (a picture of ``sizes`` (width, height) resampled to side x side) turned by
    ``degrees`` about its centre in the picture's own pixels, bilinear, edges held."""
    n, side = len(squares), squares.shape[1]
    t = np.deg2rad(degrees)
    u = (np.arange(side) + 0.5) / side - 0.5
    x = np.broadcast_to(u[None, None, :] * sizes[:, 0, None, None], (n, side, side))
    y = np.broadcast_to(u[None, :, None] * sizes[:, 1, None, None], (n, side, side))
    gx = ((np.cos(t) * x - np.sin(t) * y) / sizes[:, 0, None, None] + 0.5) * side - 0.5
    gy = ((np.sin(t) * x + np.cos(t) * y) / sizes[:, 1, None, None] + 0.5) * side - 0.5
    gx, gy = np.clip(gx, 0, side - 1), np.clip(gy, 0, side - 1)
    x0, y0 = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, side - 1), np.minimum(y0 + 1, side - 1)
    fx, fy = gx - x0, gy - y0
    r = np.arange(n)[:, None, None]
    top = squares[r, y0, x0] * (1 - fx) + squares[r, y0, x1] * fx
    bottom = squares[r, y1, x0] * (1 - fx) + squares[r, y1, x1] * fx
    result: Floats = top * (1 - fy) + bottom * fy
    return result


def correlations(
    squares: Floats, sizes: Floats, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]
) -> tuple[Floats, Floats]:
    """For pairs (a, b): the plain correlation of their 16x16 thumbnails, and the best of it
    and of ``a``'s against ``b``'s turned by each of :data:`ANGLES`."""
    mine = _unit(_sixteen(squares[a]))
    plain = (mine * _unit(_sixteen(squares[b]))).sum(axis=1)
    best = plain.copy()
    for degrees in ANGLES:
        theirs = _unit(_sixteen(turned(squares[b], sizes[b], degrees)))
        best = np.maximum(best, (mine * theirs).sum(axis=1))
    return plain, best


def probe(corpus: Path, side: int) -> dict[str, object]:
    labels = json.loads((corpus / "labels.json").read_text(encoding="utf-8"))
    settings = hashing.HashSettings()
    infos: dict[str, hashing.ImageInfo] = {}
    for f in labels["files"]:
        data = (corpus / labels["root"] / f["path"]).read_bytes()
        try:
            infos[f["path"]] = hashing.image_info(data, hashing.sniff_format(data[: hashing.SNIFF_BYTES]), settings)
        except hashing.ImageError:
            continue
    source = {f["path"]: f["source"] for f in labels["files"]}
    # The grid is the inside's: for a picture with a border its proportions are the inside's,
    # which the index does not keep; the whole picture's stand in (most turned copies have none).
    paths = [p for p, i in infos.items() if i.grid is not None or side == 16]
    at = {p: k for k, p in enumerate(paths)}
    if side == 16:
        squares = np.stack([np.frombuffer(infos[p].descriptor[:256], np.uint8).reshape(16, 16) for p in paths])
    else:
        squares = hashing.grid_rows([infos[p].grid or b"" for p in paths])
    squares = squares.astype(np.float64)
    sizes = np.array([(infos[p].width, infos[p].height) for p in paths], dtype=np.float64)
    whole = np.array([infos[p].phash for p in paths], dtype=np.int64).view(np.uint64)
    inside = np.array(
        [infos[p].trim_hash if infos[p].trim_hash is not None else infos[p].phash for p in paths], dtype=np.int64
    ).view(np.uint64)

    planted = [
        (at[p["source"]], at[p["variant"]])
        for p in labels["planted"]
        if p["transform"] == "rotate" and p["source"] in at and p["variant"] in at
    ]
    a = np.array([x for x, _ in planted], dtype=np.int64)
    b = np.array([y for _, y in planted], dtype=np.int64)
    plain, best = correlations(squares, sizes, a, b)
    candidate = (np.bitwise_count(whole[a] ^ whole[b]) <= THRESHOLD) | (
        np.bitwise_count(inside[a] ^ inside[b]) <= THRESHOLD
    )

    i, j = np.triu_indices(len(paths), 1)
    origin = np.array([source[p] for p in paths])
    near = (np.bitwise_count(whole[i] ^ whole[j]) <= THRESHOLD) & (origin[i] != origin[j])
    fi, fj = i[near], j[near]
    false_plain, false_best = correlations(squares, sizes, fi, fj)
    false_best = np.maximum(false_best, correlations(squares, sizes, fj, fi)[1])

    below, false_below = plain < CORRELATION, false_plain < CORRELATION
    return {
        "rotate pairs": len(planted),
        "with a candidate": int(candidate.sum()),
        "over the bar as they are": int((~below).sum()),
        "false candidates": len(fi),
        "false over the bar as they are": int((~false_below).sum()),
        "by bar": {
            bar: {
                "turned copies lifted": int((below & (best >= bar)).sum()),
                "of them with a candidate": int((below & (best >= bar) & candidate).sum()),
                "false candidates let through": int((false_below & (false_best >= bar)).sum()),
            }
            for bar in BARS
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="tuning,heldout")
    parser.add_argument("--corpus", type=Path, default=BENCH / "out", help="where quality-corpus-<part> are")
    parser.add_argument("--side", type=int, choices=(16, 32), default=32)
    args = parser.parse_args(argv)
    for part in [p.strip() for p in args.parts.split(",") if p.strip()]:
        result = probe(args.corpus / f"quality-corpus-{part}", args.side)
        print(f"== {part} (side {args.side})")
        for key, value in result.items():
            if key != "by bar":
                print(f"  {key}: {value}")
        print("  turned bar | turned copies lifted (with a candidate) | false candidates let through")
        for bar, row in result["by bar"].items():  # type: ignore[attr-defined]
            lifted, cand, false = row.values()
            print(f"  {bar:.2f}       | {lifted} ({cand}) | {false}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
