"""Pictures for the review: thumbnails and differences of indexed images, made on demand
with Pillow and cached on disk by content (SHA-256).

An image is read from where the index says it is (a file, or a web archive's
record) and used only if its bytes are still the indexed ones; what is served
is always a new JPEG or PNG made here, never the stranger's bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from pathlib import Path

from PIL import Image, ImageChops, ImageOps

from imgindex.errors import ImgindexError, UsageError
from imgindex.hashing import DEFAULT_MAX_PIXELS
from imgindex.sources import source_for

from .groups import Member

#: Longest side of each size of picture the review shows.
SIZES = {"s": 192, "m": 720}
#: Images larger than this are not read for a thumbnail.
MAX_BYTES = 256 << 20


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/imgindex/review`` (``~/.cache/imgindex/review``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgindex" / "review"


class PictureError(ImgindexError):
    """An indexed image that cannot be shown now (gone, changed since indexed, unreadable)."""


class Pictures:
    def __init__(self, cache_dir: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.cache_dir = Path(cache_dir)
        self.max_pixels = max_pixels

    def thumbnail(self, member: Member, size: str) -> Path:
        """A JPEG of ``member`` at most ``SIZES[size]`` pixels on its longer side."""
        target = self._cached(member.sha256.hex(), f"{size}.jpg")
        if not target.exists():
            picture = self._open(member)
            picture.thumbnail((SIZES[size], SIZES[size]), Image.Resampling.LANCZOS)
            self._store(target, picture, "JPEG")
        return target

    def difference(self, a: Member, b: Member) -> Path:
        """A PNG of where ``b`` differs from ``a`` (both at the ``m`` size, ``b`` fitted to
        ``a``), amplified so that a re-encode shows as near black and an edit as light."""
        target = self._cached(a.sha256.hex(), f"diff-{b.sha256.hex()}.png")
        if not target.exists():
            first = self._open(a)
            first.thumbnail((SIZES["m"], SIZES["m"]), Image.Resampling.LANCZOS)
            second = self._open(b).resize(first.size, Image.Resampling.LANCZOS)
            difference = ImageChops.difference(first, second).convert("L")
            amplified = difference.point(lambda v: min(255, v * 4))
            self._store(target, amplified, "PNG")
        return target

    def _cached(self, digest: str, name: str) -> Path:
        return self.cache_dir / digest[:2] / f"{digest}-{name}"

    def _open(self, member: Member) -> Image.Image:
        data = _read(member)
        if hashlib.sha256(data).digest() != member.sha256:
            raise PictureError("changed since it was indexed: rescan")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                opened = Image.open(io.BytesIO(data))
                if opened.width * opened.height > self.max_pixels:
                    raise PictureError(f"{opened.width}x{opened.height}: above the pixels the index reads")
                opened.draft("RGB", (SIZES["m"], SIZES["m"]))
                im = ImageOps.exif_transpose(opened)
                im.load()
            except PictureError:
                raise
            except Exception as e:  # noqa: BLE001 - strangers' bytes: any decoder error means not shown
                raise PictureError(f"cannot be decoded: {type(e).__name__}") from None
        if im.mode in ("RGBA", "LA", "PA", "P") or "transparency" in im.info:
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return im.convert("RGB")

    def _store(self, target: Path, picture: Image.Image, fmt: str) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as f:
                picture.save(f, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def _read(member: Member) -> bytes:
    """The bytes of an indexed image: a regular file (never through a link at its name, as
    scans read it), a record of a web archive, or an object at a URL."""
    if member.size > MAX_BYTES:
        raise PictureError("too large to show")
    try:
        with source_for([member.path]).open(member.path) as entry:
            _, regular = entry.stat()
            if not regular:
                raise PictureError("not a regular file any more")
            return entry.read(MAX_BYTES + 1)
    except OSError as e:
        raise PictureError(f"cannot be read: {e.strerror or e}") from None
    except UsageError as e:  # a URL without fsspec here
        raise PictureError(f"cannot be read: {e}") from None
