"""The original tool's workflow in one call: scan a dump, report its duplicates, export them.

``imgindex dedup DUMP_DIR`` is this function; the command line only prints
what it returns.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .export import ExportSummary, export
from .report import Report, ReportOptions, build_report
from .scan import ScanOptions, ScanProgress, ScanSummary, scan
from .storage import Index


@dataclass
class Dedup:
    scan: ScanSummary
    report: Report
    export: ExportSummary | None  # None when nothing was to be exported


def duplicates_dir_for(output_dir: Path | None) -> Path:
    """Where ``-s`` puts the groups for review: OUTPUT_DIR/_duplicates, or ./_duplicates without ``-d``."""
    return output_dir / "_duplicates" if output_dir is not None else Path("_duplicates")


def dedup(
    index: Index,
    dump_dir: str | os.PathLike[str],
    options: ReportOptions,
    write_report: Callable[[Report], None],
    *,
    scan_options: ScanOptions | None = None,
    output_dir: Path | None = None,
    show_duplicates: bool = False,
    force: bool = False,
    progress: Callable[[ScanProgress], None] | None = None,
    scanned: Callable[[ScanSummary], None] | None = None,
) -> Dedup:
    """Scan ``dump_dir``, build the report (``write_report`` writes it), and copy the kept
    images to ``output_dir`` and, with ``show_duplicates``, each group for review.

    ``scanned`` is told the scan's summary before the report is built. An
    interrupted scan raises :class:`imgindex.scan.ScanInterrupted` as :func:`scan` does.
    """
    summary = scan(index, [os.fsencode(dump_dir)], scan_options or ScanOptions(), progress=progress)
    if scanned is not None:
        scanned(summary)
    duplicates_dir = duplicates_dir_for(output_dir) if show_duplicates else None
    with index.snapshot():  # the report and the export see one state of the index
        report = build_report(index, options)
        write_report(report)
        exported = None
        if output_dir is not None or duplicates_dir is not None:
            exported = export(report, output_dir, duplicates_dir=duplicates_dir, link="copy", force=force)
    return Dedup(summary, report, exported)
