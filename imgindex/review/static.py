"""``imgindex review --static``: the groups as one page to share, read-only and offline.

Thumbnails are inlined (``data:`` URIs) up to :data:`INLINE_LIMIT` images;
above that they go in a folder beside the page (``NAME_files/``, named by
SHA-256), so that the page stays small enough for a browser to open.
"""

from __future__ import annotations

import base64
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import jinja2

from imgindex.formats import atomic_text_file

from .groups import Member, Snapshot, View
from .pictures import PictureError, Pictures

INLINE_LIMIT = 2000
HERE = Path(__file__).parent


@dataclass(frozen=True)
class StaticSummary:
    groups: int
    images: int
    unreadable: int  # images whose thumbnail could not be made
    folder: Path | None  # where the thumbnails went, when not inlined


def write_static(
    snapshot: Snapshot, out: str | os.PathLike[str], pictures: Pictures, view: View | None = None
) -> StaticSummary:
    """Write the groups of ``view`` (every page) as one HTML page at ``out``."""
    target = Path(out)
    groups = snapshot.view(view or View())
    members = [m for g in groups for m in g.members]
    folder = None if len(members) <= INLINE_LIMIT else target.with_name(target.name.rsplit(".", 1)[0] + "_files")
    if folder is not None:
        folder.mkdir(exist_ok=True)
    sources: dict[int, str | None] = {}
    for m in members:
        sources[m.file_id] = _source(m, pictures, folder)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    page = env.get_template("static.html").render(
        groups=groups,
        stats=snapshot.stats(),
        mode=snapshot.report.options.mode,
        sources=sources,
        style=(HERE / "assets" / "review.css").read_text(),
    )
    with atomic_text_file(target) as f:
        f.write(page)
    return StaticSummary(len(groups), len(members), sum(s is None for s in sources.values()), folder)


def _source(member: Member, pictures: Pictures, folder: Path | None) -> str | None:
    try:
        made = pictures.thumbnail(member, "s")
    except PictureError:
        return None
    if folder is None:
        return "data:image/jpeg;base64," + base64.b64encode(made.read_bytes()).decode("ascii")
    name = member.sha256.hex() + ".jpg"
    if not (folder / name).exists():
        shutil.copyfile(made, folder / name)
    return quote(folder.name) + "/" + name
