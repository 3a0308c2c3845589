"""The command line: parses options, calls the library, prints what it returns.

Every command is a few lines of wiring: options in, one library call, text
out (rendered by :mod:`imgindex.render`). Errors are :class:`ImgindexError`
s carrying their exit code, turned into a message and that code in one
place (:class:`_Commands`). Exit codes: 0 all fine; 1 usage or fatal error;
3 some files or directories could not be read or decoded (the rest was
indexed); 130 interrupted (what was done is kept).
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import sqlite3
import sys
import warnings
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from . import __version__, render
from .cluster import CHUNK_SIZE as DASK_CHUNK_SIZE
from .cluster import dask_client, dask_workers
from .columnar import export_index, import_index
from .dedup import dedup
from .display import display_path, display_text
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, ImgindexError, OutputError, UsageError
from .export import export
from .formats import atomic_text_file, path_fields, writer
from .hashing import DEFAULT_MAX_PIXELS, HashSettings, readable_formats
from .match.cluster_search import ClusterSearch
from .pairs import local_search, set_rotations, stored_max_distance
from .pairs import update as update_pairs
from .query import query
from .report import DEFAULT_KEEP, DEFAULT_THRESHOLD, KEEP_RULES, Report, ReportOptions, build_report, parse_keep
from .scan import ScanInterrupted, ScanOptions, ScanSummary, scan
from .sources import is_url
from .statuses import image_count
from .storage import Index, open_index
from .storage import health as storage_health

if TYPE_CHECKING:
    from .watch import WatchEvent
from .workers import Workers

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PARTIAL", "app", "run"]

# Results go to stdout with typer.echo; progress and messages to stderr, without
# markup: paths from crawls contain brackets.
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


#: Errors of a disk that is full or failing: not a bug, a state of the machine to report.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


class _Commands(TyperGroup):
    """The one error handler: any :class:`ImgindexError` becomes a message and its exit code;
    so does a disk that is full or failing under the index or an output."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ImgindexError as e:
            _error(str(e), e.exit_code)
        except sqlite3.DatabaseError as e:
            text = str(e)
            if any(word in text for word in ("full", "disk I/O error", "readonly", "read-only")):
                _error(
                    f"reading or writing the index failed ({e}): is its disk full, failing or read-only? What was"
                    " committed before is kept; make room and run the command again",
                    EXIT_ERROR,
                )
            if any(
                word in text
                for word in ("malformed", "no such table", "no such column", "no column named", "no such view")
            ):
                _error(
                    f"the index is damaged ({e}): 'imgindex check' says what is wrong, and 'imgindex check"
                    " --repair' mends what can be mended",
                    EXIT_ERROR,
                )
            raise
        except OSError as e:
            if e.errno not in _DISK_ERRNOS:
                raise
            if e.filename:
                _error(f"cannot read or write {e.filename}: {e.strerror or e}", EXIT_ERROR)
            _error(f"cannot write the output: {e.strerror or e}", EXIT_ERROR)


def _error(message: str, code: int) -> NoReturn:
    err.print(f"[red]Error:[/red] {escape(display_text(message))}", markup=True)
    raise typer.Exit(code) from None


app = typer.Typer(
    name="imgindex",
    cls=_Commands,
    help="Keep an incremental index of the images in a directory tree and find duplicates in it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

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
ArchivesOption = Annotated[
    bool,
    typer.Option(
        "--archives/--no-archives",
        help="Index the image records inside web archives (*.warc, *.warc.gz, *.arc, *.arc.gz) as FILE#OFFSET.",
    ),
]
DaskOption = Annotated[
    str | None,
    typer.Option(
        "--dask",
        metavar="ADDRESS",
        help="Read and hash on a Dask cluster: a scheduler's address (tcp://host:8786), or local[:N] to start"
        " N worker processes here. Needs imgindex[dask].",
    ),
]
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


def _open(db: Path, *, create: bool = True) -> Index:
    """The index (use it in ``with``), with a warning when it sits on a network filesystem."""
    index = open_index(db, create=create)
    fs = index.network_filesystem()
    if fs:
        err.print(f"Warning: the index {db} is on a network filesystem ({fs}); SQLite locking may be unreliable there.")
    return index


@contextmanager
def _executor(dask: str | None, options: ScanOptions) -> Iterator[Workers | None]:
    """The workers of a Dask cluster with --dask; None for the scan's own process pool."""
    if dask is None:
        yield None
        return
    with dask_workers(dask, item_seconds=options.item_seconds) as workers:
        yield workers


def _stop_on_sigterm() -> None:
    """SIGTERM stops like Ctrl-C: commit what is done, then exit."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@contextmanager
def _scanning(*, as_json: bool, quiet: bool) -> Iterator[render.ScanProgressDisplay]:
    """Progress while a scan runs; an interrupted scan prints what it did and exits 130."""
    _stop_on_sigterm()
    display = render.ScanProgressDisplay(err, enabled=not quiet)
    try:
        with display:
            yield display
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
    for line in render.walk_errors(summary):
        err.print(line)
    typer.echo(render.scan_summary(summary))


@app.command("scan")
def scan_command(
    roots: Annotated[
        list[str],
        typer.Argument(
            help="Directories to index (recursively), or URLs of trees in a store (s3://bucket/crawl, any fsspec"
            " URL; needs imgindex[remote]).",
            show_default=False,
            metavar="DIR",
        ),
    ],
    db: DbOption = Path("imgindex.db"),
    jobs: JobsOption = None,
    rehash: Annotated[bool, typer.Option("--rehash", help="Read and hash every file, changed or not.")] = False,
    follow_symlinks: FollowOption = False,
    archives: ArchivesOption = True,
    dask: DaskOption = None,
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", min=1, help="Record larger images as too_large instead of decoding them.")
    ] = DEFAULT_MAX_PIXELS,
    time_limit: Annotated[
        float,
        typer.Option(
            "--time-limit", min=0.0, help="Seconds a worker may spend on one file before it is stopped (0: no limit)."
        ),
    ] = 60.0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, hidden=True)] = 500,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Index new and changed files under each DIR; unchanged files are not read again."""
    options = ScanOptions(
        jobs=jobs,
        rehash=rehash,
        follow_symlinks=follow_symlinks,
        archives=archives,
        settings=HashSettings(max_pixels=max_pixels),
        batch_size=batch_size,
        item_seconds=time_limit or None,
    )
    if dask is not None:
        options = replace(options, chunk_size=DASK_CHUNK_SIZE)
    with (
        _open(db) as index,
        _executor(dask, options) as executor,
        _scanning(as_json=as_json, quiet=quiet) as display,
    ):
        summary = scan(index, [os.fsencode(r) for r in roots], options, progress=display.update, executor=executor)
    _print_summary(summary, as_json, quiet)
    if summary.failures or summary.walk_errors:
        raise typer.Exit(EXIT_PARTIAL)


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
    list[str] | None,
    typer.Option("--prefer", help="Keep images under this directory (or URL) when a group has one there."),
]
IgnoreDecisionsOption = Annotated[
    bool,
    typer.Option("--ignore-decisions", help="Group as if nobody had reviewed: leave out the decisions of 'review'."),
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
    list[str] | None, typer.Option("--root", help="Only images under this directory or URL (default: every root).")
]


def _report_options(
    exact: bool,
    near: bool,
    threshold: int | None,
    keep: str,
    prefer: list[str] | None,
    under: list[str] | None,
    duplicates_only: bool = False,
    rotations: bool = False,
    ignore_decisions: bool = False,
) -> ReportOptions:
    if exact == near:
        raise UsageError("choose one of --exact and --near")
    return ReportOptions(
        mode="near" if near else "exact",
        threshold=threshold,
        keep=parse_keep(keep),
        prefer=tuple(_abs_bytes(p) for p in prefer or ()),
        under=tuple(_abs_bytes(p) for p in under or ()),
        duplicates_only=duplicates_only,
        rotations=rotations,
        decisions=not ignore_decisions,
    )


def _abs_bytes(path: str | Path) -> bytes:
    """A path given on the command line as the index has it: absolute, or a URL as it is."""
    given = os.fsencode(path)
    result = given if is_url(given) else os.path.abspath(given)
    return result.rstrip(b"/") if len(result) > 1 and not result.endswith(b"://") else result


def _report_writer(output: str, fmt: str) -> Callable[[Report], None]:
    """Writes a report in ``fmt`` to ``output`` (a file, written atomically, or - for stdout)."""
    write = writer(fmt)

    def to_output(report: Report) -> None:
        if output == "-":
            # Paths that are not UTF-8 go out as their original bytes, as in a file.
            stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="surrogateescape", newline="")
            try:
                write(report, stdout)
                stdout.flush()
            except OSError as e:
                if e.errno not in _DISK_ERRNOS:
                    raise
                # What is still buffered can never be written: let it go where it harms nothing.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise OutputError(f"cannot write the report to standard output: {e.strerror or e}") from None
            stdout.detach()
            return
        try:
            with atomic_text_file(output) as f:
                write(report, f)
        except OSError as e:
            raise OutputError(f"cannot write {output}: {e.strerror or e}") from None

    return to_output


def _echo_counts(report: Report, *, to_stderr: bool) -> None:
    typer.echo(render.report_counts(report), err=to_stderr)
    applied = render.decisions_applied(report)
    if applied:
        typer.echo(applied, err=to_stderr)
    warning = render.unconfirmed_warning(report)
    if warning:
        typer.echo(warning, err=True)
    note = render.rotations_note(report)
    if note:
        typer.echo(note, err=True)


def _echo_export(lines: list[str], problems: list[str], to_stderr: bool = False) -> None:
    for line in lines:
        typer.echo(line, err=to_stderr)
    for line in problems:
        err.print(line)


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
    ignore_decisions: IgnoreDecisionsOption = False,
    db: DbOption = Path("imgindex.db"),
    quiet: QuietOption = False,
) -> None:
    """Write the exact or near duplicates in the index as JSON or CSV (a query: no image is read)."""
    write = _report_writer(output, fmt)
    options = _report_options(exact, near, threshold, keep, prefer, root, duplicates_only, rotations, ignore_decisions)
    with _open(db, create=False) as index, index.snapshot():  # one state of the index, while scans write
        report = build_report(index, options)
        write(report)
    if not quiet:
        _echo_counts(report, to_stderr=output == "-")


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
    ignore_decisions: IgnoreDecisionsOption = False,
    db: DbOption = Path("imgindex.db"),
    quiet: QuietOption = False,
) -> None:
    """Copy (or link) the kept images into OUT_DIR, keeping their layout under each root."""
    if link not in ("copy", "hardlink", "symlink"):
        raise UsageError("--link must be copy, hardlink or symlink")
    options = _report_options(
        exact, near, threshold, keep, prefer, root, rotations=rotations, ignore_decisions=ignore_decisions
    )
    with _open(db, create=False) as index, index.snapshot():
        report = build_report(index, options)
        summary = export(report, out_dir, duplicates_dir=duplicates_dir, link=link, force=force)  # type: ignore[arg-type]
    if not quiet:
        _echo_counts(report, to_stderr=False)
        _echo_export(render.export_lines(summary), render.export_problems(summary))
    if summary.missing:
        raise typer.Exit(EXIT_PARTIAL)


@app.command("review")
def review_command(
    exact: ExactOption = False,
    near: NearOption = False,
    threshold: ThresholdOption = None,
    rotations: RotationsOption = False,
    keep: KeepOption = DEFAULT_KEEP_TEXT,
    prefer: PreferOption = None,
    root: RootOption = None,
    host: Annotated[
        str, typer.Option("--host", help="Where to listen; other than this machine, the token is all that guards.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="The port (0: a free one).")] = 0,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Print the address; do not open a browser.")] = False,
    static: Annotated[
        bool, typer.Option("--static", help="Write one read-only page to share (with -o) instead of serving.")
    ] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="--static: the page to write.")] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Where thumbnails are kept (default: ~/.cache/imgindex/review)."),
    ] = None,
    db: DbOption = Path("imgindex.db"),
    quiet: QuietOption = False,
) -> None:
    """Look at the duplicate groups in the browser, and decide: not a duplicate, keep this one, accept."""
    # The page's packages (a web server, templates) are loaded by the commands that serve it.
    from .review.app import create_app, new_token, review_hosts, review_url
    from .review.pictures import Pictures, default_cache_dir
    from .review.server import address, bind, serve
    from .review.session import Review
    from .review.static import write_static

    near = near or not exact  # near duplicates unless told otherwise: those are the ones to look at
    options = _report_options(exact, near, threshold, keep, prefer, root, rotations=rotations)
    if static and output is None:
        raise UsageError("--static needs -o/--output FILE")
    if output is not None and not static:
        raise UsageError("-o/--output goes with --static")
    _open(db, create=False).close()  # the checks and warnings of every command
    pictures = Pictures(cache_dir or default_cache_dir())
    review = Review(db, options)
    try:
        if static:
            assert output is not None
            summary = write_static(review.current(), output, pictures)
            if not quiet:
                typer.echo(render.static_review_line(summary, output))
            return
        if not quiet:
            err.print("building the groups ...")
        review.current()
        sock = bind(host, port)
        token = new_token()
        url = review_url(host, address(sock)[1], token)
        page = create_app(review, pictures, token, hosts=review_hosts(host))

        def started() -> None:
            typer.echo(f"review at {url}")
            if not quiet:
                err.print("Ctrl-C stops it")
            if not no_browser:
                webbrowser.open(url)

        serve(page, sock, started=started)
    finally:
        review.close()


@app.command("export-index")
def export_index_command(
    out_dir: Annotated[Path, typer.Argument(help="Where to write the Parquet files.", metavar="DIR")],
    db: DbOption = Path("imgindex.db"),
    quiet: QuietOption = False,
) -> None:
    """Write the index as Parquet (items with hashes and thumbnails, stored pairs and matches) into DIR."""
    with _open(db, create=False) as index:
        summary = export_index(index, out_dir)
    if not quiet:
        typer.echo(
            f"wrote {summary.items:,} items, {summary.pairs:,} pairs and {summary.matches:,} matches to {out_dir}"
        )


@app.command("import-index")
def import_index_command(
    in_dir: Annotated[Path, typer.Argument(help="A directory written by export-index (or alike).", metavar="DIR")],
    db: DbOption = Path("imgindex.db"),
    quiet: QuietOption = False,
) -> None:
    """Merge the items of a Parquet DIR into the index; refused when hashed under other settings."""
    with _open(db) as index:
        summary = import_index(index, in_dir)
    if not quiet:
        typer.echo(f"imported {summary.items:,} items under {summary.roots:,} roots from {in_dir}")


@app.command("pairs")
def pairs_command(
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="ADDRESS",
            help="Search the pairs on a Dask cluster: a scheduler's address (tcp://host:8786), or local[:N] to start"
            " N worker processes here. Needs imgindex[dask].",
        ),
    ] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            "--work-dir",
            help="With --dask: where the job's files go (removed at the end); the workers must see it at the same"
            " path. Default: beside the index.",
        ),
    ] = None,
    rotations: Annotated[
        bool | None,
        typer.Option(
            "--rotations/--no-rotations",
            help="From now on, also store (and keep up to date after each scan) the matches of mirrored and turned"
            " copies, so that 'report --rotations' is a query; or stop. Turning it on verifies every picture again"
            " once.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = Path("imgindex.db"),
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Bring the stored near pairs and verified matches up to date (scan and watch do it after each batch)."""
    _stop_on_sigterm()
    try:
        with _open(db, create=False) as index, _pair_search(dask, work_dir or db.absolute().parent) as search:
            if rotations is not None:
                set_rotations(index, rotations)
            summary = update_pairs(index, search=search)
    except KeyboardInterrupt:
        # Pairs are stored before their hashes are marked: the next update searches what is not.
        err.print("Interrupted: what was stored is kept; run the command again to finish.")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if as_json:
        print(json.dumps(summary.to_json()))
    elif not quiet:
        typer.echo(render.pairs_summary(summary))


@contextmanager
def _pair_search(dask: str | None, work_dir: Path) -> Iterator[Any]:
    """The search on the Dask cluster at ``dask``; without, the local one."""
    if dask is None:
        yield local_search
        return
    with dask_client(dask, hashing=False) as client:
        yield ClusterSearch(client, work_dir)


@app.command("dedup")
def dedup_command(
    dump_dir: Annotated[
        str, typer.Argument(help="The directory of images (e.g. a crawl dump), or a URL.", metavar="DUMP_DIR")
    ],
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
    ignore_decisions: IgnoreDecisionsOption = False,
    db: DbOption = Path("imgindex.db"),
    quiet: QuietOption = False,
) -> None:
    """Scan DUMP_DIR, then report and export its duplicates in one go (the original tool's interface)."""
    if exact_duplicates and near_duplicates:
        raise UsageError("choose one of -e/--exact_duplicates and -n/--near_duplicates")
    options = _report_options(
        not near_duplicates,
        near_duplicates,
        threshold,
        keep,
        None,
        [dump_dir],
        rotations=rotations,
        ignore_decisions=ignore_decisions,
    )
    to_stderr = str(output_json) == "-"  # stdout carries the report then

    with _open(db) as index, _scanning(as_json=False, quiet=quiet) as display:

        def scanned(summary: ScanSummary) -> None:
            display.stop()  # the scan is over: nothing may draw over the report and the export
            if not quiet:
                typer.echo(render.scan_summary(summary), err=to_stderr)

        done = dedup(
            index,
            dump_dir,
            options,
            _report_writer(str(output_json), "json"),
            scan_options=ScanOptions(jobs=jobs),
            output_dir=output_dir,
            show_duplicates=show_duplicates,
            force=force,
            progress=display.update,
            scanned=scanned,
        )
    if not quiet:
        _echo_counts(done.report, to_stderr=to_stderr)
        if not to_stderr:
            typer.echo(f"wrote {output_json}")
        if done.export is not None:
            _echo_export(render.export_lines(done.export), render.export_problems(done.export), to_stderr=to_stderr)
    summary = done.scan
    if summary.failures or summary.walk_errors or (done.export is not None and done.export.missing):
        raise typer.Exit(EXIT_PARTIAL)


@app.command("watch")
def watch_command(
    roots: Annotated[list[str], typer.Argument(help="Directories to follow.", show_default=False, metavar="DIR")],
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
    archives: ArchivesOption = True,
    dask: DaskOption = None,
    json_log: Annotated[bool, typer.Option("--json-log", help="Print one JSON object per event.")] = False,
    batch_seconds: Annotated[float, typer.Option("--batch-seconds", min=0.0, hidden=True)] = 0.25,
    quiet: QuietOption = False,
) -> None:
    """Keep the index current while files are written under each DIR, until Ctrl-C or SIGTERM."""
    from .watch import Watcher, WatchOptions  # file-system events: loaded by the command that follows them

    urls = [r for r in roots if is_url(os.fsencode(r))]
    if urls:
        raise UsageError(
            f"cannot watch {urls[0]}: watch follows directories on disk; run 'imgindex scan' on a URL again instead"
            " (it reads only what changed)"
        )
    options = WatchOptions(
        scan=ScanOptions(jobs=jobs, follow_symlinks=follow_symlinks, archives=archives),
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

    def show(event: WatchEvent) -> None:
        if json_log:
            print(json.dumps(event.to_json()), flush=True)
        elif event.kind == "warning":
            err.print(f"Warning: {event.message}")
        elif not quiet:
            typer.echo(render.watch_event(event))

    if dask is not None:
        options = replace(options, scan=replace(options.scan, chunk_size=DASK_CHUNK_SIZE))
    with _open(db) as index, _executor(dask, options.scan) as executor:
        watcher = Watcher(index, [_abs_bytes(r) for r in roots], options, show, executor=executor)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: watcher.stop())
        watcher.run()


@app.command("query")
def query_command(
    images: Annotated[list[Path], typer.Argument(help="Image files to look up.", show_default=False, metavar="IMAGE")],
    threshold: ThresholdOption = None,
    rotations: RotationsOption = False,
    db: DbOption = Path("imgindex.db"),
    as_json: JsonOption = False,
) -> None:
    """Which indexed images are exact or near duplicates of each IMAGE (they are not added)."""
    t = DEFAULT_THRESHOLD if threshold is None else threshold
    with _open(db, create=False) as index, index.snapshot():
        results = query(index, [os.fsencode(p) for p in images], t, rotations=rotations)
    if as_json:
        print(json.dumps({"threshold": t, "queries": [r.to_json() for r in results]}))
    else:
        for line in render.query_lines(results):
            typer.echo(line)
    warning = render.query_unconfirmed_warning(results)
    if warning:
        typer.echo(warning, err=True)
    if any(r.failed for r in results):
        raise typer.Exit(EXIT_PARTIAL)


@app.command("stats")
def stats_command(db: DbOption = Path("imgindex.db"), as_json: JsonOption = False) -> None:
    """Counts by status and format, the roots, the last scans and the decoders installed."""
    with _open(db, create=False) as index:
        catalog = index.catalog
        statuses = catalog.status_counts()
        data: dict[str, Any] = {
            "index": str(db),
            "schema_version": index.schema_version,
            "roots": [display_path(r.path) for r in catalog.roots()],
            "files": sum(statuses.values()),
            "images": image_count(statuses),
            "by_status": dict(sorted(statuses.items())),
            "by_format": catalog.format_counts(),
            "readable_formats": readable_formats(),
            "hash_settings": json.loads(HashSettings().key()),
            "last_scans": catalog.last_scans(),
            "near_pairs": {"max_distance": stored_max_distance(index), "pairs": index.pairs.count()},
            "archives": catalog.archive_counts(),
            "urls": catalog.url_counts(),
            "review_decisions": index.decisions.count(),
            "tables": index.db.table_counts(),
        }
    if as_json:
        print(json.dumps(data))
        return
    for line in render.stats_lines(data):
        typer.echo(line)


@app.command("errors")
def errors_command(
    db: DbOption = Path("imgindex.db"),
    as_json: JsonOption = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Show at most this many.")] = None,
) -> None:
    """Files that could not be read or decoded, and directories that could not be listed, with the reason."""
    rows = []
    with _open(db, create=False) as index:
        for i, problem in enumerate(index.catalog.problems()):
            if limit is not None and i >= limit:
                break
            rows.append(problem)
    if as_json:
        print(
            json.dumps([{**path_fields(p.path), "status": p.kind, "error": p.error, "format": p.format} for p in rows])
        )
        return
    for p in rows:
        typer.echo(f"{p.kind}\t{display_path(p.path)}\t{display_text(p.error or '')}")
    if not rows:
        err.print("no errors")


@app.command("check")
def check_command(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair", help="Mend what can be mended: indexes, missing tables, orphan and malformed rows, pairs."
        ),
    ] = False,
    db: DbOption = Path("imgindex.db"),
    as_json: JsonOption = False,
) -> None:
    """Check the index for damage: SQLite's integrity check, the schema, rows that point at nothing,
    thumbnails and hashes of the wrong length."""
    with _open(db, create=False) as index:
        health = storage_health.repair(index.db) if repair else storage_health.check(index.db)
    if as_json:
        print(json.dumps(asdict(health) | {"ok": health.ok}))
    else:
        for line in render.health_lines(health):
            typer.echo(line)
    if not health.ok:
        raise typer.Exit(EXIT_PARTIAL)


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
