"""Hashing: pure functions from bytes to hashes.

The perceptual pipeline turns an encoded image into a small, faithful picture
before hashing it:

1. identify the format from the bytes and refuse images above ``max_pixels``
   before decoding anything (decompression bombs);
2. decode cheaply: JPEGs are DCT-scaled while decoding (Pillow's draft mode)
   to no less than the working size;
3. shrink to at most ``work_size`` pixels a side (a box reduce, then Lanczos;
   transparency is resized premultiplied);
4. apply the EXIF orientation, so a sideways-stored photo is upright;
5. composite transparency onto a fixed white background (a transparent PNG
   and its JPEG re-encode are the same picture to a person);
6. hash (a 64-bit dHash) and describe (tiny thumbnails that verify a hash
   match), both of the whole picture and, when it has a uniform border, of
   what is inside the border (crops and padded thumbnails differ mostly
   there);
7. hash a few regions of the inside (:data:`REGIONS`: its middle 90 %, and
   it with 12 % cut off each side), and keep one 32x32 grey thumbnail of the
   inside from which their thumbnails are cut: a copy cropped 5-10 % a side,
   cut on one side or given a caption bar is near one of them.

This module knows nothing of files or the index: bytes in, values out.
Failures raise :class:`ImageError` carrying the status to record.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from struct import error as struct_error  # Pillow plugins raise it on short headers
from typing import Any, Final

import imagehash
import numpy as np
import numpy.typing as npt
import PIL
from PIL import Image, ImageChops, UnidentifiedImageError

from . import kinds

#: Bump when a change to the pipeline changes perceptual hash values or descriptors.
PIPELINE_VERSION: Final = 4
BACKGROUND: Final = (255, 255, 255)
#: Pillow's own decompression-bomb limit, the default of ``--max-pixels``.
DEFAULT_MAX_PIXELS: Final = Image.MAX_IMAGE_PIXELS or 89_478_485

#: Formats recognised from their first bytes (see :func:`sniff_format`), mapped to
#: the Pillow plugin that reads them.
PILLOW_FORMATS: Final = {
    "JPEG": "JPEG",
    "PNG": "PNG",
    "GIF": "GIF",
    "WEBP": "WEBP",
    "BMP": "BMP",
    "TIFF": "TIFF",
    "ICO": "ICO",
    "AVIF": "AVIF",
    "HEIF": "HEIF",
}

#: How many leading bytes :func:`sniff_format` needs.
SNIFF_BYTES: Final = 32


class ImageError(Exception):
    """An image that cannot be hashed; ``status`` is what the index records."""

    def __init__(self, status: str, reason: str, size: tuple[int, int] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.size = size  # width and height, when known (too_large)


@dataclass(frozen=True)
class HashSettings:
    """Everything that changes perceptual hash values. Its :meth:`key` is stored in the index."""

    algorithm: str = "dhash"
    hash_size: int = 8
    highfreq_factor: int = 4
    work_size: int = 256
    max_pixels: int = DEFAULT_MAX_PIXELS

    def key(self) -> str:
        """A canonical description, including the library versions that affect the values."""
        fields = asdict(self)
        del fields["max_pixels"]  # decides whether to hash, not what the hash is
        fields["pipeline"] = PIPELINE_VERSION
        fields["pillow"] = ".".join(PIL.__version__.split(".")[:2])
        fields["imagehash"] = imagehash.__version__  # the pHash kind is its
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    phash: int  # signed 64-bit, as SQLite stores it
    descriptor: bytes  # DESCRIPTOR_BYTES
    # The same of the picture inside its uniform border, when it has one.
    trim_hash: int | None = None
    trim_descriptor: bytes | None = None
    # The hashes of the inside's regions (REGION_BYTES) and its grey grid (GRID_BYTES), when it is
    # large enough to cut them.
    regions: bytes | None = None
    grid: bytes | None = None


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sniff_format(head: bytes) -> str | None:
    """The image format of a file from its first bytes, or None for anything else.

    Content decides, never the name: crawl dumps have names without
    extensions, with wrong ones, and non-images named ``.jpg``.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 18 and head[14:18] in _BMP_HEADER_SIZES:
        return "BMP"
    if head[:4] == b"\x00\x00\x01\x00" and len(head) >= 6 and 0 < int.from_bytes(head[4:6], "little") <= 64:
        return "ICO"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "HEIF"
    return None


_ORIENTATION: Final = 0x0112
#: EXIF orientation -> the transpose that makes the picture upright.
_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_BMP_HEADER_SIZES = {n.to_bytes(4, "little") for n in (12, 40, 52, 56, 64, 108, 124)}


def readable_formats() -> dict[str, bool]:
    """Which sniffed formats the installed Pillow (and plugins) can decode."""
    Image.init()
    return {fmt: plugin in Image.OPEN for fmt, plugin in PILLOW_FORMATS.items()}


def decode(data: bytes, fmt: str | None, settings: HashSettings) -> tuple[Image.Image, int, int]:
    """Decode ``data`` into a small upright RGB picture, and the original's oriented size."""
    plugin = PILLOW_FORMATS.get(fmt) if fmt else None
    Image.init()
    if plugin is not None and plugin not in Image.OPEN:
        raise ImageError("unsupported", f"no decoder for {fmt} installed")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        stage = "header"  # an error reading the header means corrupt; one while decoding may mean truncated
        try:
            im = Image.open(io.BytesIO(data), formats=[plugin] if plugin else None)
            width, height = im.size
            if width * height > settings.max_pixels:
                raise ImageError(
                    "too_large",
                    f"{width}x{height} = {width * height:,} pixels, above --max-pixels {settings.max_pixels:,}",
                    (width, height),
                )
            stage = "pixels"
            if im.format == "JPEG":
                im.draft("RGB", (settings.work_size, settings.work_size))
            im.load()
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            # Pillow's own guard, which fires while reading the header of very large images.
            pixels = re.search(r"\((\d+) pixels\)", str(e))
            size = f"{int(pixels.group(1)):,} pixels" if pixels else "too many pixels"
            raise ImageError("too_large", f"{size}, above --max-pixels {settings.max_pixels:,}") from None
        except UnidentifiedImageError as e:
            # Cut short in its header: still the format its first bytes say, but ending early.
            if sniff_format(data[:SNIFF_BYTES]) == fmt and _looks_truncated(data, fmt, stage, e, ""):
                raise ImageError("truncated", f"file ends early, after {len(data):,} bytes") from None
            raise ImageError("corrupt", f"not a readable {fmt or 'image'} file") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct_error) as e:
            message = str(e) or type(e).__name__
            if _looks_truncated(data, fmt, stage, e, message):
                raise ImageError("truncated", f"file ends early, after {len(data):,} bytes ({message})") from None
            raise ImageError(
                "corrupt", message if stage == "pixels" else f"bad {fmt or 'image'} header: {message}"
            ) from None
        except Exception as e:  # noqa: BLE001 - a decoder bug must not end the scan
            raise ImageError("corrupt", f"{type(e).__name__}: {e}") from None
    try:
        orientation = int(im.getexif().get(_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block: keep the stored orientation
        orientation = 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    # Shrink first (a box reduce, then Lanczos), then orient and flatten the small picture.
    picture = _resizable(im)
    picture.thumbnail((settings.work_size, settings.work_size), Image.Resampling.LANCZOS, reducing_gap=1.0)
    if orientation in _TRANSPOSE:
        picture = picture.transpose(_TRANSPOSE[orientation])
    return _flatten(picture), width, height


def perceptual_hash(picture: Image.Image, settings: HashSettings) -> int:
    """The perceptual hash of a decoded picture (of the kind the settings name), as a signed integer."""
    return kinds.get(settings.algorithm).picture(picture)


#: Per-channel difference from the corner colour below which a pixel is border.
TRIM_TOLERANCE: Final = 24
#: A trimmed picture keeps at least this many pixels a side (else it is not trimmed).
TRIM_MIN_SIDE: Final = 4
#: A picture's descriptor: a 16x16 grey thumbnail, then an 8x8 RGB one (uint8).
GREY_SIDE: Final = 16
COLOUR_SIDE: Final = 8
DESCRIPTOR_BYTES: Final = GREY_SIDE * GREY_SIDE + COLOUR_SIDE * COLOUR_SIDE * 3


def trim_box(picture: Image.Image) -> tuple[int, int, int, int] | None:
    """The box inside a uniform border (of the colour of most corners), or None without one.

    Crops and padded thumbnails of one picture differ mostly in their borders;
    hashing what is inside them as well makes those copies meet. The box holds
    every pixel that differs from the border colour by more than
    TRIM_TOLERANCE in some channel.
    """
    rgb = picture if picture.mode == "RGB" else picture.convert("RGB")
    w, h = rgb.size
    corners = [rgb.getpixel(xy) for xy in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1))]
    # Per channel, the median of the four corners (the mean of the middle two), rounded half to even.
    middle = [sorted(channel)[1:3] for channel in zip(*corners, strict=True)]
    background = tuple(round((low + high) / 2) for low, high in middle)
    # Per channel, the difference from the background less the tolerance (0 where it is within):
    # the box of the pixels where some channel is above it (in Pillow's C, not numpy's temporaries).
    difference = ImageChops.difference(rgb, Image.new("RGB", (w, h), background))
    box = ImageChops.subtract(difference, Image.new("RGB", (w, h), (TRIM_TOLERANCE,) * 3)).getbbox()
    if box is None or box == (0, 0, w, h):
        return None
    if box[2] - box[0] < TRIM_MIN_SIDE or box[3] - box[1] < TRIM_MIN_SIDE:
        return None
    return box


def descriptor(picture: Image.Image, grey: Image.Image | None = None) -> bytes:
    """Tiny thumbnails that verify a hash match: 16x16 grey and 8x8 RGB (``DESCRIPTOR_BYTES``);
    ``grey``: the picture in mode L, when made already."""
    grey = (grey or picture.convert("L")).resize((GREY_SIDE, GREY_SIDE), Image.Resampling.BOX)
    colour = picture.convert("RGB").resize((COLOUR_SIDE, COLOUR_SIDE), Image.Resampling.BOX)
    return grey.tobytes() + colour.tobytes()


#: Regions of the inside (the whole picture without a border) hashed besides it, as boxes in
#: shares of its width and height: its middle 90 % (a copy cropped 5-10 % a side is near it),
#: and the inside with 12 % cut off the bottom, top, left and right (a copy cut on one side,
#: or given a caption bar of 10-18 %, is near one of those). Measured by
#: bench/quality/centre_probe.py; the order is the order of the stored hashes.
REGIONS: Final = (
    ("middle", (0.05, 0.05, 0.95, 0.95)),
    ("bottom cut", (0.0, 0.0, 1.0, 0.88)),
    ("top cut", (0.0, 0.12, 1.0, 1.0)),
    ("left cut", (0.12, 0.0, 1.0, 1.0)),
    ("right cut", (0.0, 0.0, 0.88, 1.0)),
)
#: The side of the grey thumbnail of the inside kept with the regions' hashes: each region's
#: 16x16 is cut out of it (see imgindex/match/verify.py), 1 KB instead of a descriptor each.
GRID_SIDE: Final = 32
#: Regions are hashed only for an inside at least this many pixels a side.
REGION_MIN_SIDE: Final = 16
#: ``ImageInfo.regions``: the regions' hashes (big-endian unsigned 64-bit, in REGIONS' order).
REGION_BYTES: Final = 8 * len(REGIONS)
#: ``ImageInfo.grid``: the inside's GRID_SIDE x GRID_SIDE grey thumbnail (uint8).
GRID_BYTES: Final = GRID_SIDE * GRID_SIDE


def region_box(size: tuple[int, int], share: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """A region's box (:data:`REGIONS`) in pixels of a picture of ``size``."""
    w, h = size
    return (round(share[0] * w), round(share[1] * h), round(share[2] * w), round(share[3] * h))


def regions(inside: Image.Image, grey: Image.Image) -> tuple[bytes, bytes] | None:
    """The hashes of the inside's :data:`REGIONS` (``REGION_BYTES``) and its grid
    (``GRID_BYTES``), or None when it is too small to cut; ``grey`` is the inside in mode L.
    The hashes are the dHash kind's of each region, as the whole picture's is of it."""
    if min(inside.size) < REGION_MIN_SIDE:
        return None
    function = kinds.get("dhash").picture
    hashes = [kinds.to_unsigned(function(grey.crop(region_box(inside.size, share)))) for _, share in REGIONS]
    grid = grey.resize((GRID_SIDE, GRID_SIDE), Image.Resampling.BOX)
    return b"".join(h.to_bytes(8, "big") for h in hashes), grid.tobytes()


def region_rows(blobs: Sequence[bytes]) -> npt.NDArray[np.uint64]:
    """``ImageInfo.regions`` blobs as rows of hashes, ``(n, len(REGIONS))``."""
    raw = np.frombuffer(b"".join(blobs), dtype=">u8").reshape(-1, len(REGIONS))
    return raw.astype(np.uint64)


def grid_rows(blobs: Sequence[bytes]) -> npt.NDArray[np.uint8]:
    """``ImageInfo.grid`` blobs as ``(n, GRID_SIDE, GRID_SIDE)``."""
    return np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(-1, GRID_SIDE, GRID_SIDE)


def descriptor_rows(descriptors: Sequence[bytes]) -> npt.NDArray[np.uint8]:
    """Descriptors (each ``DESCRIPTOR_BYTES``) as the rows of one array."""
    return np.frombuffer(b"".join(descriptors), dtype=np.uint8).reshape(-1, DESCRIPTOR_BYTES)


#: The 8 orientations of a picture (identity first): its mirror images and quarter turns.
ORIENTATIONS: Final = 8


def orient(squares: npt.NDArray[Any], k: int) -> npt.NDArray[Any]:
    """Orientation ``k`` (0-7) of square arrays, shape ``(n, side, side[, channels])``.

    The orientations are identity, left-right mirror, top-bottom mirror,
    quarter, half and three-quarter turns, transpose and transverse, so a
    mirrored or turned copy of a picture has (near enough) an orientation of
    the original's thumbnails as its own.
    """
    if not 0 <= k < ORIENTATIONS:
        raise ValueError(f"orientation {k} is not 0-7")
    turned = np.rot90(squares, k - 2, axes=(1, 2)) if 3 <= k <= 5 else squares
    if k == 1:
        turned = squares[:, :, ::-1]
    elif k == 2:
        turned = squares[:, ::-1]
    elif k == 6:
        turned = np.swapaxes(squares, 1, 2)
    elif k == 7:
        turned = np.swapaxes(squares[:, ::-1, ::-1], 1, 2)
    return np.ascontiguousarray(turned)


def orient_descriptors(descriptors: npt.NDArray[np.uint8], k: int) -> npt.NDArray[np.uint8]:
    """Descriptors (rows of ``DESCRIPTOR_BYTES``) of the pictures in orientation ``k``."""
    n = len(descriptors)
    grey = descriptors[:, : GREY_SIDE * GREY_SIDE].reshape(n, GREY_SIDE, GREY_SIDE)
    colour = descriptors[:, GREY_SIDE * GREY_SIDE :].reshape(n, COLOUR_SIDE, COLOUR_SIDE, 3)
    return np.concatenate([orient(grey, k).reshape(n, -1), orient(colour, k).reshape(n, -1)], axis=1)


def orientation_hashes(descriptors: npt.NDArray[np.uint8], kind: str = "dhash") -> npt.NDArray[np.uint64]:
    """The hash of each orientation of each picture, from its descriptor: ``(n, 8)``.

    A mirrored or turned copy's first hash is close to one of the original's
    others. Made by the kind's own function over the 16x16 grey thumbnail, so
    a report can match orientations without decoding anything again.
    """
    function = kinds.get(kind).grey
    if function is None:
        raise ValueError(f"the {kind} hash has no function over thumbnails: it cannot match orientations")
    n = len(descriptors)
    hashes = np.empty((n, ORIENTATIONS), dtype=np.uint64)
    for start in range(0, n, 1 << 16):  # a few MB at a time
        part = descriptors[start : start + (1 << 16), : GREY_SIDE * GREY_SIDE]
        grey = part.reshape(-1, GREY_SIDE, GREY_SIDE).astype(np.float32)
        for k in range(ORIENTATIONS):
            hashes[start : start + len(grey), k] = function(orient(grey, k))
    return hashes


def image_info(data: bytes, fmt: str | None, settings: HashSettings) -> ImageInfo:
    """Decode, hash and describe: the whole perceptual pipeline."""
    picture, width, height = decode(data, fmt, settings)
    box = trim_box(picture)
    trimmed = picture.crop(box) if box else None
    grey = picture.convert("L")
    inside_grey = grey.crop(box) if box else grey
    # The regions are of the dHash kind's values (their pairs are with the whole pictures' and the
    # insides' values): with settings of another kind, none.
    cut = regions(trimmed or picture, inside_grey) if settings.algorithm == "dhash" else None
    region_hashes, grid = cut or (None, None)
    return ImageInfo(
        width,
        height,
        perceptual_hash(picture, settings),
        descriptor(picture, grey),
        perceptual_hash(trimmed, settings) if trimmed else None,
        descriptor(trimmed, inside_grey) if trimmed else None,
        region_hashes,
        grid,
    )


def _resizable(im: Image.Image) -> Image.Image:
    """The picture in a mode that resizes faithfully: L, LA, RGB or RGBA."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        array = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if im.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    if "transparency" in im.info or im.mode in ("PA", "RGBa", "La"):
        return im.convert("RGBA")
    if im.mode in ("L", "LA", "RGB", "RGBA"):
        return im
    return im.convert("RGB")  # CMYK, YCbCr, P, 1, ...


def _flatten(im: Image.Image) -> Image.Image:
    """An RGB picture, with any transparency composited onto the background."""
    if im.mode in ("RGBA", "LA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


#: The bytes a complete file of these formats ends with (possibly followed by padding).
_END_MARKERS: Final = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


def _looks_truncated(data: bytes, fmt: str | None, stage: str, error: BaseException, message: str) -> bool:
    """Was a failure caused by the file ending early (an interrupted download)?"""
    if _shorter_than_declared(data, fmt):
        return True
    if fmt == "GIF":  # its trailer is one byte, common inside the data: it must be the last
        return not data.rstrip(b"\0\r\n ").endswith(b";")
    marker = _END_MARKERS.get(fmt or "")
    if marker is not None:
        return marker not in data[-64:]
    lowered = message.lower()
    return stage == "pixels" and (
        isinstance(error, EOFError)
        or any(word in lowered for word in ("truncated", "premature end", "unexpected end", "not enough data"))
    )


def _shorter_than_declared(data: bytes, fmt: str | None) -> bool:
    """Does the file end before the length its own header gives? For the formats whose
    container says how long it is: WebP (RIFF), BMP, ICO (each image's offset and size),
    AVIF and HEIF (ISO boxes)."""
    if fmt == "WEBP" and len(data) >= 8:
        return len(data) < 8 + int.from_bytes(data[4:8], "little")
    if fmt == "BMP" and len(data) >= 6:
        return len(data) < int.from_bytes(data[2:6], "little")
    if fmt == "ICO" and len(data) >= 6:
        count = int.from_bytes(data[4:6], "little")
        if len(data) < 6 + 16 * count:
            return True
        for k in range(count):
            entry = data[6 + 16 * k : 22 + 16 * k]
            size, offset = int.from_bytes(entry[8:12], "little"), int.from_bytes(entry[12:16], "little")
            if offset + size > len(data):
                return True
        return False
    if fmt in ("AVIF", "HEIF"):
        at = 0
        while at + 8 <= len(data):
            size = int.from_bytes(data[at : at + 4], "big")
            if size == 1 and at + 16 <= len(data):
                size = int.from_bytes(data[at + 8 : at + 16], "big")
            if size == 0:  # the last box, to the end of the file
                return False
            if size < 8 or at + size > len(data):
                return size >= 8
            at += size
        return at < len(data)
    return False
