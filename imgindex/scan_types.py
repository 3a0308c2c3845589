"""What a scan is given and what it gives back: options, progress, summary."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from . import pairs
from .display import display_path
from .hashing import HashSettings
from .statuses import FAILED_STATUSES, image_count

#: A file's mtime or ctime this close to the moment it was read can change
#: again within the same timestamp tick without its stat data changing, so
#: such a row is checked once more by the next scan (git's "racy clean").
RACY_WINDOW_NS = 2_000_000_000


@dataclass(frozen=True)
class ScanOptions:
    jobs: int | None = None  # worker processes; None: all cores
    rehash: bool = False
    follow_symlinks: bool = False
    archives: bool = True  # web archives' image records are entries (FILE#OFFSET)
    settings: HashSettings = field(default_factory=HashSettings)
    batch_size: int = 500  # rows per write transaction
    batch_seconds: float = 1.0  # ... or at least this often
    chunk_size: int = 16  # files per task sent to a worker
    racy_window_ns: int = RACY_WINDOW_NS
    settle_ns: int = 0  # leave files modified this recently for later (watch mode)
    update_pairs: bool = True  # bring the stored near pairs (and the kept image table) up to date at the end
    item_seconds: float | None = 60.0  # a worker stuck longer on one file is stopped (worker processes only)


@dataclass
class ScanProgress:
    phase: Literal["walk", "hash"]
    dirs: int = 0
    files: int = 0
    to_hash: int = 0
    hashed: int = 0
    last_path: bytes | None = None


@dataclass
class ScanSummary:
    scan_id: int
    roots: list[bytes]
    files: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    hashed: int = 0
    rechecked: int = 0  # racily-clean files read again
    failed: int = 0  # files that failed in this scan
    by_status: dict[str, int] = field(default_factory=dict)  # the roots' whole state after the scan
    walk_errors: list[tuple[bytes, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what was amiss but cost nothing else (side-files)
    skipped_symlinks: int = 0
    skipped_special: int = 0
    loops: list[bytes] = field(default_factory=list)
    deferred: list[bytes] = field(default_factory=list)  # too recently modified: left for later
    last_path: bytes | None = None  # the last file read
    worker_deaths: int = 0  # worker processes that died (their files were read again one by one)
    near_pairs: pairs.PairsUpdate | None = None  # the stored near pairs brought up to date
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def images(self) -> int:
        return image_count(self.by_status)

    @property
    def failures(self) -> dict[str, int]:
        return {s: self.by_status[s] for s in FAILED_STATUSES if self.by_status.get(s)}

    def to_json(self) -> dict[str, Any]:
        return {
            "scan_id": self.scan_id,
            "roots": [os.fsdecode(r) for r in self.roots],
            "files": self.files,
            "images": self.images,
            "by_status": dict(sorted(self.by_status.items())),
            "new": self.new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "hashed": self.hashed,
            "rechecked": self.rechecked,
            "failed": self.failed,
            "walk_errors": [{"path": display_path(p), "error": e} for p, e in self.walk_errors],
            "warnings": self.warnings,
            "skipped_symlinks": self.skipped_symlinks,
            "skipped_special": self.skipped_special,
            "symlink_loops": [display_path(p) for p in self.loops],
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "worker_deaths": self.worker_deaths,
            "near_pairs": self.near_pairs.to_json() if self.near_pairs else None,
        }


class ScanInterrupted(Exception):
    """Raised when a scan is stopped (Ctrl-C, SIGTERM) after committing what it had."""

    def __init__(self, summary: ScanSummary) -> None:
        super().__init__("scan interrupted")
        self.summary = summary


ProgressCallback = Callable[[ScanProgress], None]
