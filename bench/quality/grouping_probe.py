"""Grouping rules side by side, on the indexes a quality run left (no scan, no report files).

For each part of a run of ``run.py --parts ...`` (its index in
``bench/out/quality-run/<part>/index.db``), the verified matches are made once
(``report --near`` and ``--rotations``), then grouped by each rule given and
scored as run.py scores a report: standard, hard and moderate recall, false
pairs, and how many missed planted pairs were split between two groups (both
pictures in a group, not one) or matched but left apart.

    python bench/quality/grouping_probe.py [--parts tuning,heldout] [--rules current,...]

Rules are functions of (order, edges) -> Grouping, named in ``RULES``; the
default rule is imgindex's own ``group_by_leaders``. This is a bench: it
changes nothing in imgindex.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from imgindex import report as report_module
from imgindex.match import grouping
from imgindex.match.grouping import Edges, Grouping, group_by_leaders
from imgindex.storage import open_index

sys.path.insert(0, str(Path(__file__).resolve().parent))
import score  # bench/quality/score.py

BENCH = Path(__file__).resolve().parent.parent
Rule = Callable[[Any, Edges], Grouping]


def _ranks(order: Any) -> Any:
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def rank_only(order: Any, edges: Edges) -> Grouping:
    """imgindex before centres claimed first: no unit is a centre, so every unit claims in rank
    order and takes only the units it ranks before."""
    saved = grouping._Matches.centres

    def no_centres(self: Any) -> Any:
        centre, degree = saved(self)
        return np.zeros_like(centre), degree

    grouping._Matches.centres = no_centres  # type: ignore[method-assign]
    try:
        return group_by_leaders(order, edges)
    finally:
        grouping._Matches.centres = saved  # type: ignore[method-assign]


def _rejoin(rank: Any, edges: Edges, leader: Any, distance: Any) -> Grouping:
    """Each member joins its nearest better leader (by distance, then rank)."""
    is_leader = leader == np.arange(len(leader))
    first = rank[edges.u] < rank[edges.v]
    b = np.where(first, edges.u, edges.v)
    w = np.where(first, edges.v, edges.u)
    joins = is_leader[b] & ~is_leader[w]
    lb, lw, ld = b[joins], w[joins], edges.distance[joins]
    pick = np.lexsort((rank[lb], ld, lw))
    lb, lw, ld = lb[pick], lw[pick], ld[pick]
    head = np.ones(len(lw), dtype=bool)
    head[1:] = lw[1:] != lw[:-1]
    leader, distance = leader.copy(), distance.copy()
    leader[lw[head]] = lb[head]
    distance[lw[head]] = ld[head]
    return Grouping(leader, distance)


def nearest(order: Any, edges: Edges) -> Grouping:
    g = rank_only(order, edges)
    return _rejoin(_ranks(order), edges, g.leader, g.distance)


def _rescue(order: Any, edges: Edges, g: Grouping) -> Grouping:
    """Units left alone that match a member of a group of 3 or more: that member leaves its
    group and heads one with them (or joins the better of them), one unit at a time."""
    rank = _ranks(order)
    n = len(order)
    leader = g.leader.copy()
    distance = g.distance.copy()
    nb: dict[int, list[tuple[int, int]]] = {}
    for a, b, d in zip(edges.u.tolist(), edges.v.tolist(), edges.distance.tolist(), strict=True):
        nb.setdefault(a, []).append((b, d))
        nb.setdefault(b, []).append((a, d))
    size = np.bincount(leader, minlength=n).tolist()
    lead = leader.tolist()
    for v in order.tolist():
        if lead[v] != v or size[v] != 1 or v not in nb:
            continue
        options = [(d, rank[m], m) for m, d in nb[v] if lead[m] != m and size[lead[m]] >= 3]
        if not options:
            continue
        d, _, m = min(options)
        size[lead[m]] -= 1
        if rank[m] < rank[v]:
            lead[m], lead[v] = m, m
            distance[m], distance[v] = 0, d
            size[m], size[v] = 2, 0
        else:
            lead[m] = v
            distance[m] = d
            size[v] = 2
    leader[:] = lead
    return Grouping(leader, distance)


def rescue(order: Any, edges: Edges) -> Grouping:
    return _rescue(order, edges, rank_only(order, edges))


def nearest_rescue(order: Any, edges: Edges) -> Grouping:
    return _rescue(order, edges, nearest(order, edges))


def coverage(order: Any, edges: Edges) -> Grouping:
    """Set-cover greedy: the unit with the most free worse neighbours leads next (ties by rank);
    it takes them all. A kept image is still the best of its group, members match it."""
    import heapq

    rank = _ranks(order)
    n = len(order)
    worse: dict[int, list[tuple[int, int]]] = {}
    better: dict[int, list[int]] = {}
    for a, b, d in zip(edges.u.tolist(), edges.v.tolist(), edges.distance.tolist(), strict=True):
        if rank[a] > rank[b]:
            a, b = b, a
        worse.setdefault(a, []).append((b, d))
        better.setdefault(b, []).append(a)
    free = np.ones(n, dtype=bool)
    count = {u: len(ws) for u, ws in worse.items()}
    heap = [(-c, int(rank[u]), u) for u, c in count.items()]
    heapq.heapify(heap)
    leader = np.arange(n, dtype=np.int64)
    distance = np.zeros(n, dtype=np.uint8)
    while heap:
        c, r, u = heapq.heappop(heap)
        if not free[u]:
            continue
        if -c != count[u]:
            heapq.heappush(heap, (-count[u], r, u))
            continue
        free[u] = False
        taken = [(w, d) for w, d in worse[u] if free[w]]
        for w, d in taken:
            free[w] = False
            leader[w] = u
            distance[w] = d
        for w, _ in [*taken, (u, 0)]:
            for b in better.get(w, []):
                if free[b]:
                    count[b] -= 1
    return Grouping(leader, distance)


Score = Callable[[Any, dict[int, set[int]], dict[int, set[int]]], Any]


def _static(order: Any, edges: Edges, score_of: Score) -> Grouping:
    """Units in the order of a fixed score (high first, ties by rank); each free one leads and
    takes its free neighbours ranked below it."""
    rank = _ranks(order)
    n = len(order)
    adj: dict[int, set[int]] = {}
    dist: dict[tuple[int, int], int] = {}
    for a, b, d in zip(edges.u.tolist(), edges.v.tolist(), edges.distance.tolist(), strict=True):
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
        dist[a, b] = dist[b, a] = d
    worse = {u: {w for w in ns if rank[w] > rank[u]} for u, ns in adj.items()}
    score_ = score_of(rank, adj, worse)
    units = sorted(adj, key=lambda u: (-score_[u], rank[u]))
    free = np.ones(n, dtype=bool)
    leader = np.arange(n, dtype=np.int64)
    distance = np.zeros(n, dtype=np.uint8)
    for u in units:
        if not free[u]:
            continue
        free[u] = False
        for w in worse[u]:
            if free[w]:
                free[w] = False
                leader[w] = u
                distance[w] = dist[u, w]
    return Grouping(leader, distance)


def by_degree(order: Any, edges: Edges) -> Grouping:
    return _static(order, edges, lambda rank, adj, worse: {u: len(ws) for u, ws in worse.items()})


def by_cohesion(order: Any, edges: Edges) -> Grouping:
    def score_of(rank: Any, adj: Any, worse: Any) -> Any:
        return {u: len(ws) + sum(len(adj[w] & ws) for w in ws) / 2 for u, ws in worse.items()}

    return _static(order, edges, score_of)


def _close_degree(k: int) -> Rule:
    def rule(order: Any, edges: Edges) -> Grouping:
        close = edges.distance <= k
        rank = _ranks(order)
        u, v = edges.u[close], edges.v[close]
        b = np.where(rank[u] > rank[v], v, u)
        deg = np.bincount(b, minlength=len(order))
        return _static(order, edges, lambda rank, adj, worse: {x: deg[x] for x in worse})

    return rule


def _cohesive_degree(density: float) -> Rule:
    def rule(order: Any, edges: Edges) -> Grouping:
        def score_of(rank: Any, adj: Any, worse: Any) -> Any:
            out = {}
            for u, ws in worse.items():
                k = len(ws)
                inner = sum(len(adj[w] & ws) for w in ws) / 2
                out[u] = k if k >= 2 and inner >= density * k * (k - 1) / 2 else 0
            return out

        return _static(order, edges, score_of)

    return rule


def lonely(order: Any, edges: Edges) -> Grouping:
    """imgindex's rule, and a centre also takes a better-ranked match whose only match it is
    (left to itself, that copy would stay alone)."""
    saved = grouping._Matches.cohesive

    def or_lonely(self: Any, centre: Any, other: Any) -> Any:
        alone = self.start[other + 1] - self.start[other] == 1
        return saved(self, centre, other) | alone

    grouping._Matches.cohesive = or_lonely  # type: ignore[method-assign]
    try:
        return group_by_leaders(order, edges)
    finally:
        grouping._Matches.cohesive = saved  # type: ignore[method-assign]


RULES: dict[str, Rule] = {
    "lonely": lonely,
    "imgindex": group_by_leaders,
    "rank": rank_only,
    "nearest": nearest,
    "rescue": rescue,
    "nearest+rescue": nearest_rescue,
    "coverage": coverage,
    "degree": by_degree,
    "cohesion": by_cohesion,
    "close4": _close_degree(4),
    **{f"centre{share}": _cohesive_degree(share) for share in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0)},
}


def _without_fixed(rule: Rule, order: Any, edges: Edges, fixed: Any = None) -> Grouping:
    """A rule called as the report calls the grouping (no unit is fixed in the probe)."""
    return rule(order, edges)


def found_of(rep: report_module.Report, labels: score.Labels) -> score.Found:
    """A report's groups as the scorer's ``Found`` (as ``score.imgindex_found`` reads its JSON)."""
    root = os.fspath(labels.root)
    hashes: dict[str, int] = {}
    runs = []
    for rows, _ in rep.runs():
        members = [os.path.relpath(os.fsdecode(rep.path(r)), root) for r in rows]
        for r, m in zip(rows, members, strict=True):
            if rep.table.has_hash[r]:
                hashes[m] = int(rep.table.phash[r]) & ((1 << 64) - 1)
        runs.append(members)
    return score.groups_found(runs, hashes, rep.options.effective_threshold, labels)


def summary(labels: score.Labels, found: score.Found, orientations: bool) -> dict[str, Any]:
    s = score.score(labels, found, orientations=orientations)
    grouped = {m for g in found.groups for m in g}
    split = sum(1 for m in s["missed"] if m["source"] in grouped and m["variant"] in grouped)
    std_missed = [m for m in s["missed"] if m["transform"] in labels.standard]
    return {
        "standard": s["standard"]["recall"],
        "std_missed": len(std_missed),
        "std_split": sum(1 for m in std_missed if m["source"] in grouped and m["variant"] in grouped),
        "hard": s["hard"]["recall"],
        "moderate": s["moderate"]["total"]["recall"],
        "family_copies": s["family_copies"]["total"]["recall"],
        "false_pairs": s["false_pairs"]["count"],
        "false_links": s["false_links"]["count"],
        "split": split,
        "transforms": {t: r["recall"] for t, r in s["transforms"].items()},
        "moderate_transforms": {t: r["recall"] for t, r in s["moderate"]["transforms"].items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="tuning,heldout")
    parser.add_argument("--rules", default="rank,imgindex", help=f"comma-separated, of: {', '.join(RULES)}")
    parser.add_argument("--workdir", type=Path, default=BENCH / "out" / "quality-run")
    parser.add_argument("--corpus", type=Path, default=BENCH / "out", help="holds quality-corpus-<part>/")
    parser.add_argument("--detail", action="store_true", help="recall per transform too")
    args = parser.parse_args(argv)
    rules = args.rules.split(",")
    for part in args.parts.split(","):
        labels = score.load_labels(args.corpus / f"quality-corpus-{part}" / "labels.json")
        index = open_index(args.workdir / part / "index.db", create=False)
        for rotations in (False, True):
            options = report_module.ReportOptions(mode="near", rotations=rotations)
            matched = report_module._match(index, options, True)
            for name in rules:
                # (No decisions here, so nothing is fixed: each rule takes the order and the edges.)
                report_module.group_by_leaders = partial(_without_fixed, RULES[name])
                try:
                    rep = report_module._group(options, matched, report_module.InForce())
                finally:
                    report_module.group_by_leaders = group_by_leaders
                r = summary(labels, found_of(rep, labels), rotations)
                tag = "--rotations" if rotations else "near"
                print(
                    f"{part:8} {tag:11} {name:14} std {r['standard']:.3f} (missed {r['std_missed']},"
                    f" split {r['std_split']}) hard {r['hard']:.3f} moderate {r['moderate']:.3f}"
                    f" fam.copies {r['family_copies']:.3f} false pairs {r['false_pairs']}"
                    f" (links {r['false_links']}) all split {r['split']}",
                    flush=True,
                )
                if args.detail:
                    print("    ", {k: round(v, 3) for k, v in r["transforms"].items() if v is not None})
                    print("    ", {k: round(v, 3) for k, v in r["moderate_transforms"].items() if v is not None})
        index.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
