"""The groups as the review shows them: a :class:`Snapshot` of a report's groups as
arrays, and the views of them (filtered, sorted, paged) that its pages show.

The session that keeps a snapshot up to date and records decisions is
:mod:`.session`. Nothing here knows of HTTP or SQL.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from imgindex import decisions
from imgindex.arrays import distinct
from imgindex.display import display_path, display_text
from imgindex.errors import ReportError
from imgindex.report import Report

#: Groups on one page of the overview, the images of a group it shows, and those a group's
#: page shows (a group of thousands of blank images is not one page of thousands).
PAGE_SIZE = 50
STRIP = 8
GROUP_PAGE = 200
SORTS = ("bytes", "count", "distance", "size", "path")
Action = Literal["apart", "apart-group", "keep", "accept"]
ACTIONS: tuple[Action, ...] = ("apart", "apart-group", "keep", "accept")
#: What a bulk action may do to every group of a view (decisions per group, not per image).
BULK_ACTIONS: tuple[Action, ...] = ("accept", "apart-group")


@dataclass(frozen=True)
class Member:
    """One image of a group, with what the page shows of it (strangers' text escaped for
    display; the template escapes it again for HTML)."""

    file_id: int
    path: bytes
    sha256: bytes
    distance: int
    width: int | None
    height: int | None
    size: int
    mtime_ns: int
    format: str | None
    url: str | None
    archived: bool

    @property
    def shown_path(self) -> str:
        return display_path(self.path)

    @property
    def shown_url(self) -> str | None:
        return display_text(self.url) if self.url else None

    @property
    def link_url(self) -> str | None:
        """The URL as a link, when it is a web address (never a ``javascript:`` one)."""
        url = self.url
        return url if url and url.lower().startswith(("http://", "https://")) and "\n" not in url else None


@dataclass(frozen=True)
class Group:
    """A kept image and its duplicates; ``id`` is the kept image's file id. ``members`` may be
    the first of them only (a page shows a few of a large group); the figures are of all."""

    id: int
    members: tuple[Member, ...]  # kept first
    decided: bool  # every duplicate accepted as one (a "same" decision with the kept picture)
    count: int
    bytes_freed: int
    max_distance: int
    identical: bool

    @property
    def kept(self) -> Member:
        return self.members[0]

    @property
    def duplicates(self) -> tuple[Member, ...]:
        return self.members[1:]

    @property
    def complete(self) -> bool:
        return len(self.members) == self.count


@dataclass(frozen=True)
class View:
    """What the overview shows: a filter, an order and a page. Every field comes from a
    request: checked, never trusted."""

    text: str = ""  # in any member's path or URL (case-insensitive)
    folder: str = ""  # any member's path starts with it
    format: str = ""
    undecided: bool = False
    max_distance: int | None = None
    identical: bool = False
    sort: str = "bytes"
    ascending: bool = False
    page: int = 1

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise ReportError(f"unknown sort {self.sort!r}; choose from {', '.join(SORTS)}")

    def params(self, **changes: object) -> dict[str, str]:
        """The view as query parameters (defaults left out), with ``changes``."""
        v = replace(self, **changes)  # type: ignore[arg-type]
        out = {
            "q": v.text,
            "folder": v.folder,
            "format": v.format,
            "undecided": "1" if v.undecided else "",
            "max_distance": "" if v.max_distance is None else str(v.max_distance),
            "identical": "1" if v.identical else "",
            "sort": "" if v.sort == "bytes" else v.sort,
            "asc": "1" if v.ascending else "",
            "page": "" if v.page == 1 else str(v.page),
        }
        return {k: value for k, value in out.items() if value}


@dataclass(frozen=True)
class Page:
    groups: list[Group]
    total: int  # groups in the view (all pages)
    page: int
    pages: int


@dataclass(frozen=True)
class Stats:
    initial: int
    final: int
    groups: int
    duplicates: int
    bytes_freed: int
    decided: int  # groups decided
    histogram: list[tuple[int, int]]  # (distance, duplicates at it)


#: Views whose groups are kept, ready to page through (a view is its filter and order).
VIEWS_KEPT = 8


class Snapshot:
    """One state of the index as the review shows it: the groups of a report as arrays (one
    entry per group, in the order of the kept images' paths), from which the groups of a
    view are chosen and ordered at once; :class:`Group` objects are made only for what a
    page shows. The groups of recent views and the statistics are kept until a decision
    changes which groups are decided (:meth:`set_decided`)."""

    def __init__(self, report: Report, decided: decisions.InForce) -> None:
        self.report = report
        self.decided = decided
        t = report.table
        rows, distances, starts = report.layout()
        sizes = np.diff(starts)
        runs = np.flatnonzero(sizes > 1)
        count = sizes[runs]
        #: Of each group: where its members start in ``_rows`` (and the end last).
        self._offsets = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
        grouped = np.repeat(starts[runs], count) + (np.arange(int(count.sum())) - np.repeat(self._offsets[:-1], count))
        self._rows = rows[grouped]  # the table rows of every group's members, kept first
        self._distance = distances[grouped]
        first = self._offsets[:-1]
        kept = self._rows[first]
        self.ids = t.id[kept]
        self.count = count
        member_size = t.size[self._rows]
        self.bytes_freed = np.add.reduceat(member_size, first) - member_size[first] if len(runs) else count
        self.max_distance = np.maximum.reduceat(self._distance, first) if len(runs) else count
        same = (t.sha256[self._rows] == np.repeat(t.sha256[kept], count, axis=0)).all(axis=1)
        self.identical = np.minimum.reduceat(same.astype(np.uint8), first).astype(bool) if len(runs) else count > 0
        self.pixels = np.maximum(t.width[kept], 0) * np.maximum(t.height[kept], 0)
        self._position = {int(i): g for g, i in enumerate(self.ids.tolist())}
        member_ids = t.id[self._rows]
        self._member_order = np.argsort(member_ids, kind="stable")
        self._member_ids = member_ids[self._member_order]
        self.decided_groups = np.zeros(len(runs), dtype=bool)
        self._texts: list[str] | None = None
        self._paths: list[bytes] | None = None
        self._views: OrderedDict[View, npt.NDArray[np.int64]] = OrderedDict()
        self._views_lock = threading.Lock()
        self._stats: Stats | None = None
        self._formats: list[str | None] | None = None
        self._format_names: list[str] | None = None
        self.set_decided(decided)

    def __len__(self) -> int:
        return len(self.ids)

    def set_decided(self, decided: decisions.InForce, groups: list[int] | None = None) -> None:
        """Decisions in force that change no group, only which are decided: of the groups at
        these positions (default: every group that has a picture in a "same" decision)."""
        self.decided = decided
        if groups is None:
            self.decided_groups[:] = False
            groups = self._groups_with(decided.same_pictures())
        for g in groups:
            a, b = int(self._offsets[g]), int(self._offsets[g + 1])
            shas = [self.report.table.sha256[r].tobytes() for r in self._rows[a:b].tolist()]
            self.decided_groups[g] = all(decided.verdict(shas[0], s) == "same" for s in shas[1:])
        with self._views_lock:
            self._views.clear()
        self._stats = None

    def _groups_with(self, pictures: list[bytes]) -> list[int]:
        if not pictures:
            return []
        sha = self.report.table.sha256[self._rows]
        wanted = np.frombuffer(b"".join(pictures), np.uint8).reshape(-1, 32)
        void = np.dtype((np.void, 32))
        hit = np.isin(np.ascontiguousarray(sha).view(void).reshape(-1), wanted.view(void).reshape(-1))
        group_of = np.repeat(np.arange(len(self)), self.count)
        found: list[int] = distinct(group_of[hit]).tolist()
        return found

    # -- groups and members ---------------------------------------------------------------------

    def group(self, position: int, limit: int | None = None) -> Group:
        """The group at ``position`` (in path order) as objects: its first ``limit`` members
        (default: all)."""
        a, b = int(self._offsets[position]), int(self._offsets[position + 1])
        if limit is not None:
            b = min(b, a + limit)
        members = tuple(self._member(i) for i in range(a, b))
        return Group(
            members[0].file_id,
            members,
            bool(self.decided_groups[position]),
            int(self.count[position]),
            int(self.bytes_freed[position]),
            int(self.max_distance[position]),
            bool(self.identical[position]),
        )

    def accept_rows(self, positions: list[int]) -> list[decisions.Row]:
        """The decisions that accept the groups at ``positions`` as they are (as
        :func:`action_rows` makes them for one group), made over arrays."""
        sha = self.report.table.sha256
        rows: list[decisions.Row] = []
        for position in positions:
            a, b = int(self._offsets[position]), int(self._offsets[position + 1])
            members = self._rows[a:b]
            kept = sha[members[0]].tobytes()
            rows += decisions.same(kept, {sha[r].tobytes() for r in members[1:].tolist()})
        return rows

    def group_by_id(self, group_id: int, limit: int | None = None) -> Group | None:
        position = self._position.get(group_id)
        return None if position is None else self.group(position, limit)

    @property
    def groups(self) -> list[Group]:
        """Every group as objects (for a small review, a static page or a test)."""
        return [self.group(g) for g in range(len(self))]

    def member(self, file_id: int) -> Member | None:
        """An image of one of the groups, by file id (None: no group has it)."""
        at = int(np.searchsorted(self._member_ids, file_id))
        if at >= len(self._member_ids) or self._member_ids[at] != file_id:
            return None
        return self._member(int(self._member_order[at]))

    def _member(self, index: int) -> Member:
        """The member at ``index`` of ``_rows``."""
        t = self.report.table
        r = int(self._rows[index])
        return Member(
            file_id=int(t.id[r]),
            path=t.path(r),
            sha256=t.sha256[r].tobytes(),
            distance=int(self._distance[index]),
            width=int(t.width[r]) if t.width[r] >= 0 else None,
            height=int(t.height[r]) if t.height[r] >= 0 else None,
            size=int(t.size[r]),
            mtime_ns=int(t.mtime_ns[r]),
            format=t.format[r],
            url=t.urls[r],
            archived=bool(t.archived[r]),
        )

    def file_ids(self) -> list[int]:
        """The file ids of every image of a group."""
        ids: list[int] = self.report.table.id[self._rows].tolist()
        return ids

    # -- views ------------------------------------------------------------------------------------

    def stats(self) -> Stats:
        if self._stats is None:
            r = self.report
            duplicates = np.ones(len(self._rows), dtype=bool)
            duplicates[self._offsets[:-1]] = False
            histogram = np.bincount(self._distance[duplicates])
            self._stats = Stats(
                initial=r.initial_image_count,
                final=r.final_image_count,
                groups=len(self),
                duplicates=int(self.count.sum() - len(self)),
                bytes_freed=int(self.bytes_freed.sum()),
                decided=int(self.decided_groups.sum()),
                histogram=[(d, int(c)) for d, c in enumerate(histogram.tolist()) if c],
            )
        return self._stats

    def formats(self) -> list[str]:
        """The formats of the images (of the index: found at once; a format no group has
        shows an empty view)."""
        if self._format_names is None:
            self._format_names = sorted(f for f in set(self.report.table.format) if f)
        return self._format_names

    def warm_up(self) -> threading.Thread:
        """Make, in a thread, what the first text or folder filter needs (the members' paths
        and texts), so that it need not wait for them."""
        thread = threading.Thread(target=self._member_texts, name="review-warm-up", daemon=True)
        thread.start()
        return thread

    def _member_formats(self) -> list[str | None]:
        if self._formats is None:
            fmt = self.report.table.format
            self._formats = [fmt[r] for r in self._rows.tolist()]
        return self._formats

    def _member_paths(self) -> list[bytes]:
        if self._paths is None:
            t = self.report.table
            self._paths = [t.dirs[r] + t.names[r] for r in self._rows.tolist()]
        return self._paths

    def _member_texts(self) -> list[str]:
        """Each member's path as shown and URL, lower-cased, for the text filter."""
        if self._texts is None:
            urls = self.report.table.urls
            self._texts = [
                display_path(p).lower() + "\n" + (urls[r] or "").lower()
                for p, r in zip(self._member_paths(), self._rows.tolist(), strict=True)
            ]
        return self._texts

    def _any_member(self, hit: list[bool]) -> npt.NDArray[np.bool_]:
        """Which groups have a member where ``hit`` (one per member) is true."""
        if not len(self):
            return np.zeros(0, dtype=bool)
        return np.maximum.reduceat(np.array(hit, dtype=np.uint8), self._offsets[:-1]).astype(bool)

    def view_positions(self, view: View) -> npt.NDArray[np.int64]:
        """The positions of the groups in ``view`` (every page), in its order."""
        key = replace(view, page=1)
        with self._views_lock:  # requests come in threads
            found = self._views.get(key)
            if found is not None:
                self._views.move_to_end(key)
                return found
        ordered = self._chosen(view)
        with self._views_lock:
            self._views[key] = ordered
            while len(self._views) > VIEWS_KEPT:
                self._views.popitem(last=False)
        return ordered

    def _chosen(self, view: View) -> npt.NDArray[np.int64]:
        keep = np.ones(len(self), dtype=bool)
        if view.undecided:
            keep &= ~self.decided_groups
        if view.max_distance is not None:
            keep &= self.max_distance <= view.max_distance
        if view.identical:
            keep &= self.identical
        if view.format:
            wanted = view.format.lower()
            keep &= self._any_member([(f or "").lower() == wanted for f in self._member_formats()])
        if view.folder:
            folder = view.folder.encode("utf-8", "surrogateescape")
            keep &= self._any_member([p.startswith(folder) for p in self._member_paths()])
        if view.text:
            text = view.text.lower()
            keep &= self._any_member([text in t for t in self._member_texts()])
        chosen = np.flatnonzero(keep)
        # Largest first unless asked otherwise, ties in path order; by path: A to Z.
        if view.sort == "path":
            ordered = chosen[::-1] if view.ascending else chosen
        else:
            primary, secondary = {
                "bytes": (self.bytes_freed, self.count),
                "count": (self.count, self.bytes_freed),
                "distance": (self.max_distance, self.count),
                "size": (self.pixels, self.bytes_freed),
            }[view.sort]
            sign = 1 if view.ascending else -1
            ordered = chosen[np.lexsort((chosen, sign * secondary[chosen], sign * primary[chosen]))]
        return ordered

    def view(self, view: View) -> list[Group]:
        """The groups in ``view`` (every page), in its order, as objects."""
        return [self.group(g) for g in self.view_positions(view).tolist()]

    def page(self, view: View) -> Page:
        chosen = self.view_positions(view)
        pages = max(1, -(-len(chosen) // PAGE_SIZE))
        page = min(max(view.page, 1), pages)
        shown = chosen[(page - 1) * PAGE_SIZE : page * PAGE_SIZE].tolist()
        return Page([self.group(g, STRIP) for g in shown], len(chosen), page, pages)

    def position(self, group_id: int) -> int:
        return self._position[group_id]

    def neighbours(self, group_id: int, view: View) -> tuple[int | None, int | None]:
        """The groups (ids) before and after ``group_id`` in ``view``."""
        chosen = self.view_positions(view)
        ids = self.ids[chosen]
        at = np.flatnonzero(ids == group_id)
        if not len(at):
            return (int(ids[0]) if len(ids) else None), None
        i = int(at[0])
        return (int(ids[i - 1]) if i > 0 else None), (int(ids[i + 1]) if i + 1 < len(ids) else None)
