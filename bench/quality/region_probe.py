"""What more regions would give the moderate edits a run missed: an upper bound, no scan.

For each missed moderate pair of a quality run (``run.py --json``) whose two
pictures have no stored match in the run's index, the pictures are read from
the corpus and hashed as imgindex hashes a region (the dHash of a box of the
inside, ``hashing.region_box``) at each extra cut asked for; a pair counts for
a cut when that region of either picture lies within the region threshold (8
bits) of the other's whole or inside hash. That is a candidate only: the
thumbnails' check, the grouping and the false candidates the new regions
would also make are not counted.

    python bench/quality/region_probe.py bench/out/quality-run/round2-peers.json

This is a bench: it changes nothing in imgindex.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from pathlib import Path

from imgindex import hashing, kinds
from imgindex.hashing import HashSettings
from imgindex.match.regions import REGION_THRESHOLD

BENCH = Path(__file__).resolve().parent.parent
#: Extra regions, as boxes in shares of the inside (``hashing.REGIONS``' form).
CUTS = {
    "middle 85 %": (0.075, 0.075, 0.925, 0.925),
    "middle 80 %": (0.10, 0.10, 0.90, 0.90),
    "bottom cut 20 %": (0.0, 0.0, 1.0, 0.80),
    "top cut 20 %": (0.0, 0.20, 1.0, 1.0),
    "bottom cut 25 %": (0.0, 0.0, 1.0, 0.75),
    "top cut 25 %": (0.0, 0.25, 1.0, 1.0),
}
TRANSFORMS = ("crop_more", "crop_side", "caption_bar")
Hashes = tuple[int, int, dict[str, int]]


def hashes(path: Path) -> Hashes:
    """The whole picture's and the inside's dHash (unsigned), and each extra region's."""
    data = path.read_bytes()
    picture, _, _ = hashing.decode(data, hashing.sniff_format(data[:64]), HashSettings())
    dhash = kinds.get("dhash").picture
    box = hashing.trim_box(picture)
    grey = picture.convert("L")
    inside = grey.crop(box) if box else grey
    whole = kinds.to_unsigned(dhash(picture))
    own = kinds.to_unsigned(dhash(picture.crop(box))) if box else whole
    regions: dict[str, int] = {}
    if min(inside.size) >= hashing.REGION_MIN_SIDE:
        for name, share in CUTS.items():
            regions[name] = kinds.to_unsigned(dhash(inside.crop(hashing.region_box(inside.size, share))))
    return whole, own, regions


def near(region: Hashes, target: Hashes, cut: str) -> bool:
    value = region[2].get(cut)
    return value is not None and min((value ^ t).bit_count() for t in target[:2]) <= REGION_THRESHOLD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="run.py --json output")
    parser.add_argument("--parts", default="tuning,heldout")
    args = parser.parse_args()
    parts = json.loads(Path(args.results).read_text())["parts"]
    for part in args.parts.split(","):
        scores = parts[part]["scores"]["imgindex"]
        labels = Path(parts[part]["labels"])
        root = (labels.parent / json.loads(labels.read_text())["root"]).resolve()  # (relative to the labels)
        db = sqlite3.connect(f"file:{BENCH / 'out' / 'quality-run' / part / 'index.db'}?mode=ro", uri=True)

        def key(path: str, db: sqlite3.Connection = db, root: Path = root) -> int:
            row = db.execute(
                "SELECT f.sha256 FROM files f JOIN dirs d ON d.id = f.dir_id"
                " WHERE d.path || '/' || CAST(f.name AS TEXT) = ?",
                (os.fspath(root / path),),
            ).fetchone()
            return int.from_bytes(row[0][:8], "big", signed=True)

        for transform in TRANSFORMS:
            missed = [m for m in scores["moderate"]["missed"] if m["transform"] == transform]
            counts = dict.fromkeys(CUTS, 0)
            unmatched = 0
            for m in missed:
                a, b = sorted((key(m["source"]), key(m["variant"])))
                sql = "SELECT 1 FROM near_matches WHERE kind = 'dhash' AND a = ? AND b = ?"
                if db.execute(sql, (a, b)).fetchone():
                    continue  # matched, and split by the grouping: not a candidate's matter
                unmatched += 1
                source, variant = hashes(root / m["source"]), hashes(root / m["variant"])
                for cut in CUTS:
                    counts[cut] += near(source, variant, cut) or near(variant, source, cut)
            found = ", ".join(f"{cut} {n}" for cut, n in counts.items())
            print(f"{part:8} {transform:12} missed {len(missed):3}, not matched {unmatched:3}; a candidate by: {found}")


if __name__ == "__main__":
    sys.exit(main())
