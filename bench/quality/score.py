"""Score near-duplicate finds against the labels of make_corpus.py, for imgindex and for imagededup.

    python bench/quality/score.py LABELS NEAR_REPORT [--json OUT]

``LABELS`` is the ``labels.json`` written by ``make_corpus.py``; ``NEAR_REPORT``
is imgindex's JSON report of the same corpus (``imgindex report --near -o
...``). imagededup's PHash runs on the same corpus in the same run
(``encode_images(image_dir, recursive=True)``, then ``find_duplicates(encoding_map,
max_distance_threshold=10)``), unless ``--no-imagededup``.

What is counted:

- a planted pair (a source and one of its variants) is **found** by imgindex
  when both files are in one group of its report (a kept image and its
  duplicates), and by imagededup when either file lists the other;
- **recall per transform** over those pairs; **standard** recall over every
  transform but the hard set (mirror, 90-degree rotation), and recall on the
  **hard** set; for information, recall over all pairs within a family
  (variant with variant too);
- **false pairs**: two files in one imgindex group (every pair of the group)
  or listed together by imagededup, that are not of one family; broken down by
  the categories of the two files (``distractor:<kind>`` for distractors) and
  whether they share a template. imgindex's false kept-duplicate links are
  given too: they are what its report lists, as imagededup's pairs are;
- the Hamming distances between the two hashes of each pair, from each tool's
  own hashes (imgindex's report, imagededup's encodings), for the pairs
  missed and for the false ones.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import statistics
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

IMAGEDEDUP_THRESHOLD = 10
#: Distance bins for the histograms of missed and false pairs.
BINS = ((0, 4), (5, 8), (9, 10), (11, 12), (13, 16), (17, 20), (21, 26), (27, 64))


# ---------------------------------------------------------------------------
# Labels and tool results
# ---------------------------------------------------------------------------


@dataclass
class Labels:
    root: Path
    files: dict[str, dict[str, Any]]
    planted: list[tuple[str, str, str]]  # (source, variant, transform): standard and hard transforms
    pairs: list[tuple[str, str, bool]]  # (a, b, hard) for every such pair within a family
    transforms: list[str]
    hard: list[str]
    standard: list[str]
    raw: dict[str, Any]
    #: Round-2 parts (labels version 2): moderate edits, and variants of template-family members.
    moderate: list[tuple[str, str, str]] = field(default_factory=list)
    family_planted: list[tuple[str, str, str]] = field(default_factory=list)
    moderate_transforms: list[str] = field(default_factory=list)

    def family(self, rel: str) -> str:
        return str(self.files[rel]["source"])

    def category(self, rel: str) -> str:
        return str(self.files[rel]["category"])


def load_labels(path: Path) -> Labels:
    """Labels of version 1 (standard and hard pairs only) or 2 (each pair with its class)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    hard = list(raw["hard_transforms"])

    def cls(p: dict[str, Any], transforms: list[str]) -> str:
        return str(p.get("class") or ("hard" if any(t in hard for t in transforms) else "standard"))

    planted = [(p["source"], p["variant"], p["transform"], cls(p, [p["transform"]])) for p in raw["planted"]]
    return Labels(
        root=(Path(path).resolve().parent / raw["root"]),
        files={f["path"]: f for f in raw["files"]},
        planted=[(a, b, t) for a, b, t, c in planted if c in ("standard", "hard")],
        pairs=[
            (p["a"], p["b"], bool(p["hard"])) for p in raw["pairs"] if cls(p, p["transforms"]) in ("standard", "hard")
        ],
        transforms=list(raw["transforms"]),
        hard=hard,
        standard=list(raw["standard_transforms"]),
        raw=raw,
        moderate=[(a, b, t) for a, b, t, c in planted if c == "moderate"],
        family_planted=[(a, b, t) for a, b, t, c in planted if c == "family"],
        moderate_transforms=list(raw.get("moderate_transforms") or {}),
    )


@dataclass
class Found:
    """One tool's finds, normalised to paths relative to the corpus root."""

    name: str
    threshold: int | None
    together: Callable[[str, str], bool]
    pairs: set[tuple[str, str]]  # every pair the tool puts together (a < b)
    links: set[tuple[str, str]]  # the pairs it lists (imgindex: kept, duplicate; imagededup: same as pairs)
    hashes: dict[str, int]  # 64-bit hash per file, for distances
    missing: list[str] = field(default_factory=list)  # labelled files the tool has no hash for
    groups: list[list[str]] = field(default_factory=list)  # imgindex: kept image first, then its duplicates

    def distance(self, a: str, b: str) -> int | None:
        if a in self.hashes and b in self.hashes:
            return (self.hashes[a] ^ self.hashes[b]).bit_count()
        return None


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def imgindex_found(report_path: Path, labels: Labels) -> Found:
    """From ``imgindex report --near`` JSON: groups are a kept image and its duplicates."""
    report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    root = os.fspath(labels.root)
    hashes: dict[str, int] = {}

    def rel(entry: dict[str, Any]) -> str:
        r = os.path.relpath(entry["path"], root)
        if entry.get("phash"):
            hashes[r] = int(entry["phash"], 16)
        return r

    runs = [[rel(entry)] + [rel(d) for d in entry["duplicates"]] for entry in report["images"]]
    return groups_found(runs, hashes, report.get("threshold"), labels)


def groups_found(runs: list[list[str]], hashes: dict[str, int], threshold: int | None, labels: Labels) -> Found:
    """imgindex's finds from its groups, each as its kept image's path, then its duplicates'."""
    group: dict[str, int] = {}
    pairs: set[tuple[str, str]] = set()
    links: set[tuple[str, str]] = set()
    groups: list[list[str]] = []
    for number, members in enumerate(runs):
        for m in members:
            group[m] = number
        if len(members) > 1:
            groups.append(members)
        links.update(_pair(members[0], m) for m in members[1:])
        pairs.update(_pair(a, b) for a, b in combinations(members, 2))
    return Found(
        name="imgindex",
        threshold=threshold,
        together=lambda a, b: a in group and group.get(a) == group.get(b),
        pairs=pairs,
        links=links,
        hashes=hashes,
        missing=sorted(set(labels.files) - set(group)),
        groups=groups,
    )


def imagededup_found(
    encodings: dict[str, str], duplicates: dict[str, list[str]], threshold: int, labels: Labels
) -> Found:
    """From imagededup's encoding map and ``find_duplicates`` result (A lists B)."""
    pairs = {_pair(a, b) for a, found in duplicates.items() for b in found}
    return Found(
        name="imagededup",
        threshold=threshold,
        together=lambda a, b: _pair(a, b) in pairs,
        pairs=pairs,
        links=pairs,
        hashes={k: int(v, 16) for k, v in encodings.items()},
        missing=sorted(set(labels.files) - set(encodings)),
    )


def _peers() -> Any:
    bench = str(Path(__file__).resolve().parent.parent)
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import peers  # bench/peers.py

    return peers


def run_imagededup(
    image_dir: Path, threshold: int = IMAGEDEDUP_THRESHOLD
) -> tuple[dict[str, str], dict[str, list[str]], dict[str, float]]:
    """imagededup's PHash on a folder: (encodings, duplicates, seconds per step)."""
    start = time.perf_counter()
    PHash = _peers().imagededup_phash()
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("imagededup"):
            logging.getLogger(name).setLevel(logging.ERROR)  # its modules log each step at INFO
    hasher = PHash(verbose=False)
    imported = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encodings = hasher.encode_images(image_dir=str(image_dir), recursive=True)
        encoded = time.perf_counter()
        duplicates = hasher.find_duplicates(encoding_map=encodings, max_distance_threshold=threshold)
    done = time.perf_counter()
    seconds = {"import": imported - start, "encode": encoded - imported, "find": done - encoded}
    return encodings, duplicates, {k: round(v, 3) for k, v in seconds.items()}


CZKAWKA_LEVEL = 10
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}


def run_czkawka(labels: Labels, view: Path, level: int = CZKAWKA_LEVEL) -> tuple[Found, dict[str, float]]:
    """czkawka's Python bindings (PyPI ``czkawka``, ``ImageSimilarity``) at similarity ``level``
    (the largest Hamming distance of its 64-bit hashes that it groups).

    It only looks at files with an image extension, which most of a crawl dump lacks; so it
    runs on ``view``, a folder of hard links to the corpus files named ``<n>.<ext>`` after
    their real format (the names are mapped back). Its groups are scored as imgindex's:
    every pair in a group."""
    import base64

    from czkawka import ImageSimilarity

    start = time.perf_counter()
    if view.exists():
        for old in view.iterdir():
            old.unlink()
    view.mkdir(parents=True, exist_ok=True)
    back: dict[str, str] = {}
    for n, (rel, info) in enumerate(sorted(labels.files.items())):
        name = f"{n:06d}.{_EXTENSIONS[info['format']]}"
        try:
            os.link(labels.root / rel, view / name)
        except OSError:
            (view / name).write_bytes((labels.root / rel).read_bytes())
        back[os.fspath((view / name).resolve())] = rel
    linked = time.perf_counter()
    finder = ImageSimilarity()
    finder.set_directories([view])
    finder.set_similarity(level)
    groups_raw = finder.find_similar()
    grouped = time.perf_counter()
    hashes: dict[str, int] = {}
    for path, rel in back.items():
        try:
            hashes[rel] = int.from_bytes(base64.b64decode(finder.hash_image(path) + "=="), "big")
        except (OSError, ValueError, RuntimeError):
            continue
    done = time.perf_counter()
    group: dict[str, int] = {}
    pairs: set[tuple[str, str]] = set()
    groups = []
    for number, members_raw in enumerate(groups_raw):
        members = [back[os.fspath(Path(p).resolve())] for p in members_raw]
        for m in members:
            group[m] = number
        groups.append(members)
        pairs.update(_pair(a, b) for a, b in combinations(members, 2))
    found = Found(
        name="czkawka",
        threshold=level,
        together=lambda a, b: a in group and group.get(a) == group.get(b),
        pairs=pairs,
        links=pairs,
        hashes=hashes,
        missing=sorted(set(labels.files) - set(hashes)),
        groups=groups,
    )
    seconds = {"link": linked - start, "find_similar": grouped - linked, "hash_each": done - grouped}
    return found, {k: round(v, 3) for k, v in seconds.items()}


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


def _bin(d: int | None) -> str:
    if d is None:
        return "no hash"
    for lo, hi in BINS:
        if lo <= d <= hi:
            return f"{lo}-{hi}"
    return "?"


def histogram(distances: Iterable[int | None]) -> dict[str, int]:
    counts = Counter(_bin(d) for d in distances)
    order = [f"{lo}-{hi}" for lo, hi in BINS] + ["no hash"]
    return {k: counts[k] for k in order if counts[k]}


def _stats(distances: list[int]) -> dict[str, Any]:
    if not distances:
        return {}
    ordered = sorted(distances)
    return {
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "max": ordered[-1],
    }


def _recall(found: int, total: int) -> float | None:
    return found / total if total else None


def score(labels: Labels, found: Found, orientations: bool = False) -> dict[str, Any]:
    """Everything the tables show, for one tool (``orientations``: it matches mirrored and
    turned copies, so grouping two sources that are one picture turned is not false)."""
    per: dict[str, dict[str, Any]] = {}
    missed: list[dict[str, Any]] = []
    by_category: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for src, var, t in labels.planted:
        hit = found.together(src, var)
        d = found.distance(src, var)
        row = per.setdefault(t, {"pairs": 0, "found": 0, "distances": [], "missed_distances": []})
        row["pairs"] += 1
        row["found"] += hit
        if d is not None:
            row["distances"].append(d)
        if not hit:
            row["missed_distances"].append(d)
            missed.append(
                {"source": src, "variant": var, "transform": t, "category": labels.category(src), "distance": d}
            )
        if t in labels.standard:
            info = labels.files[src]
            for key in (info["category"], "transparent" if info.get("transparent") else "opaque"):
                by_category[key][0] += 1
                by_category[key][1] += hit
    transforms = {}
    for t in labels.transforms:
        if t not in per:
            continue
        row = per[t]
        transforms[t] = {
            "pairs": row["pairs"],
            "found": row["found"],
            "recall": _recall(row["found"], row["pairs"]),
            "distance": _stats(row["distances"]),
            "missed_by_distance": histogram(row["missed_distances"]),
        }

    def total(names: list[str]) -> dict[str, Any]:
        pairs = sum(per[t]["pairs"] for t in names if t in per)
        hits = sum(per[t]["found"] for t in names if t in per)
        return {"pairs": pairs, "found": hits, "recall": _recall(hits, pairs)}

    family_all = [found.together(a, b) for a, b, _ in labels.pairs]
    family_std = [found.together(a, b) for a, b, hard in labels.pairs if not hard]
    threshold = found.threshold
    split = sum(1 for m in missed if m["distance"] is not None and threshold is not None and m["distance"] <= threshold)
    return {
        "threshold": threshold,
        "files_without_hash": len(found.missing),
        "transforms": transforms,
        "standard": total(labels.standard),
        "hard": total(labels.hard),
        "family_pairs": {
            "pairs": len(family_all),
            "found": sum(family_all),
            "recall": _recall(sum(family_all), len(family_all)),
        },
        "family_pairs_standard": {
            "pairs": len(family_std),
            "found": sum(family_std),
            "recall": _recall(sum(family_std), len(family_std)),
        },
        "standard_by_category": {
            k: {"pairs": v[0], "found": v[1], "recall": _recall(v[1], v[0])} for k, v in sorted(by_category.items())
        },
        "missed_within_threshold": split,
        "near_one_colour_hash": near_one_colour(labels, found),
        "largest_groups": [
            {
                "files": len(g),
                "kept_hash": f"{found.hashes.get(g[0], 0):016x}",
                "families": len({labels.family(m) for m in g}),
                "categories": dict(Counter(labels.category(m) for m in g).most_common()),
            }
            for g in sorted(found.groups, key=len, reverse=True)[:3]
        ],
        "false_pairs": false_pairs(labels, found, found.pairs, orientations),
        "false_links": false_pairs(labels, found, found.links, orientations),
        "missed": missed,
        "moderate": class_recall(labels, found, labels.moderate, labels.moderate_transforms),
        "family_copies": class_recall(labels, found, labels.family_planted, labels.transforms),
    }


def class_recall(labels: Labels, found: Found, planted: list[tuple[str, str, str]], order: list[str]) -> dict[str, Any]:
    """Recall per transform over one class of planted pairs (moderate edits, template-family
    copies), its total, and the pairs missed."""
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    distances: dict[str, list[int]] = defaultdict(list)
    missed = []
    for src, var, t in planted:
        hit = found.together(src, var)
        d = found.distance(src, var)
        per[t][0] += 1
        per[t][1] += hit
        if d is not None:
            distances[t].append(d)
        if not hit:
            missed.append(
                {"source": src, "variant": var, "transform": t, "category": labels.category(src), "distance": d}
            )
    total = [sum(v[0] for v in per.values()), sum(v[1] for v in per.values())]
    return {
        "transforms": {
            t: {
                "pairs": per[t][0],
                "found": per[t][1],
                "recall": _recall(per[t][1], per[t][0]),
                "distance": _stats(distances[t]),
            }
            for t in order
            if t in per
        },
        "total": {"pairs": total[0], "found": total[1], "recall": _recall(total[1], total[0])},
        "missed": missed,
    }


def one_colour_hash(labels: Labels, found: Found) -> int | None:
    """The hash a tool gives one-colour pictures (its commonest for the ``solid`` distractors)."""
    hashes = Counter(
        h for rel, h in found.hashes.items() if labels.files.get(rel, {}).get("category") == "distractor:solid"
    )
    return hashes.most_common(1)[0][0] if hashes else None


def near_one_colour(labels: Labels, found: Found) -> dict[str, Any]:
    """Files whose hash is within the threshold of a one-colour picture's, by category: low-detail pictures."""
    limit = found.threshold if found.threshold is not None else IMAGEDEDUP_THRESHOLD
    solid = one_colour_hash(labels, found)
    if solid is None:
        return {"hash": None, "categories": {}}
    near = Counter(
        labels.category(rel)
        for rel, h in found.hashes.items()
        if rel in labels.files and (h ^ solid).bit_count() <= limit
    )
    return {"hash": f"{solid:016x}", "categories": dict(near.most_common())}


def _kind(labels: Labels, rel: str) -> str:
    return labels.category(rel) if rel in labels.files else "unlabelled"


@functools.cache
def _turned_families(root: Path, sources: tuple[tuple[str, str], ...]) -> frozenset[frozenset[str]]:
    """Pairs of families whose sources are one picture mirrored or turned (e.g. matplotlib's
    back and forward icons): grouping them is right for a tool that matches orientations."""
    import make_corpus  # bench/quality/make_corpus.py
    from PIL import Image

    pictures = {family: Image.open(root / rel) for family, rel in sources}
    turns = [*Image.Transpose]
    same = set()
    for (fa, a), (fb, b) in combinations(pictures.items(), 2):
        if any(a.size in (b.size, b.size[::-1]) and make_corpus.looks_the_same(a, b.transpose(t)) for t in turns):
            same.add(frozenset((fa, fb)))
    return frozenset(same)


def turned_families(labels: Labels) -> frozenset[frozenset[str]]:
    """:func:`_turned_families` of the corpus's package sources (the procedural ones are all different)."""
    sources = tuple(
        sorted(
            (str(info["source"]), rel)
            for rel, info in labels.files.items()
            if info["transform"] == "source" and info["category"] == "package"
        )
    )
    return _turned_families(labels.root, sources)


def false_pairs(
    labels: Labels, found: Found, pairs: set[tuple[str, str]], orientations: bool = False
) -> dict[str, Any]:
    """Pairs put together that are not of one family, by the categories of their two files.

    For a tool that matches ``orientations``, pairs of two families whose sources are one
    picture mirrored or turned are not counted (``turned_sources`` says how many there were)."""
    rows = []
    turned = turned_families(labels) if orientations else frozenset()
    skipped = 0
    for a, b in sorted(pairs):
        if a in labels.files and b in labels.files and labels.family(a) == labels.family(b):
            continue
        if a in labels.files and b in labels.files and frozenset((labels.family(a), labels.family(b))) in turned:
            skipped += 1
            continue
        ta = labels.files.get(a, {}).get("template")
        tb = labels.files.get(b, {}).get("template")
        rows.append(
            {
                "a": a,
                "b": b,
                "kinds": " ~ ".join(sorted((_kind(labels, a), _kind(labels, b)))),
                "same_template": bool(ta and ta == tb),
                "template": ta if ta and ta == tb else None,
                "distance": found.distance(a, b),
            }
        )
    by_kinds = Counter(r["kinds"] for r in rows)
    involving = Counter()
    for r in rows:
        for k in set(r["kinds"].split(" ~ ")):
            involving[k] += 1
    family = [r for r in rows if r["template"] and _kind(labels, r["a"]).startswith("family:")]
    return {
        "count": len(rows),
        "turned_sources": skipped,
        "same_template": sum(r["same_template"] for r in rows),
        # Two members (or copies of members) of one template family: different pictures on one template.
        "template_family": len(family),
        "by_family": dict(Counter(str(r["template"]).rsplit("-", 1)[0] for r in family).most_common()),
        "involving_family": sum("family:" in r["kinds"] for r in rows),
        "by_kinds": dict(by_kinds.most_common()),
        "involving": dict(involving.most_common()),
        "by_distance": histogram(r["distance"] for r in rows),
        "pairs": rows,
    }


# ---------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------


def _r(x: float | None) -> str:
    return "   -  " if x is None else f"{x:6.3f}"


def _d(stats: dict[str, Any]) -> str:
    if not stats:
        return "-"
    return f"{stats['median']:g}/{stats['p90']}/{stats['max']}"


def format_tables(labels: Labels, scores: dict[str, dict[str, Any]], header: list[str]) -> str:
    """imgindex beside imagededup: recall per transform, totals, false pairs, distances."""
    tools = list(scores)
    c = labels.raw["counts"]
    lines = list(header)
    lines.append(
        f"corpus: {c['files']:,} files, {c['sources']} sources, {c['planted_pairs']:,} planted pairs"
        f" (source, variant), {c['family_pairs']:,} pairs within families; thresholds: "
        + ", ".join(f"{t} {scores[t]['threshold']}" for t in tools)
    )
    lines.append("")
    width = 40
    head = f"  {'recall':{width}} {'pairs':>6}" + "".join(f" {t:>11}" for t in tools)
    head += "   distance median/p90/max: " + " | ".join(tools)
    lines.append(head)
    first = scores[tools[0]]
    for t in labels.transforms:
        if t not in first["transforms"]:
            continue
        name = t + (" (hard)" if t in labels.hard else "")
        row = f"  {name:{width}} {first['transforms'][t]['pairs']:>6}"
        row += "".join(f" {_r(scores[x]['transforms'][t]['recall']):>11}" for x in tools)
        row += "   " + " | ".join(_d(scores[x]["transforms"][t]["distance"]) for x in tools)
        lines.append(row)
    lines.append("  " + "-" * (width + 7 + 12 * len(tools)))
    for key, name in (
        ("standard", "STANDARD (all but hard)"),
        ("hard", "HARD (" + ", ".join(labels.hard) + ")"),
        ("family_pairs", "all family pairs (info)"),
        ("family_pairs_standard", "family pairs, no hard (info)"),
    ):
        row = f"  {name:{width}} {first[key]['pairs']:>6}" + "".join(
            f" {_r(scores[x][key]['recall']):>11}" for x in tools
        )
        lines.append(row)
    for key, title in (("moderate", "MODERATE EDITS (apart)"), ("family_copies", "TEMPLATE-FAMILY COPIES (apart)")):
        if not first[key]["total"]["pairs"]:
            continue
        lines.append(f"  {title}")
        for t, row in first[key]["transforms"].items():
            line = f"    {t:{width - 2}} {row['pairs']:>6}"
            line += "".join(f" {_r(scores[x][key]['transforms'][t]['recall']):>11}" for x in tools)
            line += "   " + " | ".join(_d(scores[x][key]["transforms"][t]["distance"]) for x in tools)
            lines.append(line)
        lines.append(
            f"  {'  all of them':{width}} {first[key]['total']['pairs']:>6}"
            + "".join(f" {_r(scores[x][key]['total']['recall']):>11}" for x in tools)
        )
    lines.append("")
    lines.append(f"  {'false pairs':{width}} {'':>6}" + "".join(f" {t:>11}" for t in tools))
    fp = {t: scores[t]["false_pairs"] for t in tools}
    lines.append(f"  {'TOTAL':{width}} {'':>6}" + "".join(f" {fp[t]['count']:>11,}" for t in tools))
    if "imgindex" in scores:
        row = f"  {'  imgindex kept->dup links':{width}} {'':>6}"
        row += "".join(f" {scores[t]['false_links']['count'] if t == 'imgindex' else '':>11}" for t in tools)
        lines.append(row)
    lines.append(
        f"  {'  within one template':{width}} {'':>6}" + "".join(f" {fp[t]['same_template']:>11,}" for t in tools)
    )
    if any(fp[t].get("template_family") or fp[t].get("involving_family") for t in tools):
        lines.append(
            f"  {'  two members of one template family':{width}} {'':>6}"
            + "".join(f" {fp[t]['template_family']:>11,}" for t in tools)
        )
        kinds_f: Counter[str] = Counter()
        for t in tools:
            kinds_f.update(fp[t]["by_family"])
        for k, _ in kinds_f.most_common():
            lines.append(
                f"  {'    ' + k:{width}} {'':>6}" + "".join(f" {fp[t]['by_family'].get(k, 0):>11,}" for t in tools)
            )
        lines.append(
            f"  {'  involving a template-family picture':{width}} {'':>6}"
            + "".join(f" {fp[t]['involving_family']:>11,}" for t in tools)
        )
    lines.append(
        f"  {'  (not counted: sources mirrored/turned)':{width}} {'':>6}"
        + "".join(f" {fp[t]['turned_sources']:>11,}" for t in tools)
    )
    lines.append("  by the kinds of the two files:")
    kinds: Counter[str] = Counter()
    for t in tools:
        kinds.update(fp[t]["by_kinds"])
    for k, _ in kinds.most_common():
        lines.append(
            f"    {k[: width + 5]:{width + 5}}" + "".join(f" {fp[t]['by_kinds'].get(k, 0):>11,}" for t in tools)
        )
    lines.append("  false pairs by distance: " + " | ".join(f"{t} {fp[t]['by_distance']}" for t in tools))
    for t in tools:
        near = scores[t]["near_one_colour_hash"]
        lines.append(
            f"  {t}: {sum(near['categories'].values())} files hash within {scores[t]['threshold']} bits of a"
            f" one-colour picture ({near['hash']}): {near['categories']}"
        )
        for g in scores[t]["largest_groups"]:
            lines.append(
                f"    group of {g['files']} files from {g['families']} families, kept hash {g['kept_hash']}:"
                f" {g['categories']}"
            )
    lines.append("")
    lines.append("  recall on standard pairs by source category:")
    cats = first["standard_by_category"]
    for k in sorted(cats, key=lambda k: (k in ("opaque", "transparent"), k)):
        row = f"    {k:{width - 2}} {cats[k]['pairs']:>6}"
        row += "".join(f" {_r(scores[t]['standard_by_category'][k]['recall']):>11}" for t in tools)
        lines.append(row)
    lines.append("")
    lines.append("  missed pairs by distance (each tool's own hashes):")
    for t in tools:
        s = scores[t]
        lines.append(
            f"    {t} (threshold {s['threshold']}; {s['missed_within_threshold']} missed pairs are within"
            f" it, split by grouping; {s['files_without_hash']} files without a hash)"
        )
        for name, row in s["transforms"].items():
            if row["missed_by_distance"]:
                lines.append(f"      {name:14} {row['pairs'] - row['found']:>4} missed: {row['missed_by_distance']}")
    return "\n".join(lines)


def results_json(labels: Labels, scores: dict[str, dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "labels": os.fspath(labels.root.parent / "labels.json"),
        "counts": labels.raw["counts"],
        **extra,
        "scores": scores,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("labels", type=Path, help="labels.json of make_corpus.py")
    parser.add_argument("report", type=Path, help="imgindex report --near JSON of the same corpus")
    parser.add_argument("--imagededup-threshold", type=int, default=IMAGEDEDUP_THRESHOLD)
    parser.add_argument("--no-imagededup", action="store_true", help="score imgindex alone")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write everything as JSON")
    args = parser.parse_args(argv)
    labels = load_labels(args.labels)
    scores = {"imgindex": score(labels, imgindex_found(args.report, labels))}
    extra: dict[str, Any] = {}
    if not args.no_imagededup:
        encodings, duplicates, seconds = run_imagededup(labels.root, args.imagededup_threshold)
        extra["imagededup_seconds"] = seconds
        scores["imagededup"] = score(labels, imagededup_found(encodings, duplicates, args.imagededup_threshold, labels))
    print(format_tables(labels, scores, [f"near-duplicate quality: {args.report} against {args.labels}"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results_json(labels, scores, extra), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
