"""Near-duplicate search at crawl scale: stored pairs and verified matches, incremental adds, reports.

    python bench/near_bench.py [--sizes 100000,1000000] [--json OUT]

Builds synthetic indexes (real SQLite files made through imgindex's own index
API, no image decoded) whose perceptual hashes are distributed like those of
the quality corpus (bench/quality/), then measures, each step in its own
process (time and peak resident memory of that process):

- ``pairs``: bringing the stored near pairs and verified matches up to date
  from nothing (``imgindex.pairs.update``), for every size, and the index's
  size on disk (about 2.5 GB a million images);
- ``brute``: all pairs by comparing everything, at the sizes up to ``--brute``,
  and whether its pairs are exactly the stored ones;
- ``add``: 1,000 new images added to the largest index, then the update;
  after each update, the image table kept as columns (as a scan does);
- ``report``: ``imgindex report --near -o out.json`` on the largest index,
  the whole command (and with ``--rotations`` when asked: in memory, then
  ``imgindex pairs --rotations`` to keep them in the index, the report as a
  query, and another add with them kept);
- ``imagededup``: imagededup's ``find_duplicates`` over the same hashes at
  ``--imagededup`` images (it compares all pairs, so its time grows with N²).

The hashes: 35 % of images belong to families of 2-8 near variants whose
distances to their source follow the planted variants of the quality corpus
(0 bits for 69 %, 2 for 15 %, then a tail to 26); 2 % are low-detail
pictures, whose hashes are the flat picture's with up to 3 of its 8 lowest
frequency bits flipped (few distinct values, as in the corpus, where 20 files
lie within 6 bits of the flat hash with 7 distinct hashes); 3 % are exact
copies of another file; the rest are unrelated hashes whose bits are drawn
with the per-bit frequencies measured on the corpus (the top bit, pHash's
DC term, is always set). These distances and frequencies were measured on
the pHash that imgindex used before its dHash; the dHash puts about twice as
many pairs of the corpus's pictures within 10 bits, which the step "pairs"
of a real index then pays for.

Every row gets stand-in descriptors (see :func:`descriptors_of`), and one in
ten a border (a second hash and its descriptors), so that reports verify
their matches as on a real index.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

from imgindex import pairs
from imgindex.hashing import REGIONS, HashSettings
from imgindex.match.search import as_signed, as_unsigned, pairs_within_brute_force
from imgindex.storage import FileRecord, open_index

OUT = Path(__file__).resolve().parent / "out" / "near"

#: Distances of the planted (non-mirror, non-rotation) variants to their source
#: in the quality corpus (877 pairs, pHash), as {distance: count}.
VARIANT_DISTANCES = {
    0: 605, 2: 128, 4: 31, 5: 2, 6: 31, 8: 25, 9: 1, 10: 13, 12: 15, 13: 1, 14: 4,
    15: 6, 16: 5, 18: 2, 20: 2, 22: 4, 23: 1, 26: 1,
}  # fmt: skip
#: How often each bit (0 = lowest) is set in the corpus's hashes.
BIT_FREQUENCY = [
    0.44, 0.42, 0.48, 0.47, 0.38, 0.49, 0.52, 0.46, 0.45, 0.49, 0.43, 0.45, 0.44, 0.4, 0.47, 0.58,
    0.5, 0.48, 0.45, 0.44, 0.49, 0.48, 0.43, 0.54, 0.43, 0.43, 0.45, 0.45, 0.49, 0.48, 0.47, 0.51,
    0.47, 0.41, 0.48, 0.46, 0.46, 0.55, 0.43, 0.47, 0.39, 0.4, 0.47, 0.42, 0.51, 0.35, 0.46, 0.66,
    0.47, 0.49, 0.44, 0.43, 0.47, 0.38, 0.46, 0.66, 0.51, 0.57, 0.48, 0.57, 0.44, 0.65, 0.44, 1.0,
]  # fmt: skip
FLAT = np.uint64(1 << 63)  # the pHash of a one-colour picture
#: Bits of the lowest DCT frequencies after the DC term (pHash is row-major 8x8).
LOW_FREQUENCY_BITS = np.array([62, 61, 60, 55, 54, 53, 47, 46], dtype=np.uint64)
THRESHOLD = 10


def unrelated(rng: np.random.Generator, n: int) -> np.ndarray:
    bits = rng.random((n, 64)) < np.array(BIT_FREQUENCY)
    return (bits.astype(np.uint64) << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def flip(rng: np.random.Generator, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each hash with ``counts`` distinct random bits flipped."""
    keys = rng.random((len(hashes), 64)).argsort(axis=1)
    masks = (keys < counts[:, None]).astype(np.uint64) << np.arange(64, dtype=np.uint64)
    return hashes ^ masks.sum(axis=1, dtype=np.uint64)


def synthetic_hashes(n: int, seed: int) -> np.ndarray:
    """``n`` perceptual hashes (unsigned), shuffled; see the module docstring."""
    rng = np.random.default_rng(seed)
    n_family, n_flat, n_copy = int(n * 0.35), int(n * 0.02), int(n * 0.03)
    sizes = rng.integers(2, 9, n_family)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_family)]
    sources = unrelated(rng, len(sizes))
    family_of = np.repeat(np.arange(len(sizes)), sizes - 1)
    values, weights = zip(*VARIANT_DISTANCES.items(), strict=True)
    p = np.array(weights, float) / sum(weights)
    variants = flip(rng, sources[family_of], rng.choice(values, len(family_of), p=p))
    low = rng.random((n_flat, len(LOW_FREQUENCY_BITS))).argsort(axis=1) < rng.integers(0, 4, n_flat)[:, None]
    flat = FLAT ^ (low.astype(np.uint64) << LOW_FREQUENCY_BITS).sum(axis=1, dtype=np.uint64)
    rest = n - len(sources) - len(variants) - n_flat - n_copy
    base = np.concatenate([sources, variants, flat, unrelated(rng, rest)])
    copies = base[rng.integers(0, len(base), n_copy)]
    return rng.permutation(np.concatenate([base, copies]))


def mix(values: np.ndarray, salt: int) -> np.ndarray:
    """A pseudo-random 64-bit number for each value (splitmix64 of value and salt): what a
    picture's content decides, so equal hashes (the same bytes here) get equal thumbnails."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64((salt * 0x9E3779B97F4A7C15) & (2**64 - 1))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def descriptors_of(hashes: np.ndarray, salt: int) -> np.ndarray:
    """Stand-in thumbnails, one row of ``DESCRIPTOR_BYTES`` per hash: the hash's 64 bits as an
    8x8 grey pattern (upscaled to 16x16) with noise, and a grey 8x8 colour thumbnail, so
    that pictures whose hashes are a few bits apart correlate and most others do not. The
    noise is a function of the hash (and ``salt``), so one picture has one thumbnail."""
    bits = ((hashes[:, None] >> np.arange(63, -1, -1, dtype=np.uint64)) & np.uint64(1)).astype(np.int16)
    grey8 = (96 + 64 * bits).reshape(-1, 8, 8)
    grey16 = grey8.repeat(2, axis=1).repeat(2, axis=2).reshape(-1, 256)
    cells = mix(hashes[:, None] ^ np.arange(256, dtype=np.uint64)[None, :], salt)
    u1 = ((cells >> np.uint64(40)).astype(np.float64) + 0.5) / 2.0**24
    u2 = ((cells & np.uint64(0xFFFFFF)).astype(np.float64) + 0.5) / 2.0**24
    noise = np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2) * 8  # Box-Muller: normal, sd 8
    grey16 = np.clip(grey16 + noise, 0, 255).astype(np.uint8)
    colour = np.repeat(grey8.reshape(-1, 64, 1), 3, axis=2).reshape(-1, 192).astype(np.uint8)
    return np.concatenate([grey16, colour], axis=1)


def insides_of(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For one picture in ten (by its hash), a uniform border: whether it has one, and the
    hash of its inside (0-6 bits from the whole picture's)."""
    framed = mix(hashes, 1) % np.uint64(10) == 0
    flips = (mix(hashes, 2) % np.uint64(7)).astype(np.int64)
    mask = np.zeros(len(hashes), dtype=np.uint64)
    for j in range(6):
        bit = np.uint64(1) << (mix(hashes, 3 + j) % np.uint64(64))
        mask |= np.where(flips > j, bit, np.uint64(0))
    return framed, hashes ^ mask


def regions_of(hashes: np.ndarray) -> np.ndarray:
    """Stand-in hashes of each picture's regions (rows of ``len(REGIONS)``): its hash with 2 to 12
    bits flipped for each region (a real picture's middle is a few bits from it, a side cut
    more), as big-endian blobs' bytes."""
    rows = np.empty((len(hashes), len(REGIONS)), dtype=np.uint64)
    for k in range(len(REGIONS)):
        flips = 2 + (mix(hashes, 20 + k) % np.uint64(11)).astype(np.int64)
        mask = np.zeros(len(hashes), dtype=np.uint64)
        for j in range(12):
            bit = np.uint64(1) << (mix(hashes, 40 + 12 * k + j) % np.uint64(64))
            mask |= np.where(flips > j, bit, np.uint64(0))
        rows[:, k] = hashes ^ mask
    return rows.astype(">u8").view(np.uint8).reshape(len(hashes), -1)


def build_index(db: Path, hashes: np.ndarray, *, first: int = 0) -> None:
    """Rows for ``hashes`` in a real index (1,000 files a directory), as a scan would write them:
    with descriptors, the hashes of the regions and the grid (the inside's 16x16 grey, doubled),
    and for one picture in ten a uniform border (a second hash a few bits from the first, and
    the descriptors of the inside). Equal hashes stand for equal bytes: one SHA-256, one set
    of thumbnails."""
    framed, insides = insides_of(hashes)
    with open_index(db) as index:
        root = index.catalog.ensure_root(b"/synthetic/dump")
        params = index.catalog.params_id(HashSettings().key())
        signed = as_signed(hashes).tolist()
        inside_signed = as_signed(insides).tolist()
        for start in range(0, len(signed), 50_000):
            stop = min(start + 50_000, len(signed))
            numbers = range(first + start, first + stop)
            whole = descriptors_of(hashes[start:stop], 0)
            inside = descriptors_of(insides[start:stop], 1)
            own = np.where(framed[start:stop, None], inside, whole)[:, :256].reshape(-1, 16, 16)
            grids = own.repeat(2, axis=1).repeat(2, axis=2).reshape(stop - start, -1)
            regions = regions_of(np.where(framed[start:stop], insides[start:stop], hashes[start:stop]))
            dirs = sorted({b"/synthetic/dump/%05d" % (k // 1000) for k in numbers})
            index.catalog.add_dirs(dirs, root.id)
            index.catalog.write_files(
                [
                    FileRecord(
                        index.catalog.dir_id(b"/synthetic/dump/%05d" % (k // 1000), root.id),
                        b"%d.jpg" % k,
                        20_000 + k % 5000,
                        1_700_000_000 * 10**9,
                        1_700_000_000 * 10**9,
                        k,
                        1,
                        "ok",
                        None,
                        "JPEG",
                        hashlib.sha256(b"%d" % signed[k - first]).digest(),
                        640,
                        480,
                        signed[k - first],
                        params,
                        time.time_ns(),
                        inside_signed[k - first] if framed[k - first] else None,
                        whole[k - first - start].tobytes(),
                        inside[k - first - start].tobytes() if framed[k - first] else None,
                        regions=regions[k - first - start].tobytes(),
                        grid=grids[k - first - start].tobytes(),
                    )
                    for k in numbers
                ]
            )


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- steps, each run in a process of its own -----------------------------------------


def step_pairs(db: str, brute: bool) -> dict[str, Any]:
    with open_index(db) as index:
        start = time.perf_counter()
        update = pairs.update(index)
        seconds = time.perf_counter() - start
        # What a scan does next: keep the image table as columns (what the report reads).
        start = time.perf_counter()
        chunks = index.images.keep_table()
        kept = time.perf_counter() - start
        result: dict[str, Any] = {
            "seconds": seconds,
            "update": update.to_json(),
            "table_kept_seconds": kept,
            "table_chunks_kept": chunks,
            "peak_mb": peak_mb(),
        }
        if brute:
            values = index.images.hashes()
            start = time.perf_counter()
            i, j, d = pairs_within_brute_force(as_unsigned(values), pairs.MAX_DISTANCE)
            result["brute_seconds"] = time.perf_counter() - start
            a, b, dist = index.pairs.pairs(pairs.KIND, pairs.MAX_DISTANCE)
            stored = set(zip(a.tolist(), b.tolist(), dist.tolist(), strict=True))
            lo, hi = np.minimum(values[i], values[j]), np.maximum(values[i], values[j])
            result["brute_pairs"] = len(i)
            result["identical"] = stored == set(zip(lo.tolist(), hi.tolist(), d.tolist(), strict=True))
    return result


def step_add(db: str, n: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    with open_index(db) as index:
        existing = as_unsigned(index.images.hashes())
        count = int(index.db.conn.execute("SELECT max(inode) FROM files").fetchone()[0]) + 1
    # Half near variants of indexed images, half unrelated: what a day of crawling adds.
    variants = flip(rng, existing[rng.integers(0, len(existing), n // 2)], rng.integers(1, 9, n // 2))
    new = np.concatenate([variants, unrelated(rng, n - n // 2)])
    start = time.perf_counter()
    build_index(Path(db), new, first=count)
    written = time.perf_counter() - start
    with open_index(db) as index:
        start = time.perf_counter()
        update = pairs.update(index)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        chunks = index.images.keep_table()
        kept = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows_written_seconds": written,
        "update": update.to_json(),
        "table_kept_seconds": kept,
        "table_chunks_kept": chunks,
        "peak_mb": peak_mb(),
    }


def step_imagededup(n: int, seed: int) -> dict[str, Any]:
    phash = peers.imagededup_phash()()
    hashes = synthetic_hashes(n, seed)
    encodings = {f"{k}.jpg": f"{int(h):016x}" for k, h in enumerate(hashes.tolist())}
    start = time.perf_counter()
    found = phash.find_duplicates(encoding_map=encodings, max_distance_threshold=THRESHOLD)
    seconds = time.perf_counter() - start
    theirs = {tuple(sorted((int(a[:-4]), int(b[:-4])))) for a, dups in found.items() for b in dups}
    i, j, _ = pairs_within_brute_force(hashes, THRESHOLD)
    ours = set(zip(i.tolist(), j.tolist(), strict=True))
    return {"seconds": seconds, "pairs": len(theirs), "same_pairs_as_brute_force": theirs == ours, "peak_mb": peak_mb()}


def run_step(*args: str) -> dict[str, Any]:
    """A step in a fresh process: its JSON result, with its wall time and peak memory."""
    seconds, peak_mb, out = peers.run_process([sys.executable, __file__, "_step", *args])
    result: dict[str, Any] = json.loads(out) if out.strip() else {}
    result["process_seconds"] = seconds
    result["process_peak_mb"] = peak_mb
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_step"]:
        name, *rest = argv[1:]
        if name == "build":
            start = time.perf_counter()
            build_index(Path(rest[0]), synthetic_hashes(int(rest[1]), int(rest[2])))
            result = {"seconds": time.perf_counter() - start}
        elif name == "pairs":
            result = step_pairs(rest[0], rest[1] == "1")
        elif name == "add":
            result = step_add(rest[0], int(rest[1]), int(rest[2]))
        else:
            result = step_imagededup(int(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="index sizes, comma-separated")
    parser.add_argument("--add", type=int, default=1000, help="images added to the largest index")
    parser.add_argument("--brute", type=int, default=100_000, help="compare with brute force up to this size")
    parser.add_argument("--imagededup", type=int, default=20_000, help="imagededup's size (0: skip)")
    parser.add_argument("--rotations", action="store_true", help="also time report --near --rotations")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=OUT)
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    args.workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"cpus": os.cpu_count(), "threshold": THRESHOLD, "max_distance": pairs.MAX_DISTANCE}
    rows = []
    for n in sizes:
        db = args.workdir / f"index-{n}.db"
        peers.remove_index(db)
        peers.log(f"building a synthetic index of {n:,} images")
        # Every step in a process of its own, this one included: a child's peak memory
        # as the kernel counts it starts from its parent's size at fork.
        build_seconds = run_step("build", str(db), str(n), str(args.seed))["seconds"]
        peers.log(f"pairs for {n:,}")
        step = run_step("pairs", str(db), "1" if n <= args.brute else "0")
        step["index_build_seconds"] = build_seconds
        step["index_bytes"] = db.stat().st_size + sum(p.stat().st_size for p in (Path(f"{db}-wal"),) if p.exists())
        results[f"pairs_{n}"] = step
        rows.append(
            (
                f"pairs and matches, {n:,} images ({step['index_bytes'] / 1e9:.2f} GB)",
                step["seconds"],
                step["process_peak_mb"],
            )
        )
        rows.append(
            (
                f"image table kept as columns, {n:,} ({step['table_chunks_kept']} chunks)",
                step["table_kept_seconds"],
                None,
            )
        )
        if "brute_seconds" in step:
            rows.append((f"brute force, {n:,} (identical: {step['identical']})", step["brute_seconds"], None))
    largest = args.workdir / f"index-{sizes[-1]}.db"
    if args.add:
        peers.log(f"adding {args.add:,} images to {sizes[-1]:,}")
        step = run_step("add", str(largest), str(args.add), str(args.seed + 1))
        results["add"] = step
        rows.append((f"add {args.add:,} to {sizes[-1]:,}", step["seconds"], step["process_peak_mb"]))
        rows.append(
            (f"then the image table kept ({step['table_chunks_kept']} chunks)", step["table_kept_seconds"], None)
        )
    peers.log(f"imgindex report --near on {sizes[-1]:,}")
    report = [
        *peers.imgindex_command(),
        "report",
        "--near",
        "--db",
        str(largest),
        "-o",
        str(args.workdir / "near.json"),
    ]
    seconds, peak_mb, _ = peers.run_process([*report, "--quiet"])
    results["report"] = {"command": report, "seconds": seconds, "process_peak_mb": peak_mb}
    rows.append((f"report --near, {sizes[-1]:,} (whole command)", seconds, peak_mb))
    if args.rotations:
        peers.log(f"imgindex report --near --rotations on {sizes[-1]:,}")
        seconds, peak_mb, _ = peers.run_process([*report, "--rotations", "--quiet"])
        turned = [*report, "--rotations"]
        results["report_rotations"] = {"command": turned, "seconds": seconds, "process_peak_mb": peak_mb}
        rows.append((f"report --near --rotations, {sizes[-1]:,} (in memory)", seconds, peak_mb))
        # Then kept in the index: the one-off verification with orientations, the report as a
        # query, and an incremental add that keeps them up to date.
        peers.log(f"imgindex pairs --rotations on {sizes[-1]:,}")
        keep = [*peers.imgindex_command(), "pairs", "--rotations", "--db", str(largest), "--quiet"]
        seconds, peak_mb, _ = peers.run_process(keep)
        results["pairs_rotations"] = {"command": keep, "seconds": seconds, "process_peak_mb": peak_mb}
        rows.append((f"pairs --rotations (kept from now on), {sizes[-1]:,}", seconds, peak_mb))
        seconds, peak_mb, _ = peers.run_process([*report, "--rotations", "--quiet"])
        results["report_rotations_stored"] = {"command": turned, "seconds": seconds, "process_peak_mb": peak_mb}
        rows.append((f"report --near --rotations, {sizes[-1]:,} (stored)", seconds, peak_mb))
        if args.add:
            step = run_step("add", str(largest), str(args.add), str(args.seed + 2))
            results["add_rotations"] = step
            name = f"add {args.add:,} to {sizes[-1]:,}, rotations kept"
            rows.append((name, step["seconds"], step["process_peak_mb"]))
    if args.imagededup:
        peers.log(f"imagededup find_duplicates on {args.imagededup:,}")
        step = run_step("imagededup", str(args.imagededup), str(args.seed))
        results["imagededup"] = step
        rows.append((f"imagededup find_duplicates, {args.imagededup:,}", step["seconds"], step["process_peak_mb"]))

    print(
        f"near-pair benchmark, threshold {THRESHOLD}, pairs stored up to {pairs.MAX_DISTANCE} ({os.cpu_count()} CPUs)"
    )
    print(f"{'step':<52} {'seconds':>9} {'peak MB':>9}")
    for name, secs, mb in rows:
        print(f"{name:<52} {secs:>9.2f} {'' if mb is None else f'{mb:,.0f}':>9}")
    peers.write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
