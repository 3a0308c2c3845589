"""Duplicate reports: queries over the index, never re-reading image files.

:func:`build_report` groups the indexed images (exactly, by SHA-256, or
nearly, by perceptual-hash distance) and chooses which image of each group
to keep; :func:`write_json` and :func:`write_csv` stream the result.
"""

from __future__ import annotations

import base64
import csv
import itertools
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt

from . import __version__
from .hashing import DESCRIPTOR_BYTES, ORIENTATIONS, descriptor_rows, orient_descriptors, orientation_hashes
from .index import ImageRow, Index
from .near import (
    LOW_DETAIL,
    NOT_NEAR,
    Grouping,
    Kind,
    Pictures,
    as_unsigned,
    confirm,
    group_by_leaders,
    pairs_from,
    thumbnails,
)
from .pairs import pairs_among

Mode = Literal["exact", "near"]

#: Measured on the quality benchmark's corpus (bench/quality): with the descriptor
#: check, 10 finds 98 % of the planted copies and few false pairs; see the README.
DEFAULT_THRESHOLD = 10
MAX_THRESHOLD = 32
#: --rotations: the largest distance between one picture's hash and an
#: orientation's of another, and the grey correlation their thumbnails need.
ROTATION_THRESHOLD = 8
ROTATION_CORRELATION = 0.90

#: Rules for choosing the image to keep, each as (column, best first is "descending"?).
KEEP_RULES: dict[str, tuple[str, bool]] = {
    "resolution": ("pixels", True),
    "size": ("size", True),
    "oldest": ("mtime_ns", False),
    "newest": ("mtime_ns", True),
    "shortest": ("path_length", False),
}
DEFAULT_KEEP = ("resolution", "size", "oldest", "shortest")


class ReportError(ValueError):
    pass


@dataclass(frozen=True)
class ReportOptions:
    mode: Mode = "exact"
    threshold: int | None = None  # near mode only; None: DEFAULT_THRESHOLD
    keep: tuple[str, ...] = DEFAULT_KEEP
    prefer: tuple[bytes, ...] = ()
    under: tuple[bytes, ...] = ()  # only images below these directories
    duplicates_only: bool = False
    rotations: bool = False  # near mode: also match mirrored and quarter-turned copies

    def __post_init__(self) -> None:
        unknown = [r for r in self.keep if r not in KEEP_RULES]
        if unknown:
            raise ReportError(f"unknown --keep rule {unknown[0]!r}; choose from {', '.join(KEEP_RULES)}")
        if self.mode == "exact" and self.threshold is not None:
            raise ReportError("--threshold applies to --near reports only")
        if self.mode == "exact" and self.rotations:
            raise ReportError("--rotations applies to --near reports only")
        if self.threshold is not None and not 0 <= self.threshold <= MAX_THRESHOLD:
            raise ReportError(f"--threshold must be between 0 and {MAX_THRESHOLD}")

    @property
    def effective_threshold(self) -> int | None:
        if self.mode == "exact":
            return None
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold


@dataclass(frozen=True)
class Image:
    id: int
    root_id: int
    path: bytes
    sha256: bytes
    phash: int | None
    width: int | None
    height: int | None
    size: int
    format: str | None


@dataclass(frozen=True)
class Group:
    """A kept image and its duplicates (each with its distance to the kept one; 0 for exact copies)."""

    kept: Image
    duplicates: list[tuple[Image, int]]


@dataclass
class Report:
    index: Index
    options: ReportOptions
    roots: list[bytes]
    root_paths: dict[int, bytes]
    initial_image_count: int
    final_image_count: int
    group_count: int
    duplicate_count: int
    # Near mode: images with a near candidate but no thumbnails (indexed by an older version,
    # not rescanned since), so matched by hash alone.
    unconfirmed_count: int
    # Per image (rows in path order); the groups as runs of `members`.
    _rows: dict[str, npt.NDArray[Any]] = field(repr=False)
    _formats: list[str | None] = field(repr=False)
    _dirs: list[bytes] = field(repr=False)  # each image's directory ("" for the root "/")
    _names: list[bytes] = field(repr=False)
    _members: npt.NDArray[np.int64] = field(repr=False)
    _member_distance: npt.NDArray[np.uint8] = field(repr=False)
    _starts: npt.NDArray[np.int64] = field(repr=False)

    def runs(self) -> Iterator[tuple[list[int], list[int]]]:
        """Each group as the rows of its members (kept image first) and their distances,
        in the order of the kept images' paths."""
        starts = self._starts.tolist()
        members = self._members.tolist()
        distances = self._member_distance.tolist()
        for a, b in itertools.pairwise(starts):
            if b - a > 1 or not self.options.duplicates_only:
                yield members[a:b], distances[a:b]

    def path(self, row: int) -> bytes:
        return self._dirs[row] + b"/" + self._names[row]

    def groups(self) -> Iterator[Group]:
        """The groups in the order of their kept image's path."""
        for rows, distances in self.runs():
            images = [self._image(r) for r in rows]
            yield Group(images[0], list(zip(images[1:], distances[1:], strict=True)))

    def _image(self, row: int) -> Image:
        r = self._rows
        return Image(
            id=int(r["id"][row]),
            root_id=int(r["root_id"][row]),
            path=self.path(row),
            sha256=r["sha256"][row].tobytes(),
            phash=int(r["phash"][row]) if r["has_hash"][row] else None,
            width=int(r["width"][row]) if r["width"][row] >= 0 else None,
            height=int(r["height"][row]) if r["height"][row] >= 0 else None,
            size=int(r["size"][row]),
            format=self._formats[row],
        )


def build_report(index: Index, options: ReportOptions) -> Report:
    """Group the indexed images and choose which to keep; see the README for the rules."""
    raw = index.image_rows(options.under, options.prefer)
    n = len(raw)
    columns = list(zip(*raw, strict=True)) if raw else [()] * len(ImageRow._fields)
    rows: dict[str, npt.NDArray[Any]] = {
        "id": np.array(columns[0], dtype=np.int64),
        "root_id": np.array(columns[1], dtype=np.int64),
        # 32 raw bytes per row (not numpy's "S32", which drops trailing NUL bytes).
        "sha256": np.frombuffer(b"".join(columns[2]), dtype=np.uint8).reshape(n, 32),
        "has_hash": np.array([p is not None for p in columns[3]], dtype=bool),
        "phash": np.array([0 if p is None else p for p in columns[3]], dtype=np.int64),
        "width": np.array([-1 if w is None else w for w in columns[4]], dtype=np.int64),
        "height": np.array([-1 if h is None else h for h in columns[5]], dtype=np.int64),
        "size": np.array(columns[6], dtype=np.int64),
        "mtime_ns": np.array(columns[7], dtype=np.int64),
        "path_length": np.array(columns[8], dtype=np.int64),
        "preferred": np.array(columns[10], dtype=bool),
        "has_trim": np.array([t is not None for t in columns[13]], dtype=bool),
        "trim_hash": np.array([0 if t is None else t for t in columns[13]], dtype=np.int64),
    }
    formats: list[str | None] = list(columns[9])
    dir_paths = {i: b"" if p == b"/" else p for i, p in index.dir_paths().items()}
    dirs = [dir_paths[d] for d in columns[11]]
    names: list[bytes] = list(columns[12])
    del raw, columns
    rows["pixels"] = np.where(rows["width"] >= 0, rows["width"] * rows["height"], -1)

    # Rank every image: --prefer first, then the --keep rules, then path order (the row order).
    keys: list[npt.NDArray[Any]] = [-rows["preferred"].astype(np.int64)]
    for rule in options.keep:
        column, descending = KEEP_RULES[rule]
        keys.append(-rows[column] if descending else rows[column])
    keys.append(np.arange(n))
    order = np.lexsort(keys[::-1]) if n else np.empty(0, np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)

    # Byte-identical files form one unit; a unit is represented by its best image.
    _, unit_of_row = np.unique(rows["sha256"].view(np.dtype((np.void, 32))).reshape(n), return_inverse=True)
    unit_of_row = unit_of_row.reshape(-1)
    unit_count = int(unit_of_row.max()) + 1 if n else 0
    best_rank = np.full(unit_count, n, dtype=np.int64)
    np.minimum.at(best_rank, unit_of_row, rank)
    best_row = order[best_rank] if n else np.empty(0, np.int64)
    unit_order = np.argsort(best_rank, kind="stable")
    threshold = options.effective_threshold
    if threshold is None:
        grouping, unconfirmed = group_by_leaders(unit_order, []), 0
    else:
        grouping, unconfirmed = _near_grouping(index, options, threshold, rows, best_row, unit_order)

    # Lay the groups out as runs: each run starts with its kept image, then the
    # duplicates by distance and rank; runs ordered by the kept image's path.
    leader_unit = grouping.leader[unit_of_row]
    kept_row = best_row[leader_unit]
    distance = grouping.distance[unit_of_row]
    is_kept = kept_row == np.arange(n)
    members = np.lexsort((rank, distance, ~is_kept, kept_row)) if n else np.empty(0, np.int64)
    starts = np.flatnonzero(is_kept[members]).astype(np.int64)
    starts = np.append(starts, n)
    kept_count = int(is_kept.sum())
    group_sizes = np.diff(starts)

    root_paths = {r.id: r.path for r in index.roots()}
    used_roots = sorted({root_paths[int(r)] for r in np.unique(rows["root_id"])}) if n else []
    return Report(
        index=index,
        options=options,
        roots=used_roots if n else sorted(root_paths.values()),
        root_paths=root_paths,
        initial_image_count=n,
        final_image_count=kept_count,
        group_count=int((group_sizes > 1).sum()),
        duplicate_count=n - kept_count,
        unconfirmed_count=unconfirmed,
        _rows=rows,
        _formats=formats,
        _dirs=dirs,
        _names=names,
        _members=members,
        _member_distance=distance[members] if n else np.empty(0, np.uint8),
        _starts=starts,
    )


def _near_grouping(
    index: Index,
    options: ReportOptions,
    threshold: int,
    rows: dict[str, npt.NDArray[Any]],
    best_row: npt.NDArray[np.int64],
    unit_order: npt.NDArray[np.int64],
) -> tuple[Grouping, int]:
    """Group units by their hashes, each match verified on the pictures' descriptors.

    Two units are candidates when their hashes of the whole picture are within
    ``threshold``, or those of what is inside their borders (a picture without
    a border counts as its own inside); with ``--rotations`` also when one's
    hash is within :data:`ROTATION_THRESHOLD` of an orientation of the other's.
    A candidate joins only if the descriptors of the pictures that matched
    confirm it (:func:`near.confirm`). Images hashed before descriptors existed
    (an index not rescanned since) are matched by their hashes alone, and
    between themselves only; their number is returned with the grouping.
    """
    has_hash = rows["has_hash"][best_row]
    whole = as_unsigned(rows["phash"][best_row])
    has_trim = rows["has_trim"][best_row]
    inside = np.where(has_trim, as_unsigned(rows["trim_hash"][best_row]), whole)
    values = np.unique(np.concatenate([whole[has_hash], inside[has_hash]]))
    stored = pairs_among(index, values, threshold)

    # Descriptors of the units that have a candidate (all of them for --rotations).
    paired = np.unique(np.concatenate([stored[0], stored[1]]))
    counts = np.unique(whole[has_hash], return_counts=True)
    trim_counts = np.unique(inside[has_hash], return_counts=True)
    paired = np.union1d(paired, np.union1d(counts[0][counts[1] > 1], trim_counts[0][trim_counts[1] > 1]))
    linked = has_hash & (np.isin(whole, paired) | np.isin(inside, paired))
    wanted = np.flatnonzero(has_hash if options.rotations else linked)
    thumbs = _Thumbnails(index, wanted, rows["id"][best_row[wanted]], len(best_row), keep=options.rotations)
    slot = thumbs.slot

    # A blank or one-colour picture (or inside) has nothing its thumbnail could confirm a
    # match by: it matches by its bytes only. (Left out here, thousands of blank images of
    # different sizes are not compared with each other in vain.)
    whole_detail, inside_detail = thumbs.detail()
    usable = has_hash & (whole_detail >= LOW_DETAIL)
    kinds = [Kind(whole, usable, threshold, stored)]
    inside_kind = rotation_kind = -1
    if has_trim.any():
        # Insides: only matches that involve a picture with a border are new here (for two
        # pictures without, the insides are the wholes), so only the pairs that touch one.
        usable_inside = has_hash & (inside_detail >= LOW_DETAIL)
        framed = np.unique(inside[has_trim & usable_inside])
        a, b, d = stored
        touch = np.isin(a, framed) | np.isin(b, framed)
        reach = np.union1d(framed, np.concatenate([a[touch], b[touch]]))
        inside_kind = len(kinds)
        kinds.append(Kind(inside, usable_inside & np.isin(inside, reach), threshold, (a[touch], b[touch], d[touch])))
    if options.rotations:
        described = (slot >= 0) & usable
        turned = orientation_hashes(thumbs.descriptors)
        upright = np.zeros(len(best_row), dtype=np.uint64)
        upright[described] = turned[slot[described], 0]
        rotation_threshold = min(threshold, ROTATION_THRESHOLD)
        rotation_kind = len(kinds)
        kinds.append(Kind(upright, described, rotation_threshold, _turned_pairs(turned, rotation_threshold)))
        del turned

    def check(leader: int, candidates: npt.NDArray[np.int64], gaps: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        verified = np.zeros(gaps.shape, dtype=bool)
        blind = slot[candidates] < 0
        if slot[leader] < 0:
            # Hashed before descriptors existed (an index not rescanned since): the hashes decide,
            # between two such pictures only (newer pictures' hashes may be of another kind).
            verified[:] = (gaps != NOT_NEAR) & blind
            if rotation_kind >= 0:
                verified[rotation_kind] = False
            return verified
        seen = np.flatnonzero(~blind)
        if not len(seen):
            return verified
        mine, theirs = thumbs.pictures(np.array([leader])), thumbs.pictures(candidates[seen])
        near_inside = gaps[inside_kind, seen] != NOT_NEAR if inside_kind >= 0 else np.zeros(len(seen), bool)
        verified[0, seen], inside_ok = confirm(mine, theirs, gaps[0, seen] != NOT_NEAR, near_inside)
        if inside_kind >= 0:
            verified[inside_kind, seen] = inside_ok
        if rotation_kind >= 0:
            todo = seen[gaps[rotation_kind, seen] != NOT_NEAR]
            for turn in range(1, ORIENTATIONS):
                if not len(todo):
                    break
                everywhere = np.ones(len(todo), bool)
                ok, _ = confirm(
                    mine, thumbs.turned(candidates[todo], turn), everywhere, ~everywhere, ROTATION_CORRELATION
                )
                verified[rotation_kind, todo[ok]] = True
                todo = todo[~ok]
        return verified

    unconfirmed = int(np.count_nonzero(linked & (thumbs.slot < 0)))
    return group_by_leaders(unit_order, kinds, check), unconfirmed


class _Thumbnails:
    """The descriptors of some units, read from the index at once and made ready to compare."""

    def __init__(
        self, index: Index, units: npt.NDArray[np.int64], file_ids: npt.NDArray[np.int64], n: int, *, keep: bool
    ) -> None:
        found = index.descriptors(file_ids.tolist())
        described, whole, framed, insides = [], [], [], []
        for unit, file_id in zip(units.tolist(), file_ids.tolist(), strict=True):
            pair = found.pop(file_id, None)
            if pair is None:
                continue  # indexed before descriptors existed
            described.append(unit)
            whole.append(pair[0])
            if pair[1] is not None:
                framed.append(unit)
                insides.append(pair[1])
        #: Row of each unit in the whole pictures' arrays; -1 without a descriptor.
        self.slot = np.full(n, -1, dtype=np.int64)
        self.slot[described] = np.arange(len(described))
        # Row of each unit in the insides' arrays; -1 for a picture without a border (or a descriptor).
        self._inside_slot = np.full(n, -1, dtype=np.int64)
        self._inside_slot[framed] = np.arange(len(framed))
        # One array of thumbnails: the whole pictures', the insides', then a blank row (never
        # accepted: flat), where units without descriptors point.
        blank = bytes(DESCRIPTOR_BYTES)
        pictures, inside_pictures = descriptor_rows([*whole, blank]), descriptor_rows([*insides, blank])
        self._all = thumbnails(np.concatenate([pictures[:-1], inside_pictures]))
        blank_row = len(self._all.grey) - 1
        self._whole_row = np.where(self.slot >= 0, self.slot, blank_row)
        #: Row in ``_all`` of each unit's inside: its whole picture's without a border.
        self._inside_row = np.where(self._inside_slot >= 0, len(described) + self._inside_slot, self._whole_row)
        #: The raw descriptors of the whole pictures (by ``slot``; without the blank row),
        #: when asked to ``keep`` them (for orientations); the insides' with theirs.
        self.descriptors = pictures[:-1] if keep else pictures[:0]
        self._inside_descriptors = inside_pictures if keep else inside_pictures[:0]

    def detail(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Each unit's detail (:class:`near.Thumbnails`) of its whole picture and of its inside;
        infinite for a unit without a descriptor (its hashes decide)."""
        known = self.slot >= 0
        whole = np.where(known, self._all.detail[self._whole_row], np.inf).astype(np.float32)
        inside = np.where(known, self._all.detail[self._inside_row], np.inf).astype(np.float32)
        return whole, inside

    def pictures(self, units: npt.NDArray[np.int64]) -> Pictures:
        """The thumbnails of these units (which have descriptors)."""
        whole, framed = self._all.rows(self._whole_row[units]), self._inside_slot[units] >= 0
        return Pictures(whole, self._all.rows(self._inside_row[units]) if framed.any() else whole, framed)

    def turned(self, units: npt.NDArray[np.int64], turn: int) -> Pictures:
        """The thumbnails of these units in orientation ``turn`` (needs ``keep``)."""
        whole = self.descriptors[self.slot[units]]
        at = self._inside_slot[units]
        framed = at >= 0
        inside = np.where(framed[:, None], self._inside_descriptors[at], whole)
        return Pictures.of(orient_descriptors(whole, turn), orient_descriptors(inside, turn), framed)


def _turned_pairs(turned: npt.NDArray[np.uint64], threshold: int) -> tuple[Any, Any, Any]:
    """Pairs of upright hashes (column 0 of ``turned``) where one is within
    ``threshold`` of another picture's hash in another orientation."""
    n = len(turned)
    if n < 2:
        empty = np.empty(0, np.uint64)
        return empty, empty, np.empty(0, np.uint8)
    flat = np.concatenate([turned[:, 0], turned[:, 1:].T.reshape(-1)])
    i, j, d = pairs_from(flat, np.arange(n), threshold)
    keep = j >= n  # an upright hash against a turned one
    i, other, d = i[keep], (j[keep] - n) % n, d[keep]
    return turned[i, 0], turned[other, 0], d


# -- output --------------------------------------------------------------------


def path_fields(path: bytes) -> dict[str, str]:
    """A path for JSON: ``path`` decodes with surrogateescape (``os.fsencode`` gives the bytes back);
    names that are not UTF-8 also get ``path_b64``, the raw bytes, for other languages."""
    fields = {"path": os.fsdecode(path)}
    try:
        path.decode("utf-8")
    except UnicodeDecodeError:
        fields["path_b64"] = base64.b64encode(path).decode("ascii")
    return fields


def write_json(report: Report, out: IO[str]) -> None:
    """Stream the report as JSON: the header first, then one image at a time."""
    near = report.options.mode == "near"
    header = {
        "imgindex_version": __version__,
        "mode": report.options.mode,
        "hash": "dhash",
        "threshold": report.options.effective_threshold,
        "rotations": report.options.rotations,
        "roots": [os.fsdecode(r) for r in report.roots],
        "initial_image_count": report.initial_image_count,
        "final_image_count": report.final_image_count,
        "group_count": report.group_count,
        "duplicate_count": report.duplicate_count,
    }
    out.write(json.dumps(header)[:-1] + ', "images": [')
    # Entries are formatted directly from plain lists: a report can list millions of
    # images, and a dict (or numpy scalar) per value costs more than the rest.
    r = report._rows
    sha_hex = r["sha256"].tobytes().hex()
    phash = [
        f'"{p & 0xFFFF_FFFF_FFFF_FFFF:016x}"' if h else "null"
        for p, h in zip(r["phash"].tolist(), r["has_hash"].tolist(), strict=True)
    ]
    width, height, size = r["width"].tolist(), r["height"].tolist(), r["size"].tolist()
    dirs, names = report._dirs, report._names  # Report.path, without a call per image

    def image(row: int) -> str:
        fields = path_fields(dirs[row] + b"/" + names[row])
        text = f'"path": {json.dumps(fields["path"])}, '
        if "path_b64" in fields:
            text += f'"path_b64": "{fields["path_b64"]}", '
        return text + f'"sha256": "{sha_hex[64 * row : 64 * row + 64]}", "phash": {phash[row]}'

    separator = "\n"
    for rows, distances in report.runs():
        kept = rows[0]
        duplicates = ", ".join(
            "{" + image(row) + (f', "distance": {d}' if near else "") + "}"
            for row, d in zip(rows[1:], distances[1:], strict=True)
        )
        w, h = width[kept], height[kept]
        out.write(
            f"{separator}{{{image(kept)}, "
            f'"width": {w if w >= 0 else "null"}, "height": {h if h >= 0 else "null"}, '
            f'"size": {size[kept]}, "duplicates": [{duplicates}]}}'
        )
        separator = ",\n"
    out.write("\n]}\n")


def write_csv(report: Report, out: IO[str]) -> None:
    """One row per duplicate: group number, kept path, duplicate path, distance (empty in exact mode)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["group", "kept_path", "duplicate_path", "distance"])
    near = report.options.mode == "near"
    number = 0
    for group in report.groups():
        if not group.duplicates:
            continue
        number += 1
        for image, distance in group.duplicates:
            writer.writerow([number, os.fsdecode(group.kept.path), os.fsdecode(image.path), distance if near else ""])


@contextmanager
def atomic_text_file(path: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """Write a text file whole or not at all: a temp file beside it, renamed into place.

    Names that are not UTF-8 are written back as their original bytes
    (surrogateescape), so CSV output round-trips.
    """
    target = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def parse_keep(text: str) -> tuple[str, ...]:
    """``--keep oldest,resolution``: the given rules first, then the default ones not named."""
    given = tuple(part.strip() for part in text.split(",") if part.strip())
    return given + tuple(r for r in DEFAULT_KEEP if r not in given)


def summary_line(report: Report) -> str:
    return (
        f"initial image count: {report.initial_image_count:,}\n"
        f"final image count: {report.final_image_count:,}"
        f" ({report.duplicate_count:,} duplicates in {report.group_count:,} groups)"
    )


def unconfirmed_warning(report: Report) -> str | None:
    """A note when some images could only be matched by hash (an index not rescanned since an upgrade)."""
    if not report.unconfirmed_count:
        return None
    return (
        f"warning: {report.unconfirmed_count:,} distinct images have no thumbnails yet (indexed by an older imgindex):"
        " they were matched by hash alone, and only with each other; run 'imgindex scan' to read them again"
    )
