"""Where files came from: the URL side-files a crawler's dump writes beside the files.

Apache Nutch's ``bin/nutch dump`` (FileDumper) writes, in its output
directory, one ``<segment>_filenameToUrl.json`` per segment: a JSON object
from the absolute path of each file it wrote (or found already written) to
that file's URL. The layouts differ (two levels of directories from the URL's
MD5 by default, ``-flatdir``, ``-reverseUrlDirs``); the paths say where, so
no layout is assumed. A dump moved since it was written still matches: the
directory holding the side-file is the dump's root now, and the root it had
when written is found from the first path whose tail names a file that is
there.

Knows nothing of the index: it is given a way to ask whether a file is known.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .display import display_path

#: The end of a side-file's name.
SUFFIX = b"_filenameToUrl.json"
#: How many of a side-file's paths are tried to find where a moved dump was.
PROBES = 64


def is_side_file(name: bytes) -> bool:
    return name.endswith(SUFFIX) and len(name) > len(SUFFIX)


@dataclass
class SideFile:
    """What one side-file says: each file's path (where it is now) and URL, and what is amiss."""

    urls: dict[bytes, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def read_side_file(path: bytes, data: bytes, known: Callable[[bytes], bool]) -> SideFile:
    """The URLs a side-file gives, by the path each file has now under the side-file's directory.

    ``known(path)`` says whether the index has a file at ``path``. A side-file
    that is not a JSON object of strings gives nothing and a warning; paths
    outside the dump are left out, and counted in a warning with the paths of
    files that are not (yet) there.
    """
    result = SideFile()
    shown = display_path(path)
    try:
        mapping = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        result.warnings.append(f"{shown}: not a URL side-file (not JSON: {e}); ignored")
        return result
    if not isinstance(mapping, dict):
        result.warnings.append(f"{shown}: not a URL side-file (not a JSON object); ignored")
        return result
    entries = [(path, url) for path, url in map(_entry, mapping.items()) if path is not None and url is not None]
    if len(entries) < len(mapping):
        result.warnings.append(f"{shown}: {len(mapping) - len(entries):,} entries that are not path and URL; skipped")
    root = os.path.dirname(path)
    old = _root_then(root, [k for k, _ in entries], known)
    outside = missing = 0
    for key, url in entries:
        here = _here(key, root, old)
        if here is None:
            outside += 1
            continue
        if not known(here):
            missing += 1  # kept all the same: it may be indexed later (still being written, say)
        result.urls[here] = url
    if old is not None and old != root:
        result.warnings.append(f"{shown}: written for a dump at {display_path(old)}; matched here")
    if outside or missing:
        result.warnings.append(
            f"{shown}: names {outside + missing:,} files that are not here"
            + (f" ({outside:,} outside its dump)" if outside else "")
        )
    return result


def _entry(item: tuple[object, object]) -> tuple[bytes | None, str | None]:
    """A path (as bytes) and a URL (text that SQLite can store), or None for what is neither."""
    key, url = item
    if not isinstance(key, str) or not isinstance(url, str):
        return None, None
    try:
        url.encode("utf-8")
        return os.fsencode(key), url
    except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800")
        return None, None


def _here(key: bytes, root: bytes, old: bytes | None) -> bytes | None:
    """Where the file a side-file names by ``key`` is now; None when ``key`` is not in the dump."""
    base = old if old is not None else root
    prefix = base.rstrip(b"/") + b"/"
    if not key.startswith(prefix) or b"/../" in key or key.endswith(b"/.."):
        return None
    return root.rstrip(b"/") + b"/" + key[len(prefix) :]


def _root_then(root: bytes, keys: list[bytes], known: Callable[[bytes], bool]) -> bytes | None:
    """The dump's root when the side-file was written: ``root`` when its paths are below it, else
    the head of the first path (of a few) whose tail, below ``root``, names a known file (the
    longest such tail: the one least likely to name another file by chance)."""
    prefix = root.rstrip(b"/") + b"/"
    if not keys or any(k.startswith(prefix) for k in keys[:PROBES]):
        return root
    for key in keys[:PROBES]:
        parts = key.split(b"/")
        for n in range(len(parts) - 1, 0, -1):
            tail = b"/".join(parts[-n:])
            if known(prefix + tail):
                return b"/".join(parts[:-n]) or b"/"
    return None
