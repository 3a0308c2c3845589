"""Text for people: the lines the command line prints, and its progress display.

Functions here turn results into text; the command line decides where it
goes. Paths are shown escaped (:func:`imgindex.display.display_path`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from .display import display_path, display_text

if TYPE_CHECKING:  # what each command returns; imported where it is made (a report needs no web page)
    from .export import ExportSummary
    from .pairs import PairsUpdate
    from .query import QueryResult
    from .report import Report
    from .review.static import StaticSummary
    from .scan_types import ScanProgress, ScanSummary
    from .storage.health import Health
    from .watch import WatchEvent


def pairs_summary(u: PairsUpdate) -> str:
    """One line, e.g. ``30 hashes: 30 searched (all again), 0 forgotten, 12 pairs added, 0 removed;
    31 pictures: 31 verified, 9 matches added, 0 removed — 0.4 s``."""
    again = " (all again)" if u.rebuilt else ""
    line = (
        f"{u.hashes:,} hashes: {u.added:,} searched{again}, {u.removed:,} forgotten, {u.pairs_added:,} pairs added,"
        f" {u.pairs_removed:,} removed; {u.pictures:,} pictures: {u.pictures_added:,} verified,"
        f" {u.matches_added:,} matches added, {u.matches_removed:,} removed — {u.seconds:.1f} s"
    )
    if u.superseded:
        line += "\nAnother process started the pairs or matches again meanwhile: the next update does this one's work."
    return line


def scan_summary(s: ScanSummary) -> str:
    """One line, e.g. ``12,326 files: 12,256 images (3,102 new, 0 changed), 70 not images,
    14 failed: 9 truncated, 5 corrupt — 41.2 s``."""
    statuses = s.by_status
    total = sum(statuses.values())
    parts = [f"{total:,} files: {s.images:,} images ({s.new:,} new, {s.changed:,} changed)"]
    parts.append(f"{statuses.get('not_image', 0):,} not images")
    if statuses.get("empty"):
        parts.append(f"{statuses['empty']:,} empty")
    failures = s.failures
    if failures:
        parts.append(
            f"{sum(failures.values()):,} failed: "
            + ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in failures.items())
        )
    text = ", ".join(parts)
    extras = []
    if s.removed:
        extras.append(f"{s.removed:,} removed")
    if s.hashed:
        extras.append(f"{s.hashed:,} read")
    if s.walk_errors:
        extras.append(f"{len(s.walk_errors):,} unreadable director{'y' if len(s.walk_errors) == 1 else 'ies'}")
    if s.skipped_symlinks:
        extras.append(f"{s.skipped_symlinks:,} symlinks not followed")
    if extras:
        text += "; " + ", ".join(extras)
    return f"{text} — {s.seconds:.1f} s"


def walk_errors(s: ScanSummary) -> list[str]:
    """What a scan could not list, then what was amiss but cost nothing else."""
    lines = [f"could not read directory {display_path(path)}: {error}" for path, error in s.walk_errors]
    return lines + [f"warning: {w}" for w in s.warnings]


def report_counts(report: Report) -> str:
    return (
        f"initial image count: {report.initial_image_count:,}\n"
        f"final image count: {report.final_image_count:,}"
        f" ({report.duplicate_count:,} duplicates in {report.group_count:,} groups)"
    )


def decisions_applied(report: Report) -> str | None:
    """What the review's decisions changed in a report (None: nothing)."""
    if not report.decisions_applied:
        return None
    parts = []
    if report.kept_by_decision:
        parts.append(f"{report.kept_by_decision:,} kept as decided")
    if report.apart_by_decision:
        parts.append(f"{report.apart_by_decision:,} matches decided apart")
    return f"review decisions applied: {report.decisions_applied:,} ({', '.join(parts)}; --ignore-decisions: without)"


def static_review_line(summary: StaticSummary, output: object) -> str:
    where = "inlined" if summary.folder is None else f"in {summary.folder}"
    unreadable = f"; {summary.unreadable:,} could not be read" if summary.unreadable else ""
    return f"wrote {output}: {summary.groups:,} groups, {summary.images:,} images (thumbnails {where}{unreadable})"


def rotations_note(report: Report) -> str | None:
    """A note when --rotations searched every picture in memory (the index does not keep them)."""
    if not report.options.rotations or report.stored_count or not report.initial_image_count:
        return None
    return (
        "note: mirrored and turned copies were searched for every image here; 'imgindex pairs --rotations'"
        " keeps them in the index, so that --rotations reads them (much faster on large indexes)"
    )


def unconfirmed_warning(report: Report) -> str | None:
    """A note when some images could only be matched by hash (an index not rescanned since an upgrade)."""
    if not report.unconfirmed_count:
        return None
    return (
        f"warning: {report.unconfirmed_count:,} distinct images have no thumbnails yet (indexed by an older imgindex):"
        " they were matched by hash alone, and only with each other; run 'imgindex scan' to read them again"
    )


def export_lines(summary: ExportSummary) -> list[str]:
    lines = []
    if summary.out_dir is not None:
        lines.append(f"exported {summary.kept:,} kept images to {summary.out_dir}")
    if summary.duplicates_dir is not None:
        lines.append(f"put {summary.groups:,} groups ({summary.duplicates:,} duplicates) in {summary.duplicates_dir}")
    if summary.existing:
        lines.append(f"left {len(summary.existing):,} existing files alone")
    return lines


def export_problems(summary: ExportSummary) -> list[str]:
    return [f"could not export {display_path(path)}: {error}" for path, error in summary.missing]


def watch_event(event: WatchEvent) -> str:
    totals = f"{event.images:,} images, {event.files:,} files indexed"
    newest = f" (newest: {display_path(event.newest)})" if event.newest else ""
    if event.kind == "batch":
        return f"indexed {event.indexed:,}, removed {event.removed:,}{newest}; {totals}"
    if event.kind in ("scan", "reconcile"):
        label = "scanned" if event.kind == "scan" else "reconciled"
        return f"{label}: read {event.indexed:,}, removed {event.removed:,}{newest}; {totals}; watching"
    if event.kind == "stopped":
        return f"stopped; {totals}"
    return event.message or event.kind


def query_lines(results: list[QueryResult]) -> list[str]:
    lines = []
    for r in results:
        name = display_path(r.path)
        if r.status != "ok":
            lines.append(f"{name}: {r.status.replace('_', ' ')}" + (f" ({display_text(r.error)})" if r.error else ""))
            if r.sha256 is None:
                continue
        count = len(r.matches)
        lines.append(f"{name}: " + (f"{count:,} match{'es' if count != 1 else ''}" if count else "no match"))
        for m in r.matches:
            kind = "exact  " if m.exact else f"near {m.distance:>2}"
            lines.append(f"  {kind}  {display_path(m.path)}" + (f"  ({display_text(m.url)})" if m.url else ""))
    return lines


def query_unconfirmed_warning(results: list[QueryResult]) -> str | None:
    unconfirmed = sum(r.unconfirmed for r in results)
    if not unconfirmed:
        return None
    return (
        f"warning: {unconfirmed:,} indexed images near by hash have no thumbnails yet (indexed by an older"
        " imgindex), so were not matched; run 'imgindex scan' to read them again"
    )


def stats_lines(data: dict[str, Any]) -> list[str]:
    lines = [
        f"index: {data['index']} (schema {data['schema_version']})",
        "roots: " + (", ".join(data["roots"]) or "none"),
        f"files: {data['files']:,}, images: {data['images']:,}",
        "by status: " + ", ".join(f"{k} {v:,}" for k, v in data["by_status"].items()),
        "by format: " + ", ".join(f"{k} {v:,}" for k, v in data["by_format"].items()),
    ]
    readable = data["readable_formats"]
    lines.append(
        "decoders: "
        + ", ".join(k for k, v in readable.items() if v)
        + ("; missing: " + ", ".join(k for k, v in readable.items() if not v) if not all(readable.values()) else "")
    )
    archives = data.get("archives")
    if archives and archives["archives"]:
        lines.append(
            f"web archives: {archives['archives']:,}, {archives['records']:,} records indexed"
            + (f", {archives['damaged']:,} damaged records" if archives["damaged"] else "")
            + (f", {archives['unfinished']:,} not yet listed whole" if archives["unfinished"] else "")
        )
    urls = data.get("urls")
    if urls and urls["files"]:
        lines.append(
            f"URLs: {urls['files']:,} files"
            + (f" ({urls['side_files']:,} URL side-files read)" if urls["side_files"] else "")
        )
    if data.get("review_decisions"):
        lines.append(f"review decisions in force: {data['review_decisions']:,}")
    near = data["near_pairs"]
    if near["max_distance"] is not None:
        lines.append(f"near pairs: {near['pairs']:,} stored, up to distance {near['max_distance']}")
    for s in data["last_scans"][:1]:
        lines.append(
            f"last scan: #{s['id']} {s['state']}, {s['files']:,} files, {s['new']:,} new, {s['changed']:,} changed,"
            f" {s['removed']:,} removed, {s['hashed']:,} read, {s['failed']:,} failed, {s['seconds'] or 0:.1f} s"
        )
    return lines


class ScanProgressDisplay:
    """A progress bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self.tty = console.is_terminal
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.last_line = time.monotonic()

    def __enter__(self) -> ScanProgressDisplay:
        if self.enabled and self.tty:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("walking", total=None, rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Take the bar off the terminal (before anything else is printed); idempotent."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self.enabled = False

    def update(self, p: ScanProgress) -> None:
        if not self.enabled:
            return
        if self.progress is not None and self.task is not None:
            if p.phase == "walk":
                self.progress.update(self.task, description=f"walking: {p.files:,} files in {p.dirs:,} dirs", rate="")
            else:
                task = self.progress.tasks[0]
                rate = f"{task.speed:,.0f} files/s" if task.speed else ""
                self.progress.update(
                    self.task,
                    description=f"hashing ({p.files:,} files walked)",
                    total=p.to_hash,
                    completed=p.hashed,
                    rate=rate,
                )
            return
        now = time.monotonic()
        if now - self.last_line >= 5.0:
            self.last_line = now
            if p.phase == "walk":
                self.console.print(f"walking: {p.files:,} files in {p.dirs:,} directories")
            else:
                self.console.print(f"hashing: {p.hashed:,}/{p.to_hash:,} ({p.files:,} files walked)")


def health_lines(health: Health) -> list[str]:
    lines = [f"repaired: {what}" for what in health.repaired]
    lines.append("integrity: ok" if not health.integrity else "integrity: " + "; ".join(health.integrity[:10]))
    lines.append("schema: ok" if not health.missing else "schema: missing " + ", ".join(health.missing))
    orphans = ", ".join(f"{n:,} {what}" for what, n in health.orphans.items())
    lines.append("orphan rows: none" if not orphans else f"orphan rows: {orphans}")
    malformed = ", ".join(f"{n:,} {what}" for what, n in health.malformed.items())
    lines.append("blob lengths: ok" if not malformed else f"malformed rows: {malformed}")
    if not health.ok:
        lines.append(
            "the index is damaged: 'imgindex check --repair' mends indexes, missing tables, orphan rows and"
            " malformed rows;"
            " damage inside the tables needs a new index (a scan into another --db)"
        )
    return lines
