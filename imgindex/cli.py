"""The command line: parses, calls the library, formats, maps errors to exit codes.

Exit codes: 0 all fine; 1 usage or fatal error; 3 some files or directories
could not be read or decoded (the rest was indexed); 130 interrupted (what was
done is kept).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from . import __version__
from .hashing import DEFAULT_MAX_PIXELS, HashSettings, readable_formats
from .index import Index, IndexError_, open_index
from .scan import ScanError, ScanInterrupted, ScanOptions, ScanProgress, ScanSummary, display_path, scan

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
    err.print(f"[red]Error:[/red] {message}", markup=True)
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
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, help="Worker processes (default: all cores).")
    ] = None,
    rehash: Annotated[bool, typer.Option("--rehash", help="Read and hash every file, changed or not.")] = False,
    follow_symlinks: Annotated[
        bool, typer.Option("--follow-symlinks", help="Follow symbolic links (loops are detected).")
    ] = False,
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
    _stop_on_sigterm()
    index = _open(db)
    reporter = _ProgressReporter(enabled=not quiet)
    try:
        with reporter:
            summary = scan(index, [os.fsencode(r) for r in roots], options, progress=reporter.update)
    except ScanError as e:
        raise fail(str(e)) from None
    except ScanInterrupted as e:
        if not quiet:
            err.print("Interrupted: what was indexed so far is kept; run the scan again to finish.")
        _print_summary(e.summary, as_json, quiet)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        index.close()
    _print_summary(summary, as_json, quiet)
    if summary.failures or summary.walk_errors:
        raise typer.Exit(EXIT_PARTIAL)


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
                self.progress.update(self.task, description="hashing", total=p.to_hash, completed=p.hashed, rate=rate)
            return
        now = time.monotonic()
        if now - self.last_line >= 5.0:
            self.last_line = now
            if p.phase == "walk":
                err.print(f"walking: {p.files:,} files in {p.dirs:,} directories")
            else:
                err.print(f"hashing: {p.hashed:,}/{p.to_hash:,}")


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
