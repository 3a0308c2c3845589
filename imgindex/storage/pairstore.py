"""The pair store: near pairs of distinct hash values, per kind of hash.

``near_pairs`` holds every two distinct hash values of one kind within the
stored maximum distance; ``near_hashes`` the values whose pairs are all
stored. ``meta`` records the maximum and a generation that every reset
changes, so that a process never marks a value stored after another process
reset the pairs under it. Keeping them up to date is :mod:`imgindex.pairs`'s
job; this module only reads and writes them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .database import Database, int_column


class PairStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def hashes(self, kind: str) -> npt.NDArray[np.int64]:
        """The hashes whose near pairs are all stored, sorted."""
        return int_column(self.db.execute("SELECT hash FROM near_hashes WHERE kind = ? ORDER BY hash", (kind,)))

    def state(self) -> tuple[int | None, int]:
        """The distance up to which pairs are kept (None before the first update), and the
        generation of the stored pairs, which every reset changes."""
        rows = dict(
            self.db.execute("SELECT key, value FROM meta WHERE key IN ('near_max_distance', 'near_generation')")
        )
        max_distance = rows.get("near_max_distance")
        return (None if max_distance is None else int(max_distance)), int(rows.get("near_generation", 0))

    def reset(self, max_distance: int, generation: int) -> int | None:
        """Forget every stored pair and record the distance up to which pairs will be kept.

        Only if the pairs are still of ``generation`` (another process may have
        reset them meanwhile): returns the new generation, or None.
        """
        with self.db.write() as c:
            if self.state()[1] != generation:
                return None
            c.execute("DELETE FROM near_pairs")
            c.execute("DELETE FROM near_hashes")
            c.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [("near_max_distance", str(max_distance)), ("near_generation", str(generation + 1))],
            )
        return generation + 1

    def add_pairs(
        self,
        kind: str,
        a: npt.NDArray[np.int64],
        b: npt.NDArray[np.int64],
        distance: npt.NDArray[np.uint8],
        batch: int = 200_000,
    ) -> None:
        """Store pairs (``a < b``), a batch per transaction; pairs already there are kept."""
        for start in range(0, len(a), batch):
            rows = zip(
                a[start : start + batch].tolist(),
                b[start : start + batch].tolist(),
                distance[start : start + batch].tolist(),
                strict=True,
            )
            with self.db.write() as c:
                c.executemany(
                    "INSERT OR IGNORE INTO near_pairs (kind, a, b, distance) VALUES (?, ?, ?, ?)",
                    ((kind, x, y, d) for x, y, d in rows),
                )

    def add_hashes(self, kind: str, hashes: npt.NDArray[np.int64], generation: int, batch: int = 200_000) -> bool:
        """Mark hashes as having all their pairs stored (call after :meth:`add_pairs`).

        Marks nothing if the pairs were reset since ``generation`` (their pairs
        may have been deleted): returns whether all were marked.
        """
        for start in range(0, len(hashes), batch):
            with self.db.write() as c:
                if self.state()[1] != generation:
                    return False
                c.executemany(
                    "INSERT OR IGNORE INTO near_hashes (kind, hash) VALUES (?, ?)",
                    ((kind, h) for h in hashes[start : start + batch].tolist()),
                )
        return True

    def remove_hashes(self, kind: str, hashes: npt.NDArray[np.int64], batch: int = 50_000) -> int:
        """Forget hashes no image has any more, and their pairs; returns the pairs removed."""
        removed = 0
        for start in range(0, len(hashes), batch):
            chunk = [(kind, h) for h in hashes[start : start + batch].tolist()]
            with self.db.write() as c:
                before = c.total_changes
                c.executemany("DELETE FROM near_pairs WHERE kind = ? AND a = ?", chunk)
                c.executemany("DELETE FROM near_pairs WHERE kind = ? AND b = ?", chunk)
                removed += c.total_changes - before
                c.executemany("DELETE FROM near_hashes WHERE kind = ? AND hash = ?", chunk)
        return removed

    def pairs(
        self, kind: str, max_distance: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """Stored pairs within ``max_distance``: ``(a, b, distance)``."""
        rows = self.db.execute(
            "SELECT a, b, distance FROM near_pairs WHERE kind = ? AND distance <= ?", (kind, max_distance)
        )
        table = np.array(rows.fetchall(), dtype=np.int64).reshape(-1, 3)
        return table[:, 0].copy(), table[:, 1].copy(), table[:, 2].astype(np.uint8)

    def pairs_touching(
        self, kind: str, values: npt.NDArray[np.int64], max_distance: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """Stored pairs within ``max_distance`` that have one of ``values`` on either side."""
        sql = (
            "SELECT a, b, distance FROM near_pairs"
            " WHERE kind = ? AND distance <= ? AND (a IN ({marks}) OR b IN ({marks}))"
        )
        found: list[tuple[int, int, int]] = []
        listed = values.tolist()
        for start in range(0, len(listed), 400):
            chunk = listed[start : start + 400]
            marks = ",".join("?" * len(chunk))
            found += self.db.execute(sql.format(marks=marks), (kind, max_distance, *chunk, *chunk)).fetchall()
        table = np.array(found, dtype=np.int64).reshape(-1, 3)
        return table[:, 0].copy(), table[:, 1].copy(), table[:, 2].astype(np.uint8)

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM near_pairs").fetchone()[0])
