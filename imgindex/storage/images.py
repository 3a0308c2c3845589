"""What reports, queries and the matcher read: the indexed images, their hashes and thumbnails.

Reads only; results come as named columns (numpy arrays and lists), never as
rows whose meaning hangs on the order of a SELECT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from imgindex.arrays import digest_units
from imgindex.errors import ImgindexError
from imgindex.hashing import REGIONS, region_rows

from .database import Database, ints_of, record_array
from .region_table import keep_regions, read_regions
from .shapes import GOOD_DESCRIPTORS, GOOD_REGIONS
from .table import ImageTable, chunk_bounds, file_chunks, image_hashes, keep_columns, read_table

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Pictures:
    """Distinct pictures (by SHA-256) as columns: one file of each, and its hashes."""

    file_id: npt.NDArray[np.int64]
    sha256: npt.NDArray[np.uint8]  # (n, 32)
    phash: npt.NDArray[np.int64]
    has_trim: npt.NDArray[np.bool_]
    trim_hash: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.file_id)


#: Distinct pictures hashed under some settings (one parameter), as :func:`_pictures` reads them.
_PICTURES = (
    "SELECT min(id), sha256, phash, coalesce(trim_hash, 0), trim_hash IS NOT NULL FROM files"
    " WHERE params_id = ? AND phash IS NOT NULL AND sha256 IS NOT NULL AND length(sha256) = 32"
)


#: Every picture's file of a chunk of file ids, each column joined into one text (the digests
#: into one blob), in id order: :meth:`Images._all_pictures` groups them.
_ALL_PICTURES = (
    "SELECT count(*), group_concat(id, ' '), group_concat(phash, ' '), group_concat(coalesce(trim_hash, 0), ' '),"
    " group_concat(trim_hash IS NOT NULL, ' '), CAST(group_concat(sha256, '') AS BLOB)"
    " FROM files WHERE id BETWEEN ? AND ? AND params_id = ? AND phash IS NOT NULL"
    " AND sha256 IS NOT NULL AND length(sha256) = 32"
)


_PICTURE_ROW = np.dtype(
    [("file_id", np.int64), ("sha256", "V32"), ("phash", np.int64), ("trim_hash", np.int64), ("has_trim", np.int64)]
)


def _pictures(rows: Iterable[tuple[int, bytes, int, int, int]]) -> Pictures:
    """Rows of :data:`_PICTURES` (whose SHA-256s are 32 bytes) as columns."""
    table = record_array(rows, _PICTURE_ROW)
    return Pictures(
        file_id=np.ascontiguousarray(table["file_id"]),
        sha256=np.ascontiguousarray(table["sha256"]).view(np.uint8).reshape(len(table), 32),
        phash=np.ascontiguousarray(table["phash"]),
        has_trim=table["has_trim"].astype(bool),
        trim_hash=np.ascontiguousarray(table["trim_hash"]),
    )


def _starting_with(prefix: bytes) -> tuple[str, tuple[bytes, ...]]:
    """An SQL condition (and its parameters): ``sha256`` starts with ``prefix``, as a range."""
    stem = prefix.rstrip(b"\xff")  # the first string after every one that starts with prefix
    if not stem:
        return "sha256 >= ?", (prefix,)
    return "sha256 >= ? AND sha256 < ?", (prefix, stem[:-1] + bytes([stem[-1] + 1]))


#: Past this many ids, :meth:`Images.regions` reads the whole table rather than look each up.
_SCAN_BEYOND = 20_000


class Images:
    def __init__(self, db: Database) -> None:
        self.db = db

    def table(self, under: Sequence[bytes] = (), prefer: Sequence[bytes] = ()) -> ImageTable:
        """Every file recognised as an image (it has an exact hash), ordered by directory and name.

        ``under`` keeps only images below those directories; ``prefer`` marks
        images below those directories (see :mod:`imgindex.storage.table`).
        """
        return read_table(self.db, under, prefer)

    def keep_table(self, stop: Callable[[], bool] | None = None) -> int:
        """Keep the image table as columns for the chunks of file ids that are all taken and
        not kept yet (see :mod:`imgindex.storage.table`), and the regions' hashes likewise
        (:mod:`imgindex.storage.region_table`); how many chunks of the image table were made."""
        made = keep_columns(self.db, stop)
        keep_regions(self.db, stop)  # (and the regions' hashes likewise: :mod:`.region_table`)
        return made

    def hashes(self) -> npt.NDArray[np.int64]:
        """Every distinct perceptual hash of an image (a file with an exact hash), of the whole
        picture or of what is inside its border, sorted (as signed integers)."""
        return image_hashes(self.db)

    def pictures(self, params_id: int, only: Sequence[bytes] | None = None) -> Pictures:
        """Every distinct picture (SHA-256) hashed under the settings ``params_id`` (of those
        with the digests ``only``, when given), with the id of one of its files (the lowest)
        and its hashes."""
        if only is None:
            return self._all_pictures(params_id)
        sql = _PICTURES + " AND sha256 IN ({marks}) GROUP BY sha256"
        return _pictures(list(self.db.select_in(sql, only, params=(params_id,))))

    def _all_pictures(self, params_id: int) -> Pictures:
        """Every picture hashed under ``params_id``, as :meth:`pictures`: the files in id order
        (a chunk of ids at a time, each column joined by SQLite into one text), grouped here.
        SQLite's GROUP BY sha256 walks the digests' index and reads each row where it lies, a
        random read per picture (10 s at a million on a busy machine)."""
        parts = []
        with self.db.snapshot():
            for chunk in file_chunks(self.db):
                lo, hi = chunk_bounds(chunk)
                n, *texts, digests = self.db.execute(_ALL_PICTURES, (lo, hi, params_id)).fetchone()
                if n:
                    what = f"the pictures of files {lo} to {hi}"
                    if len(digests) != 32 * n:
                        raise ImgindexError(f"{what} read out of step")
                    columns = [ints_of(text, n, what) for text in texts]
                    parts.append((*columns, np.frombuffer(digests, np.uint8).reshape(n, 32)))
        if not parts:
            return _pictures([])
        ids, phash, trim, has_trim, sha256 = (np.concatenate(column) for column in zip(*parts, strict=True))
        # By digest, files of one picture by id: the first of each is its lowest id, as min(id) was.
        rows, _ = digest_units(sha256)
        return Pictures(
            file_id=ids[rows],
            sha256=sha256[rows],
            phash=phash[rows],
            has_trim=has_trim[rows].astype(bool),
            trim_hash=trim[rows],
        )

    def pictures_with_keys(self, params_id: int, keys: Sequence[int]) -> Pictures:
        """The pictures (as :meth:`pictures`) whose picture keys (the first 8 bytes of the SHA-256,
        a signed integer) are ``keys``."""
        rows = []
        for key in keys:
            where, bounds = _starting_with((key & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big"))
            rows += self.db.execute(_PICTURES + f" AND {where} GROUP BY sha256", (params_id, *bounds)).fetchall()
        return _pictures(rows)

    def pictures_near(self, params_id: int, values: Sequence[int]) -> Pictures:
        """The pictures (as :meth:`pictures`) whose hash, of the whole or of the inside, is one of ``values``."""
        sql = _PICTURES + " AND (phash IN ({marks}) OR trim_hash IN ({marks})) GROUP BY sha256"
        return _pictures(list(self.db.select_in(sql, values, repeat=2, params=(params_id,))))

    def digests_with_prefix(self, prefix: bytes) -> list[bytes]:
        """The distinct SHA-256s of indexed files that start with ``prefix``."""
        where, bounds = _starting_with(prefix)
        return [bytes(r[0]) for r in self.db.execute(f"SELECT DISTINCT sha256 FROM files WHERE {where}", bounds)]

    def with_hashes(self, hashes: Sequence[int]) -> list[tuple[int, int | None, int | None]]:
        """``(file id, phash, trim_hash)`` of the indexed images with one of these hashes as either."""
        sql = "SELECT id, phash, trim_hash FROM files WHERE phash IN ({marks}) OR trim_hash IN ({marks})"
        return [(int(i), h, t) for i, h, t in self.db.select_in(sql, hashes, repeat=2)]

    def hashes_of(self, ids: Sequence[int]) -> list[tuple[int, int, int | None]]:
        """``(file id, phash, trim_hash)`` of the files by id that have a perceptual hash."""
        sql = "SELECT id, phash, trim_hash FROM files WHERE phash IS NOT NULL AND id IN ({marks})"
        return [(int(i), int(h), t) for i, h, t in self.db.select_in(sql, ids)]

    def hashed_files(self) -> list[tuple[int, int, int | None]]:
        """``(file id, phash, trim_hash)`` of every indexed image with a perceptual hash."""
        rows = self.db.execute("SELECT id, phash, trim_hash FROM files WHERE phash IS NOT NULL ORDER BY id")
        return [(int(i), int(h), t) for i, h, t in rows]

    def with_sha256(self, digests: Sequence[bytes]) -> list[tuple[int, bytes]]:
        """``(file id, sha256)`` of the indexed files with one of these exact hashes."""
        sql = "SELECT id, sha256 FROM files WHERE sha256 IN ({marks})"
        return [(int(i), bytes(d)) for i, d in self.db.select_in(sql, digests)]

    def descriptors(self, ids: Sequence[int]) -> dict[int, tuple[bytes, bytes | None, int | None, int | None]]:
        """The descriptors of files by id (of the whole picture, and of its inside when
        trimmed), with the picture's width and height: files without (not hashed yet by this
        version) are left out."""
        sql = (
            "SELECT d.file_id, d.picture, d.trimmed, f.width, f.height FROM descriptors d"
            f" JOIN files f ON f.id = d.file_id WHERE {GOOD_DESCRIPTORS} AND d.file_id IN ({{marks}})"
        )
        return {
            int(i): (bytes(p), None if t is None else bytes(t), w, h) for i, p, t, w, h in self.db.select_in(sql, ids)
        }

    def regions(self, ids: Sequence[int] | I64) -> tuple[I64, npt.NDArray[np.uint64]]:
        """The files of ``ids`` that have the hashes of their regions (``regions``), and those,
        as rows of ``len(REGIONS)`` hashes (:func:`imgindex.hashing.region_rows`)."""
        wanted = np.asarray(ids, dtype=np.int64)
        if len(wanted) > _SCAN_BEYOND:
            # Past some thousands of ids, one pass over the table beats looking each up.
            found, rows = self.all_regions()
            keep = np.isin(found, wanted)
            return (found, rows) if keep.all() else (found[keep], rows[keep])
        sql = f"SELECT file_id, hashes FROM regions WHERE {GOOD_REGIONS} AND file_id IN ({{marks}})"
        rows_read = list(self.db.select_in(sql, wanted.tolist()))
        if not rows_read:
            return np.empty(0, np.int64), np.empty((0, len(REGIONS)), np.uint64)
        file_ids, blobs = zip(*rows_read, strict=True)
        return np.array(file_ids, dtype=np.int64), region_rows(blobs)

    def all_regions(self) -> tuple[I64, npt.NDArray[np.uint64]]:
        """Every file that has the hashes of its regions: file ids, and the hashes as rows of
        ``len(REGIONS)``, in the same order (kept as columns where they can be:
        :mod:`.region_table`)."""
        return read_regions(self.db)

    def grids(self, ids: Sequence[int]) -> dict[int, tuple[bytes, bytes]]:
        """By file id, the grey grid of a file's inside (``descriptors.grid``) and its inside's
        descriptor (the whole picture's without a border), for the files that have a grid."""
        sql = (
            "SELECT file_id, grid, coalesce(trimmed, picture) FROM descriptors"
            f" WHERE grid IS NOT NULL AND {GOOD_DESCRIPTORS} AND file_id IN ({{marks}})"
        )
        return {int(i): (bytes(g), bytes(d)) for i, g, d in self.db.select_in(sql, ids)}

    def pictures_of_files(self, params_id: int, ids: Sequence[int]) -> Pictures:
        """The pictures (as :meth:`pictures`) of the files by id."""
        sql = _PICTURES + " AND sha256 IN (SELECT sha256 FROM files WHERE id IN ({marks})) GROUP BY sha256"
        return _pictures(list(self.db.select_in(sql, ids, params=(params_id,))))

    def file_info(self, ids: Sequence[int]) -> dict[int, tuple[bytes, int | None, int | None, str | None]]:
        """Full path, width, height and URL (None where unknown) of files by id."""
        sql = "SELECT id, path, width, height, url FROM file_paths WHERE id IN ({marks})"
        return {int(i): (bytes(p), w, h, u) for i, p, w, h, u in self.db.select_in(sql, ids)}
