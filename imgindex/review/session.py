"""The review's session: one open index under review, the latest snapshot of its groups,
and the decisions made on it (what each action decides, recorded, undone).

Nothing here knows of HTTP: :mod:`.app` calls a :class:`Review` from its
request threads.
"""

from __future__ import annotations

import threading
from pathlib import Path

from imgindex import decisions
from imgindex.errors import ReportError
from imgindex.report import ReportOptions, build_report
from imgindex.storage import Batch, Index, open_index

from .groups import BULK_ACTIONS, Action, Group, Member, Snapshot, View


def snapshot(index: Index, options: ReportOptions) -> Snapshot:
    """The groups with duplicates of a report over ``index`` (one state of it)."""
    with index.snapshot():
        report = build_report(index, options)
        decided = decisions.in_force(index.decisions.in_force())
    return Snapshot(report, decided)


def action_rows(action: Action, group: Group, member: Member | None = None) -> tuple[str, list[decisions.Row]]:
    """The decisions an action on a group (and one of its images) makes, and what to call it."""
    if action == "accept":
        return f"accepted the group of {group.kept.shown_path}", decisions.same(
            group.kept.sha256, [m.sha256 for m in group.duplicates]
        )
    if action == "apart-group":
        return f"not duplicates: the group of {group.kept.shown_path}", decisions.all_apart(
            m.sha256 for m in group.members
        )
    if member is None or member not in group.members:
        raise ReportError("that image is not in this group")
    if action == "keep":
        return f"keep {member.shown_path}", decisions.keep(member.sha256, member.path)
    # Not a duplicate of any other picture of the group (its identical copies stay with it).
    return f"not a duplicate: {member.shown_path}", decisions.apart(member.sha256, [m.sha256 for m in group.members])


class Review:
    """An index under review: the latest snapshot, and the decisions made on it.

    Safe to use from several threads: one at a time touches the index."""

    def __init__(self, db: str | Path, options: ReportOptions) -> None:
        self.options = options
        self._index = open_index(db, create=False, threads=True)
        self._lock = threading.RLock()
        self._seen: int | None = None
        self._snapshot: Snapshot | None = None

    def close(self) -> None:
        with self._lock:
            self._index.close()

    @property
    def read_only(self) -> bool:
        return self._index.db.read_only

    def current(self) -> Snapshot:
        """The snapshot of the index as it is now (built again if anything was committed)."""
        with self._lock:
            version = self._index.db.data_version()
            if self._snapshot is None or version != self._seen:
                self._snapshot = snapshot(self._index, self.options)
                self._snapshot.warm_up().join()  # a build takes seconds anyway; the first filter need not
                self._seen = version
            return self._snapshot

    def latest(self) -> Snapshot:
        """The snapshot last built (built now if none was): for pictures, which a running
        scan's commits should not make wait for a new build of every group. Read without
        the lock (one attribute: a build in progress does not hold it up)."""
        snap = self._snapshot
        return snap if snap is not None else self.current()

    def decide(self, action: Action, group_id: int, file_id: int | None = None) -> Batch | None:
        """Record what ``action`` decides about a group of the current snapshot (None: the
        group is gone, e.g. decided meanwhile elsewhere)."""
        with self._lock:
            snap = self.current()
            group = snap.group_by_id(group_id)
            if group is None:
                return None
            member = next((m for m in group.members if m.file_id == file_id), None)
            summary, rows = action_rows(action, group, member)
            return self._record(summary, rows, regroup=action != "accept", touched=[snap.position(group_id)])

    def bulk(self, action: Action, view: View, *, commit: bool) -> tuple[int, int, Batch | None]:
        """``action`` on every group of ``view``: how many groups and images it decides about,
        and the batch when ``commit`` (else only counted)."""
        if action not in BULK_ACTIONS:
            raise ReportError(f"{action!r} cannot be done to many groups at once")
        with self._lock:
            snap = self.current()
            chosen = snap.view_positions(view).tolist()
            images = int(snap.count[chosen].sum()) if chosen else 0
            if not commit or not chosen:
                return len(chosen), images, None
            rows = snap.accept_rows(chosen) if action == "accept" else []
            for position in chosen if action != "accept" else []:
                rows += action_rows(action, snap.group(position))[1]
            what = "accepted" if action == "accept" else "not duplicates:"
            batch = self._record(
                f"{what} {len(chosen):,} groups at once", rows, regroup=action != "accept", touched=chosen
            )
            return len(chosen), images, batch

    def undo(self, batch_id: int | None = None) -> Batch | None:
        with self._lock:
            undone = self._index.decisions.undo(batch_id)
            if undone is not None:
                self._regroup()
            return undone

    def batches(self, limit: int = 10) -> list[Batch]:
        with self._lock:
            return self._index.decisions.batches(limit)

    def _record(self, summary: str, rows: list[decisions.Row], *, regroup: bool, touched: list[int]) -> Batch | None:
        batch_id = self._index.decisions.record(summary, rows)
        snap = self._snapshot
        if regroup or snap is None:
            self._regroup()
        else:
            # "same" decisions change no group, only whether the groups decided about are decided.
            snap.set_decided(decisions.in_force(self._index.decisions.in_force()), touched)
        return self._index.decisions.batch(batch_id)

    def _regroup(self) -> None:
        """The snapshot again after this connection's own decisions (which do not change
        ``data_version``): the same images and matches grouped with the decisions now in
        force. Anything another process committed meanwhile makes the next
        :meth:`current` build it all again."""
        snap = self._snapshot
        if snap is None:
            return
        decided = decisions.in_force(self._index.decisions.in_force())
        self._snapshot = Snapshot(snap.report.regrouped(decided), decided)
        self._snapshot.warm_up()
