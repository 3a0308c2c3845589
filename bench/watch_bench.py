"""Benchmark imgindex's watch mode: files lost, latency from close to commit, idle CPU.

One run does it all (see bench/README.md):

1. starts ``imgindex watch TREE --db DB --json-log`` as a subprocess on an
   empty temporary tree with a fresh index and waits for its ``scan`` event;
2. starts a writer process (this same script, ``--run-writer SPEC``) that
   drops ``--files`` files into the tree in hashed folders (``ab/cd/name``,
   some names without extension): small PNGs and JPEGs (64 to 256 px) and a
   share of photo-sized JPEGs (about 2 megapixels), all encoded in memory
   before the clock starts and made distinct by a comment (JPEG) or text
   chunk (PNG) carrying the file's number. Each file is written in a few
   chunks (open, write, write, ..., close) and the writer records
   ``time.time()`` right after ``close()``. Two phases: a steady one at
   ``--rate`` files/s, then a burst of ``--burst`` files as fast as it can;
3. meanwhile polls the index read-only every ``--poll`` seconds for rows it
   has not seen yet (``files.id`` above the last one seen, joined with
   ``dirs``) and records when each path first appears. A row seen at a poll
   was committed before that poll began and after the previous one did, so
   each latency (first seen minus close) is late by at most one poll
   interval plus a query. Once the writer is done it waits, up to
   ``--deadline`` seconds, for every file to have a row, then compares the
   tree on disk with the index: a file without a row is lost; a row whose
   size or status is not the file's final one is wrong;
4. waits ``--idle-wait`` seconds, then measures the CPU time (utime + stime,
   and cutime + cstime for children that exit, from /proc/PID/stat) of the
   watcher and every process below it (forkserver, workers, resource
   tracker) over ``--idle-seconds``, as a percentage of one core;
5. stops the watcher with SIGTERM and checks that it exits 0, prints its
   ``stopped`` event and leaves no process behind;
6. prints a table with PASS/FAIL against the targets; ``--json OUT`` writes
   everything (``--per-file`` adds every file's close and first-seen times).

The exit status is 1 when something went wrong beyond the targets (listed
under "problems": lost or wrong rows, a warning or an error from the watcher,
an exit status other than 0), 0 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import math
import os
import platform
import queue
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import peers  # bench/peers.py: this script runs as bench/watch_bench.py

# The targets.
TARGET_LOST = 0
TARGET_STEADY_P95_OVER_SETTLE = 1.0  # steady-phase p95 latency <= settle + this many seconds
TARGET_IDLE_CPU_PERCENT = 1.0  # of one core

CLK_TCK = os.sysconf("SC_CLK_TCK")
LINGER_SECONDS = 10.0  # how long the watcher's children may outlive it after SIGTERM


def _log(message: str) -> None:
    print(f"[watch_bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The writer (a child process: --run-writer SPEC)
# ---------------------------------------------------------------------------


def _jpeg_with_comment(data: bytes, text: bytes) -> bytes:
    """The same JPEG with a COM segment right after SOI: a valid, distinct file."""
    assert data[:2] == b"\xff\xd8"
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + data[2:]


def _png_with_text(data: bytes, text: bytes) -> bytes:
    """The same PNG with a tEXt chunk before IEND: a valid, distinct file."""
    assert data[-12:-8] == b"\x00\x00\x00\x00" and data[-8:-4] == b"IEND"
    body = b"Comment\x00" + text
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return data[:-12] + chunk + data[-12:]


def _pictures(seed: int, small: int, photos: int) -> tuple[list[tuple[str, bytes]], list[bytes]]:
    """``small`` small images (PNG or JPEG, 64-256 px) and ``photos`` ~2 MP JPEGs, encoded."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)

    def picture(w: int, h: int, noise: float) -> Any:
        coarse = rng.integers(0, 256, (max(2, h // 64), max(2, w // 64), 3), dtype=np.uint8)
        img = Image.fromarray(coarse, "RGB").resize((w, h), Image.BICUBIC)
        arr = np.asarray(img, dtype=np.float32)
        arr += rng.normal(0.0, noise, arr.shape).astype(np.float32)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")

    smalls: list[tuple[str, bytes]] = []
    for i in range(small):
        w, h = (int(x) for x in rng.integers(64, 257, 2))
        buf = io.BytesIO()
        if i % 5 < 3:
            picture(w, h, 4.0).save(buf, "JPEG", quality=85)
            smalls.append(("jpeg", buf.getvalue()))
        else:
            img = picture(w, h, 0.0)
            if i % 2:
                img = img.quantize(64)  # flat graphics, palette PNG
            img.save(buf, "PNG")
            smalls.append(("png", buf.getvalue()))
    big: list[bytes] = []
    for _ in range(photos):
        buf = io.BytesIO()
        picture(1728, 1152, 5.0).save(buf, "JPEG", quality=85)  # 1.99 MP
        big.append(buf.getvalue())
    return smalls, big


def file_plan(n: int, burst: int, photo_share: float, seed: int) -> list[dict[str, Any]]:
    """What the writer writes, in order: relative path, phase, kind ("small" or "photo")."""
    rng = random.Random(seed)
    photos = set(rng.sample(range(n), min(n, round(n * photo_share))))
    steady = n - min(burst, n)
    plan = []
    folders: set[str] = set()
    tops: set[str] = set()
    for i in range(n):
        name = hashlib.sha1(f"{seed}-{i}".encode()).hexdigest()[:20]
        ext = rng.choice(["", "", ".jpg", ".png", ".img"])  # many crawl-dump names have none
        folder = f"{name[:2]}/{name[2:4]}"
        plan.append(
            {
                "path": f"{folder}/{name}{ext}",
                "phase": "steady" if i < steady else "burst",
                "kind": "photo" if i in photos else "small",
                "new_folder": folder not in folders,  # the writer creates its folder (ab/cd) first
                "new_top_folder": name[:2] not in tops,  # ... and ab too
            }
        )
        folders.add(folder)
        tops.add(name[:2])
    return plan


def run_writer(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    tree = Path(spec["tree"])
    plan = file_plan(spec["files"], spec["burst"], spec["photo_share"], spec["seed"])
    started = time.perf_counter()
    smalls, photos = _pictures(spec["seed"], 96, max(1, min(4, sum(p["kind"] == "photo" for p in plan))))
    contents: list[bytes] = []
    for i, item in enumerate(plan):
        tag = f"watch_bench file {i}".encode()
        if item["kind"] == "photo":
            contents.append(_jpeg_with_comment(photos[i % len(photos)], tag))
        else:
            kind, data = smalls[i % len(smalls)]
            contents.append(_jpeg_with_comment(data, tag) if kind == "jpeg" else _png_with_text(data, tag))
    generation = time.perf_counter() - started
    _log(f"writer: {len(plan):,} files encoded in {generation:.1f} s ({sum(map(len, contents)) / 1e6:.0f} MB)")

    chunks = max(1, spec["chunks"])
    rate = spec["rate"]
    closes: list[float] = []
    phases: dict[str, dict[str, float]] = {}
    t0 = time.time()
    steady_count = sum(p["phase"] == "steady" for p in plan)
    last_progress = time.monotonic()
    for i, (item, data) in enumerate(zip(plan, contents, strict=True)):
        if item["phase"] == "steady":
            due = t0 + i / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
        path = tree / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        cuts = [len(data) * k // chunks for k in range(chunks + 1)]
        opened = time.time()
        with open(path, "wb") as f:
            for a, b in itertools.pairwise(cuts):
                f.write(data[a:b])
                f.flush()  # each chunk reaches the file as its own write
        closed = time.time()
        closes.append(closed)
        phase = phases.setdefault(item["phase"], {"first_open": opened, "count": 0})
        phase["last_close"] = closed
        phase["count"] += 1
        if time.monotonic() - last_progress >= 10:
            last_progress = time.monotonic()
            _log(f"writer: {i + 1:,}/{len(plan):,} files written ({item['phase']})")
        if i + 1 == steady_count:
            _log(f"writer: steady phase done, {steady_count:,} files; burst of {len(plan) - steady_count:,} files")
    result = {
        "generation_seconds": generation,
        "phases": phases,
        "files": [
            {**item, "size": len(data), "close": close}
            for item, data, close in zip(plan, contents, closes, strict=True)
        ],
    }
    Path(spec["out"]).write_text(json.dumps(result))


# ---------------------------------------------------------------------------
# The watcher and its process tree
# ---------------------------------------------------------------------------


class WatcherOutput:
    """Reads the watcher's JSON log in a thread; keeps every event with the time it arrived."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.bad_lines: list[str] = []
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            received = time.time()
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                self.bad_lines.append(line.rstrip("\n"))
                continue
            if not isinstance(event, dict):
                self.bad_lines.append(line.rstrip("\n"))
                continue
            event["_received"] = received
            self.events.append(event)
            self.queue.put(event)
        self.queue.put(None)

    def wait_for(self, kind: str, timeout: float) -> dict[str, Any] | None:
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                event = self.queue.get(timeout=left)
            except queue.Empty:
                return None
            if event is None:
                return None
            if event.get("event") == kind:
                return event
        return None


def _read_stat(pid: str) -> tuple[int, int, int, int] | None:
    """(ppid, starttime, own ticks, reaped children's ticks) from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    rest = raw[raw.rindex(b")") + 2 :].split()
    # After "pid (comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority nice threads itrealvalue starttime ...
    return int(rest[1]), int(rest[19]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def process_tree(root: int) -> dict[tuple[int, int], dict[str, Any]]:
    """The process ``root`` and its descendants, keyed by (pid, starttime), with their CPU ticks and a role."""
    stats: dict[int, tuple[int, int, int, int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _read_stat(entry.name)
            if st is not None:
                stats[int(entry.name)] = st
    children: dict[int, list[int]] = {}
    for pid, st in stats.items():
        children.setdefault(st[0], []).append(pid)
    tree: dict[tuple[int, int], dict[str, Any]] = {}
    if root not in stats:
        return tree
    todo: list[tuple[int, str]] = [(root, "watcher")]
    while todo:
        pid, role = todo.pop()
        ppid, start, own, reaped = stats[pid]
        tree[(pid, start)] = {"pid": pid, "ppid": ppid, "role": role, "own": own, "reaped": reaped}
        for child in children.get(pid, []):
            cmd = _cmdline(child)
            if "forkserver" in cmd and role == "watcher":
                child_role = "forkserver"
            elif "resource_tracker" in cmd:
                child_role = "resource tracker"
            elif role == "forkserver":
                child_role = "worker"
            else:
                child_role = f"child of {role}"
            todo.append((child, child_role))
    return tree


def tree_ticks(tree: dict[tuple[int, int], dict[str, Any]]) -> int:
    """CPU ticks of the tree: each process's own plus those of its children it reaped.

    A child that exits between two samples moves its ticks into its parent's
    reaped count, so the sum stays continuous across the exit."""
    return sum(p["own"] + p["reaped"] for p in tree.values())


def cpu_between(
    before: dict[tuple[int, int], dict[str, Any]], after: dict[tuple[int, int], dict[str, Any]]
) -> dict[str, Any]:
    by_role: dict[str, float] = {}
    for key, p in after.items():
        base = before.get(key)
        ticks = p["own"] + p["reaped"] - (base["own"] + base["reaped"] if base else 0)
        by_role[p["role"]] = by_role.get(p["role"], 0.0) + ticks / CLK_TCK
    gone = [p["role"] for key, p in before.items() if key not in after]
    return {
        # A process that exited was reaped by its parent in the tree: its ticks are in the parent's now.
        "seconds": (tree_ticks(after) - tree_ticks(before)) / CLK_TCK if after else None,
        "by_role": {k: round(v, 3) for k, v in sorted(by_role.items())},
        "processes_before": len(before),
        "processes_after": len(after),
        "gone": gone,
        "new": [p["role"] for key, p in after.items() if key not in before],
    }


# ---------------------------------------------------------------------------
# Polling the index
# ---------------------------------------------------------------------------


class IndexPoller:
    """Polls the index read-only for rows it has not seen; records when each path first appears."""

    def __init__(self, db: Path, root: bytes, interval: float) -> None:
        self.db = db
        self.root = root
        self.interval = interval
        self.seen: dict[str, dict[str, Any]] = {}  # relative path -> first row seen
        self.last_id = 0
        self.polls = 0
        self.errors: list[str] = []
        self.max_query = 0.0
        self.started = 0.0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.started = time.time()
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30, isolation_level=None)

    def _run(self) -> None:
        conn = self._connect()
        try:
            while not self._stop.is_set():
                before = time.time()  # a row seen now was committed before this
                try:
                    rows = conn.execute(
                        "SELECT files.id, dirs.path, files.name, files.size, files.status FROM files"
                        " JOIN dirs ON dirs.id = files.dir_id WHERE files.id > ? ORDER BY files.id",
                        (self.last_id,),
                    ).fetchall()
                except sqlite3.Error as e:
                    self.errors.append(f"{time.time():.3f}: {e}")
                    rows = []
                took = time.time() - before
                self.max_query = max(self.max_query, took)
                self.polls += 1
                for fid, dpath, name, size, status in rows:
                    self.last_id = max(self.last_id, fid)
                    rel = relative(bytes(dpath) + b"/" + bytes(name), self.root)
                    if rel is not None and rel not in self.seen:
                        self.seen[rel] = {"seen": before, "size": size, "status": status}
                self._stop.wait(max(0.0, self.interval - took))
        finally:
            conn.close()

    def all_rows(self) -> dict[str, tuple[int, str]]:
        conn = self._connect()
        try:
            rows = conn.execute("SELECT path, size, status FROM file_paths").fetchall()
        finally:
            conn.close()
        out = {}
        for path, size, status in rows:
            rel = relative(bytes(path), self.root)
            if rel is not None:
                out[rel] = (size, status)
        return out


def relative(path: bytes, root: bytes) -> str | None:
    prefix = root.rstrip(b"/") + b"/"
    return os.fsdecode(path[len(prefix) :]) if path.startswith(prefix) else None


def files_on_disk(tree: Path) -> dict[str, int]:
    out = {}
    for dirpath, _dirs, names in os.walk(tree):
        for name in names:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, tree)] = os.lstat(full).st_size
    return out


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_stats(values: list[float], settle: float) -> dict[str, Any]:
    return {
        "count": len(values),
        "share_at_least_settle": sum(v >= settle for v in values) / len(values) if values else None,
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
        "mean": sum(values) / len(values) if values else None,
    }


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Share of all CPUs busy over ``seconds`` (from /proc/stat), before the run starts."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def batch_summary(events: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """The watcher's batch events between ``start`` and ``end`` (unix times)."""
    batches = [e for e in events if e.get("event") == "batch" and start <= e.get("time", 0) <= end]
    times = [e["time"] for e in batches]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    sizes = [e.get("indexed", 0) for e in batches]
    return {
        "batches": len(batches),
        "indexed": sum(sizes),
        "largest": max(sizes) if sizes else 0,
        "longest_gap": max(gaps) if gaps else None,
        "longest_gap_at": times[gaps.index(max(gaps))] if gaps else None,
    }


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    problems: list[str] = []
    base = tempfile.mkdtemp(prefix="watch-bench-", dir=args.tmp)
    work = Path(base).resolve()
    tree = work / "tree"
    tree.mkdir()
    db = work / "index.db"
    stderr_path = work / "watch.stderr"
    result: dict[str, Any] = {
        "config": {k: v for k, v in vars(args).items() if k not in ("run_writer",)},
        "machine": {
            "cpus": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_start": loadavg(),
        },
        "workdir": str(work),
    }
    if args.burst > args.files:
        args.burst = args.files
    argv = [
        *peers.imgindex_command(),
        "watch",
        str(tree),
        "--db",
        str(db),
        "--json-log",
        "--settle",
        f"{args.settle:g}",
    ]
    if args.jobs:
        argv += ["-j", str(args.jobs)]
    if args.reconcile is not None:
        argv += ["--reconcile", f"{args.reconcile:g}"]
    result["watch_argv"] = argv
    _log(f"work directory {work}; load average {' '.join(map(str, result['machine']['loadavg_start']))}")
    _log("starting: " + " ".join(argv))
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True)
    out = WatcherOutput(proc)
    writer = None
    poller = None
    try:
        started = time.time()
        scan_event = out.wait_for("scan", timeout=60)
        if scan_event is None:
            raise RuntimeError(f"no scan event from the watcher within 60 s; stderr: {stderr_path.read_text()[-2000:]}")
        result["startup_seconds"] = scan_event["_received"] - started
        _log(f"watcher ready after {result['startup_seconds']:.2f} s (pid {proc.pid})")
        root = os.fsencode(os.path.abspath(tree))
        poller = IndexPoller(db, root, args.poll)
        poller.start()

        spec = work / "writer.json"
        writer_out = work / "written.json"
        spec.write_text(
            json.dumps(
                {
                    "tree": str(tree),
                    "files": args.files,
                    "burst": args.burst,
                    "rate": args.rate,
                    "photo_share": args.photo_share,
                    "seed": args.seed,
                    "chunks": args.chunks,
                    "out": str(writer_out),
                }
            )
        )
        steady = args.files - args.burst
        _log(
            f"writer: {steady:,} files at {args.rate:g}/s (~{steady / args.rate:.0f} s), then a burst of"
            f" {args.burst:,}; {args.photo_share:.0%} photos"
        )
        cpu_before_writing = process_tree(proc.pid)
        writer = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--run-writer", str(spec)])
        writer_rc = writer.wait()
        if writer_rc != 0:
            raise RuntimeError(f"the writer failed (exit status {writer_rc})")
        written = json.loads(writer_out.read_text())
        files = written["files"]
        result["writer"] = {
            "generation_seconds": round(written["generation_seconds"], 2),
            "phases": {
                name: {
                    **ph,
                    "seconds": ph["last_close"] - ph["first_open"],
                    "files_per_second": ph["count"] / max(1e-9, ph["last_close"] - ph["first_open"]),
                }
                for name, ph in written["phases"].items()
            },
            "bytes": sum(f["size"] for f in files),
            "photos": sum(f["kind"] == "photo" for f in files),
        }
        writing_done = time.time()
        _log(f"writer done; waiting up to {args.deadline:g} s for every file to be indexed")

        # Every file indexed, or the deadline.
        wanted = {f["path"] for f in files}
        end = time.monotonic() + args.deadline
        while time.monotonic() < end and not wanted.issubset(poller.seen):
            time.sleep(0.1)
        all_seen = time.time()
        poller.stop()
        cpu_after_writing = process_tree(proc.pid)
        missing_at_deadline = sorted(wanted - set(poller.seen))
        if missing_at_deadline:
            _log(f"{len(missing_at_deadline):,} files still without a row after {args.deadline:g} s")

        # What is on disk against what is in the index.
        disk = files_on_disk(tree)
        rows = poller.all_rows()
        lost = sorted(p for p in disk if p not in rows)
        wrong = sorted(p for p in disk if p in rows and (rows[p][0] != disk[p] or rows[p][1] != "ok"))
        extra = sorted(p for p in rows if p not in disk)
        early = sorted(
            p
            for p in disk
            if p in poller.seen and (poller.seen[p]["size"] != disk[p] or poller.seen[p]["status"] != "ok")
        )
        statuses: dict[str, int] = {}
        for _size, status in rows.values():
            statuses[status] = statuses.get(status, 0) + 1
        result["index"] = {
            "files_on_disk": len(disk),
            "rows": len(rows),
            "by_status": statuses,
            "lost": len(lost),
            "lost_paths": lost[:50],
            "wrong_rows": len(wrong),
            "wrong_paths": [{"path": p, "disk_size": disk[p], "row": rows[p]} for p in wrong[:50]],
            "rows_without_file": len(extra),
            "first_row_not_final": len(early),
            "first_row_not_final_paths": [
                {"path": p, "disk_size": disk[p], "first_row": poller.seen[p]} for p in early[:50]
            ],
            "polls": poller.polls,
            "poll_interval": args.poll,
            "max_query_seconds": round(poller.max_query, 4),
            "poll_errors": poller.errors[:20],
        }
        if len(disk) != len(files):
            problems.append(f"{len(disk):,} files on disk, the writer wrote {len(files):,}")
        if lost:
            problems.append(f"{len(lost):,} files lost (no row after {args.deadline:g} s): {', '.join(lost[:5])}")
        if wrong:
            problems.append(f"{len(wrong):,} rows with a size or status other than the file's final one")
        if extra:
            problems.append(f"{len(extra):,} rows for files that are not on disk")
        if early:
            problems.append(f"{len(early):,} files first indexed before they were complete (size or status)")
        if poller.errors:
            problems.append(f"{len(poller.errors)} errors polling the index, first: {poller.errors[0]}")

        # Latency, by phase and for photos.
        latency: dict[str, list[float]] = {
            "steady": [],
            "burst": [],
            "photos": [],
            "in new folders (ab/cd)": [],
            "in new folders (cd)": [],
            "in existing folders": [],
            "all": [],
        }
        per_file = []
        for f in files:
            seen = poller.seen.get(f["path"])
            lat = None if seen is None else seen["seen"] - f["close"]
            per_file.append({**f, "seen": None if seen is None else seen["seen"], "latency": lat})
            if lat is None or f["path"] in early:
                continue
            latency[f["phase"]].append(lat)
            latency["all"].append(lat)
            if f["kind"] == "photo":
                latency["photos"].append(lat)
            if not f["new_folder"]:
                latency["in existing folders"].append(lat)
            else:
                latency["in new folders (ab/cd)" if f["new_top_folder"] else "in new folders (cd)"].append(lat)
        result["latency"] = {k: latency_stats(v, args.settle) for k, v in latency.items()}
        burst_files = [p for p in per_file if p["phase"] == "burst" and p["seen"] is not None]
        if burst_files and "burst" in written["phases"]:
            first_open = written["phases"]["burst"]["first_open"]
            last_seen = max(p["seen"] for p in burst_files)
            result["burst_drain"] = {
                "last_close_to_last_seen": last_seen - written["phases"]["burst"]["last_close"],
                "files_per_second_indexed": len(burst_files) / max(1e-9, last_seen - first_open),
            }
        if args.per_file:
            result["files"] = per_file
        # Batches by phase: the steady one until the burst begins, the burst until the last row.
        windows = {"steady": (started, written["phases"].get("burst", {}).get("first_open", all_seen))}
        if "burst" in written["phases"]:
            windows["burst"] = (written["phases"]["burst"]["first_open"], all_seen)
        result["batches"] = {
            phase: batch_summary(out.events, start, end)
            for phase, (start, end) in windows.items()
            if phase in written["phases"]
        }
        writing_cpu = cpu_between(cpu_before_writing, cpu_after_writing)
        result["cpu_while_indexing"] = {
            **writing_cpu,
            "wall_seconds": all_seen
            - writing_done
            + sum(ph["last_close"] - ph["first_open"] for ph in written["phases"].values()),
        }

        # Idle CPU.
        _log(f"everything settled; idle for {args.idle_wait:g} s, then measuring CPU for {args.idle_seconds:g} s")
        time.sleep(args.idle_wait)
        events_before_idle = len(out.events)
        t_start = time.perf_counter()
        before = process_tree(proc.pid)
        time.sleep(args.idle_seconds)
        after = process_tree(proc.pid)
        wall = time.perf_counter() - t_start
        idle = cpu_between(before, after)
        idle["wall_seconds"] = wall
        idle["percent_of_one_core"] = 100 * idle["seconds"] / wall
        idle["events_during"] = [
            {k: v for k, v in e.items() if k != "_received"} for e in out.events[events_before_idle:]
        ]
        idle["processes"] = sorted(p["role"] for p in after.values())
        result["idle"] = idle
        result["memory_kb"] = [{"role": p["role"], **memory_kb(p["pid"])} for p in after.values()]
        if not after:
            problems.append("the watcher was gone before the idle measurement")
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait()
        if poller is not None:
            poller.stop()
        # Stop the watcher.
        before_stop = process_tree(proc.pid)
        stop_sent = time.perf_counter()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            problems.append("the watcher did not exit within 60 s of SIGTERM; killed")
            proc.kill()
            rc = proc.wait()
        out.thread.join(timeout=10)
        stop_seconds = time.perf_counter() - stop_sent

        def still_there() -> list[dict[str, Any]]:
            return [
                p
                for key, p in before_stop.items()
                if p["role"] != "watcher" and (st := _read_stat(str(key[0]))) is not None and st[1] == key[1]
            ]

        # The forkserver and the resource tracker notice their parent is gone and exit on their own.
        left = still_there()
        linger_end = time.monotonic() + LINGER_SECONDS
        while left and time.monotonic() < linger_end:
            time.sleep(0.05)
            left = still_there()
        lingered = time.perf_counter() - stop_sent - stop_seconds
        stderr_text = stderr_path.read_text(errors="replace")
        stopped = [e for e in out.events if e.get("event") == "stopped"]
        result["stop"] = {
            "exit_code": rc,
            "seconds": stop_seconds,
            "stopped_event": {k: v for k, v in stopped[-1].items() if k != "_received"} if stopped else None,
            "processes_left": [{"pid": p["pid"], "role": p["role"]} for p in left],
            "children_gone_after_exit_seconds": None if left else round(lingered, 3),
        }
        result["watcher"] = {
            "events": {
                k: sum(e.get("event") == k for e in out.events)
                for k in ("scan", "batch", "reconcile", "report", "warning", "stopped")
            },
            "warnings": [e.get("message") for e in out.events if e.get("event") == "warning"],
            "failed_total": stopped[-1].get("failed") if stopped else None,
            "stderr_bytes": len(stderr_text),
            "stderr": stderr_text if len(stderr_text) <= 8000 else stderr_text[:4000] + "\n...\n" + stderr_text[-4000:],
            "non_json_stdout": out.bad_lines[:20],
        }
        if rc != 0:
            problems.append(f"the watcher exited with status {rc} after SIGTERM")
        if not stopped:
            problems.append("no 'stopped' event from the watcher")
        if left:
            problems.append(
                f"processes still running {LINGER_SECONDS:g} s after the watcher exited:"
                f" {[(p['pid'], p['role']) for p in left]}"
            )
            for p in left:
                with contextlib.suppress(OSError):
                    os.kill(p["pid"], signal.SIGKILL)
        if stderr_text.strip():
            lines = stderr_text.strip().splitlines()
            problems.append(f"the watcher wrote {len(lines):,} lines to stderr, first: {lines[0][:300]}")
        if result["watcher"]["warnings"]:
            problems.append(
                f"{len(result['watcher']['warnings'])} warning events, first: {result['watcher']['warnings'][0]}"
            )
        if out.bad_lines:
            problems.append(f"{len(out.bad_lines)} lines of stdout that are not JSON")
        if stopped and stopped[-1].get("failed"):
            problems.append(
                f"the index counts {stopped[-1]['failed']} failed files (every file written is a valid image)"
            )
        result["machine"]["loadavg_end"] = loadavg()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            _log(f"kept {work}")

    result["problems"] = problems
    result["targets"] = targets(result, args)
    return result


def targets(result: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    lost = result.get("index", {}).get("lost")
    out.append({"name": "lost files", "value": lost, "target": f"= {TARGET_LOST}", "pass": lost == TARGET_LOST})
    p95 = result.get("latency", {}).get("steady", {}).get("p95")
    limit = args.settle + TARGET_STEADY_P95_OVER_SETTLE
    out.append(
        {
            "name": "steady p95 latency (s)",
            "value": p95,
            "target": f"<= {limit:g}",
            "pass": p95 is not None and p95 <= limit,
        }
    )
    idle = result.get("idle", {}).get("percent_of_one_core")
    out.append(
        {
            "name": "idle CPU (% of one core)",
            "value": idle,
            "target": f"< {TARGET_IDLE_CPU_PERCENT:g}",
            "pass": idle is not None and idle < TARGET_IDLE_CPU_PERCENT,
        }
    )
    rc = result.get("stop", {}).get("exit_code")
    out.append({"name": "exit status after SIGTERM", "value": rc, "target": "= 0", "pass": rc == 0})
    return out


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:,.0f}"


def print_table(result: dict[str, Any], args: argparse.Namespace) -> None:
    cfg = result["config"]
    w = result.get("writer", {})
    m = result["machine"]
    print(
        f"imgindex watch: {cfg['files']:,} files ({w.get('photos', 0):,} photos of ~2 MP,"
        f" {w.get('bytes', 0) / 1e6:,.0f} MB), steady at {cfg['rate']:g}/s then a burst of {cfg['burst']:,};"
        f" settle {cfg['settle']:g} s, jobs {cfg['jobs'] or 'default'}"
    )
    busy = m.get("busy_before_start")
    print(
        f"machine: {m['affinity']} CPUs, {'?' if busy is None else f'{busy:.0%}'} busy before the start;"
        f" load average {' '.join(map(str, m['loadavg_start']))} at start,"
        f" {' '.join(map(str, m.get('loadavg_end', [])))} at end"
    )
    print()
    print(
        f"{'latency close -> row':<26}{'files':>8}{'written/s':>11}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
        f"{'>= settle':>11}"
    )
    phases = w.get("phases", {})
    for name in ("steady", "burst", "photos", "in new folders (ab/cd)", "in new folders (cd)", "in existing folders"):
        st = result.get("latency", {}).get(name)
        if not st:
            continue
        rate = phases.get(name, {}).get("files_per_second")
        share = st["share_at_least_settle"]
        print(
            f"{name:<26}{st['count']:>8,}{'-' if rate is None else f'{rate:,.0f}':>11}"
            f"{_ms(st['p50']):>9}{_ms(st['p95']):>9}{_ms(st['max']):>9}{'-' if share is None else f'{share:.0%}':>11}"
        )
    idx = result.get("index", {})
    if idx:
        print(
            f"(first seen by polling the index every {args.poll * 1000:.0f} ms: each latency is late by up to"
            f" one interval; slowest poll {idx['max_query_seconds'] * 1000:.0f} ms)"
        )
    drain = result.get("burst_drain")
    if drain:
        print(
            f"burst: {result['latency']['burst']['count']:,} files in rows at"
            f" {drain['files_per_second_indexed']:,.0f} files/s from its first write;"
            f" last row {drain['last_close_to_last_seen']:.2f} s after the last close"
        )
    b = result.get("batches", {})
    for phase, s in b.items():
        gap = "-" if s["longest_gap"] is None else f"{s['longest_gap']:.2f} s"
        print(f"watcher batches ({phase}): {s['batches']:,}, largest {s['largest']:,} files, longest gap {gap}")
    ci = result.get("cpu_while_indexing")
    if ci:
        print(
            f"watcher CPU while indexing: {ci['seconds']:.1f} s over {ci['wall_seconds']:.0f} s"
            f" ({', '.join(f'{k} {v:.1f}' for k, v in ci['by_role'].items())})"
        )
    idle = result.get("idle")
    if idle:
        print(
            f"idle: {idle['seconds']:.2f} CPU s over {idle['wall_seconds']:.1f} s"
            f" ({', '.join(f'{k} {v:.2f}' for k, v in idle['by_role'].items())}),"
            f" {len(idle['events_during'])} events meanwhile"
        )
    mem = result.get("memory_kb")
    if mem:
        print(
            "memory (peak RSS): "
            + ", ".join(f"{m['role']} {m.get('VmHWM', 0) / 1024:,.0f} MB" for m in sorted(mem, key=lambda m: m["role"]))
        )
    w_info = result.get("watcher", {})
    if w_info.get("stderr_bytes"):
        print(f"watcher stderr: {w_info['stderr_bytes'] / 1e6:,.1f} MB")
    stop = result.get("stop", {})
    print(f"stop: exit status {stop.get('exit_code')} after {stop.get('seconds', 0):.2f} s")
    print()
    print(f"{'target':<28}{'value':>10}  {'goal':<10}")
    for t in result["targets"]:
        v = t["value"]
        shown = "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else f"{v:,}")
        print(f"{t['name']:<28}{shown:>10}  {t['target']:<10}{'PASS' if t['pass'] else 'FAIL'}")
    if result["problems"]:
        print()
        print("problems:")
        for p in result["problems"]:
            print(f"  - {p}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="files to write in all (default 10000)")
    parser.add_argument("--rate", type=float, default=100.0, help="files/s in the steady phase (default 100)")
    parser.add_argument("--burst", type=int, default=2_000, help="files of the burst, written at once (default 2000)")
    parser.add_argument("--photo-share", type=float, default=0.05, help="share of ~2 MP JPEGs (default 0.05)")
    parser.add_argument("--chunks", type=int, default=3, help="writes per file (default 3)")
    parser.add_argument("--settle", type=float, default=2.0, help="the watcher's --settle (default 2)")
    parser.add_argument("--jobs", "-j", type=int, default=None, help="the watcher's -j (default: its own)")
    parser.add_argument("--reconcile", type=float, default=None, help="the watcher's --reconcile (default: its own)")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between polls of the index (default 0.05)")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds to wait for every file's row")
    parser.add_argument("--idle-wait", type=float, default=5.0, help="seconds to wait before the idle measurement")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="length of the idle measurement (default 30)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tmp", default=None, help="where to make the temporary tree (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the tree, index and watcher stderr")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    parser.add_argument("--per-file", action="store_true", help="with --json: every file's close and first-seen time")
    parser.add_argument("--run-writer", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_writer:
        run_writer(args.run_writer)
        return 0
    if args.files < 1 or args.rate <= 0 or args.burst < 0 or not 0 <= args.photo_share <= 1:
        parser.error("--files must be >= 1, --rate > 0, --burst >= 0, --photo-share within 0..1")
    busy = cpu_busy()
    if busy is not None and busy > 0.2:
        _log(f"the machine is busy ({busy:.0%} of the CPUs in use before the start): figures will suffer")
    result = run(args)
    result["machine"]["busy_before_start"] = busy
    print_table(result, args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
        _log(f"wrote {args.json}")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
