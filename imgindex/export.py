"""Exporting a report: the kept images into one directory, the duplicates for review into another.

Never overwrites or deletes anything: a non-empty target is refused unless
``force``, and even then existing files are left alone (and counted). A
record in a web archive is extracted (its payload written as a file, named
from its URL), whatever the ``link`` asked: there is no file to link to; so
is an object under a URL root (``s3://...``): its bytes are fetched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from .display import display_bytes, display_path
from .errors import ExportError
from .report import Group, Image, Report
from .sources import is_url, source_for
from .sources.archives import MARK

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
        _refuse_overlap(report, target)
    for target in targets:
        _prepare(target, force)
    if link == "hardlink":
        _check_same_filesystem(report, targets)
    summary = ExportSummary(out_dir, duplicates_dir)
    labels = _root_labels(report)
    for group in report.groups():
        if out_dir is not None:
            dest = os.path.join(labels[group.kept.root_id], _relative(report, group.kept)).lstrip(b"/")
            if group.kept.archived:  # ARCHIVE#OFFSET: a folder named as the archive, a file named from the URL
                archive, _, _ = dest.rpartition(MARK)
                dest = os.path.join(archive, _viewable(group.kept))
            if _place(os.fsencode(out_dir), dest, group.kept, link, summary):
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


def _refuse_overlap(report: Report, target: Path) -> None:
    """Copies inside an indexed root would be indexed, and reported as duplicates, by the
    next scan; a target holding a root would have copies written into the root."""
    real = os.path.realpath(os.fsencode(target.absolute()))
    for root in report.root_paths.values():
        if is_url(root):
            continue  # fetched, never written into
        top = os.path.realpath(root)
        if real == top or real.startswith(top.rstrip(b"/") + b"/"):
            raise ExportError(
                f"{target} is inside the indexed directory {display_path(root)}: its copies would be indexed as"
                " duplicates by the next scan; choose a directory outside it"
            )
        if top.startswith(real.rstrip(b"/") + b"/"):
            raise ExportError(
                f"{target} holds the indexed directory {display_path(root)}: copies could be written into it;"
                " choose a directory outside it"
            )


def _check_same_filesystem(report: Report, targets: list[Path]) -> None:
    for target in targets:
        device = target.stat().st_dev
        for root in report.roots:
            if is_url(root):
                continue  # its objects are fetched, not linked
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


def _place(top: bytes, dest: bytes, image: Image, link: Link, summary: ExportSummary) -> bool:
    """Copy or link one image to ``dest`` (relative) under ``top``; never replaces what is there,
    never writes through a symbolic link, and a copy is there whole or not at all."""
    source = image.path
    directory, name = os.path.split(dest)
    try:
        fd = _open_tree(top, directory)
    except OSError as e:
        summary.missing.append(
            (source, f"cannot write into {display_path(os.path.join(top, directory))}: {e.strerror}")
        )
        return False
    try:
        if image.archived or is_url(source):
            _extract_new(source, name, fd)
        elif link == "copy":
            _copy_new(source, name, fd)
        elif link == "hardlink":
            os.link(source, name, dst_dir_fd=fd)
        else:
            os.symlink(os.path.abspath(source), name, dir_fd=fd)
    except FileExistsError:
        summary.existing.append(os.path.join(top, dest))
        return False
    except OSError as e:
        summary.missing.append((source, e.strerror or str(e)))
        return False
    finally:
        os.close(fd)
    return True


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _open_tree(top: bytes, relative: bytes) -> int:
    """A descriptor of the directory ``relative`` under ``top``, made where missing. Each step
    is opened without following a symbolic link: a link, or a file, where a directory should
    be fails (ELOOP, ENOTDIR) rather than lead outside ``top``."""
    fd = os.open(top, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in relative.split(b"/"):
            if part in (b"", b"."):
                continue
            if part == b"..":
                raise OSError(errno.EINVAL, "a path that leaves the output directory")
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, dir_fd=fd)
            inner = os.open(part, _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _copy_new(source: bytes, name: bytes, fd: int) -> None:
    """Copy ``source`` to a new file ``name`` in the directory ``fd``, with its permissions and
    times (see :func:`_write_new`)."""
    # Non-blocking: a FIFO put where an indexed file was must not hang the export.
    src_fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(src_fd, "rb") as src:
        st = os.fstat(src_fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")

        def fill(out: BinaryIO) -> None:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fchmod(out.fileno(), stat.S_IMODE(st.st_mode))
            os.utime(out.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))

        _write_new(fill, name, fd, 0o600)


def _extract_new(address: bytes, name: bytes, fd: int) -> None:
    """Write the payload of the web archive record at ``address`` (or the object at a URL) to a
    new file ``name`` in the directory ``fd``, dated as the record (see :func:`_write_new`)."""
    with source_for([address]).open(address) as record:
        st, _ = record.stat()
        data = record.read()

    def fill(out: BinaryIO) -> None:
        out.write(data)
        out.flush()
        if st.mtime_ns > 0:
            os.utime(out.fileno(), ns=(st.mtime_ns, st.mtime_ns))

    _write_new(fill, name, fd, 0o644)


def _write_new(fill: Callable[[BinaryIO], object], name: bytes, fd: int, mode: int) -> None:
    """Make a new file ``name`` in the directory ``fd`` with what ``fill`` writes: written under
    a temporary name beside it, then linked into place, so that a full disk or a failure leaves
    no partial file, and an existing one is never replaced (FileExistsError)."""
    temp = b".imgindex-%d-%s.tmp" % (os.getpid(), secrets.token_hex(6).encode())
    out = os.open(temp, _NEW_FILE, mode, dir_fd=fd)
    try:
        with os.fdopen(out, "wb", closefd=False) as f:
            fill(f)
        os.close(out)
        out = -1
        try:
            os.link(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except FileExistsError:
            raise
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
            # A filesystem without hard links: rename into place, if nothing is there.
            if _exists(name, fd):
                raise FileExistsError(errno.EEXIST, "exists") from None
            os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        if out >= 0:
            os.close(out)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=fd)


def _exists(name: bytes, fd: int) -> bool:
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _review_folder(group: Group, number: int, top: bytes, link: Link, summary: ExportSummary) -> int:
    """``00001-name/``: ``0-kept-name.jpg``, ``1-d3-other.jpg``, ..., and ``group.txt`` with the full paths."""
    folder = b"%05d-" % number + _viewable(group.kept)[:80]
    # One line per image: control bytes in a name (a newline, a tab) would split the lines.
    lines = [b"kept\t\t" + display_bytes(group.kept.path) + _url_field(group.kept)]
    _place(top, os.path.join(folder, b"0-kept-" + _viewable(group.kept)), group.kept, link, summary)
    placed = 0
    for i, (image, distance) in enumerate(group.duplicates, start=1):
        name = b"%d-d%d-" % (i, distance) + _viewable(image)
        if _place(top, os.path.join(folder, name), image, link, summary):
            placed += 1
        lines.append(b"duplicate\t%d\t" % distance + display_bytes(image.path) + _url_field(image))
    listing = b"role\tdistance\tpath\turl\n" + b"\n".join(lines) + b"\n"
    try:
        fd = _open_tree(top, folder)
    except OSError:
        return placed  # said for its images already
    try:
        _write_new(lambda out: out.write(listing), b"group.txt", fd, 0o644)
    except FileExistsError:
        summary.existing.append(os.path.join(top, folder, b"group.txt"))
    except OSError as e:
        summary.missing.append((os.path.join(top, folder, b"group.txt"), e.strerror or str(e)))
    finally:
        os.close(fd)
    return placed


def _url_field(image: Image) -> bytes:
    """The image's URL as the last field of its line in group.txt (empty when unknown)."""
    return b"\t" + (display_bytes(image.url.encode("utf-8", "surrogateescape")) if image.url else b"")


def _viewable(image: Image) -> bytes:
    """The file's name, with an extension matching its content where it has none. A web
    archive's record is named by its offset and the last part of its URL, made safe."""
    name = os.path.basename(image.path)
    if image.archived:
        _, _, offset = image.path.rpartition(MARK)
        name = offset + b"-" + url_name(image.url)
    extensions = EXTENSIONS.get(image.format or "", ())
    if extensions and not name.lower().endswith(extensions):
        name += extensions[0]
    return name


#: What a name taken from a URL may hold; anything else becomes "_".
_SAFE = re.compile(rb"[^A-Za-z0-9._-]+")


def url_name(url: str | None) -> bytes:
    """A file name from the last part of a URL's path: percent-decoded, then only letters,
    digits, ".", "_" and "-" (no separator, no leading dot), at most 100 bytes."""
    if not url:
        return b"record"
    last = urllib.parse.unquote_to_bytes(urllib.parse.urlsplit(url).path.rpartition("/")[2])
    safe = _SAFE.sub(b"_", last).lstrip(b".")[:100]
    return safe or b"record"
