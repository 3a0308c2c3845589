"""The pair store: near pairs of distinct hash values, and verified matches of pictures, per kind of hash.

``near_pairs`` holds every two distinct hash values of one kind within the
stored maximum distance; ``near_hashes`` the values whose pairs are all
stored (kept as one blob too, with a log of the writes since: ``near_hashes_kept``,
``near_hashes_log``, so that an update reads them at once). ``meta`` records the
maximum and a generation that every reset changes, so that a process never marks
a value stored after another process reset the pairs under it.
``near_matches`` holds the pairs of pictures (by :func:`picture_keys`) whose
thumbnails confirm a match, ``near_pictures`` the pictures whose matches are all
stored, under the hash settings ``near_params`` and the version of the
verification rule ``near_verification``.
With ``near_rotations`` set, mirrored and turned copies' matches are stored too,
under the kind :func:`turned_kind`, with each picture's orientation hashes
(``near_orientations``).
Keeping them up to date is :mod:`imgindex.pairs`'s job; this module only reads
and writes them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from .database import Database
from .shapes import GOOD_ORIENTATIONS

#: The log of writes to ``near_hashes`` is folded into its kept blob once it holds more than
#: this share of the blob's values, and more than :data:`LOG_LEAST` rows: a logged write
#: costs a reader about as much as 5-10 kept values (a row read, against a blob's bytes),
#: and making the blob again costs a write of every value.
LOG_SHARE = 1 / 16
LOG_LEAST = 4096

#: A distance meaning "no match of this sort": NULL in ``near_matches``.
NO_MATCH = 255
#: The page cache (KiB) while many pairs are stored: 20.8 million pairs (a crowd of 188,000
#: hash values of small pictures), inserted alone into a new index, took about 150 s with
#: SQLite's default 2 MB and 116 s with 64 MB (256 MB and 1 GB: 110-117 s, within noise).
BULK_CACHE_KIB = 64 * 1024


class Matches(NamedTuple):
    """Stored matches between pictures ``a < b`` (keys), with the distance of each sort that
    holds: whole pictures, insides (or one's inside and the other's whole), a region of one and
    the other's whole or inside; :data:`NO_MATCH` where it does not."""

    a: npt.NDArray[np.int64]
    b: npt.NDArray[np.int64]
    whole: npt.NDArray[np.uint8]
    inside: npt.NDArray[np.uint8]
    region: npt.NDArray[np.uint8]


def turned_kind(kind: str) -> str:
    """The kind under which the matches of mirrored and turned copies are stored."""
    return f"{kind}/turned"


def picture_keys(sha256: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """The key of each picture (rows of 32 SHA-256 bytes): its first 8 bytes, as a signed integer."""
    return np.ascontiguousarray(sha256[:, :8]).view(">i8").reshape(-1).astype(np.int64)


def picture_alone(keys: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Which pictures no other of ``keys`` shares its key with (two pictures whose keys
    collide are never stored, and their stored matches never trusted)."""
    order = np.argsort(keys)  # (np.unique asked for indices sorts stably: three times slower)
    ordered = keys[order]
    single = np.ones(len(keys), dtype=bool)
    shared = ordered[1:] == ordered[:-1]
    single[1:] &= ~shared
    single[:-1] &= ~shared
    alone = np.zeros(len(keys), dtype=bool)
    alone[order[single]] = True
    return alone


def _set_meta(c: sqlite3.Connection, **values: int) -> None:
    """Set keys of ``meta`` (in the caller's transaction)."""
    c.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [(key, str(value)) for key, value in values.items()],
    )


def _forget_matches(c: sqlite3.Connection) -> None:
    """Forget every verified match, the pictures marked and their orientation hashes, and the
    settings they were verified under (in the caller's transaction)."""
    for table in ("near_matches", "near_pictures", "near_orientations"):
        c.execute(f"DELETE FROM {table}")
    c.execute("DELETE FROM meta WHERE key = 'near_params'")


class PairStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def hashes(self, kind: str) -> npt.NDArray[np.int64]:
        """The hashes whose near pairs are all stored, sorted: from their kept blob and the
        writes logged since (see :meth:`keep_hashes`), or else row by row."""
        with self.db.snapshot():
            kept = self._kept_hashes(kind)
            if kept is not None:
                return kept
            return self.db.sorted_ints(
                "SELECT hash AS x FROM near_hashes WHERE kind = ? AND hash BETWEEN {lo} AND {hi}", (kind,)
            )

    def keep_hashes(self, kind: str) -> bool:
        """Make the blob of ``kind``'s stored hashes again (and clear its log) when there is
        none, or when the writes logged since it was made are more than :data:`LOG_SHARE`
        of its values (and :data:`LOG_LEAST`); whether it was made. The triggers of
        ``near_hashes`` log every write to it while a blob is kept, whoever writes, so the
        blob and its log always hold what the table holds."""
        row = self.db.execute("SELECT count FROM near_hashes_kept WHERE kind = ?", (kind,)).fetchone()
        if row is not None and isinstance(row[0], int):  # (a count of another type: made again)
            (logged,) = self.db.execute("SELECT count(*) FROM near_hashes_log WHERE kind = ?", (kind,)).fetchone()
            if logged <= max(LOG_LEAST, LOG_SHARE * row[0]):
                return False
        with self.db.write() as c:
            values = self.hashes(kind)  # (in the write transaction: what the table holds now)
            c.execute("DELETE FROM near_hashes_log WHERE kind = ?", (kind,))
            c.execute(
                "INSERT OR REPLACE INTO near_hashes_kept (kind, count, hashes) VALUES (?, ?, ?)",
                (kind, len(values), values.astype("<i8").tobytes()),
            )
        return True

    def _kept_hashes(self, kind: str) -> npt.NDArray[np.int64] | None:
        """The stored hashes from the kept blob and its log (None when there is none, or it
        is damaged: not sorted, of another length or type)."""
        row = self.db.execute("SELECT count, hashes FROM near_hashes_kept WHERE kind = ?", (kind,)).fetchone()
        if row is None:
            return None
        count, blob = row
        if not isinstance(count, int) or not isinstance(blob, bytes) or len(blob) != 8 * count:
            return None
        base = np.frombuffer(blob, dtype="<i8").astype(np.int64)
        if not (base[1:] > base[:-1]).all():
            return None
        sql = "SELECT hash, present FROM near_hashes_log WHERE kind = ? ORDER BY seq"
        log = self.db.execute(sql, (kind,)).fetchall()
        if not log:
            return base
        if not all(type(h) is int and present in (0, 1) for h, present in log):
            return None
        logged = np.array([h for h, _ in log], dtype=np.int64)[::-1]
        present = np.array([p for _, p in log], dtype=bool)[::-1]
        values, last = np.unique(logged, return_index=True)  # each value's last write
        at = np.searchsorted(base, values)
        had = at < len(base)
        had[had] = base[at[had]] == values[had]
        base = np.delete(base, at[had])
        added = values[present[last]]
        return np.insert(base, np.searchsorted(base, added), added)

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
            for table in ("near_hashes_kept", "near_hashes_log", "near_hashes"):  # (none logged then)
                c.execute(f"DELETE FROM {table}")
            _forget_matches(c)  # every picture to verify again
            _set_meta(c, near_max_distance=max_distance, near_generation=generation + 1)
        return generation + 1

    def bulk(self) -> AbstractContextManager[None]:
        """The page cache of :data:`BULK_CACHE_KIB` for a block that stores many pairs (the
        chunks of a search, each stored by :meth:`add_pairs`)."""
        return self.db.page_cache(BULK_CACHE_KIB)

    def add_pairs(
        self,
        kind: str,
        a: npt.NDArray[np.int64],
        b: npt.NDArray[np.int64],
        distance: npt.NDArray[np.uint8],
        batch: int = 200_000,
    ) -> None:
        """Store pairs (``a < b``), a batch per transaction; pairs already there are kept.
        Many of them (a rebuild inserts millions across both of the table's B-trees): inside
        :meth:`bulk`."""
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
        sql = "INSERT OR IGNORE INTO near_hashes (kind, hash) VALUES (?, ?)"
        return self._mark(sql, kind, hashes, generation, batch)

    def remove_hashes(self, kind: str, hashes: npt.NDArray[np.int64], batch: int = 50_000) -> int:
        """Forget hashes no image has any more, and their pairs; returns the pairs removed."""
        return self._forget("near_pairs", "DELETE FROM near_hashes WHERE kind = ? AND hash = ?", kind, hashes, batch)

    def pairs(
        self, kind: str, max_distance: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """Stored pairs within ``max_distance``: ``(a, b, distance)``."""
        sql = (
            "SELECT a AS c0, b AS c1, distance AS c2 FROM near_pairs"
            " WHERE kind = ? AND a BETWEEN {lo} AND {hi} AND distance <= ?"
        )
        table = self.db.int_rows(sql, (kind, max_distance), 3)
        return table[:, 0].copy(), table[:, 1].copy(), table[:, 2].astype(np.uint8)

    def pairs_touching(
        self, kind: str, values: npt.NDArray[np.int64], max_distance: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """Stored pairs within ``max_distance`` that have one of ``values`` on either side."""
        # A side at a time, each through its index: "a IN (...) OR b IN (...)" read every pair
        # of the kind (SQLite, without statistics, also passes over near_pairs_b for "b IN").
        by_side = (
            "SELECT a, b, distance FROM near_pairs WHERE kind = ? AND distance <= ? AND a IN ({marks})",
            "SELECT a, b, distance FROM near_pairs INDEXED BY near_pairs_b"
            " WHERE kind = ? AND distance <= ? AND b IN ({marks})",
        )
        found = {row for sql in by_side for row in self.db.select_in(sql, values.tolist(), params=(kind, max_distance))}
        table = np.array(sorted(found), dtype=np.int64).reshape(-1, 3)
        return table[:, 0].copy(), table[:, 1].copy(), table[:, 2].astype(np.uint8)

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM near_pairs").fetchone()[0])

    def _listed(self, sql: str, kind: str, values: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Which of ``values`` the query ``sql`` (``kind``, then ``IN ({marks})``) finds."""
        found = [int(r[0]) for r in self.db.select_in(sql, values.tolist(), params=(kind,))]
        return np.isin(values, np.array(found, dtype=np.int64))

    def _mark(self, sql: str, kind: str, values: npt.NDArray[np.int64], generation: int, batch: int) -> bool:
        """Insert ``(kind, value)`` rows by ``sql`` unless the store was reset since ``generation``."""
        for start in range(0, len(values), batch):
            with self.db.write() as c:
                if self.state()[1] != generation:
                    return False
                c.executemany(sql, ((kind, v) for v in values[start : start + batch].tolist()))
        return True

    def _forget(self, table: str, unmark: str, kind: str, values: npt.NDArray[np.int64], batch: int) -> int:
        """Delete the rows of ``table`` (pairs) with one of ``values`` on a side, and unmark
        the values by ``unmark``; returns the pairs deleted."""
        removed = 0
        for start in range(0, len(values), batch):
            chunk = [(kind, v) for v in values[start : start + batch].tolist()]
            with self.db.write() as c:
                before = c.total_changes
                c.executemany(f"DELETE FROM {table} WHERE kind = ? AND a = ?", chunk)
                c.executemany(f"DELETE FROM {table} WHERE kind = ? AND b = ?", chunk)
                removed += c.total_changes - before
                c.executemany(unmark, chunk)
        return removed

    # -- verified matches of pictures ----------------------------------------

    def pictures(self, kind: str) -> npt.NDArray[np.int64]:
        """The pictures whose verified matches are all stored, sorted."""
        sql = "SELECT picture AS x FROM near_pictures WHERE kind = ? AND picture BETWEEN {lo} AND {hi}"
        return self.db.sorted_ints(sql, (kind,))

    def pictures_among(self, kind: str, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Which of ``keys`` are pictures whose matches are all stored (looked up one by one)."""
        return self._listed("SELECT picture FROM near_pictures WHERE kind = ? AND picture IN ({marks})", kind, keys)

    def picture_count(self, kind: str, at_most: int | None = None) -> int:
        """The pictures whose matches are stored; counted no further than ``at_most`` when
        given (a question of more or fewer than so many, not a count of a million rows)."""
        if at_most is None:
            return int(self.db.execute("SELECT count(*) FROM near_pictures WHERE kind = ?", (kind,)).fetchone()[0])
        sql = "SELECT count(*) FROM (SELECT 1 FROM near_pictures WHERE kind = ? LIMIT ?)"
        return int(self.db.execute(sql, (kind, at_most)).fetchone()[0])

    def match_params(self, verification: int) -> int | None:
        """The hash settings (``hash_params.id``) the stored matches were verified under, if
        they were verified by the rule of version ``verification`` (None otherwise: none of
        them counts). Matches stored before versions were recorded are of version 1."""
        rows = dict(self.db.execute("SELECT key, value FROM meta WHERE key IN ('near_params', 'near_verification')"))
        if "near_params" not in rows or int(rows.get("near_verification", 1)) != verification:
            return None
        return int(rows["near_params"])

    def reset_matches(self, generation: int) -> int | None:
        """Forget every verified match, to verify them all again: as :meth:`reset`. Until
        :meth:`finish_matches`, no stored match counts (``near_params`` is unset), so a
        rebuild stopped halfway is started again by the next update."""
        with self.db.write() as c:
            if self.state()[1] != generation:
                return None
            _forget_matches(c)
            _set_meta(c, near_generation=generation + 1)
        return generation + 1

    def finish_matches(self, params_id: int, generation: int, verification: int) -> bool:
        """Record that every picture's matches are stored, verified under ``params_id`` by the
        rule of version ``verification`` (unless the store was reset since ``generation``)."""
        with self.db.write() as c:
            if self.state()[1] != generation:
                return False
            _set_meta(c, near_params=params_id, near_verification=verification)
        return True

    def add_matches(
        self,
        kind: str,
        a: npt.NDArray[np.int64],
        b: npt.NDArray[np.int64],
        whole: npt.NDArray[np.uint8],
        inside: npt.NDArray[np.uint8],
        region: npt.NDArray[np.uint8] | None = None,
        batch: int = 100_000,
        stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Store verified matches (``a < b``; :data:`NO_MATCH` where a sort does not hold); False
        when ``stop`` said to stop before all were written (a batch at a time: thousands of
        pictures on one hash make millions of matches)."""
        if region is None:
            region = np.full(len(a), NO_MATCH, np.uint8)
        for start in range(0, len(a), batch):
            if stop is not None and stop():
                return False
            part = slice(start, start + batch)
            rows = zip(
                a[part].tolist(),
                b[part].tolist(),
                *([None if d == NO_MATCH else d for d in sort[part].tolist()] for sort in (whole, inside, region)),
                strict=True,
            )
            with self.db.write() as c:
                c.executemany(
                    "INSERT OR REPLACE INTO near_matches (kind, a, b, whole, inside, region) VALUES (?, ?, ?, ?, ?, ?)",
                    ((kind, *row) for row in rows),
                )
        return True

    def add_pictures(self, kind: str, keys: npt.NDArray[np.int64], generation: int, batch: int = 200_000) -> bool:
        """Mark pictures as having all their matches stored (after :meth:`add_matches`); as
        :meth:`add_hashes`, nothing if the store was reset since ``generation``."""
        sql = "INSERT OR IGNORE INTO near_pictures (kind, picture) VALUES (?, ?)"
        return self._mark(sql, kind, keys, generation, batch)

    def remove_pictures(self, kind: str, keys: npt.NDArray[np.int64], batch: int = 50_000) -> int:
        """Forget pictures (gone, or no longer to be trusted) and their matches; returns the matches removed."""
        sql = "DELETE FROM near_pictures WHERE kind = ? AND picture = ?"
        return self._forget("near_matches", sql, kind, keys, batch)

    def matches(self, kind: str, max_distance: int) -> Matches:
        """Stored matches that hold within ``max_distance``: ``(a, b, whole, inside, region)``,
        with :data:`NO_MATCH` where a sort does not hold (or not within the distance)."""
        table = self.db.int_rows(
            f"SELECT a AS c0, b AS c1, coalesce(whole, {NO_MATCH}) AS c2, coalesce(inside, {NO_MATCH}) AS c3,"
            f" coalesce(region, {NO_MATCH}) AS c4 FROM near_matches"
            " WHERE kind = ? AND a BETWEEN {lo} AND {hi} AND (whole <= ? OR inside <= ? OR region <= ?)",
            (kind, max_distance, max_distance, max_distance),
            5,
        )
        within = [np.where(table[:, k] <= max_distance, table[:, k], NO_MATCH).astype(np.uint8) for k in (2, 3, 4)]
        return Matches(table[:, 0].copy(), table[:, 1].copy(), *within)

    def rotations(self) -> bool:
        """Are the matches of mirrored and turned copies stored (and kept up to date)?"""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'near_rotations'").fetchone()
        return row is not None and row[0] == "1"

    def set_rotations(self, on: bool, generation: int) -> int | None:
        """Store the matches of mirrored and turned copies from now on, or stop and forget them.
        Turning them on forgets every match, for the next update to verify all pictures with
        their orientations (as :meth:`reset_matches`: the new generation, or None)."""
        with self.db.write() as c:
            if self.state()[1] != generation:
                return None
            if on:
                _forget_matches(c)
                _set_meta(c, near_rotations=1, near_generation=generation + 1)
            else:
                c.execute("DELETE FROM near_orientations")
                c.execute("DELETE FROM near_matches WHERE kind LIKE ?", (turned_kind("%"),))
                c.execute("DELETE FROM near_pictures WHERE kind LIKE ?", (turned_kind("%"),))
                c.execute("DELETE FROM meta WHERE key = 'near_rotations'")
                _set_meta(c, near_generation=generation + 1)
        return generation + 1

    def add_orientations(
        self,
        kind: str,
        keys: npt.NDArray[np.int64],
        hashes: npt.NDArray[np.uint64],
        inside: npt.NDArray[np.uint64],
        batch: int = 200_000,
    ) -> None:
        """Store the orientation hashes (rows of 8) of pictures, of the whole picture and of the
        inside (the same rows for a picture without a border, stored once)."""
        blobs = hashes.astype(">u8")
        framed = (inside != hashes).any(axis=1)
        inside_blobs = inside.astype(">u8")
        for start in range(0, len(keys), batch):
            part = slice(start, start + batch)
            rows = zip(keys[part].tolist(), blobs[part], inside_blobs[part], framed[part].tolist(), strict=True)
            with self.db.write() as c:
                c.executemany(
                    "INSERT OR REPLACE INTO near_orientations (kind, picture, hashes) VALUES (?, ?, ?)",
                    ((kind, key, row.tobytes() + (own.tobytes() if f else b"")) for key, row, own, f in rows),
                )

    def orientations(
        self, kind: str
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.uint64]]:
        """Every stored picture's key and orientation hashes ``(n, 8)``, by key; then the keys
        and the insides' orientation hashes of those with a border."""
        sql = f"SELECT picture, hashes FROM near_orientations WHERE kind = ? AND {GOOD_ORIENTATIONS} ORDER BY picture"
        rows = self.db.execute(sql, (kind,))
        keys: list[int] = []
        framed: list[int] = []
        blobs = bytearray()
        insides = bytearray()
        for key, blob in rows:
            keys.append(key)
            blobs += blob[:64]
            if len(blob) > 64:
                framed.append(key)
                insides += blob[64:]
        hashes = np.frombuffer(bytes(blobs), dtype=">u8").astype(np.uint64).reshape(-1, 8)
        inside = np.frombuffer(bytes(insides), dtype=">u8").astype(np.uint64).reshape(-1, 8)
        return np.array(keys, dtype=np.int64), hashes, np.array(framed, dtype=np.int64), inside

    def remove_orientations(self, kind: str, keys: npt.NDArray[np.int64], batch: int = 50_000) -> None:
        for start in range(0, len(keys), batch):
            with self.db.write() as c:
                c.executemany(
                    "DELETE FROM near_orientations WHERE kind = ? AND picture = ?",
                    ((kind, key) for key in keys[start : start + batch].tolist()),
                )

    def last_pending(self) -> int:
        """The sequence number of the last picture written (0 when none is pending)."""
        last = self.db.execute("SELECT max(seq) FROM near_pending").fetchone()[0]
        return 0 if last is None else int(last)

    def pending(self) -> tuple[int, npt.NDArray[np.uint8]]:
        """The pictures written since their matches were last brought up to date: the last
        sequence number, and their distinct SHA-256s (rows of 32 bytes)."""
        last = self.last_pending()
        rows = self.db.execute("SELECT DISTINCT sha256 FROM near_pending WHERE length(sha256) = 32").fetchall()
        digests = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.uint8).reshape(-1, 32)
        return last, digests

    def clear_pending(self, last: int) -> None:
        """Forget the pending pictures up to sequence number ``last`` (those an update has done)."""
        with self.db.write() as c:
            c.execute("DELETE FROM near_pending WHERE seq <= ?", (last,))

    def stored_among(self, kind: str, values: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Which of ``values`` have all their pairs stored; looked up one by one
        when they are few, else by reading every stored value."""
        if len(values) > 20_000:
            return np.isin(values, self.hashes(kind), assume_unique=True)
        return self._listed("SELECT hash FROM near_hashes WHERE kind = ? AND hash IN ({marks})", kind, values)

    def match_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM near_matches").fetchone()[0])
