"""Would ranking by a picture's content, not its canvas, keep families together? On a run's indexes.

imgindex keeps the image with the most pixels (``--keep resolution`` first), so a copy padded
onto a square outranks its source and leads its group, and a copy that matches the source but
not the padded copy is left out. This probe ranks instead by *content pixels*: the width times
the height times the share of the working-size picture inside its uniform border (each file
decoded as imgindex decodes it, :func:`imgindex.hashing.trim_box`), the other rules unchanged,
and scores the report both ways as run.py does (near and ``--rotations``), from the matches the
index stored: no scan.

    python bench/quality/rank_probe.py [--parts tuning,heldout] [--workdir DIR] [--corpus DIR]

This is a bench: it changes nothing in imgindex.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from imgindex import report as report_module
from imgindex.hashing import HashSettings, ImageError, decode, sniff_format, trim_box
from imgindex.storage import Index, open_index

sys.path.insert(0, str(Path(__file__).resolve().parent))
import score  # bench/quality/score.py
from grouping_probe import found_of, summary

BENCH = Path(__file__).resolve().parent.parent


def content_pixels(index: Index, table: Any) -> np.ndarray[Any, Any]:
    """Each image's pixels inside its uniform border (its pixels without one; -1 undecoded)."""
    where = {
        file_id: os.path.join(os.fsdecode(directory), os.fsdecode(name))
        for file_id, directory, name in index.db.execute(
            "SELECT files.id, dirs.path, files.name FROM files JOIN dirs ON dirs.id = files.dir_id"
        )
    }
    settings = HashSettings()
    content = np.full(len(table.id), -1.0)
    for k, file_id in enumerate(table.id.tolist()):
        if table.width[k] < 0:
            continue
        data = Path(where[file_id]).read_bytes()
        try:
            picture, _, _ = decode(data, sniff_format(data[:32]), settings)
        except ImageError:
            continue
        box = trim_box(picture)
        share = 1.0 if box is None else (box[2] - box[0]) * (box[3] - box[1]) / (picture.size[0] * picture.size[1])
        content[k] = float(table.width[k]) * float(table.height[k]) * share
    return content


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="tuning,heldout")
    parser.add_argument("--workdir", type=Path, default=BENCH / "out" / "quality-run")
    parser.add_argument("--corpus", type=Path, default=BENCH / "out", help="holds quality-corpus-<part>/")
    args = parser.parse_args(argv)
    for part in args.parts.split(","):
        labels = score.load_labels(args.corpus / f"quality-corpus-{part}" / "labels.json")
        with open_index(args.workdir / part / "index.db", create=False) as index:
            content: np.ndarray[Any, Any] | None = None
            for rotations in (False, True):
                options = report_module.ReportOptions(mode="near", rotations=rotations)
                matched = report_module._match(index, options, True)
                if content is None:
                    content = content_pixels(index, matched.table)
                # The keys: --prefer, then the --keep rules (resolution first), then row order.
                by_content = [matched.rule_keys[0], -content, *matched.rule_keys[2:]]
                for name, keys in (("canvas", matched.rule_keys), ("content", by_content)):
                    rep = report_module._group(options, replace(matched, rule_keys=keys), report_module.InForce())
                    r = summary(labels, found_of(rep, labels), rotations)
                    tag = "--rotations" if rotations else "near"
                    print(
                        f"{part:8} {tag:11} {name:8} std {r['standard']:.3f} (split {r['std_split']})"
                        f" hard {r['hard']:.3f} moderate {r['moderate']:.3f}"
                        f" fam.copies {r['family_copies']:.3f} false pairs {r['false_pairs']}",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
