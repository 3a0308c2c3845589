"""The review's decisions: batches of decisions about pictures, by SHA-256.

Decisions are only ever added; undoing a batch marks it undone. Which
decisions are in force, and what they do to a report, is decided above
(:mod:`imgindex.decisions`): this module reads and writes rows.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from .database import Database


class StoredDecision(NamedTuple):
    batch_id: int
    kind: str  # 'keep', 'apart' or 'same'
    sha256: bytes
    other: bytes  # b"" for 'keep'
    path: bytes | None


class Batch(NamedTuple):
    id: int
    made_at: float
    summary: str
    decisions: int
    undone_at: float | None


class Decisions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, summary: str, decisions: list[tuple[str, bytes, bytes, bytes | None]]) -> int:
        """Store ``(kind, sha256, other, path)`` decisions as one batch; its id."""
        with self.db.write() as c:
            batch = c.execute(
                "INSERT INTO review_batches (made_at, summary) VALUES (?, ?)", (time.time(), summary)
            ).lastrowid
            assert batch is not None
            c.executemany(
                "INSERT INTO review_decisions (batch_id, kind, sha256, other, path) VALUES (?, ?, ?, ?, ?)",
                ((batch, kind, sha, other, path) for kind, sha, other, path in decisions),
            )
        return batch

    def undo(self, batch_id: int | None = None) -> Batch | None:
        """Undo a batch in force (the latest when ``batch_id`` is None); the batch, or None."""
        with self.db.write() as c:
            if batch_id is None:
                row = c.execute("SELECT max(id) FROM review_batches WHERE undone_at IS NULL").fetchone()
                batch_id = row[0]
            if batch_id is None:
                return None
            changed = c.execute(
                "UPDATE review_batches SET undone_at = ? WHERE id = ? AND undone_at IS NULL", (time.time(), batch_id)
            ).rowcount
        return self.batch(batch_id) if changed else None

    def batch(self, batch_id: int) -> Batch | None:
        found = self._batches("WHERE b.id = ?", (batch_id,))
        return found[0] if found else None

    def batches(self, limit: int = 20) -> list[Batch]:
        """The latest batches, newest first."""
        return self._batches("", (), limit)

    def _batches(self, where: str, params: tuple[int, ...], limit: int = -1) -> list[Batch]:
        rows = self.db.execute(
            "SELECT b.id, b.made_at, b.summary, (SELECT count(*) FROM review_decisions d WHERE d.batch_id = b.id),"
            f" b.undone_at FROM review_batches b {where} ORDER BY b.id DESC LIMIT ?",
            (*params, limit),
        )
        return [Batch(*row) for row in rows]

    def in_force(self) -> list[StoredDecision]:
        """Every decision of the batches not undone, oldest batch first."""
        rows = self.db.execute(
            "SELECT d.batch_id, d.kind, d.sha256, d.other, d.path FROM review_decisions d"
            " JOIN review_batches b ON b.id = d.batch_id WHERE b.undone_at IS NULL ORDER BY d.batch_id, d.rowid"
        )
        return [StoredDecision(*row) for row in rows]

    def count(self) -> int:
        return int(
            self.db.execute(
                "SELECT count(*) FROM review_decisions d JOIN review_batches b ON b.id = d.batch_id"
                " WHERE b.undone_at IS NULL"
            ).fetchone()[0]
        )
