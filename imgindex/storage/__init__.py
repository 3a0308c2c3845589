"""Storage: the index in SQLite. All SQL of the project lives here and in ``schema.sql``.

:func:`open_index` gives an :class:`Index`, whose parts serve their callers:
``catalog`` (roots, directories, files, scans: scan and watch), ``pairs``
(the stored near pairs: :mod:`imgindex.pairs`), ``images`` (what reports,
queries and the matcher read) and ``decisions`` (the review's). Callers get plain Python values and numpy
arrays, never a cursor.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager

from .catalog import Catalog, FileRecord, ProblemFile, Root, StoredArchive, StoredFile
from .database import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, Database, connect, schema_sql, split_sql
from .decisions import Batch, Decisions, StoredDecision
from .exchange import Exchange
from .images import Images
from .pairstore import NO_MATCH, PairStore, picture_alone, picture_keys, turned_kind
from .table import ImageTable

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "NO_MATCH",
    "SCHEMA_VERSION",
    "Batch",
    "Catalog",
    "Database",
    "Decisions",
    "FileRecord",
    "ImageTable",
    "Images",
    "Index",
    "PairStore",
    "ProblemFile",
    "Root",
    "StoredArchive",
    "StoredDecision",
    "StoredFile",
    "open_index",
    "picture_alone",
    "picture_keys",
    "schema_sql",
    "split_sql",
    "turned_kind",
]


class Index:
    """An open index. Use :func:`open_index` to get one; close it, or use it in ``with``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.catalog = Catalog(db)
        self.pairs = PairStore(db)
        self.images = Images(db)
        self.exchange = Exchange(db)
        self.decisions = Decisions(db)

    @property
    def path(self) -> str:
        return self.db.path

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def snapshot(self) -> AbstractContextManager[None]:
        """Reads that see one state of the index, whatever other processes write meanwhile."""
        return self.db.snapshot()

    @property
    def schema_version(self) -> int:
        return self.db.schema_version

    def network_filesystem(self) -> str | None:
        return self.db.network_filesystem()


def open_index(path: str | os.PathLike[str], *, create: bool = True, threads: bool = False) -> Index:
    """Open (and create or migrate) the index at ``path`` (``threads``: see :func:`.database.connect`)."""
    return Index(connect(path, create=create, threads=threads))
