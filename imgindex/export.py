"""Exporting a report: the kept images into one directory, the duplicates for review into another.

Never overwrites or deletes anything: a non-empty target is refused unless
``force``, and even then existing files are left alone (and counted).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .display import display_bytes, display_path
from .errors import ExportError
from .report import Group, Image, Report

Link = Literal["copy", "hardlink", "symlink"]

#: Extensions given to files in the review directory so that viewers open them.
EXTENSIONS = {
    "JPEG": (b".jpg", b".jpeg", b".jpe"),
    "PNG": (b".png",),
    "GIF": (b".gif",),
    "WEBP": (b".webp",),
    "BMP": (b".bmp",),
    "TIFF": (b".tif", b".tiff"),
    "ICO": (b".ico",),
    "AVIF": (b".avif",),
    "HEIF": (b".heic", b".heif"),
}


@dataclass
class ExportSummary:
    out_dir: Path | None
    duplicates_dir: Path | None
    kept: int = 0
    duplicates: int = 0
    groups: int = 0
    existing: list[bytes] = field(default_factory=list)  # left alone
    missing: list[tuple[bytes, str]] = field(default_factory=list)  # source gone or unreadable


def export(
    report: Report,
    out_dir: Path | None,
    *,
    duplicates_dir: Path | None = None,
    link: Link = "copy",
    force: bool = False,
) -> ExportSummary:
    """Put the kept images under ``out_dir`` (keeping their layout under each root) and each
    group with duplicates into a folder of ``duplicates_dir``, kept image first."""
    targets = [d for d in (out_dir, duplicates_dir) if d is not None]
    for target in targets:
        _refuse_inside_roots(report, target)
    for target in targets:
        _prepare(target, force)
    if link == "hardlink":
        _check_same_filesystem(report, targets)
    summary = ExportSummary(out_dir, duplicates_dir)
    labels = _root_labels(report)
    for group in report.groups():
        if out_dir is not None:
            dest = os.path.join(os.fsencode(out_dir), labels[group.kept.root_id], _relative(report, group.kept))
            if _place(group.kept.path, dest, link, summary):
                summary.kept += 1
        if duplicates_dir is not None and group.duplicates:
            summary.groups += 1
            summary.duplicates += _review_folder(group, summary.groups, os.fsencode(duplicates_dir), link, summary)
    return summary


def _prepare(target: Path, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ExportError(f"{target} is not empty: use --force to add to it (existing files are never overwritten)")
    target.mkdir(parents=True, exist_ok=True)


def _refuse_inside_roots(report: Report, target: Path) -> None:
    """Copies inside an indexed root would be indexed, and reported as duplicates, by the next scan."""
    real = os.path.realpath(os.fsencode(target.absolute()))
    for root in report.root_paths.values():
        top = os.path.realpath(root)
        if real == top or real.startswith(top.rstrip(b"/") + b"/"):
            raise ExportError(
                f"{target} is inside the indexed directory {display_path(root)}: its copies would be indexed as"
                " duplicates by the next scan; choose a directory outside it"
            )


def _check_same_filesystem(report: Report, targets: list[Path]) -> None:
    for target in targets:
        device = target.stat().st_dev
        for root in report.roots:
            try:
                if os.stat(root).st_dev != device:
                    raise ExportError(
                        f"cannot hardlink from {display_path(root)} into {target}: they are on different"
                        " filesystems; use --link copy or --link symlink"
                    )
            except FileNotFoundError:
                raise ExportError(f"the root {display_path(root)} no longer exists") from None


def _root_labels(report: Report) -> dict[int, bytes]:
    """With one root, its files go straight into the target; with several, under each root's name."""
    if len(report.roots) <= 1:
        return dict.fromkeys(report.root_paths, b"")
    labels: dict[int, bytes] = {}
    used: set[bytes] = set()
    for root_id, path in sorted(report.root_paths.items(), key=lambda item: item[1]):
        base = os.path.basename(path.rstrip(b"/")) or b"root"
        label, n = base, 1
        while label in used:
            n += 1
            label = base + b"-" + str(n).encode()
        used.add(label)
        labels[root_id] = label
    return labels


def _relative(report: Report, image: Image) -> bytes:
    root = report.root_paths[image.root_id].rstrip(b"/")
    return image.path[len(root) + 1 :]


def _place(source: bytes, dest: bytes, link: Link, summary: ExportSummary) -> bool:
    """Copy or link one file; never replaces what is there."""
    if os.path.lexists(dest):
        summary.existing.append(dest)
        return False
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    try:
        if link == "copy":
            shutil.copy2(source, dest, follow_symlinks=True)
        elif link == "hardlink":
            os.link(source, dest)
        else:
            os.symlink(os.path.abspath(source), dest)
    except OSError as e:
        summary.missing.append((source, e.strerror or str(e)))
        return False
    return True


def _review_folder(group: Group, number: int, top: bytes, link: Link, summary: ExportSummary) -> int:
    """``00001-name/``: ``0-kept-name.jpg``, ``1-d3-other.jpg``, ..., and ``group.txt`` with the full paths."""
    folder = os.path.join(top, b"%05d-" % number + _viewable(group.kept)[:80])
    os.makedirs(folder, exist_ok=True)
    # One line per image: control bytes in a name (a newline, a tab) would split the lines.
    lines = [b"kept\t\t" + display_bytes(group.kept.path)]
    _place(group.kept.path, os.path.join(folder, b"0-kept-" + _viewable(group.kept)), link, summary)
    placed = 0
    for i, (image, distance) in enumerate(group.duplicates, start=1):
        name = b"%d-d%d-" % (i, distance) + _viewable(image)
        if _place(image.path, os.path.join(folder, name), link, summary):
            placed += 1
        lines.append(b"duplicate\t%d\t" % distance + display_bytes(image.path))
    listing = os.path.join(folder, b"group.txt")
    if not os.path.lexists(listing):
        with open(listing, "wb") as f:
            f.write(b"role\tdistance\tpath\n" + b"\n".join(lines) + b"\n")
    return placed


def _viewable(image: Image) -> bytes:
    """The file's name, with an extension matching its content where it has none."""
    name = os.path.basename(image.path)
    extensions = EXTENSIONS.get(image.format or "", ())
    if extensions and not name.lower().endswith(extensions):
        name += extensions[0]
    return name
