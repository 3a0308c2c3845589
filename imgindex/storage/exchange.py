"""What the columnar form of the index (:mod:`imgindex.columnar`) reads out of it, in batches.

Reads only; rows come in batches of plain tuples whose columns are named by
the ``*_COLUMNS`` tuples beside each query, so that millions of rows never
sit in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator

from .database import Database

#: The columns of :meth:`Exchange.items`, in order.
ITEM_COLUMNS = (
    "path", "root", "archived", "status", "error", "format", "size", "mtime_ns", "ctime_ns", "inode", "device",
    "sha256", "width", "height", "phash", "trim_hash", "url", "read_ns", "hash_settings", "picture", "trimmed",
    "regions", "grid",
)  # fmt: skip
PAIR_COLUMNS = ("kind", "a", "b", "distance")
MATCH_COLUMNS = ("kind", "a", "b", "whole", "inside", "region")


class Exchange:
    """Every item of an index with what was read from it, and the stored pairs and matches."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def items(self, batch: int = 50_000) -> Iterator[list[tuple[object, ...]]]:
        cursor = self.db.execute(
            "SELECT p.path, r.path, a.dir_id IS NOT NULL, p.status, p.error, p.format, p.size, p.mtime_ns,"
            " p.ctime_ns, p.inode, p.device, p.sha256, p.width, p.height, p.phash, p.trim_hash, p.url, p.read_ns,"
            " h.key, d.picture, d.trimmed, g.hashes, d.grid"
            " FROM file_paths p JOIN roots r ON r.id = p.root_id"
            " LEFT JOIN archives a ON a.dir_id = p.dir_id"
            " LEFT JOIN hash_params h ON h.id = p.params_id"
            " LEFT JOIN descriptors d ON d.file_id = p.id"
            " LEFT JOIN regions g ON g.file_id = p.id"
            " ORDER BY p.id"
        )
        while rows := cursor.fetchmany(batch):
            yield rows

    def pairs(self, batch: int = 200_000) -> Iterator[list[tuple[object, ...]]]:
        cursor = self.db.execute("SELECT kind, a, b, distance FROM near_pairs")
        while rows := cursor.fetchmany(batch):
            yield rows

    def matches(self, batch: int = 200_000) -> Iterator[list[tuple[object, ...]]]:
        cursor = self.db.execute("SELECT kind, a, b, whole, inside, region FROM near_matches")
        while rows := cursor.fetchmany(batch):
            yield rows
