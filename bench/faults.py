"""Faults on demand: kills, worker kills, a full disk, everything at once, and hostile bytes.

    python bench/faults.py [--kills 20] [--worker-kills 5] [--soak 60] [--fuzz 100000] [--json OUT]

Each part runs real `imgindex` processes on a generated crawl-like tree and
checks what the README promises (see "How it behaves"):

The tree holds files, web archives (WARC, gzip per record and uncompressed)
and a URL side-file, so records, their archives' listings and URLs are
checked as files are.

- ``kills``: `scan -j 2` killed with SIGKILL at a random moment, N times in a
  row; after each, `PRAGMA integrity_check` must say ok and no process of the
  scan's session may be left after 5 s; after the last, a scan to the end
  must give an index equal, row for row (paths, statuses, hashes,
  thumbnails), to one made by a single uninterrupted scan.
- ``worker-kills``: a scan during which a worker process is killed N times;
  says whether the index equals the clean one (a file whose worker is killed
  four times while it is read alone is blamed, as the out-of-memory killer's
  victim would be), and whether it does after the next scan, which reads
  blamed files again.
- ``full-disk``: scans under a file-size limit that the index outgrows; each
  must end in one error (exit 1, no traceback) with the index intact, and a
  scan with room must then finish equal to the clean index.
- ``broken-dbs``: 17 kinds of broken ``--db`` (a directory, random bytes, another
  database, a file cut in half, overwritten pages, dropped tables, a newer
  schema, a garbage WAL, ...) under six commands: none may end in a traceback
  (a command may still succeed where the damage does not touch what it reads).
- ``soak``: `watch` running while a loop adds and deletes files and runs a
  `scan` and a `report` after each change, all on one index for N seconds; no command may fail with
  "database is locked" or a traceback, and a final scan must give an index
  equal to a clean scan of the final tree.
- ``fuzz``: N mutated JPEG/PNG/GIF/WebP/TIFF/BMP files (bit flips, cuts,
  repeated and dropped spans) read through the scan's own reader in worker
  processes with a 10 s per-file limit: every input must end in a status;
  counts by status, worker deaths and time are reported.

Figures go to stdout (a table) and, with ``--json``, to a file.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

IMGINDEX = [sys.executable, "-m", "imgindex"]


def picture(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [
            (np.sin(xx / rng.uniform(3, 15)) + 1) * 127,
            (np.cos(yy / rng.uniform(3, 15)) + 1) * 127,
            (xx + yy) * 255.0 / (w + h),
        ],
        axis=-1,
    )
    image = Image.fromarray(base.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        draw.rectangle([x, y, x + 20, y + 15], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def make_tree(root: Path, images: int = 600, others: int = 400, seed: int = 1) -> None:
    rng = random.Random(seed)
    for n in range(images):
        fmt = ("JPEG", "PNG", "WEBP")[n % 3]
        data = encode(picture(n % 150, (rng.randint(200, 640), rng.randint(150, 480))), fmt)
        path = root / f"{n % 40:02x}" / f"{n:04x}" / ("img" if n % 5 else f"p{n}.php")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for n in range(others):
        path = root / f"{n % 40:02x}" / f"page{n}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"<html>" + os.urandom(rng.randint(100, 3000)) + b"</html>")
    # A crawler's own output beside the files: WARCs of image and page records (gzip per record
    # and uncompressed), and a URL side-file naming some of the files, as Nutch's dump writes it.
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    for k, compressed in enumerate((True, False)):
        with open(root / f"crawl-{k}.warc{'.gz' if compressed else ''}", "wb") as out:
            writer = WARCWriter(out, gzip=compressed)
            for n in range(120):
                data = encode(picture((n * 7 + k) % 200, (rng.randint(200, 480), rng.randint(150, 360))), "JPEG")
                page = b"<html>" + os.urandom(rng.randint(100, 2000)) + b"</html>"
                for url, body, kind in ((f"http://e{k}.example/{n}.jpg", data, "image/jpeg"),
                                        (f"http://e{k}.example/{n}.html", page, "text/html")):  # fmt: skip
                    http = StatusAndHeaders("200 OK", [("Content-Type", kind)], protocol="HTTP/1.1")
                    record = writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http)
                    writer.write_record(record)
    named = sorted(p for p in root.rglob("img"))[:200]
    side = {str(p): f"http://dump.example/{i}.jpg" for i, p in enumerate(named)}
    (root / "20261130000000_filenameToUrl.json").write_text(json.dumps(side))


def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    kw.setdefault("timeout", 900)  # a hang fails the bench instead of blocking it
    return subprocess.run([*IMGINDEX, *args], capture_output=True, text=True, **kw)


def snapshot(db: Path) -> list[tuple[Any, ...]]:
    """The index's content, row for row, without times and ids: the files (web archives' records
    and URLs included), then the stored verified matches, the pictures they are complete for,
    what is still pending, and where the archives' listings stopped."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT p.path, p.status, p.sha256, p.phash, p.trim_hash, p.width, p.height, d.picture, d.trimmed, p.url"
            " FROM file_paths p LEFT JOIN descriptors d ON d.file_id = p.id ORDER BY p.path"
        ).fetchall()
        rows.append(
            tuple(conn.execute("SELECT d.path, a.read_to FROM archives a JOIN dirs d ON d.id = a.dir_id ORDER BY 1"))
        )
        rows.append(tuple(conn.execute("SELECT kind, a, b, whole, inside FROM near_matches ORDER BY 1, 2, 3")))
        rows.append(tuple(conn.execute("SELECT kind, picture FROM near_pictures ORDER BY 1, 2")))
        rows.append(tuple(conn.execute("SELECT count(*) FROM near_pending")))
    return rows


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def session_processes(sid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            count += int(fields[3]) == sid and fields[0] != b"Z"
    return count


def kills(tree: Path, work: Path, clean: list[Any], n: int) -> dict[str, Any]:
    db = work / "kills.db"
    bad, leftovers, delays, mid_scan = 0, 0, [], 0
    for _ in range(n):
        delay = random.uniform(0.3, 6.0)
        proc = subprocess.Popen(  # --rehash: every scan reads everything, so a kill lands mid-scan
            [*IMGINDEX, "scan", str(tree), "--db", str(db), "-j", "2", "-q", "--rehash"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(delay)
        if proc.poll() is None:  # (poll reaps a scan that already ended: nothing to kill then)
            mid_scan += 1
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        delays.append(delay)
        time.sleep(5)
        left = session_processes(proc.pid)
        leftovers += left
        if left:
            os.killpg(proc.pid, signal.SIGKILL)
        bad += integrity(db) != "ok"
    final = run("scan", str(tree), "--db", str(db), "-q")
    return {
        "kills": n,
        "killed_mid_scan": mid_scan,
        "integrity_failures": bad,
        "leftover_processes": leftovers,
        "final_exit": final.returncode,
        "equal_to_clean": snapshot(db) == clean,
        "median_delay_s": round(float(np.median(delays)), 2),
    }


def worker_kills(tree: Path, work: Path, clean: list[Any], n: int) -> dict[str, Any]:
    db = work / "wkills.db"
    proc = subprocess.Popen(
        [*IMGINDEX, "scan", str(tree), "--db", str(db), "-j", "2", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    killed = 0
    while proc.poll() is None and killed < n:
        workers = [p for server in _children(proc.pid) for p in _children(server)]
        if workers:
            os.kill(random.choice(workers), signal.SIGKILL)
            killed += 1
            time.sleep(0.4)
        time.sleep(0.05)
    out, _ = proc.communicate()
    summary = json.loads(out) if out.strip() else {}
    equal = snapshot(db) == clean
    run("scan", str(tree), "--db", str(db), "-q")  # reads again any file blamed for a crash
    return {
        "equal_after_next_scan": snapshot(db) == clean,
        "worker_kills": killed,
        "worker_deaths_seen": summary.get("worker_deaths"),
        "by_status": summary.get("by_status"),
        "equal_to_clean": equal,
    }


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _limit(size: int) -> Any:
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


def full_disk(tree: Path, work: Path, clean: list[Any], tries: int = 5) -> dict[str, Any]:
    db = work / "full.db"
    clear, intact = 0, 0
    for k in range(tries):
        limit = 200_000 + 400_000 * k
        done = subprocess.run(
            [*IMGINDEX, "scan", str(tree), "--db", str(db), "-j", "2", "--rehash"],
            capture_output=True,
            text=True,
            preexec_fn=_limit(limit),
        )
        clear += done.returncode == 1 and "Traceback" not in done.stderr and "Error:" in done.stderr
        intact += integrity(db) == "ok"
    final = run("scan", str(tree), "--db", str(db), "-q")
    return {
        "tries": tries,
        "clear_errors": clear,
        "intact": intact,
        "final_exit": final.returncode,
        "equal_to_clean": snapshot(db) == clean,
    }


def soak(tree: Path, work: Path, seconds: float) -> dict[str, Any]:
    db = work / "soak.db"
    run("scan", str(tree), "--db", str(db), "-q")
    watch = subprocess.Popen(
        [*IMGINDEX, "watch", str(tree), "--db", str(db), "--json-log", "--settle", "0.5"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    failures: Counter[str] = Counter()
    runs = 0
    rng = random.Random(7)
    end = time.monotonic() + seconds
    added: list[Path] = []
    while time.monotonic() < end:
        path = tree / "soak" / f"{rng.randrange(10**6)}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(encode(picture(rng.randrange(50), (120, 90)), "PNG"))
        added.append(path)
        if len(added) > 30:
            added.pop(rng.randrange(len(added))).unlink()
        for args in (["report", "--near", "-q", "-o", os.devnull], ["scan", str(tree), "-q", "-j", "1"]):
            done = run(*args, "--db", str(db))
            runs += 1
            if done.returncode not in (0, 3):
                failures["locked" if "locked" in done.stderr else "other"] += 1
            if "Traceback" in done.stderr:
                failures["traceback"] += 1
    watch.send_signal(signal.SIGTERM)
    _, watch_err = watch.communicate(timeout=60)
    failures["watch_traceback"] += "Traceback" in watch_err
    run("scan", str(tree), "--db", str(db), "-q")
    fresh = work / "soak-clean.db"
    run("scan", str(tree), "--db", str(fresh), "-q")
    return {
        "seconds": seconds,
        "commands": runs,
        "failures": dict(+failures),
        "watch_exit": watch.returncode,
        "integrity": integrity(db),
        "equal_to_clean": snapshot(db) == snapshot(fresh),
    }


def broken_dbs(tree: Path, work: Path) -> dict[str, Any]:
    """Every command against broken --db files: a message and a non-zero exit, never a traceback."""
    good = work / "clean.db"
    kinds: dict[str, Any] = {
        "a directory": lambda p: p.mkdir(),
        "an empty file": lambda p: p.write_bytes(b""),
        "a text file": lambda p: p.write_text("hello\n" * 100),
        "random bytes": lambda p: p.write_bytes(os.urandom(50_000)),
        "another SQLite database": lambda p: sqlite3.connect(p).execute("CREATE TABLE t (x)").connection.commit(),
        "cut in half": lambda p: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]),
        "header overwritten": lambda p: p.write_bytes(os.urandom(100) + good.read_bytes()[100:]),
        "pages overwritten": lambda p: p.write_bytes(_overwrite(good.read_bytes(), 0.3, 0.6)),
        "a table dropped": lambda p: _altered(good, p, "DROP TABLE files"),
        "a view dropped": lambda p: _altered(good, p, "DROP VIEW file_paths"),
        "an index dropped": lambda p: _altered(good, p, "DROP INDEX files_sha256"),
        "a newer schema": lambda p: _altered(good, p, "PRAGMA user_version = 99"),
        "another application id": lambda p: _altered(good, p, "PRAGMA application_id = 1"),
        "a column dropped": lambda p: _altered(
            good, p, "DROP INDEX files_trim_hash; ALTER TABLE files DROP COLUMN trim_hash"
        ),
        "garbage WAL beside it": lambda p: (
            p.write_bytes(good.read_bytes()),
            Path(f"{p}-wal").write_bytes(os.urandom(9000)),
        ),
        "a symlink to nowhere": lambda p: p.symlink_to(work / "nowhere.db"),
        "read-only file": lambda p: (p.write_bytes(good.read_bytes()), p.chmod(0o444)),
    }
    image = next(p for p in tree.rglob("img"))
    commands = [["stats"], ["errors"], ["report", "--near", "-o", os.devnull], ["check"], ["query", str(image)],
                ["scan", str(tree), "-j", "1"]]  # fmt: skip
    tracebacks: list[str] = []
    runs = 0
    for n, (kind, make) in enumerate(kinds.items()):
        for args in commands:
            db = work / f"broken-{n}-{args[0]}.db"
            make(db)
            done = run(*args, "--db", str(db), *(["-q"] if args[0] in ("report", "scan") else []))
            runs += 1
            if "Traceback" in done.stderr:
                tracebacks.append(f"{kind}: {args[0]}: {done.stderr.strip().splitlines()[-1]}")
    return {"kinds": len(kinds), "commands": runs, "tracebacks": tracebacks}


def _overwrite(data: bytes, *at: float) -> bytes:
    out = bytearray(data)
    for where in at:
        start = int(len(out) * where)
        out[start : start + 4096] = os.urandom(len(out[start : start + 4096]))
    return bytes(out)


def _altered(good: Path, target: Path, statement: str) -> None:
    target.write_bytes(good.read_bytes())
    with sqlite3.connect(target) as conn:
        conn.executescript(statement)


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(4)
        if kind == 0 and out:  # flip bits
            for _ in range(rng.randint(1, 16)):
                out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif kind == 1 and len(out) > 2:  # cut
            out = out[: rng.randrange(1, len(out))]
        elif kind == 2 and len(out) > 8:  # repeat a span
            a = rng.randrange(len(out) - 4)
            b = min(len(out), a + rng.randint(1, 256))
            out[a:a] = out[a:b] * rng.randint(1, 8)
        elif len(out) > 8:  # drop a span
            a = rng.randrange(len(out) - 4)
            del out[a : a + rng.randint(1, 64)]
    return bytes(out)


def fuzz(work: Path, n: int) -> dict[str, Any]:
    """Mutated images through the scan itself (its reader, workers and time limit)."""
    rng = random.Random(11)
    seeds = []
    for k, (fmt, params) in enumerate(
        [
            ("JPEG", {}),
            ("JPEG", {"progressive": True}),
            ("PNG", {}),
            ("GIF", {}),
            ("WEBP", {}),
            ("TIFF", {}),
            ("BMP", {}),
            ("PNG", {"optimize": True}),
        ]
    ):
        seeds.append(encode(picture(k, (96, 72)), fmt, **params))
    tree = work / "fuzz"
    statuses: Counter[str] = Counter()
    deaths = 0
    start = time.perf_counter()
    batch = 20_000
    for first in range(0, n, batch):
        for k in range(first, min(n, first + batch)):
            path = tree / f"{k % 200:03d}" / f"{k}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(mutate(seeds[k % len(seeds)], rng))
        db = work / "fuzz.db"
        for stale in work.glob("fuzz.db*"):
            stale.unlink()
        done = run("scan", str(tree), "--db", str(db), "-j", "2", "--json", "--time-limit", "10")
        summary = json.loads(done.stdout)
        statuses.update(summary["by_status"])
        deaths += summary["worker_deaths"]
        for path in tree.rglob("*"):
            if path.is_file():
                path.unlink()
    return {
        "inputs": n,
        "by_status": dict(statuses),
        "every_input_has_a_status": sum(statuses.values()) == n,
        "worker_deaths": deaths,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--worker-kills", type=int, default=5)
    parser.add_argument("--soak", type=float, default=60.0, help="seconds")
    parser.add_argument("--fuzz", type=int, default=100_000)
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args()
    random.seed(3)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="imgindex-faults-") as tmp:
        work = Path(tmp)
        tree = work / "dump"
        make_tree(tree)
        run("scan", str(tree), "--db", str(work / "clean.db"), "-q")
        clean = snapshot(work / "clean.db")
        peers.log(f"tree: {len(clean)} files")
        for name, part in (
            ("kills", lambda: kills(tree, work, clean, args.kills)),
            ("worker_kills", lambda: worker_kills(tree, work, clean, args.worker_kills)),
            ("full_disk", lambda: full_disk(tree, work, clean)),
            ("broken_dbs", lambda: broken_dbs(tree, work)),
            ("soak", lambda: soak(tree, work, args.soak)),
            ("fuzz", lambda: fuzz(work, args.fuzz)),
        ):
            peers.log(f"{name} ...")
            results[name] = part()
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
