"""The command line: parses, calls the library, formats, maps errors to exit codes.

Exit codes: 0 all fine; 1 usage or fatal error; 3 some files or directories
could not be read or decoded (the rest was indexed); 130 interrupted (what was
done is kept).
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from . import __version__
from .export import ExportError, ExportSummary, Link, export
from .hashing import DEFAULT_MAX_PIXELS, HashSettings, readable_formats
from .index import Index, IndexError_, open_index
from .pairs import stored_max_distance
from .query import query
from .report import (
    DEFAULT_KEEP,
    DEFAULT_THRESHOLD,
    KEEP_RULES,
    Report,
    ReportError,
    ReportOptions,
    atomic_text_file,
    build_report,
    parse_keep,
    summary_line,
    unconfirmed_warning,
    write_csv,
    write_json,
)
from .scan import ScanError, ScanInterrupted, ScanOptions, ScanProgress, ScanSummary, display_path, scan
from .watch import Watcher, WatchEvent, WatchOptions

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="imgindex",
    help="Keep an incremental index of the images in a directory tree and find duplicates in it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# Results go to stdout with typer.echo; progress and messages to stderr, without
# markup: paths from crawls contain brackets.
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

DbOption = Annotated[
    Path,
    typer.Option(
        "--db",
        envvar="IMGINDEX_DB",
        help="The index file (also: the IMGINDEX_DB environment variable).",
        show_default=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
FollowOption = Annotated[bool, typer.Option("--follow-symlinks", help="Follow symbolic links (loops are detected).")]
JobsOption = Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Worker processes (default: all cores).")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imgindex {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Keep an incremental index of the images in a directory tree and find duplicates in it."""


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    err.print(f"[red]Error:[/red] {escape(message)}", markup=True)
    return typer.Exit(code)


def _open(db: Path, *, create: bool = True) -> Index:
    try:
        index = open_index(db, create=create)
    except IndexError_ as e:
        raise fail(str(e)) from None
    fs = index.network_filesystem()
    if fs:
        err.print(f"Warning: the index {db} is on a network filesystem ({fs}); SQLite locking may be unreliable there.")
    return index


def _stop_on_sigterm() -> None:
    """SIGTERM stops like Ctrl-C: commit what is done, then exit."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@app.command("scan")
def scan_command(
    roots: Annotated[
        list[Path], typer.Argument(help="Directories to index (recursively).", show_default=False, metavar="DIR")
    ],
    db: DbOption = Path("imgindex.db"),
    jobs: JobsOption = None,
    rehash: Annotated[bool, typer.Option("--rehash", help="Read and hash every file, changed or not.")] = False,
    follow_symlinks: FollowOption = False,
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", min=1, help="Record larger images as too_large instead of decoding them.")
    ] = DEFAULT_MAX_PIXELS,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, hidden=True)] = 500,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Index new and changed files under each DIR; unchanged files are not read again."""
    options = ScanOptions(
        jobs=jobs,
        rehash=rehash,
        follow_symlinks=follow_symlinks,
        settings=HashSettings(max_pixels=max_pixels),
        batch_size=batch_size,
    )
    index = _open(db)
    try:
        summary = _run_scan(index, roots, options, as_json=as_json, quiet=quiet)
    finally:
        index.close()
    _print_summary(summary, as_json, quiet)
    if summary.failures or summary.walk_errors:
        raise typer.Exit(EXIT_PARTIAL)


def _run_scan(index: Index, roots: list[Path], options: ScanOptions, *, as_json: bool, quiet: bool) -> ScanSummary:
    """Scan with progress; an interrupted scan prints what it did and exits 130."""
    _stop_on_sigterm()
    reporter = _ProgressReporter(enabled=not quiet)
    try:
        with reporter:
            return scan(index, [os.fsencode(r) for r in roots], options, progress=reporter.update)
    except ScanError as e:
        raise fail(str(e)) from None
    except ScanInterrupted as e:
        if not quiet:
            err.print("Interrupted: what was indexed so far is kept; run the scan again to finish.")
        _print_summary(e.summary, as_json, quiet)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _print_summary(summary: ScanSummary, as_json: bool, quiet: bool) -> None:
    if as_json:
        print(json.dumps(summary.to_json()))
        return
    if quiet:
        return
    for path, error in summary.walk_errors:
        err.print(f"could not read directory {display_path(path)}: {error}")
    typer.echo(format_summary(summary))


def format_summary(s: ScanSummary) -> str:
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


class _ProgressReporter:
    """A progress bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = err.is_terminal
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.last_line = time.monotonic()

    def __enter__(self) -> _ProgressReporter:
        if self.enabled and self.tty:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("walking", total=None, rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

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
                err.print(f"walking: {p.files:,} files in {p.dirs:,} directories")
            else:
                err.print(f"hashing: {p.hashed:,}/{p.to_hash:,} ({p.files:,} files walked)")


# -- reports ----------------------------------------------------------------------

DEFAULT_KEEP_TEXT = ",".join(DEFAULT_KEEP)
ExactOption = Annotated[bool, typer.Option("--exact", help="Group byte-identical images (same SHA-256).")]
NearOption = Annotated[
    bool,
    typer.Option(
        "--near", help="Group images whose perceptual hashes are within --threshold bits and whose thumbnails agree."
    ),
]
ThresholdOption = Annotated[
    int | None,
    typer.Option(
        "--threshold",
        "-t",
        min=0,
        max=32,
        help="Near mode: the largest Hamming distance between a kept image and its duplicates"
        f" (default {DEFAULT_THRESHOLD}).",
    ),
]
KeepOption = Annotated[
    str,
    typer.Option(
        "--keep",
        help=f"Which image of a group to keep: rules in order, from {', '.join(KEEP_RULES)}"
        " (the default rules not named follow).",
    ),
]
PreferOption = Annotated[
    list[Path] | None, typer.Option("--prefer", help="Keep images under this directory when a group has one there.")
]
RotationsOption = Annotated[
    bool,
    typer.Option(
        "--rotations",
        help="Near mode: also match mirrored and quarter-turned copies (slower on large indexes; a few more false"
        " matches).",
    ),
]
RootOption = Annotated[
    list[Path] | None, typer.Option("--root", help="Only images under this directory (default: every root).")
]


def _report_options(
    exact: bool,
    near: bool,
    threshold: int | None,
    keep: str,
    prefer: list[Path] | None,
    under: list[Path] | None,
    duplicates_only: bool = False,
    rotations: bool = False,
) -> ReportOptions:
    if exact == near:
        raise fail("choose one of --exact and --near")
    try:
        return ReportOptions(
            mode="near" if near else "exact",
            threshold=threshold,
            keep=parse_keep(keep),
            prefer=tuple(_abs_bytes(p) for p in prefer or ()),
            under=tuple(_abs_bytes(p) for p in under or ()),
            duplicates_only=duplicates_only,
            rotations=rotations,
        )
    except ReportError as e:
        raise fail(str(e)) from None


def _abs_bytes(path: Path) -> bytes:
    result = os.path.abspath(os.fsencode(path))
    return result.rstrip(b"/") if len(result) > 1 else result


def _write_report(report: Report, output: str, fmt: str) -> None:
    writer = write_csv if fmt == "csv" else write_json
    if output == "-":
        # Paths that are not UTF-8 go out as their original bytes, as in a file.
        stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="surrogateescape", newline="")
        writer(report, stdout)
        stdout.flush()
        stdout.detach()
        return
    try:
        with atomic_text_file(output) as f:
            writer(report, f)
    except OSError as e:
        raise fail(f"cannot write {output}: {e.strerror or e}") from None


@app.command("report")
def report_command(
    exact: ExactOption = False,
    near: NearOption = False,
    output: Annotated[str, typer.Option("--output", "-o", help="Where to write the report; - for stdout.")] = "-",
    fmt: Annotated[str, typer.Option("--format", "-f", help="json or csv.")] = "json",
    threshold: ThresholdOption = None,
    rotations: RotationsOption = False,
    keep: KeepOption = DEFAULT_KEEP_TEXT,
    prefer: PreferOption = None,
    root: RootOption = None,
    duplicates_only: Annotated[
        bool, typer.Option("--duplicates-only", help="List only kept images that have duplicates.")
    ] = False,
    db: DbOption = Path("imgindex.db"),
    quiet: QuietOption = False,
) -> None:
    """Write the exact or near duplicates in the index as JSON or CSV (a query: no image is read)."""
    if fmt not in ("json", "csv"):
        raise fail("--format must be json or csv")
    options = _report_options(exact, near, threshold, keep, prefer, root, duplicates_only, rotations)
    index = _open(db, create=False)
    try:
        with index.snapshot():  # one state of the index, while scans write
            report = build_report(index, options)
            _write_report(report, output, fmt)
    finally:
        index.close()
    if not quiet:
        _echo_counts(report, to_stderr=output == "-")


def _echo_counts(report: Report, *, to_stderr: bool) -> None:
    typer.echo(summary_line(report), err=to_stderr)
    warning = unconfirmed_warning(report)
    if warning:
        typer.echo(warning, err=True)


@app.command("export")
def export_command(
    out_dir: Annotated[Path, typer.Argument(help="Where to put the kept images.", metavar="OUT_DIR")],
    exact: ExactOption = False,
    near: NearOption = False,
    duplicates_dir: Annotated[
        Path | None,
        typer.Option("--duplicates-dir", help="Also put each group with duplicates in a folder here, for review."),
    ] = None,
    link: Annotated[str, typer.Option("--link", help="copy, hardlink or symlink.")] = "copy",
    force: Annotated[
        bool, typer.Option("--force", help="Add to non-empty directories (existing files are never overwritten).")
    ] = False,
    threshold: ThresholdOption = None,
    rotations: RotationsOption = False,
    keep: KeepOption = DEFAULT_KEEP_TEXT,
    prefer: PreferOption = None,
    root: RootOption = None,
    db: DbOption = Path("imgindex.db"),
    quiet: QuietOption = False,
) -> None:
    """Copy (or link) the kept images into OUT_DIR, keeping their layout under each root."""
    if link not in ("copy", "hardlink", "symlink"):
        raise fail("--link must be copy, hardlink or symlink")
    options = _report_options(exact, near, threshold, keep, prefer, root, rotations=rotations)
    index = _open(db, create=False)
    try:
        with index.snapshot():
            report = build_report(index, options)
            summary = _export(report, out_dir, duplicates_dir, link, force)  # type: ignore[arg-type]
    finally:
        index.close()
    if not quiet:
        _echo_counts(report, to_stderr=False)
        _echo_export(summary)
    if summary.missing:
        raise typer.Exit(EXIT_PARTIAL)


def _export(report: Report, out_dir: Path | None, dups: Path | None, link: Link, force: bool) -> ExportSummary:
    try:
        return export(report, out_dir, duplicates_dir=dups, link=link, force=force)
    except ExportError as e:
        raise fail(str(e)) from None


def _echo_export(summary: ExportSummary, to_stderr: bool = False) -> None:
    if summary.out_dir is not None:
        typer.echo(f"exported {summary.kept:,} kept images to {summary.out_dir}", err=to_stderr)
    if summary.duplicates_dir is not None:
        typer.echo(
            f"put {summary.groups:,} groups ({summary.duplicates:,} duplicates) in {summary.duplicates_dir}",
            err=to_stderr,
        )
    if summary.existing:
        typer.echo(f"left {len(summary.existing):,} existing files alone", err=to_stderr)
    for path, error in summary.missing:
        err.print(f"could not export {display_path(path)}: {error}")


@app.command("dedup")
def dedup_command(
    dump_dir: Annotated[Path, typer.Argument(help="The directory of images (e.g. a crawl dump).", metavar="DUMP_DIR")],
    exact_duplicates: Annotated[
        bool, typer.Option("--exact_duplicates", "-e", help="Exact duplicates (the default).")
    ] = False,
    near_duplicates: Annotated[bool, typer.Option("--near_duplicates", "-n", help="Near duplicates.")] = False,
    output_json: Annotated[Path, typer.Option("--output_json", "-o", help="Where to write the JSON report.")] = Path(
        "image_locations.json"
    ),
    output_dir: Annotated[
        Path | None, typer.Option("--output_dir", "-d", help="Copy the deduplicated images here.")
    ] = None,
    show_duplicates: Annotated[
        bool,
        typer.Option(
            "--show_duplicates",
            "-s",
            help="Also put each group of duplicates in a folder for review: OUTPUT_DIR/_duplicates"
            " (./_duplicates without -d).",
        ),
    ] = False,
    threshold: ThresholdOption = None,
    rotations: RotationsOption = False,
    keep: KeepOption = DEFAULT_KEEP_TEXT,
    force: Annotated[
        bool, typer.Option("--force", help="Add to a non-empty OUTPUT_DIR (existing files are never overwritten).")
    ] = False,
    jobs: JobsOption = None,
    db: DbOption = Path("imgindex.db"),
    quiet: QuietOption = False,
) -> None:
    """Scan DUMP_DIR, then report and export its duplicates in one go (the original tool's interface)."""
    if exact_duplicates and near_duplicates:
        raise fail("choose one of -e/--exact_duplicates and -n/--near_duplicates")
    options = _report_options(
        not near_duplicates, near_duplicates, threshold, keep, None, [dump_dir], rotations=rotations
    )
    to_stderr = str(output_json) == "-"  # stdout carries the report then
    index = _open(db)
    try:
        summary = _run_scan(index, [dump_dir], ScanOptions(jobs=jobs), as_json=False, quiet=quiet)
        if not quiet:
            typer.echo(format_summary(summary), err=to_stderr)
        dups = None
        if show_duplicates:
            dups = output_dir / "_duplicates" if output_dir is not None else Path("_duplicates")
        with index.snapshot():  # the report and the export see one state of the index
            report = build_report(index, options)
            _write_report(report, str(output_json), "json")
            exported = _export(report, output_dir, dups, "copy", force) if output_dir or dups else None
    finally:
        index.close()
    if not quiet:
        _echo_counts(report, to_stderr=to_stderr)
        if not to_stderr:
            typer.echo(f"wrote {output_json}")
        if exported is not None:
            _echo_export(exported, to_stderr=to_stderr)
    if summary.failures or summary.walk_errors or (exported is not None and exported.missing):
        raise typer.Exit(EXIT_PARTIAL)


@app.command("watch")
def watch_command(
    roots: Annotated[list[Path], typer.Argument(help="Directories to follow.", show_default=False, metavar="DIR")],
    db: DbOption = Path("imgindex.db"),
    settle: Annotated[
        float,
        typer.Option(
            "--settle", min=0.0, help="Seconds a file must stay unchanged when no close event says it is complete."
        ),
    ] = 2.0,
    reconcile: Annotated[
        float,
        typer.Option("--reconcile", min=0.0, help="Seconds between walks that catch what events missed; 0: none."),
    ] = 300.0,
    polling: Annotated[
        bool, typer.Option("--polling", help="Use no file-system events, only walks (for NFS/SMB mounts).")
    ] = False,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", min=0.1, help="Seconds between walks with --polling.")
    ] = 10.0,
    report_near: Annotated[
        Path | None, typer.Option("--report-near", help="Rewrite this near-duplicate JSON report after each batch.")
    ] = None,
    report_exact: Annotated[
        Path | None, typer.Option("--report-exact", help="Rewrite this exact-duplicate JSON report after each batch.")
    ] = None,
    threshold: ThresholdOption = None,
    jobs: JobsOption = None,
    follow_symlinks: FollowOption = False,
    json_log: Annotated[bool, typer.Option("--json-log", help="Print one JSON object per event.")] = False,
    batch_seconds: Annotated[float, typer.Option("--batch-seconds", min=0.0, hidden=True)] = 0.25,
    quiet: QuietOption = False,
) -> None:
    """Keep the index current while files are written under each DIR, until Ctrl-C or SIGTERM."""
    options = WatchOptions(
        scan=ScanOptions(jobs=jobs, follow_symlinks=follow_symlinks),
        settle=settle,
        reconcile=reconcile,
        polling=polling,
        poll_interval=poll_interval,
        report_near=report_near,
        report_exact=report_exact,
        threshold=threshold,
        batch_seconds=batch_seconds,
    )
    # watchdog warns (with the state of every watch) when a tree is created faster
    # than it registers it; the watch is right all the same.
    warnings.filterwarnings("ignore", "Callback with id", RuntimeWarning)
    index = _open(db)

    def show(event: WatchEvent) -> None:
        if json_log:
            print(json.dumps(event.to_json()), flush=True)
        elif event.kind == "warning":
            err.print(f"Warning: {event.message}")
        elif not quiet:
            typer.echo(format_watch_event(event))

    try:
        watcher = Watcher(index, [_abs_bytes(r) for r in roots], options, show)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: watcher.stop())
        watcher.run()
    except ScanError as e:
        raise fail(str(e)) from None
    finally:
        index.close()


def format_watch_event(event: WatchEvent) -> str:
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


@app.command("query")
def query_command(
    images: Annotated[list[Path], typer.Argument(help="Image files to look up.", show_default=False, metavar="IMAGE")],
    threshold: ThresholdOption = None,
    db: DbOption = Path("imgindex.db"),
    as_json: JsonOption = False,
) -> None:
    """Which indexed images are exact or near duplicates of each IMAGE (they are not added)."""
    t = DEFAULT_THRESHOLD if threshold is None else threshold
    index = _open(db, create=False)
    try:
        with index.snapshot():
            results = query(index, [os.fsencode(p) for p in images], t)
    finally:
        index.close()
    if as_json:
        print(json.dumps({"threshold": t, "queries": [r.to_json() for r in results]}))
    else:
        for r in results:
            name = display_path(r.path)
            if r.status != "ok":
                typer.echo(f"{name}: {r.status.replace('_', ' ')}" + (f" ({r.error})" if r.error else ""))
                if r.sha256 is None:
                    continue
            count = len(r.matches)
            typer.echo(f"{name}: " + (f"{count:,} match{'es' if count != 1 else ''}" if count else "no match"))
            for m in r.matches:
                kind = "exact  " if m.exact else f"near {m.distance:>2}"
                typer.echo(f"  {kind}  {display_path(m.path)}")
    unconfirmed = sum(r.unconfirmed for r in results)
    if unconfirmed:
        typer.echo(
            f"warning: {unconfirmed:,} indexed images near by hash have no thumbnails yet (indexed by an older"
            " imgindex), so were not matched; run 'imgindex scan' to read them again",
            err=True,
        )
    if any(r.failed for r in results):
        raise typer.Exit(EXIT_PARTIAL)


@app.command("stats")
def stats_command(db: DbOption = Path("imgindex.db"), as_json: JsonOption = False) -> None:
    """Counts by status and format, the roots, the last scans and the decoders installed."""
    index = _open(db, create=False)
    try:
        statuses = index.status_counts()
        data: dict[str, Any] = {
            "index": str(db),
            "schema_version": index.schema_version,
            "roots": [display_path(r.path) for r in index.roots()],
            "files": sum(statuses.values()),
            "images": sum(n for s, n in statuses.items() if s not in ("not_image", "empty")),
            "by_status": dict(sorted(statuses.items())),
            "by_format": index.format_counts(),
            "readable_formats": readable_formats(),
            "hash_settings": json.loads(HashSettings().key()),
            "last_scans": index.last_scans(),
            "near_pairs": {"max_distance": stored_max_distance(index), "pairs": index.near_pair_count()},
        }
    finally:
        index.close()
    if as_json:
        print(json.dumps(data))
        return
    typer.echo(f"index: {data['index']} (schema {data['schema_version']})")
    typer.echo("roots: " + (", ".join(data["roots"]) or "none"))
    typer.echo(f"files: {data['files']:,}, images: {data['images']:,}")
    typer.echo("by status: " + ", ".join(f"{k} {v:,}" for k, v in data["by_status"].items()))
    typer.echo("by format: " + ", ".join(f"{k} {v:,}" for k, v in data["by_format"].items()))
    readable = data["readable_formats"]
    typer.echo(
        "decoders: "
        + ", ".join(k for k, v in readable.items() if v)
        + ("; missing: " + ", ".join(k for k, v in readable.items() if not v) if not all(readable.values()) else "")
    )
    near = data["near_pairs"]
    if near["max_distance"] is not None:
        typer.echo(f"near pairs: {near['pairs']:,} stored, up to distance {near['max_distance']}")
    for s in data["last_scans"][:1]:
        typer.echo(
            f"last scan: #{s['id']} {s['state']}, {s['files']:,} files, {s['new']:,} new, {s['changed']:,} changed,"
            f" {s['removed']:,} removed, {s['hashed']:,} read, {s['failed']:,} failed, {s['seconds'] or 0:.1f} s"
        )


@app.command("errors")
def errors_command(
    db: DbOption = Path("imgindex.db"),
    as_json: JsonOption = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Show at most this many.")] = None,
) -> None:
    """Files that could not be read or decoded, and directories that could not be listed, with the reason."""
    index = _open(db, create=False)
    rows = []
    try:
        for i, problem in enumerate(index.problems()):
            if limit is not None and i >= limit:
                break
            rows.append(problem)
    finally:
        index.close()
    if as_json:
        print(
            json.dumps(
                [{"path": display_path(p.path), "status": p.kind, "error": p.error, "format": p.format} for p in rows]
            )
        )
        return
    for p in rows:
        typer.echo(f"{p.kind}\t{display_path(p.path)}\t{p.error or ''}")
    if not rows:
        err.print("no errors")


def run() -> None:  # the console script
    try:
        app()
    except BrokenPipeError:  # `imgindex errors | head`
        sys.stderr.close()
        sys.exit(EXIT_ERROR)
    except SystemExit as e:
        # Usage errors exit 1 like other fatal errors (the parser's own code is 2).
        if e.code == 2:
            sys.exit(EXIT_ERROR)
        raise
