"""The tools the benchmarks run (imgindex itself, and the peers it is compared with), and how they are run."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any


def imgindex_command() -> list[str]:
    """How to run imgindex: the script beside this Python, on the PATH, or as a module."""
    script = Path(sys.executable).parent / "imgindex"
    if script.exists():
        return [str(script)]
    found = shutil.which("imgindex")
    return [found] if found else [sys.executable, "-m", "imgindex"]


def remove_index(db: Path) -> None:
    """Remove an index and its WAL files, for a run to start from nothing."""
    for stale in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        stale.unlink(missing_ok=True)


def imagededup_phash() -> Any:
    """imagededup's PHash class, without torch.

    imagededup imports torch and torchvision at import time, for its CNN
    method only; stand-ins for those modules keep them out (see
    bench/requirements.txt for the install).
    """
    for name, attrs in {
        "imagededup.methods.cnn": ("CNN",),
        "imagededup.utils.models": ("CustomModel", "MobilenetV3", "DEFAULT_MODEL_NAME"),
        "imagededup.utils.data_generator": ("img_dataloader",),
    }.items():
        module = types.ModuleType(name)
        module.__dict__.update(dict.fromkeys(attrs))
        sys.modules[name] = module
    from imagededup.methods import PHash  # type: ignore[import-untyped]

    assert "torch" not in sys.modules
    logging.getLogger("imagededup").setLevel(logging.ERROR)  # one warning per non-image otherwise
    return PHash


def imagededup_tree(tree: str, threshold: int) -> tuple[dict[str, list[str]], float, float]:
    """imagededup's PHash over every image below ``tree``: ``encode_images`` then
    ``find_duplicates`` at ``threshold`` bits. Returns the duplicates found (each image's
    list), the seconds of encoding and the seconds of both."""
    phash = imagededup_phash()()
    start = time.perf_counter()
    encodings = phash.encode_images(image_dir=tree, recursive=True)
    encoded = time.perf_counter() - start
    found = phash.find_duplicates(encoding_map=encodings, max_distance_threshold=threshold)
    return found, encoded, time.perf_counter() - start


def log(message: str) -> None:
    """A progress line on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_process(argv: list[str]) -> tuple[float, float, str]:
    """Run a command: its wall time, its peak resident memory in MB (from wait4) and its stdout;
    exit if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode})")
    return time.perf_counter() - start, usage.ru_maxrss / 1024, out


def write_results(path: Path | None, results: dict[str, Any]) -> None:
    """The results as JSON at ``path`` (when given)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


def timed(argv: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, str, str]:
    """Run a command to its end: wall seconds, stdout and stderr; exit if its code is not in ``ok``."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds, done.stdout, done.stderr
