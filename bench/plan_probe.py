"""Does the search's plan pick the fastest way? Its cost model against the clock.

    python bench/plan_probe.py --index bench/out/near/index-1000000.db [--small bench/out/small/index-200000.db]

The multi-index search (imgindex.match.search) cuts a hash into blocks and
picks the layout and allowances its cost model (``search.plan``) says are
cheapest for the number of hashes, of queries and the threshold. This probe
takes the model's five cheapest layouts (the best allowances of each), forces
each in turn, times the search with it (the same pairs every time: the
search is exact whatever the blocks), and prints the model's estimate beside
the time, in the regimes imgindex meets:

- R1: an update adding 1,000 pictures: their hashes (about 1,100 values)
  among every value of the index (``pairs_from``, threshold 10);
- R2: their regions' hashes (5 a picture) against every value (``pairs_between``,
  threshold 8);
- R3: every pair of every value, from nothing (``pairs_within``, threshold 10);
- R4: the same on the values of a real index of small pictures (``--small``),
  whose bits are far from independent.

``--index`` is an index made by ``bench/near_bench.py`` (or any index with
regions); R3 takes minutes at a million (``--no-all-pairs`` leaves it out).
It measures; it changes nothing in imgindex.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imgindex.match import search
from imgindex.storage import open_index

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]


def candidate_plans(n: int, m: int, threshold: int, count: int = 5) -> list[search.Plan]:
    """The model's ``count`` cheapest layouts (each with its best allowances), cheapest first:
    the same estimate ``search.plan`` minimises."""
    best: dict[tuple[int, ...], search.Plan] = {}
    for widths in search.LAYOUTS:
        for allowed in search._allowance_choices(len(widths), threshold):
            cost = search.layout_cost(n, m, widths, allowed)
            shifts = np.cumsum((0, *widths[:-1])).tolist()
            blocks = tuple(b for b in zip(shifts, widths, allowed, strict=True) if b[2] >= 0)
            if widths not in best or cost < best[widths].cost_ns:
                best[widths] = search.Plan(blocks, cost)
    return sorted(best.values(), key=lambda p: p.cost_ns)[:count]


def probe(name: str, run: Callable[[], Pairs], n: int, m: int, threshold: int, repeat: int) -> None:
    chosen = search.plan(n, m, threshold)
    print(f"{name}: {n:,} hashes, {m:,} queries, threshold {threshold}; the model picks {chosen.blocks}")
    original = search.plan
    reference: Pairs | None = None
    try:
        for option in candidate_plans(n, m, threshold):
            search.plan = lambda *_args, p=option: p  # type: ignore[assignment, misc]
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                found = run()
                times.append(time.perf_counter() - start)
            if reference is None:
                reference = found
            same = all(np.array_equal(x, y) for x, y in zip(found, reference, strict=True))
            mark = "*" if option.blocks == chosen.blocks else " "
            print(
                f"  {mark} {option.blocks}: {min(times) * 1e3:,.0f} ms"
                f" (estimated {option.cost_ns / 1e6:,.0f}), {len(found[0]):,} pairs{'' if same else ' DIFFERENT'}",
                flush=True,
            )
    finally:
        search.plan = original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="an index with regions (bench/near_bench.py's)")
    parser.add_argument("--small", type=Path, help="an index of real small pictures (bench/small_bench.py's)")
    parser.add_argument("--queries", type=int, default=1000, help="pictures added (R1, R2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (the fastest is shown)")
    parser.add_argument("--no-all-pairs", action="store_true", help="leave R3 out")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    with open_index(args.index) as index:
        values = np.ascontiguousarray(index.images.hashes().view(np.uint64))
        _, regions = index.images.all_regions()
    # As an add of --queries pictures: about 1.1 values a picture (wholes and insides), 5 regions.
    queries = np.sort(rng.choice(len(values), int(args.queries * 1.1), replace=False))
    region_queries = regions.reshape(-1)[rng.integers(0, regions.size, 5 * args.queries)]
    n = len(values)
    probe("R1", lambda: search.pairs_from(values, queries, 10), n, len(queries), 10, args.repeat)
    probe("R2", lambda: search.pairs_between(values, region_queries, 8), n, len(region_queries), 8, args.repeat)
    if not args.no_all_pairs:
        probe("R3", lambda: search.pairs_within(values, 10), n, n, 10, 1)
    if args.small:
        with open_index(args.small) as index:
            small = np.ascontiguousarray(index.images.hashes().view(np.uint64))
        probe("R4", lambda: search.pairs_within(small, 10), len(small), len(small), 10, 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
