"""Benchmark imgindex's scan: cold-scan throughput against imagededup, no-change rescans, peak memory.

One run does it all (see bench/README.md):

1. builds, or reuses from ``bench/out/``, a tree of photo-sized images laid out
   like a crawl dump (``ab/cd/name``, some names without extension): ``jpeg/``
   holds only JPEGs, ``mix/`` holds the same JPEGs (hard links) and PNGs;
2. times cold scans (fresh index) of imgindex and imagededup's
   ``PHash().encode_images(recursive=True)`` on each, both on all cores,
   alternating A B A B, each peer in its own process;
3. times imgindex's no-change rescan of the same trees;
4. builds, or reuses, a tree of small files (mostly not images) and times
   imgindex's cold scan and no-change rescan of it;
5. prints the figures with PASS/FAIL against the targets, and with
   ``--json OUT`` writes everything, every single run included, as JSON.

Wall time is ``time.perf_counter()`` around each subprocess. Peak memory is
the maximum RSS of the largest single process of the run, as ``/usr/bin/time
-v`` (GNU time) reports it, or ``os.wait4`` where GNU time is missing; the
process tree is also sampled from /proc every 0.2 s for the sum over all its
processes (RSS and PSS), since imgindex hashes in worker processes.

The part that runs imagededup is this same script (``--run-imagededup DIR``):
imagededup imports torch at import time even for hashing, so stand-in modules
replace the CNN parts before ``from imagededup.methods import PHash``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import peers  # bench/peers.py: this script runs as bench/<name>.py

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out"
GENERATOR_VERSION = 1  # bump when the generated trees change: cached trees are rebuilt
GNU_TIME = "/usr/bin/time"

# The targets. Throughput ratios are imgindex files/s over imagededup files/s.
TARGET_RESCAN_SECONDS = 3.0  # no-change rescan of the small-file tree
TARGET_RESCAN_SHARE = 0.02  # ... as a share of its cold scan
TARGET_RATIO_MIX = 2.0
TARGET_RATIO_JPEG = 4.0
TARGET_PEAK_BYTES = 1024**3


# ---------------------------------------------------------------------------
# Tree generation (runs in a multiprocessing pool; numpy and Pillow are
# imported here only, so the imagededup child and the parent stay light)
# ---------------------------------------------------------------------------


def _dump_path(root: Path, url: str, name: str) -> Path:
    """Where a crawl dump puts ``url``: ``<md5[0:2]>/<md5[2:4]>/<name>``."""
    digest = hashlib.md5(url.encode()).hexdigest()
    return root / digest[:2] / digest[2:4] / name


def _photo(rng: Any, w: int, h: int) -> Any:
    """A photo-like RGB picture: sky, blurred blobs and shapes, texture, sensor noise."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    # Large-scale structure: a coarse random field of muted colours, upscaled smoothly.
    cells = (max(2, h // int(rng.integers(80, 240))), max(2, w // int(rng.integers(80, 240))))
    tint = rng.integers(40, 216, 3)
    coarse = np.clip(tint + rng.normal(0, 45, (*cells, 3)), 0, 255).astype(np.uint8)
    base = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
    # A sky gradient over the top part.
    sky_h = int(h * rng.uniform(0.2, 0.5))
    top, bottom = rng.integers(60, 256, (2, 3))
    t = np.linspace(0.0, 1.0, sky_h)[:, None, None]
    sky = np.broadcast_to(top * (1 - t) + bottom * t, (sky_h, w, 3)).astype(np.uint8)
    base.paste(Image.fromarray(sky), (0, 0))
    draw = ImageDraw.Draw(base)
    for _ in range(int(rng.integers(6, 18))):
        x, y = int(rng.integers(0, w)), int(rng.integers(sky_h // 2, h))
        r = int(rng.integers(max(4, h // 40), max(5, h // 6)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        else:
            draw.polygon([(x - r, y + r), (x + r, y + r), (x + int(rng.integers(-r, r)), y - r)], fill=colour)
    base = base.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 3.0))))
    arr = np.asarray(base, dtype=np.int16)
    # Mid-frequency texture (foliage, fabric) and per-pixel noise, so nothing compresses to nothing.
    block = int(rng.integers(2, 6))
    tex = rng.integers(-20, 21, (h // block + 1, w // block + 1, 1), dtype=np.int16)
    tex = np.repeat(np.repeat(tex, block, 0), block, 1)[:h, :w]
    noise = rng.integers(-5, 6, (h, w, 3), dtype=np.int16)
    return Image.fromarray(np.clip(arr + tex + noise, 0, 255).astype(np.uint8))


def _graphic(rng: Any, w: int, h: int) -> Any:
    """A web graphic: flat colours, shapes, a few hundred colours at most."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(10, 40))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.6:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.ellipse([x0, y0, x1, y1], fill=colour, outline=(0, 0, 0), width=3)
    return im


_JPEG_NAMES = ("IMG_{n:04d}.jpg", "DSC{n:05d}.JPG", "photo-{n}.jpeg", "{n}", "image.php?id={n}", "{hex}", "{hex}.jpg")
_PNG_NAMES = ("banner-{n}.png", "p{n}", "render_{n}.PNG", "{hex}", "img?size=large&id={n}", "screenshot-{n}.png")


def _image_name(kind: str, seed: int, n: int) -> tuple[str, str]:
    """A crawler's URL and the file name a dump gives it (about a third have no extension)."""
    patterns = _JPEG_NAMES if kind == "jpeg" else _PNG_NAMES
    pattern = patterns[(seed * 7 + n) % len(patterns)]
    name = pattern.format(n=n, hex=hashlib.sha1(f"{kind}{seed}{n}".encode()).hexdigest()[:16])
    url = f"https://cdn{n % 17}.example.com/{kind}/{seed}/{n}/{name}"
    return url, name


def _make_image(job: tuple[str, int, int, str]) -> tuple[str, int, str]:
    """Write one generated image; returns (relative path, size, description). Runs in a pool worker."""
    import numpy as np
    from PIL import Image

    kind, seed, n, root = job
    rng = np.random.default_rng([seed, n, 0 if kind == "jpeg" else 1])
    url, name = _image_name(kind, seed, n)
    path = _dump_path(Path(root) / kind, url, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "jpeg":
        # 2.0 to 3.84 megapixels, 3:2 or 4:3, a fifth of them portrait.
        w = int(rng.integers(1740, 2401))
        h = int(w * (2 / 3 if rng.random() < 0.6 else 3 / 4))
        if w * h < 2_000_000:
            h = -(-2_000_000 // w)
        if rng.random() < 0.2:
            w, h = h, w
        im = _photo(rng, w, h)
        options: dict[str, Any] = {"quality": 85}
        notes = []
        if rng.random() < 0.2:
            options["progressive"] = True
            notes.append("progressive")
        if rng.random() < 0.1:
            exif = Image.Exif()
            exif[0x0112] = 6  # orientation: rotate 90° to display
            options["exif"] = exif.tobytes()
            notes.append("exif-rotated")
        im.save(path, "JPEG", **options)
        desc = f"JPEG {w}x{h}" + (f" ({', '.join(notes)})" if notes else "")
    else:
        # 800x600 to 1600x1200: half photos, a quarter photos with transparency, a quarter graphics.
        w = int(rng.integers(800, 1601))
        h = int(w * 3 / 4)
        style = rng.random()
        if style < 0.5:
            im, what = _photo(rng, w, h), "photo"
        elif style < 0.75:
            im = _photo(rng, w, h).convert("RGBA")
            yy = np.linspace(0, 255, h, dtype=np.float32)[:, None]
            xx = np.linspace(0, 255, w, dtype=np.float32)[None, :]
            im.putalpha(Image.fromarray(np.clip((yy + xx) / 2 + 40, 0, 255).astype(np.uint8)))
            what = "photo RGBA"
        else:
            im, what = _graphic(rng, w, h), "graphic"
        im.save(path, "PNG")
        desc = f"PNG {w}x{h} {what}"
    return str(path.relative_to(root)), path.stat().st_size, desc


def _small_file(seed: int, n: int, image_share: float, tiny_images: list[tuple[str, bytes]]) -> tuple[str, bytes, str]:
    """Name, content and kind of small file ``n``: mostly text of a crawl, some tiny images, a few empty."""
    h = hashlib.blake2b(f"{seed}:{n}".encode(), digest_size=16).digest()
    pick = int.from_bytes(h[:4], "little") / 2**32
    if pick < image_share:
        ext, data = tiny_images[int.from_bytes(h[4:8], "little") % len(tiny_images)]
        # A few varying bytes in a trailing comment/chunk would cost a re-encode: make each file
        # distinct by its name only; the index does not care whether contents repeat.
        name = f"thumb{n}.{ext}" if h[8] & 1 else f"t{n}"
        return name, data, "image"
    if pick < image_share + 0.005:
        return f"empty{n}.html", b"", "empty"
    kinds = (
        ("html", b"<!doctype html><html><head><title>page %d</title></head><body>%s</body></html>\n"),
        ("css", b"/* %d */ .c{color:#333;margin:0 auto;%s}\n"),
        ("js", b"// %d\nvar x=function(){return '%s';};\n"),
        ("json", b'{"id": %d, "payload": "%s"}\n'),
        ("txt", b"line %d %s\n"),
    )
    ext, template = kinds[h[9] % len(kinds)]
    body = h.hex().encode() * (1 + h[10] % 40)
    names = (f"page{n}.{ext}", f"index.php?id={n}", f"{h.hex()[:12]}", f"file{n}.{ext}")
    return names[h[11] % len(names)], template % (n, body), "not_image"


def _tiny_images(seed: int) -> list[tuple[str, bytes]]:
    """A few dozen small encoded images (icons, thumbnails, tracking pixels) to copy around."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng([seed, 99])
    out = []
    for i in range(48):
        size = (1, 1) if i % 12 == 0 else (int(rng.integers(16, 160)), int(rng.integers(16, 160)))
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        im = Image.fromarray(arr)
        buf = io.BytesIO()
        fmt, ext = (("GIF", "gif"), ("PNG", "png"), ("JPEG", "jpg"))[i % 3]
        im.save(buf, fmt)
        out.append((ext, buf.getvalue()))
    return out


def _write_small_files(job: tuple[str, int, int, int, int, float]) -> dict[str, int]:
    """Write small files number ``start`` to ``stop`` (a pool worker); returns counts by expected status."""
    root, seed, start, stop, step, image_share = job
    tiny = _tiny_images(seed)
    counts: dict[str, int] = {}
    made: set[str] = set()
    for n in range(start, stop, step):
        name, data, kind = _small_file(seed, n, image_share, tiny)
        path = _dump_path(Path(root), f"https://site{n % 997}.example.org/{n}/{name}", name)
        parent = str(path.parent)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        with open(path, "wb") as f:
            f.write(data)
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _read_manifest(tree: Path) -> dict[str, Any] | None:
    try:
        manifest: dict[str, Any] = json.loads((tree / "MANIFEST.json").read_text())
        return manifest
    except (OSError, ValueError):
        return None


def _reused(tree: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a complete tree built with ``params``; otherwise the tree is cleared for a rebuild."""
    manifest = _read_manifest(tree)
    if manifest and manifest.get("params") == params:
        manifest["reused"] = True
        return manifest
    if tree.exists():
        shutil.rmtree(tree)
    return None


def build_image_tree(tree: Path, jpegs: int, pngs: int, seed: int, workers: int) -> dict[str, Any]:
    """The image tree (built unless a complete one with the same parameters is there)."""
    params = {"kind": "images", "version": GENERATOR_VERSION, "jpegs": jpegs, "pngs": pngs, "seed": seed}
    reused = _reused(tree, params)
    if reused is not None:
        return reused
    tree.mkdir(parents=True)
    jobs = [("jpeg", seed, n, str(tree)) for n in range(jpegs)] + [("png", seed, n, str(tree)) for n in range(pngs)]
    start = time.perf_counter()
    peers.log(f"generating {jpegs} JPEGs and {pngs} PNGs in {tree} ({workers} processes)...")
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        made = list(pool.imap_unordered(_make_image, jobs, chunksize=2))
    # mix/: hard links to the JPEGs, next to the PNGs, in one crawl-dump tree.
    files = []
    for rel, size, desc in sorted(made):
        kind, inner = rel.split("/", 1)
        dst = tree / "mix" / inner
        dst.parent.mkdir(parents=True, exist_ok=True)
        if kind == "jpeg":
            os.link(tree / rel, dst)
            files.append((rel, size, desc))
        else:
            os.replace(tree / rel, dst)
            files.append((f"mix/{inner}", size, desc))
    shutil.rmtree(tree / "png", ignore_errors=True)
    manifest = {
        "params": params,
        "jpeg_files": sum(1 for f in files if f[0].startswith("jpeg/")),
        "png_files": sum(1 for f in files if f[0].startswith("mix/")),
        "jpeg_bytes": sum(f[1] for f in files if f[0].startswith("jpeg/")),
        "png_bytes": sum(f[1] for f in files if f[0].startswith("mix/")),
        "generate_seconds": round(time.perf_counter() - start, 1),
        "files": [{"path": p, "bytes": s, "what": d} for p, s, d in files],
    }
    (tree / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    manifest["reused"] = False
    return manifest


def build_small_tree(tree: Path, count: int, seed: int, workers: int, image_share: float) -> dict[str, Any]:
    """The small-file tree (built unless a complete one with the same parameters is there)."""
    params = {"kind": "small", "version": GENERATOR_VERSION, "files": count, "seed": seed, "image_share": image_share}
    reused = _reused(tree, params)
    if reused is not None:
        return reused
    files = tree / "files"
    files.mkdir(parents=True)
    start = time.perf_counter()
    peers.log(f"generating {count:,} small files in {files} ({workers} processes)...")
    import multiprocessing

    jobs = [(str(files), seed, i, count, workers, image_share) for i in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_write_small_files, jobs)
    expected: dict[str, int] = {}
    for part in parts:
        for k, v in part.items():
            expected[k] = expected.get(k, 0) + v
    dirs = sum(1 for _ in files.glob("*/*"))
    manifest = {
        "params": params,
        "expected": expected,
        "dirs": dirs,
        "generate_seconds": round(time.perf_counter() - start, 1),
    }
    (tree / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    manifest["reused"] = False
    return manifest


# ---------------------------------------------------------------------------
# Measuring one run of a peer
# ---------------------------------------------------------------------------


@dataclass
class Run:
    peer: str
    subset: str
    kind: str  # cold | rescan
    repeat: int
    wall_seconds: float = 0.0
    inner_seconds: float | None = None  # as the tool itself reports (imgindex) or measures (imagededup)
    max_rss_kb: int | None = None  # GNU time / wait4: the largest process among those reaped into its rusage
    user_seconds: float | None = None  # GNU time / wait4 (the same processes only)
    system_seconds: float | None = None
    sampled_max_process_rss_kb: int | None = None  # the largest single process seen in the /proc samples
    tree_peak_rss_kb: int | None = None  # sampled sum over the process tree
    tree_peak_pss_kb: int | None = None
    tree_peak_processes: int | None = None
    tree_cpu_seconds: float | None = None  # sampled utime + stime of every process of the tree
    returncode: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""


class TreeSampler(threading.Thread):
    """Samples the memory of a process and all its descendants from /proc."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = self.peak_procs = self.peak_one_rss = 0
        self.cpu_ticks: dict[tuple[int, bytes], int] = {}  # (pid, start time): utime + stime
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.sample()
            self.halt.wait(self.interval)

    def sample(self) -> None:
        children: dict[int, list[int]] = {}
        stats: dict[int, list[bytes]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2 :].split()
            pid = int(entry.name)
            children.setdefault(int(fields[1]), []).append(pid)
            stats[pid] = fields
        todo, tree = [self.pid], []
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, ()))
        rss = pss = 0
        for pid in tree:
            # After ")": state ppid ... utime (11) stime (12) ... starttime (19).
            own = stats.get(pid)
            if own is None:  # the run's own process, gone already
                continue
            self.cpu_ticks[(pid, own[19])] = int(own[11]) + int(own[12])
            try:
                with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                    for line in f:
                        if line.startswith(b"Rss:"):
                            one = int(line.split()[1])
                            rss += one
                            self.peak_one_rss = max(self.peak_one_rss, one)
                        elif line.startswith(b"Pss:"):
                            pss += int(line.split()[1])
            except (OSError, ValueError):
                continue
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        self.peak_procs = max(self.peak_procs, len(tree))

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")


def measure(run: Run, argv: list[str], workdir: Path) -> Run:
    """Run ``argv`` once, timing it and watching its memory; stdout is parsed as JSON."""
    workdir.mkdir(parents=True, exist_ok=True)
    out_path, err_path, time_path = workdir / "stdout", workdir / "stderr", workdir / "time-v"
    gnu_time = os.access(GNU_TIME, os.X_OK)
    full = [GNU_TIME, "-v", "-o", str(time_path), *argv] if gnu_time else argv
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(full, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        run.wall_seconds = time.perf_counter() - start
        sampler.halt.set()
        sampler.join()
    proc.returncode = run.returncode = os.waitstatus_to_exitcode(status)
    if gnu_time:
        run.returncode = proc.returncode
        for line in time_path.read_text().splitlines():
            key, _, value = line.strip().rpartition(": ")
            if key == "Maximum resident set size (kbytes)":
                run.max_rss_kb = int(value)
            elif key == "User time (seconds)":
                run.user_seconds = float(value)
            elif key == "System time (seconds)":
                run.system_seconds = float(value)
            elif key == "Exit status":
                run.returncode = int(value)
    else:
        run.max_rss_kb = usage.ru_maxrss
        run.user_seconds, run.system_seconds = usage.ru_utime, usage.ru_stime
    run.tree_peak_rss_kb, run.tree_peak_pss_kb = sampler.peak_rss or None, sampler.peak_pss or None
    run.tree_peak_processes = sampler.peak_procs or None
    run.sampled_max_process_rss_kb = sampler.peak_one_rss or None
    run.tree_cpu_seconds = round(sampler.cpu_seconds, 2)
    text = out_path.read_text(errors="replace").strip()
    try:
        run.result = json.loads(text.splitlines()[-1]) if text else {}
    except ValueError:
        run.result = {"unparsed_stdout": text[-2000:]}
    run.stderr_tail = err_path.read_text(errors="replace")[-2000:]
    return run


def imgindex_argv(root: Path, db: Path, jobs: int | None) -> list[str]:
    script = Path(sys.executable).parent / "imgindex"
    base = [str(script)] if script.exists() else [sys.executable, "-c", "from imgindex.cli import run; run()"]
    return [*base, "scan", str(root), "--db", str(db), "--json", *(["--jobs", str(jobs)] if jobs else [])]


def imagededup_argv(root: Path, workers: int | None) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--run-imagededup",
        str(root),
        *(["--imagededup-workers", str(workers)] if workers else []),
    ]


def run_imagededup(root: str, workers: int | None) -> None:
    """The imagededup side (a child process): hash ``root`` with PHash, print a JSON line."""
    start = time.perf_counter()
    from multiprocessing import cpu_count

    PHash = peers.imagededup_phash()
    imported = time.perf_counter()
    hashes = PHash(verbose=False).encode_images(image_dir=root, recursive=True, num_enc_workers=workers or cpu_count())
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "hashed": len(hashes),
                "seconds": round(done - imported, 3),
                "import_seconds": round(imported - start, 3),
                "workers": workers or cpu_count(),
            }
        )
    )


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------


def warm_and_settle(root: Path, settle: float, read: bool) -> int:
    """Walk ``root`` (reading every file when ``read``) so both peers find a warm page cache;
    then wait until its newest mtime/ctime is ``settle`` seconds old (imgindex's racy-clean rule).
    Returns the number of files."""
    newest, count = 0, 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
            count += 1
            if read:
                with open(path, "rb") as f:
                    while f.read(1 << 20):
                        pass
    wait = newest / 1e9 + settle - time.time()
    if wait > 0:
        peers.log(f"waiting {wait:.1f} s so that the newest file is {settle} s old")
        time.sleep(wait)
    return count


def settle_after(finished: float, settle: float) -> None:
    wait = finished + settle - time.monotonic()
    if wait > 0:
        time.sleep(wait)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _max(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _largest(run: Run) -> int | None:
    """The largest single process: GNU time's figure, or a larger one seen in the samples
    (GNU time misses processes that are not reaped by their parent, e.g. imgindex's forkserver workers)."""
    return _max([run.max_rss_kb, run.sampled_max_process_rss_kb])


def summarise(runs: list[Run]) -> dict[str, Any]:
    return {
        "runs": len(runs),
        "wall_seconds": _median([r.wall_seconds for r in runs]),
        "inner_seconds": _median([r.inner_seconds for r in runs]),
        "cpu_seconds": _median([r.tree_cpu_seconds for r in runs]),
        "max_rss_kb": _max([_largest(r) for r in runs]),
        "gnu_time_max_rss_kb": _max([r.max_rss_kb for r in runs]),
        "tree_peak_rss_kb": _max([r.tree_peak_rss_kb for r in runs]),
        "tree_peak_pss_kb": _max([r.tree_peak_pss_kb for r in runs]),
        "wall_seconds_all": [round(r.wall_seconds, 3) for r in runs],
    }


def check_imgindex(run: Run, expected_files: int, expected_status: dict[str, int], problems: list[str]) -> None:
    r = run.result
    label = f"imgindex {run.kind} {run.subset} #{run.repeat}"
    if run.returncode not in (0, 3) or "files" not in r:
        problems.append(f"{label}: exit {run.returncode}; stderr: {run.stderr_tail.strip()[-500:]}")
        return
    if r["files"] != expected_files:
        problems.append(f"{label}: {r['files']} files, expected {expected_files}")
    by_status = {k: v for k, v in r.get("by_status", {}).items() if v}
    if by_status != expected_status:
        problems.append(f"{label}: by_status {by_status}, expected {expected_status}")
    if run.kind == "cold" and (r.get("new") != expected_files or r.get("hashed") != expected_files):
        problems.append(f"{label}: new {r.get('new')}, hashed {r.get('hashed')}, expected {expected_files} each")
    if run.kind == "rescan" and (r.get("hashed") or r.get("unchanged") != expected_files):
        problems.append(
            f"{label}: a no-change rescan read {r.get('hashed')} files "
            f"({r.get('rechecked')} racily clean), unchanged {r.get('unchanged')} of {expected_files}"
        )
    if run.returncode == 3:
        problems.append(f"{label}: exit 3 (some files failed): {r.get('by_status')}")


def imgindex_source_digest() -> str | None:
    """A digest of imgindex's installed sources, to notice them changing during a run."""
    from importlib.util import find_spec

    spec = find_spec("imgindex")
    if spec is None or not spec.submodule_search_locations:
        return None
    digest = hashlib.sha256()
    for path in sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def environment() -> dict[str, Any]:
    def version(dist: str) -> str | None:
        from importlib import metadata

        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(
            ["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = None
    try:
        cpus: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    return {
        "cpus": cpus,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "imgindex_commit": commit,
        "imgindex_source_digest": imgindex_source_digest(),
        "versions": {d: version(d) for d in ("imgindex", "imagededup", "pillow", "imagehash", "numpy", "scipy")},
        "gnu_time": os.access(GNU_TIME, os.X_OK),
        "load_average_at_start": os.getloadavg(),
        "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--tree",
        type=Path,
        help="image tree to use: built here unless one with the same parameters\n"
        "is there; a tree not made by this script is scanned whole as 'all'",
    )
    p.add_argument("--jpegs", type=int, default=1200, help="photo-sized JPEGs (default 1200)")
    p.add_argument("--pngs", type=int, default=600, help="PNGs (default 600)")
    p.add_argument("--rescan-tree", type=Path, help="small-file tree (default: under --out)")
    p.add_argument("--rescan-files", type=int, default=100_000, help="files in the small-file tree (default 100000)")
    p.add_argument("--rescan-image-share", type=float, default=0.05, help="share of tiny images there (default 0.05)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each measurement; medians are reported (default 3)")
    p.add_argument("--jobs", type=int, help="imgindex --jobs (default: its own default, all cores)")
    p.add_argument("--imagededup-workers", type=int, help="imagededup num_enc_workers (default: all cores)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="cached trees and scratch files (default bench/out)")
    p.add_argument("--gen-workers", type=int, default=os.cpu_count() or 1, help="processes generating the trees")
    p.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds between writing a tree and scanning it,\n"
        "and between a cold scan and its rescan (imgindex's racy-clean window is 2 s)",
    )
    p.add_argument("--no-imagededup", action="store_true", help="skip the imagededup runs")
    p.add_argument("--no-images", action="store_true", help="skip the image tree")
    p.add_argument("--no-small", action="store_true", help="skip the small-file tree")
    p.add_argument("--no-warm", action="store_true", help="do not read every file once before timing")
    p.add_argument("--json", type=Path, metavar="OUT", help="write all results as JSON to OUT")
    p.add_argument("--run-imagededup", metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.run_imagededup:
        run_imagededup(args.run_imagededup, args.imagededup_workers)
        return 0

    env = environment()
    peer_ok = not args.no_imagededup
    if peer_ok:
        probe = subprocess.run(
            [sys.executable, "-c", "import importlib.util as u; print(bool(u.find_spec('imagededup')))"],
            capture_output=True,
            text=True,
        )
        if probe.stdout.strip() != "True":
            peers.log("imagededup is not installed: skipping it (see bench/README.md)")
            peer_ok = False
    scratch = args.out / "runs"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": env,
        "arguments": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "run_imagededup"
        },
        "trees": {},
        "cold": {},
        "rescan": {},
        "targets": [],
        "problems": [],
        "runs": [],
    }
    problems: list[str] = results["problems"]
    all_runs: list[Run] = []

    # -- the image tree --------------------------------------------------------------------------
    if not args.no_images:
        tree = args.tree or args.out / f"images-{args.jpegs}j-{args.pngs}p-s{args.seed}"
        if args.tree and tree.exists() and not (tree / "MANIFEST.json").exists() and any(tree.iterdir()):
            manifest: dict[str, Any] = {"foreign": True}
            subsets = {"all": tree}
        else:
            manifest = build_image_tree(tree, args.jpegs, args.pngs, args.seed, args.gen_workers)
            n_jpeg = manifest["jpeg_files"]
            subsets = {"jpeg": tree / "jpeg", "mix": tree / "mix"}
            if not n_jpeg:
                del subsets["jpeg"]
        peers.log(f"image tree: {tree} ({'reused' if manifest.get('reused') else 'new'})")
        files_on_disk: dict[str, int] = {}
        for name, root in subsets.items():
            files_on_disk[name] = warm_and_settle(root, args.settle, read=not args.no_warm)
        results["trees"]["images"] = {
            "path": str(tree),
            **{k: v for k, v in manifest.items() if k != "files"},
            "subsets": {k: {"path": str(v), "files": files_on_disk[k]} for k, v in subsets.items()},
        }
        for name, root in subsets.items():
            n_files = files_on_disk[name]
            expected = {"ok": n_files} if not manifest.get("foreign") else None
            cold: dict[str, list[Run]] = {"imgindex": [], "imagededup": []}
            dbs = []
            finished: list[float] = []
            for i in range(args.repeat):
                db = scratch / f"{name}-{i}.db"
                peers.log(f"cold scan of {name} ({n_files} files), run {i + 1}/{args.repeat}: imgindex")
                run = measure(Run("imgindex", name, "cold", i), imgindex_argv(root, db, args.jobs), scratch / "w")
                run.inner_seconds = run.result.get("seconds")
                finished.append(time.monotonic())
                cold["imgindex"].append(run)
                dbs.append(db)
                if expected:
                    check_imgindex(run, n_files, expected, problems)
                if peer_ok:
                    peers.log(f"cold scan of {name}, run {i + 1}/{args.repeat}: imagededup")
                    run = measure(
                        Run("imagededup", name, "cold", i),
                        imagededup_argv(root, args.imagededup_workers),
                        scratch / "w",
                    )
                    run.inner_seconds = run.result.get("seconds")
                    cold["imagededup"].append(run)
                    if run.returncode != 0 or (expected and run.result.get("hashed") != n_files):
                        problems.append(
                            f"imagededup {name} #{i}: exit {run.returncode}, hashed {run.result.get('hashed')} "
                            f"of {n_files}; stderr: {run.stderr_tail.strip()[-300:]}"
                        )
            rescans = []
            for i, db in enumerate(dbs):
                settle_after(finished[i], args.settle)
                peers.log(f"no-change rescan of {name}, run {i + 1}/{args.repeat}")
                run = measure(Run("imgindex", name, "rescan", i), imgindex_argv(root, db, args.jobs), scratch / "w")
                run.inner_seconds = run.result.get("seconds")
                rescans.append(run)
                if expected:
                    check_imgindex(run, n_files, expected, problems)
            all_runs += cold["imgindex"] + cold["imagededup"] + rescans
            a, b = summarise(cold["imgindex"]), summarise(cold["imagededup"]) if cold["imagededup"] else None
            entry: dict[str, Any] = {"files": n_files, "imgindex": a, "imagededup": b}
            entry["imgindex"]["files_per_second"] = n_files / a["wall_seconds"]
            if b:
                b["files_per_second"] = n_files / b["wall_seconds"]
                entry["ratio"] = entry["imgindex"]["files_per_second"] / b["files_per_second"]
            results["cold"][name] = entry
            rs = summarise(rescans)
            rs["share_of_cold"] = rs["wall_seconds"] / a["wall_seconds"]
            results["rescan"][name] = {"files": n_files, "imgindex": rs, "cold_wall_seconds": a["wall_seconds"]}
            for db in dbs:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)

    # -- the small-file tree ---------------------------------------------------------------------
    if not args.no_small:
        stree = args.rescan_tree or args.out / f"small-{args.rescan_files}-s{args.seed}"
        small = build_small_tree(stree, args.rescan_files, args.seed, args.gen_workers, args.rescan_image_share)
        peers.log(f"small-file tree: {stree} ({'reused' if small.get('reused') else 'new'})")
        root = stree / "files"
        n_files = warm_and_settle(root, args.settle, read=not args.no_warm)
        results["trees"]["small"] = {"path": str(root), **small, "files": n_files}
        expected = {("ok" if k == "image" else k): v for k, v in small["expected"].items()}
        colds, rescans = [], []
        for i in range(args.repeat):
            db = scratch / f"small-{i}.db"
            peers.log(f"cold scan of {n_files:,} small files, run {i + 1}/{args.repeat}")
            run = measure(Run("imgindex", "small", "cold", i), imgindex_argv(root, db, args.jobs), scratch / "w")
            run.inner_seconds = run.result.get("seconds")
            done = time.monotonic()
            colds.append(run)
            check_imgindex(run, n_files, expected, problems)
            settle_after(done, args.settle)
            peers.log(f"no-change rescan of {n_files:,} small files, run {i + 1}/{args.repeat}")
            run = measure(Run("imgindex", "small", "rescan", i), imgindex_argv(root, db, args.jobs), scratch / "w")
            run.inner_seconds = run.result.get("seconds")
            rescans.append(run)
            check_imgindex(run, n_files, expected, problems)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        all_runs += colds + rescans
        c, rs = summarise(colds), summarise(rescans)
        c["files_per_second"] = n_files / c["wall_seconds"]
        rs["share_of_cold"] = rs["wall_seconds"] / c["wall_seconds"]
        results["cold"]["small"] = {"files": n_files, "imgindex": c, "imagededup": None}
        results["rescan"]["small"] = {"files": n_files, "imgindex": rs, "cold_wall_seconds": c["wall_seconds"]}

    # -- targets -----------------------------------------------------------------------------------
    targets = results["targets"]

    def target(name: str, value: float | None, limit: float, higher_is_better: bool, shown: str) -> None:
        ok = None if value is None else (value >= limit if higher_is_better else value <= limit)
        targets.append({"target": name, "value": value, "limit": limit, "pass": ok, "shown": shown})

    if "small" in results["rescan"]:
        rs = results["rescan"]["small"]["imgindex"]
        target(
            f"no-change rescan of {results['rescan']['small']['files']:,} files <= 3 s",
            rs["wall_seconds"],
            TARGET_RESCAN_SECONDS,
            False,
            f"{rs['wall_seconds']:.2f} s",
        )
        target(
            "  ... and <= 2% of its cold scan",
            rs["share_of_cold"],
            TARGET_RESCAN_SHARE,
            False,
            f"{100 * rs['share_of_cold']:.1f}%",
        )
    for name, limit in (("mix", TARGET_RATIO_MIX), ("jpeg", TARGET_RATIO_JPEG)):
        entry = results["cold"].get(name)
        if entry and entry.get("ratio") is not None:
            target(
                f"cold scan {name}: >= {limit:g}x imagededup files/s",
                entry["ratio"],
                limit,
                True,
                f"{entry['ratio']:.2f}x",
            )
    imgindex_runs = [r for r in all_runs if r.peer == "imgindex"]
    if imgindex_runs:
        largest = _max([_largest(r) for r in imgindex_runs])
        tree_pss = _max([r.tree_peak_pss_kb for r in imgindex_runs])
        if largest is not None:
            target(
                "imgindex peak memory <= 1 GB (largest process)",
                largest * 1024,
                TARGET_PEAK_BYTES,
                False,
                f"{largest / 1024:.0f} MB",
            )
        if tree_pss is not None:
            target(
                "imgindex peak memory <= 1 GB (all processes, PSS)",
                tree_pss * 1024,
                TARGET_PEAK_BYTES,
                False,
                f"{tree_pss / 1024:.0f} MB",
            )

    if imgindex_source_digest() != env["imgindex_source_digest"]:
        problems.append("imgindex's source files changed during the run: the runs may have measured different code")
    results["runs"] = [asdict(r) for r in all_runs]
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["load_average_at_end"] = os.getloadavg()
    print(format_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        print(f"\nJSON: {args.json}")
    return 1 if problems else 0


def format_table(results: dict[str, Any]) -> str:
    env = results["environment"]
    v = env["versions"]
    lines = [
        f"imgindex scan benchmark: {env['cpus']} cores, Python {env['python']}, imgindex {env['imgindex_commit']}, "
        f"Pillow {v['pillow']}, imagededup {v['imagededup']}; median of {results['arguments']['repeat']} runs, "
        "wall time of the whole process",
    ]
    images = results["trees"].get("images")
    if images:
        if images.get("foreign"):
            lines.append(f"image tree: {images['path']}")
        else:
            lines.append(
                f"image tree: {images['path']}: {images['jpeg_files']} JPEGs ({images['jpeg_bytes'] / 1e6:.0f} MB), "
                f"{images['png_files']} PNGs ({images['png_bytes'] / 1e6:.0f} MB)"
            )
    if results["cold"]:
        header = f"{'cold scan':<12}{'files':>8}{'imgindex s':>12}{'files/s':>9}{'imagededup s':>14}{'files/s':>9}"
        header += f"{'ratio':>8}{'imgindex MB':>13}{'imagededup MB':>15}{'CPU ms/file':>13}"
        lines += ["", header]
        for name, e in results["cold"].items():
            a, b = e["imgindex"], e.get("imagededup")
            row = f"{name:<12}{e['files']:>8,}{a['wall_seconds']:>12.2f}{a['files_per_second']:>9.1f}"
            row += (
                f"{b['wall_seconds']:>14.2f}{b['files_per_second']:>9.1f}{e['ratio']:>7.2f}x"
                if b
                else f"{'-':>14}{'-':>9}{'-':>8}"
            )
            row += f"{_mb(a['max_rss_kb'], a['tree_peak_pss_kb']):>13}"
            row += f"{_mb(b['max_rss_kb'], b['tree_peak_pss_kb']):>15}" if b else f"{'-':>15}"
            cpu = [x["cpu_seconds"] * 1000 / e["files"] if x and x["cpu_seconds"] else None for x in (a, b)]
            row += f"{'/'.join('-' if c is None else f'{c:.1f}' for c in cpu):>13}"
            lines.append(row)
        lines.append(
            "  MB: peak RSS of the largest process (GNU time, or /proc samples if larger) / peak sum of PSS"
            " over all its processes (/proc samples every 0.2 s)\n"
            "  CPU ms/file: imgindex/imagededup, user+system CPU of all their processes (/proc samples)"
        )
    if results["rescan"]:
        lines += ["", f"{'rescan':<12}{'files':>8}{'cold s':>12}{'rescan s':>10}{'of cold':>9}{'inner s':>9}"]
        for name, e in results["rescan"].items():
            r = e["imgindex"]
            inner = f"{r['inner_seconds']:.2f}" if r["inner_seconds"] is not None else "-"
            lines.append(
                f"{name:<12}{e['files']:>8,}{e['cold_wall_seconds']:>12.2f}{r['wall_seconds']:>10.2f}"
                f"{100 * r['share_of_cold']:>8.1f}%{inner:>9}"
            )
        lines.append("  inner s: the scan's own 'seconds' (no interpreter start-up)")
    if results["targets"]:
        lines += ["", "targets"]
        for t in results["targets"]:
            verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t["pass"]]
            lines.append(f"  {verdict:<5}{t['target']:<58}{t['shown']:>10}")
    if results["problems"]:
        lines += ["", "problems"]
        lines += [f"  - {p}" for p in results["problems"]]
    return "\n".join(lines)


def _mb(largest_kb: int | None, tree_kb: int | None) -> str:
    a = f"{largest_kb / 1024:.0f}" if largest_kb else "?"
    b = f"{tree_kb / 1024:.0f}" if tree_kb else "?"
    return f"{a}/{b}"


if __name__ == "__main__":
    sys.exit(main())
