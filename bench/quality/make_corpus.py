"""Build a labelled corpus for measuring near-duplicate match quality.

The corpus is laid out like a web-crawl dump (Apache Nutch's ``bin/nutch
dump``): each fetched URL is written to ``<md5(url)[0:2]>/<md5(url)[2:4]>/<name>``
with ``<name>`` the last segment of the URL, so names are often without an
extension, with a wrong one, or with a query string.

What goes in (under ``OUT/dump/``, with the labels in ``OUT/labels.json``):

- **sources**: procedural photo-like scenes (gradients, shapes, noise,
  lighting), textures, banners and captioned photos and text pages rendered
  with Pillow's default font, line art (on white or transparent), clip art,
  logos and icons on transparent backgrounds (RGBA PNG; under fully
  transparent pixels the RGB is black, white, some colour or noise, as in real
  files), large (1000-2000 px) and small (64-300 px), colour and grey; plus the
  sample images shipped inside installed packages (matplotlib, scikit-learn,
  scipy, imagehash, scikit-image when present), read from disk, never
  downloaded;
- **variants** of a share of the sources, each labelled with its transform
  (see ``TRANSFORMS``; ``HARD`` are mirror and rotation, which a pHash is not
  meant to match);
- **distractors**, with no planted partner: images that share a layout but
  not their content (one banner template with different texts, flag-like
  stripes in different colours, one icon shape in different colours, one
  chart layout with different data, one text-page layout with different
  text), near-blank images (white with a tiny mark) and one-colour images.

Every pair of files of one family (a source and its variants) is a planted
pair; every other pair is not.

The output is deterministic for a given seed and set of options (with the
same Pillow / libjpeg / libwebp build and the same installed sample images).
Needs Pillow and numpy only::

    python bench/quality/make_corpus.py [--out DIR] [--sources 300] [--seed 1]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import math
import os
import shutil
import struct
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "out" / "quality-corpus"
DEFAULT_SOURCES = 300
DEFAULT_SEED = 1
HELDOUT_SEED = 2
#: 2: planted pairs and family pairs carry a class (standard, hard, moderate, family); the
#: template-family members and moderate edits of the round-2 parts. score.py reads 1 and 2.
LABELS_VERSION = 2
#: What was built, beside the labels' format: a corpus of another build is built again.
#: (2: icon-glyph templates no longer draw one icon twice, see SAME_TINT.)
CORPUS_BUILD = 2

#: Transform name -> what it does. Order is the order of the printed tables.
TRANSFORMS: dict[str, str] = {
    "copy": "exact copy (same bytes)",
    "metadata": "metadata only: same pixels, other bytes (JPEG COM segment, PNG tEXt chunk, GIF comment)",
    "jpeg": "JPEG re-encode, quality 60-85 (opaque sources)",
    "webp": "WebP re-encode, quality 70-90 (alpha kept)",
    "alpha_to_jpeg": "PNG to JPEG with alpha flattened onto white (transparent sources)",
    "resize50": "resized to 50%",
    "thumb": "thumbnail, at most 200 px (sources above 200 px)",
    "crop": "2-5% cropped off each border",
    "brightness": "brightness +-15%",
    "contrast": "contrast +-15%",
    "grey": "greyscale (colour sources)",
    "mirror": "horizontal mirror",
    "rot90": "rotated by 90 degrees",
}
HARD = ("mirror", "rot90")
STANDARD = tuple(t for t in TRANSFORMS if t not in HARD)

#: Distractor kind -> (templates, members per template) at --distractor-scale 1; one member: no template.
DISTRACTORS: dict[str, tuple[int, int]] = {
    "banner_template": (5, 4),
    "flag": (6, 4),
    "icon_tint": (5, 4),
    "chart": (4, 4),
    "text_page": (4, 4),
    "near_blank": (16, 1),
    "solid": (12, 1),
}

_WORDS_TEXT = (
    "summer sale spring deals free shipping today only new arrivals best price garden kitchen travel city "
    "mountain ocean coffee books music festival tickets online store members club weekend offer limited "
    "edition classic modern design studio photo gallery family holiday winter autumn market fresh local "
    "organic healthy sport running cycling football news daily report weather local events tour open "
    "house home office school library museum river lake forest village bakery pizza burger salad soup "
    "discount coupon voucher gift card welcome back hello world join us contact about services support"
)
WORDS = tuple(_WORDS_TEXT.split())

BANNER_SIZES = ((728, 90), (468, 60), (300, 250), (970, 250), (160, 600), (320, 50), (1200, 300))

#: What differs between the parts of the corpus. ``round1`` is the first corpus, unchanged;
#: ``tuning`` adds the template families and moderate edits to it; ``heldout`` draws all of
#: it with other fonts, sizes, glyphs, symbols, palettes and words (and another seed).
STYLES: dict[str, dict[str, Any]] = {
    "round1": {
        "fonts": (),
        "banner_sizes": BANNER_SIZES,
        "icon_sizes": (32, 48, 64, 96, 128, 192, 256),
    },
    "heldout": {
        "fonts": (
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        ),
        "banner_sizes": ((600, 100), (400, 80), (336, 280), (880, 200), (120, 600), (300, 60), (1000, 320)),
        "icon_sizes": (24, 40, 72, 100, 144, 180, 220),
    },
}
STYLES["tuning"] = STYLES["round1"]
PARTS = tuple(STYLES)
#: The style in use (set by :func:`build`).
STYLE: dict[str, Any] = dict(STYLES["round1"])

HOSTS = (
    "http://www.example.com",
    "https://shop.example.net",
    "http://blog.example.org",
    "https://cdn.example-media.com",
    "http://news.example.co.uk",
    "https://img.example-static.net",
    "http://forum.example.info",
    "https://www.example-store.de",
)


# ---------------------------------------------------------------------------
# Small drawing functions
# ---------------------------------------------------------------------------


def colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(lo, hi, 3))  # type: ignore[return-value]


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The part's font at ``size`` px: Pillow's default font (its bitmap font when FreeType is
    missing), or for the held-out part a TrueType font of the system when there is one."""
    for path in STYLE["fonts"]:
        if Path(path).exists():
            try:
                return ImageFont.truetype(path, max(6, size))
            except OSError:
                continue
    try:
        return ImageFont.load_default(size=max(6, size))
    except (TypeError, OSError):
        return ImageFont.load_default()


def words(rng: np.random.Generator, n: int) -> str:
    return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), n))


def smooth_noise(rng: np.random.Generator, w: int, h: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], shape (h, w)."""
    cx = max(2, cells)
    cy = max(2, round(cells * h / max(w, 1)))
    small = (rng.random((cy, cx)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0


def gradient(w: int, h: int, top: tuple[int, ...], bottom: tuple[int, ...], horizontal: bool = False) -> np.ndarray:
    n = w if horizontal else h
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)
    t = t[None, :, None] if horizontal else t[:, None, None]
    a = np.array(top, dtype=np.float32)
    b = np.array(bottom, dtype=np.float32)
    return np.broadcast_to(a * (1 - t) + b * t, (h, w, 3)).copy()


def random_polygon(rng: np.random.Generator, cx: float, cy: float, r: float, n: int) -> list[tuple[float, float]]:
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = r * rng.uniform(0.5, 1.0, n)
    return [(cx + float(rr * math.cos(a)), cy + float(rr * math.sin(a))) for a, rr in zip(angles, radii, strict=True)]


def star(cx: float, cy: float, r: float, points: int, inner: float) -> list[tuple[float, float]]:
    out = []
    for k in range(points * 2):
        rr = r if k % 2 == 0 else r * inner
        a = math.pi * k / points - math.pi / 2
        out.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return out


def hidden_rgb(rng: np.random.Generator, im: Image.Image, how: str) -> Image.Image:
    """Set the RGB under fully transparent pixels: ``black``, ``white``, ``colour`` or ``noise``."""
    a = np.array(im.convert("RGBA"))
    clear = a[:, :, 3] == 0
    if how == "black":
        a[clear, :3] = 0
    elif how == "white":
        a[clear, :3] = 255
    elif how == "colour":
        a[clear, :3] = colour(rng)
    else:
        a[clear, :3] = rng.integers(0, 256, (int(clear.sum()), 3), dtype=np.uint8)
    return Image.fromarray(a, "RGBA")


def pick_hidden(rng: np.random.Generator) -> str:
    return str(rng.choice(["black", "white", "colour", "noise"], p=[0.45, 0.25, 0.15, 0.15]))


# ---------------------------------------------------------------------------
# Source pictures
# ---------------------------------------------------------------------------


def photo(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A photo-like scene: sky and ground gradients, lighting, blurred shapes, grain."""
    horizon = int(h * rng.uniform(0.35, 0.7))
    arr = np.empty((h, w, 3), dtype=np.float32)
    arr[:horizon] = gradient(w, horizon, colour(rng, 60, 256), colour(rng, 30, 230))
    arr[horizon:] = gradient(w, h - horizon, colour(rng, 20, 200), colour(rng, 0, 160))
    light = 0.75 + 0.5 * smooth_noise(rng, w, h, int(rng.integers(3, 9)))
    arr *= light[:, :, None]
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(4, 18))):
        cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        r = float(rng.uniform(0.04, 0.3) * min(w, h))
        fill = (*colour(rng), int(rng.integers(120, 256)))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse([cx - r, cy - r * rng.uniform(0.4, 1.0), cx + r, cy + r], fill=fill)
        elif kind == 1:
            draw.rectangle([cx - r, cy - r * 0.6, cx + r * 0.8, cy + r], fill=fill)
        else:
            draw.polygon(random_polygon(rng, cx, cy, r, int(rng.integers(3, 9))), fill=fill)
    layer = layer.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 3.0)) * max(w, h) / 600))
    img = Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")
    grain = rng.normal(0, float(rng.uniform(2, 9)), (h, w, 1)).astype(np.float32)
    out = np.clip(np.asarray(img, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")


def texture(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Wood, fabric or waves: a sum of sinusoids and noise through a two-colour palette."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    field_ = np.zeros((h, w), dtype=np.float32)
    for _ in range(int(rng.integers(2, 6))):
        angle = rng.uniform(0, math.pi)
        freq = rng.uniform(4, 40) / max(w, h)
        phase = rng.uniform(0, 2 * math.pi)
        field_ += np.sin(2 * math.pi * freq * (x * math.cos(angle) + y * math.sin(angle)) + phase)
    field_ += 3 * smooth_noise(rng, w, h, int(rng.integers(3, 12)))
    field_ = (field_ - field_.min()) / (np.ptp(field_) + 1e-6)
    a = np.array(colour(rng), dtype=np.float32)
    b = np.array(colour(rng), dtype=np.float32)
    arr = a * (1 - field_[:, :, None]) + b * field_[:, :, None]
    arr += rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def banner(rng: np.random.Generator, w: int, h: int, layout: dict[str, Any] | None = None) -> Image.Image:
    """An ad banner: gradient background, headline, sub-line and a button. ``layout`` fixes all but the text."""
    if layout is None:
        layout = banner_layout(rng, w, h)
    img = Image.fromarray(
        gradient(w, h, layout["bg1"], layout["bg2"], horizontal=w >= h).astype(np.uint8),
        "RGB",
    )
    draw = ImageDraw.Draw(img)
    unit = min(w, h)
    x0, y0 = int(layout["margin"] * w), int(0.12 * h)
    draw.text((x0, y0), words(rng, int(rng.integers(2, 4))).title(), font=font(int(unit * 0.28)), fill=layout["fg"])
    draw.text(
        (x0, y0 + int(unit * 0.36)), words(rng, int(rng.integers(3, 6))), font=font(int(unit * 0.14)), fill=layout["fg"]
    )
    bx, by = layout["button"]
    bw, bh = int(0.22 * w if w >= h else 0.7 * w), int(0.22 * h if w >= h else 0.08 * h)
    box = (int(bx * w), int(by * h), int(bx * w) + bw, int(by * h) + bh)
    draw.rounded_rectangle(box, radius=max(2, bh // 4), fill=layout["button_fill"])
    draw.text((box[0] + bh // 4, box[1] + bh // 6), words(rng, 2), font=font(int(bh * 0.55)), fill=layout["bg1"])
    return img


def banner_layout(rng: np.random.Generator, w: int, h: int) -> dict[str, Any]:
    return {
        "bg1": colour(rng, 0, 256),
        "bg2": colour(rng, 0, 256),
        "fg": colour(rng, 0, 256),
        "button_fill": colour(rng, 0, 256),
        "margin": float(rng.uniform(0.03, 0.1)),
        "button": (float(rng.uniform(0.6, 0.75)), float(rng.uniform(0.3, 0.6)))
        if w >= h
        else (0.15, float(rng.uniform(0.7, 0.85))),
    }


def caption(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A photo with a caption bar along the bottom."""
    img = photo(rng, w, h).convert("RGBA")
    bar_h = max(14, int(h * rng.uniform(0.1, 0.2)))
    bar = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(bar)
    draw.rectangle([0, h - bar_h, w, h], fill=(*colour(rng, 0, 60), int(rng.integers(150, 240))))
    draw.text(
        (int(w * 0.03), h - bar_h + bar_h // 5),
        words(rng, int(rng.integers(3, 8))).capitalize(),
        font=font(int(bar_h * 0.55)),
        fill=(255, 255, 255, 255),
    )
    return Image.alpha_composite(img, bar).convert("RGB")


def text_page(rng: np.random.Generator, w: int, h: int, layout: dict[str, Any] | None = None) -> Image.Image:
    """A screenshot-like page of text: title, paragraphs, maybe a grey picture box."""
    if layout is None:
        layout = text_layout(rng, w, h)
    img = Image.new("RGB", (w, h), layout["paper"])
    draw = ImageDraw.Draw(img)
    size = layout["size"]
    x, y = layout["margin"], layout["margin"]
    draw.text((x, y), words(rng, 4).title(), font=font(int(size * 1.8)), fill=layout["title"])
    y += int(size * 3)
    if layout["box"]:
        draw.rectangle([w - x - w // 3, y, w - x, y + h // 4], fill=layout["box_fill"])
    body = font(size)
    right = w - x - (w // 3 + size if layout["box"] else 0)
    while y < h - layout["margin"] - size:
        for _ in range(int(rng.integers(2, 7))):
            line = words(rng, max(2, int((right - x) / (size * 3.2))))
            draw.text((x, y), line, font=body, fill=layout["ink"])
            y += int(size * 1.5)
            if y >= h - layout["margin"] - size:
                break
            if layout["box"] and y > size * 3 + h // 4 + layout["margin"]:
                right = w - x
        y += size
    return img


def text_layout(rng: np.random.Generator, w: int, h: int) -> dict[str, Any]:
    grey = int(rng.integers(235, 256))
    return {
        "paper": (grey, grey, grey),
        "ink": colour(rng, 0, 70),
        "title": colour(rng, 0, 160),
        "size": int(rng.integers(11, 17)) * max(w, 400) // 600,
        "margin": int(w * rng.uniform(0.04, 0.1)),
        "box": bool(rng.random() < 0.5),
        "box_fill": colour(rng, 120, 220),
    }


def lineart(rng: np.random.Generator, w: int, h: int, transparent: bool) -> Image.Image:
    """Black strokes (curves, circles, arcs) on white or on a transparent background."""
    ink = colour(rng, 0, 50) if rng.random() < 0.8 else colour(rng)
    img = Image.new("RGBA" if transparent else "RGB", (w, h), (*ink, 0) if transparent else (255, 255, 255))
    draw = ImageDraw.Draw(img)
    width = max(1, int(min(w, h) / rng.uniform(60, 250)))
    fill = (*ink, 255) if transparent else ink
    for _ in range(int(rng.integers(4, 14))):
        n = int(rng.integers(6, 30))
        pts = np.cumsum(rng.normal(0, min(w, h) * 0.06, (n, 2)), axis=0)
        pts += [rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h]
        kernel = np.ones(3) / 3
        sm = np.stack([np.convolve(pts[:, k], kernel, mode="valid") for k in (0, 1)], axis=1)
        draw.line([(float(a), float(b)) for a, b in sm], fill=fill, width=width, joint="curve")
    for _ in range(int(rng.integers(1, 6))):
        cx, cy, r = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h, rng.uniform(0.03, 0.2) * min(w, h)
        if rng.random() < 0.5:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=width)
        else:
            start = float(rng.uniform(0, 360))
            draw.arc(
                [cx - r, cy - r, cx + r, cy + r], start, start + float(rng.uniform(60, 300)), fill=fill, width=width
            )
    return img


def clipart(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A sticker: a few flat shapes with outlines, centred on a transparent background."""
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    outline = (*colour(rng, 0, 80), 255)
    width = max(1, min(w, h) // int(rng.integers(40, 120)))
    cx, cy, r = w / 2, h / 2, min(w, h) * 0.45
    kind = int(rng.integers(0, 3))
    body = (*colour(rng), 255)
    if kind == 0:
        draw.polygon(
            star(cx, cy, r, int(rng.integers(4, 8)), float(rng.uniform(0.4, 0.7))),
            fill=body,
            outline=outline,
            width=width,
        )
    elif kind == 1:
        draw.ellipse(
            [cx - r, cy - r * rng.uniform(0.6, 1), cx + r, cy + r * rng.uniform(0.6, 1)],
            fill=body,
            outline=outline,
            width=width,
        )
    else:
        draw.polygon(random_polygon(rng, cx, cy, r, int(rng.integers(5, 10))), fill=body, outline=outline, width=width)
    for _ in range(int(rng.integers(1, 6))):
        sx, sy = cx + rng.uniform(-0.5, 0.5) * r, cy + rng.uniform(-0.5, 0.5) * r
        sr = r * rng.uniform(0.08, 0.35)
        fill = (*colour(rng), 255)
        if rng.random() < 0.5:
            draw.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=fill, outline=outline, width=width)
        else:
            draw.polygon(random_polygon(rng, sx, sy, sr, int(rng.integers(3, 7))), fill=fill)
    return img


ICON_GLYPHS = ("plus", "arrow", "check", "house", "heart", "letter", "bars", "circle")


def icon(
    rng: np.random.Generator,
    size: int,
    glyph: str | None = None,
    tint: tuple[int, int, int] | None = None,
    plate: str | None = None,
) -> Image.Image:
    """A small icon on a transparent background: a glyph, alone or on a round or square plate."""
    glyph = glyph or str(rng.choice(ICON_GLYPHS))
    tint = tint or colour(rng)
    plate = plate or str(rng.choice(["none", "circle", "square"]))
    scale = 4  # drawn large, then reduced: antialiased edges
    s = size * scale
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    m = s * 0.08
    fg = (*tint, 255)
    if plate != "none":
        (draw.ellipse if plate == "circle" else draw.rectangle)([m, m, s - m, s - m], fill=fg)
        fg = (255, 255, 255, 255)
    c, r = s / 2, s * 0.3
    lw = max(1, int(s * 0.09))
    if glyph == "plus":
        draw.rectangle([c - lw / 2, c - r, c + lw / 2, c + r], fill=fg)
        draw.rectangle([c - r, c - lw / 2, c + r, c + lw / 2], fill=fg)
    elif glyph == "arrow":
        draw.line([(c - r, c), (c + r * 0.6, c)], fill=fg, width=lw)
        draw.polygon([(c + r, c), (c + r * 0.3, c - r * 0.6), (c + r * 0.3, c + r * 0.6)], fill=fg)
    elif glyph == "check":
        draw.line([(c - r, c), (c - r * 0.2, c + r * 0.7), (c + r, c - r * 0.7)], fill=fg, width=lw, joint="curve")
    elif glyph == "house":
        draw.polygon([(c - r, c), (c, c - r), (c + r, c)], fill=fg)
        draw.rectangle([c - r * 0.7, c, c + r * 0.7, c + r], fill=fg)
    elif glyph == "heart":
        draw.ellipse([c - r, c - r * 0.8, c, c + r * 0.1], fill=fg)
        draw.ellipse([c, c - r * 0.8, c + r, c + r * 0.1], fill=fg)
        draw.polygon([(c - r * 0.97, c - r * 0.2), (c + r * 0.97, c - r * 0.2), (c, c + r)], fill=fg)
    elif glyph == "letter":
        ch = "ABCDEFGHKMNPRSTWXZ"[int(rng.integers(0, 18))]
        draw.text((c, c), ch, font=font(int(r * 2)), fill=fg, anchor="mm")
    elif glyph == "bars":
        for k in range(3):
            y = c - r + k * r * 0.8
            draw.rectangle([c - r, y, c + r, y + lw], fill=fg)
    else:
        draw.ellipse([c - r, c - r, c + r, c + r], outline=fg, width=lw)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def logo(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A mark and a name on a transparent background."""
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    mark = icon(rng, int(h * 0.8))
    img.alpha_composite(mark, (int(h * 0.1), int(h * 0.1)))
    draw = ImageDraw.Draw(img)
    name = words(rng, int(rng.integers(1, 3))).title()
    draw.text((int(h * 1.05), h // 2), name, font=font(int(h * 0.42)), fill=(*colour(rng, 0, 200), 255), anchor="lm")
    return img


# ---------------------------------------------------------------------------
# Distractor pictures (no planted partner)
# ---------------------------------------------------------------------------

FLAG_COLOURS = {
    "red": (206, 17, 38),
    "white": (255, 255, 255),
    "blue": (0, 56, 147),
    "green": (0, 122, 61),
    "yellow": (252, 209, 22),
    "black": (0, 0, 0),
    "orange": (255, 136, 0),
    "sky": (117, 170, 219),
}


def flag(layout: dict[str, Any], colours: list[tuple[int, int, int]]) -> Image.Image:
    w, h = layout["size"]
    img = Image.new("RGB", (w, h), colours[0])
    draw = ImageDraw.Draw(img)
    n = layout["stripes"]
    for k in range(n):
        if layout["vertical"]:
            draw.rectangle([k * w / n, 0, (k + 1) * w / n, h], fill=colours[k])
        else:
            draw.rectangle([0, k * h / n, w, (k + 1) * h / n], fill=colours[k])
    emblem = layout["emblem"]
    extra = colours[n] if len(colours) > n else colours[-1]
    if emblem == "circle":
        r = h * 0.22
        draw.ellipse([w / 2 - r, h / 2 - r, w / 2 + r, h / 2 + r], fill=extra)
    elif emblem == "triangle":
        draw.polygon([(0, 0), (w * 0.4, h / 2), (0, h)], fill=extra)
    elif emblem == "cross":
        t = h * 0.12
        draw.rectangle([w * 0.3, 0, w * 0.3 + t, h], fill=extra)
        draw.rectangle([0, h / 2 - t / 2, w, h / 2 + t / 2], fill=extra)
    return img


def chart(rng: np.random.Generator, layout: dict[str, Any]) -> Image.Image:
    """A bar chart: fixed axes, grid, bar count and colour; the data differ."""
    w, h = layout["size"]
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    left, bottom, top, right = int(w * 0.1), int(h * 0.88), int(h * 0.1), int(w * 0.96)
    for k in range(6):
        y = bottom - k * (bottom - top) / 5
        draw.line([(left, y), (right, y)], fill=(220, 220, 220), width=1)
        draw.text((4, y - 6), str(k * 20), font=font(max(9, h // 40)), fill=(60, 60, 60))
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=(0, 0, 0), width=2)
    n = layout["bars"]
    slot = (right - left) / n
    for k, v in enumerate(rng.uniform(0.1, 1.0, n)):
        x = left + k * slot + slot * 0.15
        draw.rectangle([x, bottom - v * (bottom - top), x + slot * 0.7, bottom], fill=layout["fill"])
    draw.text((left, 4), layout["title"], font=font(max(10, h // 25)), fill=(0, 0, 0))
    return img


def near_blank(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """White, with one tiny mark: a dot, a short line, a small word or a little box."""
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    x, y = float(rng.uniform(0.05, 0.9) * w), float(rng.uniform(0.05, 0.9) * h)
    s = max(2.0, min(w, h) * float(rng.uniform(0.01, 0.04)))
    ink = colour(rng, 0, 200)
    kind = int(rng.integers(0, 4))
    if kind == 0:
        draw.ellipse([x, y, x + s, y + s], fill=ink)
    elif kind == 1:
        draw.line([(x, y), (x + s * 3, y + float(rng.uniform(-s, s)))], fill=ink, width=1)
    elif kind == 2:
        draw.text((x, y), WORDS[int(rng.integers(0, len(WORDS)))], font=font(max(8, int(s * 2))), fill=ink)
    else:
        draw.rectangle([x, y, x + s * 1.5, y + s], outline=ink)
    return img


# ---------------------------------------------------------------------------
# Round 2: template families (different pictures on one template) and moderate edits
# ---------------------------------------------------------------------------

#: Moderate edit -> what it does. Scored apart from the standard transforms.
MODERATE: dict[str, str] = {
    "crop_more": "5-10% cropped off each border",
    "crop_side": "one border cut by 8-15% (a caption bar or strip cut off; mostly the bottom)",
    "watermark": "a small text or logo watermark in a corner",
    "caption_bar": "a caption bar with text added below or above (canvas made taller)",
    "pad_square": "padded to a square (4:3 for square pictures) with bars of one colour",
    "jpeg_q30": "JPEG at quality 30",
    "blur": "slight Gaussian blur (radius 0.2-0.4% of the shorter side, at least 0.7 px)",
    "sharpen": "unsharp mask (150-250%)",
    "rotate": "rotated by 2-3 degrees either way, size kept, corners filled white",
}
#: Moderate edits planted per chosen source.
MODERATE_PER_SOURCE = 4

#: Template family kind -> (templates, members per template). Members are different pictures
#: on one template (no member may pair with another); some get planted variants.
#: Different templates must not make one picture twice: one deck per suit (all its ranks),
#: one sign template per frame (its symbols each once), and icon-glyph templates on one plate
#: in tints apart by more than SAME_TINT (their glyphs repeat across templates).
FAMILIES: dict[str, tuple[int, int]] = {
    "cards": (2, 10),
    "signs": (3, 7),
    "buttons": (5, 6),
    "products": (5, 6),
    "icon_glyph": (5, 6),
}
#: Share of family members given planted variants, and the transforms drawn for them.
FAMILY_VARIANT_SHARE = 0.5
#: Two icon-glyph templates on one plate whose tints are within this many levels in every channel
#: draw the same icons: 15 % of 255, what the planted brightness change moves a channel by, so
#: such tints are one picture by the corpus's own standard. (Before build 2, three of the tuning
#: part's five templates drew square plates in (66, 20, 110), (102, 34, 102) and (107, 50, 109),
#: and their same glyphs were scored as false pairs.) A later template's tint is drawn again.
SAME_TINT = 38
FAMILY_TRANSFORMS = ("jpeg", "webp", "alpha_to_jpeg", "resize50", "thumb", "crop", "brightness", "grey")

#: Per part: what the families are drawn from.
FAMILY_STYLES: dict[str, dict[str, Any]] = {
    "tuning": {
        "suits": ("spade", "club"),
        "ranks": ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10"),
        "card_width": (200, 320),
        "card_back": "transparent",
        "signs": ("triangle_yellow", "triangle_white", "square_yellow"),
        "symbols": ("exclamation", "lightning", "flame", "skull", "radiation", "waves", "person", "hand"),
        "button_sizes": ((160, 48), (200, 60), (240, 64), (120, 40)),
        "button_words": WORDS[0::2],
        "product_sizes": ((500, 500), (640, 640), (600, 450)),
        "objects": ("bottle", "box", "mug", "ball", "can", "vase"),
        "icon_glyphs": ("plus", "arrow", "check", "house", "heart", "bars", "circle"),
        "icon_sizes": (48, 64, 96, 128),
    },
    "heldout": {
        "suits": ("heart", "diamond"),
        "ranks": ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10"),
        "card_width": (130, 190),
        "card_back": "green",
        "signs": ("diamond_orange", "circle_blue", "circle_red"),
        "symbols": ("cross", "arrow_down", "drops", "star", "ring", "snowflake", "gear", "house"),
        "button_sizes": ((300, 80), (96, 32), (180, 54), (260, 44)),
        "button_words": WORDS[1::2],
        "product_sizes": ((400, 560), (800, 800), (720, 540)),
        "objects": ("shoe", "lamp", "bag", "phone", "cup", "cone"),
        "icon_glyphs": ("letter",),
        "icon_sizes": (40, 72, 100, 180),
    },
}


def suit_pip(draw: ImageDraw.ImageDraw, suit: str, cx: float, cy: float, s: float, fill: Any) -> None:
    """A suit symbol of height about ``s`` centred at (cx, cy)."""
    r = s / 2
    if suit == "diamond":
        draw.polygon([(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)], fill=fill)
    elif suit == "heart":
        draw.ellipse([cx - r, cy - r * 0.8, cx, cy + r * 0.1], fill=fill)
        draw.ellipse([cx, cy - r * 0.8, cx + r, cy + r * 0.1], fill=fill)
        draw.polygon([(cx - r * 0.97, cy - r * 0.25), (cx + r * 0.97, cy - r * 0.25), (cx, cy + r)], fill=fill)
    elif suit == "spade":
        draw.ellipse([cx - r, cy - r * 0.2, cx, cy + r * 0.6], fill=fill)
        draw.ellipse([cx, cy - r * 0.2, cx + r, cy + r * 0.6], fill=fill)
        draw.polygon([(cx - r * 0.97, cy + r * 0.3), (cx + r * 0.97, cy + r * 0.3), (cx, cy - r)], fill=fill)
        draw.polygon([(cx, cy + r * 0.2), (cx - r * 0.4, cy + r), (cx + r * 0.4, cy + r)], fill=fill)
    else:  # club
        q = r * 0.48
        for dx, dy in ((0, -0.45), (-0.5, 0.15), (0.5, 0.15)):
            draw.ellipse([cx + dx * r - q, cy + dy * r - q, cx + dx * r + q, cy + dy * r + q], fill=fill)
        draw.polygon([(cx, cy), (cx - r * 0.4, cy + r), (cx + r * 0.4, cy + r)], fill=fill)


#: Rank -> pip centres in card units (x, y in [0, 1]).
_PIPS: dict[str, list[tuple[float, float]]] = {
    "A": [(0.5, 0.5)],
    "2": [(0.5, 0.22), (0.5, 0.78)],
    "3": [(0.5, 0.22), (0.5, 0.5), (0.5, 0.78)],
    "4": [(0.32, 0.22), (0.68, 0.22), (0.32, 0.78), (0.68, 0.78)],
}
_PIPS["5"] = _PIPS["4"] + [(0.5, 0.5)]
_PIPS["6"] = _PIPS["4"] + [(0.32, 0.5), (0.68, 0.5)]
_PIPS["7"] = _PIPS["6"] + [(0.5, 0.36)]
_PIPS["8"] = _PIPS["7"] + [(0.5, 0.64)]
_PIPS["9"] = [(x, y) for x in (0.32, 0.68) for y in (0.22, 0.41, 0.59, 0.78)] + [(0.5, 0.5)]
_PIPS["10"] = [(x, y) for x in (0.32, 0.68) for y in (0.22, 0.41, 0.59, 0.78)] + [(0.5, 0.31), (0.5, 0.69)]


def card(deck: dict[str, Any], rank: str) -> Image.Image:
    """A playing card of one deck: frame, corner indices and the rank's pips (drawn large, reduced)."""
    w = deck["width"]
    h = round(w * 1.4)
    k = 3
    W, H = w * k, h * k
    transparent = deck["back"] == "transparent"
    img = Image.new("RGBA" if transparent else "RGB", (W, H), (0, 0, 0, 0) if transparent else deck["table"])
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle([k, k, W - k, H - k], radius=W // 14, fill=deck["paper"], outline=deck["edge"], width=k * 2)
    ink = deck["ink"]
    pip = W * 0.17 if rank != "A" else W * 0.42
    for x, y in _PIPS[rank]:
        suit_pip(draw, deck["suit"], x * W, (0.08 + 0.84 * y) * H, pip, ink)
    f = font(int(W * 0.13))
    draw.text((W * 0.09, H * 0.07), rank, font=f, fill=ink, anchor="mm")
    suit_pip(draw, deck["suit"], W * 0.09, H * 0.15, W * 0.08, ink)
    draw.text((W * 0.91, H * 0.93), rank, font=f, fill=ink, anchor="mm")
    suit_pip(draw, deck["suit"], W * 0.91, H * 0.85, W * 0.08, ink)
    return img.resize((w, h), Image.Resampling.LANCZOS)


def sign_symbol(draw: ImageDraw.ImageDraw, symbol: str, cx: float, cy: float, s: float, ink: Any) -> None:
    """A pictogram of size about ``s`` centred at (cx, cy)."""
    r = s / 2
    lw = max(1, int(s * 0.1))
    if symbol == "exclamation":
        draw.polygon(
            [
                (cx - r * 0.15, cy - r),
                (cx + r * 0.15, cy - r),
                (cx + r * 0.07, cy + r * 0.45),
                (cx - r * 0.07, cy + r * 0.45),
            ],
            fill=ink,
        )
        draw.ellipse([cx - r * 0.14, cy + r * 0.65, cx + r * 0.14, cy + r * 0.93], fill=ink)
    elif symbol == "lightning":
        draw.polygon(
            [
                (cx + r * 0.2, cy - r),
                (cx - r * 0.45, cy + r * 0.1),
                (cx, cy + r * 0.1),
                (cx - r * 0.2, cy + r),
                (cx + r * 0.45, cy - r * 0.1),
                (cx, cy - r * 0.1),
            ],
            fill=ink,
        )
    elif symbol == "flame":
        draw.ellipse([cx - r * 0.6, cy - r * 0.1, cx + r * 0.6, cy + r], fill=ink)
        draw.polygon([(cx - r * 0.58, cy + r * 0.35), (cx, cy - r), (cx + r * 0.58, cy + r * 0.35)], fill=ink)
    elif symbol == "skull":
        draw.ellipse([cx - r * 0.6, cy - r, cx + r * 0.6, cy + r * 0.3], fill=ink)
        draw.rectangle([cx - r * 0.35, cy + r * 0.2, cx + r * 0.35, cy + r * 0.55], fill=ink)
        for dx in (-0.27, 0.27):
            draw.ellipse(
                [cx + (dx - 0.15) * r, cy - r * 0.5, cx + (dx + 0.15) * r, cy - r * 0.15], fill=(255, 255, 255)
            )
        draw.line([(cx - r * 0.9, cy + r * 0.7), (cx + r * 0.9, cy + r)], fill=ink, width=lw)
        draw.line([(cx - r * 0.9, cy + r), (cx + r * 0.9, cy + r * 0.7)], fill=ink, width=lw)
    elif symbol == "radiation":
        for start in (-90, 30, 150):
            draw.pieslice([cx - r, cy - r, cx + r, cy + r], start - 30, start + 30, fill=ink)
        draw.ellipse([cx - r * 0.3, cy - r * 0.3, cx + r * 0.3, cy + r * 0.3], fill=(255, 255, 255))
        draw.ellipse([cx - r * 0.18, cy - r * 0.18, cx + r * 0.18, cy + r * 0.18], fill=ink)
    elif symbol == "waves":
        for k in range(3):
            y = cy - r * 0.6 + k * r * 0.6
            pts = [(cx - r + t * r / 6, y + math.sin(t * math.pi / 3) * r * 0.15) for t in range(13)]
            draw.line(pts, fill=ink, width=lw)
    elif symbol == "person":
        draw.ellipse([cx - r * 0.18, cy - r, cx + r * 0.18, cy - r * 0.64], fill=ink)
        draw.line([(cx, cy - r * 0.6), (cx, cy + r * 0.2)], fill=ink, width=lw)
        draw.line([(cx - r * 0.5, cy - r * 0.3), (cx + r * 0.5, cy - r * 0.1)], fill=ink, width=lw)
        draw.line([(cx, cy + r * 0.2), (cx - r * 0.4, cy + r)], fill=ink, width=lw)
        draw.line([(cx, cy + r * 0.2), (cx + r * 0.45, cy + r * 0.9)], fill=ink, width=lw)
    elif symbol == "hand":
        draw.rounded_rectangle([cx - r * 0.45, cy - r * 0.1, cx + r * 0.45, cy + r], radius=r * 0.2, fill=ink)
        for k in range(4):
            x = cx - r * 0.42 + k * r * 0.28
            draw.rounded_rectangle([x, cy - r * (0.75 + 0.1 * (k % 2)), x + r * 0.2, cy], radius=r * 0.1, fill=ink)
        draw.polygon(
            [
                (cx - r * 0.45, cy + r * 0.2),
                (cx - r * 0.9, cy - r * 0.3),
                (cx - r * 0.7, cy - r * 0.4),
                (cx - r * 0.3, cy),
            ],
            fill=ink,
        )
    elif symbol == "cross":
        draw.rectangle([cx - r * 0.2, cy - r * 0.8, cx + r * 0.2, cy + r * 0.8], fill=ink)
        draw.rectangle([cx - r * 0.8, cy - r * 0.2, cx + r * 0.8, cy + r * 0.2], fill=ink)
    elif symbol == "arrow_down":
        draw.rectangle([cx - r * 0.18, cy - r * 0.9, cx + r * 0.18, cy + r * 0.2], fill=ink)
        draw.polygon([(cx - r * 0.6, cy + r * 0.1), (cx + r * 0.6, cy + r * 0.1), (cx, cy + r * 0.9)], fill=ink)
    elif symbol == "drops":
        for dx, dy in ((-0.45, -0.3), (0.45, -0.3), (0, 0.4)):
            x, y = cx + dx * r, cy + dy * r
            draw.ellipse([x - r * 0.25, y - r * 0.05, x + r * 0.25, y + r * 0.45], fill=ink)
            draw.polygon([(x - r * 0.24, y + r * 0.15), (x, y - r * 0.4), (x + r * 0.24, y + r * 0.15)], fill=ink)
    elif symbol == "star":
        draw.polygon(star(cx, cy, r, 5, 0.45), fill=ink)
    elif symbol == "ring":
        draw.ellipse([cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8], outline=ink, width=lw * 2)
    elif symbol == "snowflake":
        for k in range(3):
            a = math.pi * k / 3
            draw.line(
                [(cx - r * math.cos(a), cy - r * math.sin(a)), (cx + r * math.cos(a), cy + r * math.sin(a))],
                fill=ink,
                width=lw,
            )
    elif symbol == "gear":
        draw.polygon(star(cx, cy, r, 8, 0.75), fill=ink)
        draw.ellipse([cx - r * 0.3, cy - r * 0.3, cx + r * 0.3, cy + r * 0.3], fill=(255, 255, 255))
    elif symbol == "house":
        draw.polygon([(cx - r, cy), (cx, cy - r), (cx + r, cy)], fill=ink)
        draw.rectangle([cx - r * 0.7, cy, cx + r * 0.7, cy + r], fill=ink)
    else:
        raise ValueError(symbol)


def sign(template: dict[str, Any], symbol: str) -> Image.Image:
    """A warning/mandatory sign: the template's frame and colours, with ``symbol`` in it."""
    s = template["size"]
    k = 3
    S = s * k
    img = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    frame, ink = template["frame"], (0, 0, 0)
    if frame == "triangle_yellow":
        draw.polygon([(S * 0.5, S * 0.06), (S * 0.97, S * 0.9), (S * 0.03, S * 0.9)], fill=(20, 20, 20))
        draw.polygon([(S * 0.5, S * 0.17), (S * 0.87, S * 0.84), (S * 0.13, S * 0.84)], fill=template["fill"])
        cy, size = S * 0.6, S * 0.36
    elif frame == "triangle_white":
        draw.polygon([(S * 0.5, S * 0.06), (S * 0.97, S * 0.9), (S * 0.03, S * 0.9)], fill=template["fill"])
        draw.polygon([(S * 0.5, S * 0.2), (S * 0.85, S * 0.83), (S * 0.15, S * 0.83)], fill=(255, 255, 255))
        cy, size = S * 0.62, S * 0.32
    elif frame == "diamond_orange":
        draw.polygon([(S / 2, S * 0.02), (S * 0.98, S / 2), (S / 2, S * 0.98), (S * 0.02, S / 2)], fill=(0, 0, 0))
        draw.polygon(
            [(S / 2, S * 0.08), (S * 0.92, S / 2), (S / 2, S * 0.92), (S * 0.08, S / 2)], fill=template["fill"]
        )
        cy, size = S * 0.5, S * 0.4
    elif frame == "square_yellow":
        draw.rectangle([S * 0.04, S * 0.04, S * 0.96, S * 0.96], fill=(20, 20, 20))
        draw.rectangle([S * 0.1, S * 0.1, S * 0.9, S * 0.9], fill=template["fill"])
        cy, size = S * 0.5, S * 0.56
    elif frame == "circle_red":  # black pictogram on a white disc in a red ring
        draw.ellipse([S * 0.03, S * 0.03, S * 0.97, S * 0.97], fill=template["fill"])
        draw.ellipse([S * 0.13, S * 0.13, S * 0.87, S * 0.87], fill=(255, 255, 255))
        cy, size = S * 0.5, S * 0.46
    else:  # circle_blue: white pictogram on a blue disc
        draw.ellipse([S * 0.03, S * 0.03, S * 0.97, S * 0.97], fill=template["fill"])
        ink = (255, 255, 255)
        cy, size = S * 0.5, S * 0.52
    sign_symbol(draw, symbol, S * 0.5, cy, size, ink)
    return img.resize((s, s), Image.Resampling.LANCZOS)


def button(template: dict[str, Any], label: str) -> Image.Image:
    """A web button of one style (shape, colours, size) with its own label."""
    w, h = template["size"]
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    body = Image.fromarray(gradient(w, h, template["top"], template["bottom"]).astype(np.uint8), "RGB")
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).rounded_rectangle([0, 0, w - 1, h - 1], radius=int(h * template["round"]), fill=255)
    img.paste(body, (0, 0), mask)
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle([0, 0, w - 1, h - 1], radius=int(h * template["round"]), outline=template["edge"], width=1)
    draw.text((w / 2, h / 2), label, font=font(int(h * 0.45)), fill=template["ink"], anchor="mm")
    return img


def product_object(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, s: float, fill: Any) -> None:
    """A product silhouette with a little shading, about ``s`` high, centred at (cx, cy)."""
    r = s / 2
    dark = tuple(int(c * 0.6) for c in fill)
    if kind == "bottle":
        draw.rounded_rectangle([cx - r * 0.35, cy - r * 0.3, cx + r * 0.35, cy + r], radius=r * 0.1, fill=fill)
        draw.rectangle([cx - r * 0.12, cy - r, cx + r * 0.12, cy - r * 0.3], fill=fill)
        draw.rectangle([cx - r * 0.3, cy + r * 0.05, cx + r * 0.3, cy + r * 0.5], fill=(245, 245, 240))
    elif kind == "box":
        draw.polygon(
            [
                (cx - r * 0.7, cy - r * 0.4),
                (cx + r * 0.3, cy - r * 0.4),
                (cx + r * 0.3, cy + r),
                (cx - r * 0.7, cy + r),
            ],
            fill=fill,
        )
        draw.polygon(
            [
                (cx + r * 0.3, cy - r * 0.4),
                (cx + r * 0.7, cy - r * 0.8),
                (cx + r * 0.7, cy + r * 0.6),
                (cx + r * 0.3, cy + r),
            ],
            fill=dark,
        )
        draw.polygon(
            [
                (cx - r * 0.7, cy - r * 0.4),
                (cx - r * 0.3, cy - r * 0.8),
                (cx + r * 0.7, cy - r * 0.8),
                (cx + r * 0.3, cy - r * 0.4),
            ],
            fill=tuple(min(255, c + 50) for c in fill),
        )
    elif kind == "mug":
        draw.ellipse([cx + r * 0.2, cy - r * 0.3, cx + r * 0.9, cy + r * 0.5], outline=dark, width=int(r * 0.15))
        draw.rounded_rectangle([cx - r * 0.6, cy - r * 0.6, cx + r * 0.4, cy + r * 0.8], radius=r * 0.1, fill=fill)
    elif kind == "ball":
        draw.ellipse([cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8], fill=fill)
        draw.arc([cx - r * 0.8, cy - r * 0.3, cx + r * 0.8, cy + r * 0.3], 0, 180, fill=dark, width=int(r * 0.08))
    elif kind == "can":
        draw.rectangle([cx - r * 0.4, cy - r * 0.8, cx + r * 0.4, cy + r * 0.8], fill=fill)
        draw.ellipse([cx - r * 0.4, cy - r * 0.95, cx + r * 0.4, cy - r * 0.65], fill=(200, 200, 200))
        draw.rectangle([cx - r * 0.4, cy - r * 0.1, cx + r * 0.4, cy + r * 0.2], fill=dark)
    elif kind == "vase":
        draw.ellipse([cx - r * 0.6, cy - r * 0.2, cx + r * 0.6, cy + r], fill=fill)
        draw.polygon(
            [(cx - r * 0.2, cy - r), (cx + r * 0.2, cy - r), (cx + r * 0.45, cy), (cx - r * 0.45, cy)], fill=fill
        )
    elif kind == "shoe":
        draw.polygon(
            [
                (cx - r, cy + r * 0.5),
                (cx - r * 0.9, cy - r * 0.3),
                (cx - r * 0.3, cy - r * 0.3),
                (cx + r * 0.1, cy + r * 0.1),
                (cx + r, cy + r * 0.25),
                (cx + r, cy + r * 0.5),
            ],
            fill=fill,
        )
        draw.rectangle([cx - r, cy + r * 0.5, cx + r, cy + r * 0.65], fill=dark)
    elif kind == "lamp":
        draw.polygon(
            [
                (cx - r * 0.2, cy - r),
                (cx + r * 0.2, cy - r),
                (cx + r * 0.6, cy - r * 0.3),
                (cx - r * 0.6, cy - r * 0.3),
            ],
            fill=fill,
        )
        draw.rectangle([cx - r * 0.05, cy - r * 0.3, cx + r * 0.05, cy + r * 0.8], fill=dark)
        draw.ellipse([cx - r * 0.4, cy + r * 0.7, cx + r * 0.4, cy + r * 0.95], fill=dark)
    elif kind == "bag":
        draw.arc([cx - r * 0.35, cy - r, cx + r * 0.35, cy - r * 0.2], 180, 360, fill=dark, width=int(r * 0.08))
        draw.polygon(
            [
                (cx - r * 0.7, cy - r * 0.5),
                (cx + r * 0.7, cy - r * 0.5),
                (cx + r * 0.85, cy + r),
                (cx - r * 0.85, cy + r),
            ],
            fill=fill,
        )
    elif kind == "phone":
        draw.rounded_rectangle([cx - r * 0.45, cy - r, cx + r * 0.45, cy + r], radius=r * 0.12, fill=(30, 30, 30))
        draw.rectangle([cx - r * 0.38, cy - r * 0.85, cx + r * 0.38, cy + r * 0.8], fill=fill)
    elif kind == "cup":
        draw.polygon(
            [
                (cx - r * 0.6, cy - r * 0.7),
                (cx + r * 0.6, cy - r * 0.7),
                (cx + r * 0.4, cy + r * 0.8),
                (cx - r * 0.4, cy + r * 0.8),
            ],
            fill=fill,
        )
        draw.rectangle([cx - r * 0.7, cy - r * 0.85, cx + r * 0.7, cy - r * 0.7], fill=dark)
    elif kind == "cone":
        draw.polygon([(cx, cy - r), (cx + r * 0.6, cy + r * 0.8), (cx - r * 0.6, cy + r * 0.8)], fill=fill)
        draw.rectangle([cx - r * 0.8, cy + r * 0.8, cx + r * 0.8, cy + r], fill=dark)
    else:
        raise ValueError(kind)


def product(template: dict[str, Any], kind: str, tint: tuple[int, int, int]) -> Image.Image:
    """A shop's product shot: its backdrop, header bar with the shop name and a price strip;
    the object in the middle is what differs."""
    w, h = template["size"]
    img = Image.fromarray(gradient(w, h, template["bg1"], template["bg2"]).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    bar = int(h * 0.1)
    draw.rectangle([0, 0, w, bar], fill=template["bar"])
    draw.text((w * 0.04, bar / 2), template["shop"], font=font(int(bar * 0.55)), fill=(255, 255, 255), anchor="lm")
    draw.ellipse([w * 0.3, h * 0.78, w * 0.7, h * 0.86], fill=tuple(int(c * 0.8) for c in template["bg2"]))
    product_object(draw, kind, w / 2, h * 0.5, min(w, h) * 0.55, tint)
    draw.rectangle([w * 0.68, h * 0.88, w * 0.96, h * 0.97], fill=template["bar"])
    draw.text((w * 0.82, h * 0.925), template["price"], font=font(int(h * 0.05)), fill=(255, 255, 255), anchor="mm")
    return img


def family_set(
    rng: np.random.Generator,
    kind: str,
    members: int,
    fs: dict[str, Any],
    number: int = 0,
    taken: list[tuple[tuple[int, int, int], str]] | None = None,
) -> list[tuple[Image.Image, str]]:
    """Template ``number``'s members: (picture, what differs) each, all different pictures.
    ``taken``: the (tint, plate) of the kind's earlier icon-glyph templates (this one's is added)."""
    out: list[tuple[Image.Image, str]] = []
    if kind == "cards":
        suit = str(fs["suits"][number % len(fs["suits"])])
        red = suit in ("heart", "diamond")
        deck = {
            "suit": suit,
            "width": int(rng.integers(*fs["card_width"])),
            "back": fs["card_back"],
            "table": (int(rng.integers(0, 40)), int(rng.integers(90, 140)), int(rng.integers(40, 80))),
            "paper": (255, 255, 255) if rng.random() < 0.6 else (250, 246, 232),
            "edge": colour(rng, 0, 120),
            "ink": (int(rng.integers(170, 230)), 20, 30) if red else (20, 20, 20),
        }
        ranks = sorted(rng.choice(fs["ranks"], size=members, replace=False).tolist(), key=fs["ranks"].index)
        out = [(card(deck, str(r)), f"{r} of {suit}s") for r in ranks]
    elif kind == "signs":
        frame = str(fs["signs"][number % len(fs["signs"])])
        fill = {
            "triangle_yellow": (252, int(rng.integers(190, 215)), int(rng.integers(0, 40))),
            "triangle_white": (int(rng.integers(190, 230)), 20, 30),
            "square_yellow": (252, int(rng.integers(190, 215)), int(rng.integers(0, 40))),
            "circle_red": (int(rng.integers(190, 230)), 20, 30),
            "diamond_orange": (255, int(rng.integers(110, 160)), 0),
            "circle_blue": (0, int(rng.integers(60, 110)), int(rng.integers(160, 210))),
        }[frame]
        template = {"frame": frame, "fill": fill, "size": int(rng.choice([96, 128, 200, 300, 420]))}
        symbols = rng.choice(fs["symbols"], size=members, replace=False).tolist()
        out = [(sign(template, str(s)), f"{frame} {s}") for s in symbols]
    elif kind == "buttons":
        top = colour(rng, 40, 230)
        template = {
            "size": fs["button_sizes"][int(rng.integers(0, len(fs["button_sizes"])))],
            "top": top,
            "bottom": tuple(int(c * 0.75) for c in top),
            "edge": tuple(int(c * 0.5) for c in top),
            "ink": (255, 255, 255) if sum(top) < 450 else (20, 20, 20),
            "round": float(rng.choice([0.15, 0.3, 0.5])),
        }
        labels: set[str] = set()
        while len(labels) < members:
            n = int(rng.integers(1, 3))
            labels.add(" ".join(str(wd) for wd in rng.choice(fs["button_words"], size=n)).title())
        out = [(button(template, lab), lab) for lab in sorted(labels)]
    elif kind == "products":
        template = {
            "size": fs["product_sizes"][int(rng.integers(0, len(fs["product_sizes"])))],
            "bg1": colour(rng, 200, 256),
            "bg2": colour(rng, 150, 230),
            "bar": colour(rng, 0, 120),
            "shop": words(rng, 2).title(),
            "price": f"{int(rng.integers(5, 99))}.99",
        }
        objects = rng.choice(fs["objects"], size=members, replace=False).tolist()
        out = [(product(template, str(o), colour(rng, 20, 230)), str(o)) for o in objects]
    elif kind == "icon_glyph":
        size = int(rng.choice(fs["icon_sizes"]))
        tint, plate = colour(rng), str(rng.choice(["circle", "square"]))
        taken = [] if taken is None else taken
        while any(p == plate and max(abs(x - y) for x, y in zip(t, tint, strict=True)) <= SAME_TINT for t, p in taken):
            tint = colour(rng)
        taken.append((tint, plate))
        glyphs = fs["icon_glyphs"]
        seen: set[str] = set()
        while len(out) < members:
            seed = int(rng.integers(2**31))
            glyph = str(glyphs[len(out) % len(glyphs)]) if len(glyphs) >= members else str(glyphs[0])
            im = icon(np.random.default_rng(seed), size, glyph, tint, plate)
            key = hashlib.md5(im.tobytes()).hexdigest()
            if key in seen:
                continue
            seen.add(key)
            out.append((im, f"{glyph} on {plate}"))
    else:
        raise ValueError(kind)
    return out


def family_source(sid: str, kind: str, im: Image.Image, rng: np.random.Generator, detail: str) -> Source:
    """A family member as a source: encoded the way such pictures are found."""
    transparent = has_alpha(im)
    if transparent:
        im = hidden_rgb(rng, im, pick_hidden(rng))
        fmt = "PNG"
    else:
        fmt = str(rng.choice(["PNG", "JPEG"], p=[0.6, 0.4]))
    data = encode(im, fmt, **({"quality": int(rng.integers(85, 96))} if fmt == "JPEG" else {}))
    return Source(sid, f"family:{kind}", data, fmt, im.size, transparent, False, detail)


def moderate_applicable(src: Source) -> list[str]:
    out = list(MODERATE)
    if min(src.size) < 24:
        out = [t for t in out if t not in ("crop_more", "crop_side", "watermark")]
    return out


def make_moderate(src: Source, edit: str, rng: np.random.Generator) -> tuple[bytes, str, str]:
    """(bytes, format, detail) of one moderate edit of ``src``."""
    im = decode(src.data)
    fmt = src.fmt
    w, h = im.size
    opaque = flatten(im) if has_alpha(im) else im.convert("RGB")
    if edit == "crop_more":
        f = [float(rng.uniform(0.05, 0.10)) for _ in range(4)]
        box = (round(w * f[0]), round(h * f[1]), w - round(w * f[2]), h - round(h * f[3]))
        data, fmt = save_like(im.crop(box), fmt, rng)
        return data, fmt, "cropped " + "/".join(f"{x:.1%}" for x in f) + " (left/top/right/bottom)"
    if edit == "crop_side":
        side = str(rng.choice(["bottom", "top", "left", "right"], p=[0.55, 0.15, 0.15, 0.15]))
        f = float(rng.uniform(0.08, 0.15))
        box = {
            "bottom": (0, 0, w, h - round(h * f)),
            "top": (0, round(h * f), w, h),
            "left": (round(w * f), 0, w, h),
            "right": (0, 0, w - round(w * f), h),
        }[side]
        data, fmt = save_like(im.crop(box), fmt, rng)
        return data, fmt, f"{f:.1%} off the {side}"
    if edit == "watermark":
        out = im.convert("RGBA")
        layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        ink = (255, 255, 255) if rng.random() < 0.6 else (0, 0, 0)
        alpha = int(rng.integers(130, 220))
        size = max(8, int(min(w, h) * rng.uniform(0.05, 0.08)))
        corner = int(rng.integers(0, 4))
        m = max(2, int(min(w, h) * 0.03))
        x = m if corner % 2 == 0 else w - m
        y = m if corner < 2 else h - m
        anchor = ("l" if corner % 2 == 0 else "r") + ("t" if corner < 2 else "b")
        if rng.random() < 0.6:
            text = "© " + str(rng.choice(WORDS)) + str(rng.choice([".com", " photo", ".net", ""]))
            draw.text((x, y), text, font=font(size), fill=(*ink, alpha), anchor=anchor)
            what = f"text '{text}'"
        else:
            s = size * 1.6
            x0 = x if corner % 2 == 0 else x - s
            y0 = y if corner < 2 else y - s
            draw.ellipse([x0, y0, x0 + s, y0 + s], outline=(*ink, alpha), width=max(1, int(s / 10)))
            draw.text((x0 + s / 2, y0 + s / 2), "W", font=font(int(s * 0.6)), fill=(*ink, alpha), anchor="mm")
            what = "round logo"
        out = Image.alpha_composite(out, layer)
        if not has_alpha(im):
            out = out.convert("RGB" if im.mode != "L" else "L")
        data, fmt = save_like(out, fmt, rng)
        return data, fmt, f"{what}, corner {corner}"
    if edit == "caption_bar":
        bar = max(12, int(h * rng.uniform(0.1, 0.18)))
        below = rng.random() < 0.75
        out = Image.new("RGB", (w, h + bar), colour(rng, 0, 70) if rng.random() < 0.7 else (255, 255, 255))
        out.paste(opaque, (0, 0 if below else bar))
        ink = (20, 20, 20) if out.getpixel((0, h if below else 0)) == (255, 255, 255) else (255, 255, 255)
        ty = h + bar / 2 if below else bar / 2
        ImageDraw.Draw(out).text(
            (w * 0.03, ty),
            words(rng, int(rng.integers(2, 6))).capitalize(),
            font=font(int(bar * 0.5)),
            fill=ink,
            anchor="lm",
        )
        data, fmt = save_like(out, "JPEG" if fmt == "JPEG" else "PNG", rng)
        return data, fmt, f"{bar} px bar {'below' if below else 'above'}"
    if edit == "pad_square":
        fill = (0, 0, 0) if rng.random() < 0.4 else (255, 255, 255) if rng.random() < 0.4 else colour(rng)
        if max(w, h) / min(w, h) < 1.1:
            W, H = round(max(w, h) * 4 / 3), max(w, h)
        else:
            W = H = max(w, h)
        out = Image.new("RGB", (W, H), fill)
        out.paste(opaque, ((W - w) // 2, (H - h) // 2))
        data, fmt = save_like(out, "JPEG" if fmt == "JPEG" else "PNG", rng)
        return data, fmt, f"{w}x{h} -> {W}x{H} on {fill}"
    if edit == "jpeg_q30":
        return encode(opaque, "JPEG", quality=30), "JPEG", "quality 30"
    if edit == "blur":
        radius = max(0.7, min(w, h) * float(rng.uniform(0.002, 0.004)))
        data, fmt = save_like(im.filter(ImageFilter.GaussianBlur(radius)), fmt, rng)
        return data, fmt, f"radius {radius:.1f} px"
    if edit == "sharpen":
        percent = int(rng.integers(150, 251))
        radius = max(1.0, min(w, h) / 400)
        base = im.convert("RGBA") if has_alpha(im) else im
        data, fmt = save_like(base.filter(ImageFilter.UnsharpMask(radius, percent, 2)), fmt, rng)
        return data, fmt, f"unsharp mask {percent}%, radius {radius:.1f}"
    if edit == "rotate":
        angle = float(rng.uniform(2, 3)) * (1 if rng.random() < 0.5 else -1)
        out = opaque.rotate(angle, Image.Resampling.BICUBIC, expand=False, fillcolor=(255, 255, 255))
        data, fmt = save_like(out, "JPEG" if fmt == "JPEG" else "PNG", rng)
        return data, fmt, f"{angle:+.1f} degrees"
    raise ValueError(edit)


# ---------------------------------------------------------------------------
# Encoding, decoding and transforms
# ---------------------------------------------------------------------------


def encode(im: Image.Image, fmt: str, **opts: Any) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG" and im.mode not in ("RGB", "L"):
        im = flatten(im) if has_alpha(im) else im.convert("RGB")
    if fmt == "GIF" and im.mode == "RGBA":
        opts.setdefault("transparency", 0)
        alpha = np.asarray(im)[:, :, 3]
        pal = im.convert("RGB").quantize(255, dither=Image.Dither.NONE)
        idx = np.asarray(pal, dtype=np.uint8) + 1
        idx[alpha < 128] = 0
        palette = [0, 0, 0, *pal.getpalette()[: 255 * 3]]  # type: ignore[index]
        im = Image.fromarray(idx, "P")
        im.putpalette(palette)
    im.save(out, fmt, **opts)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    if im.mode == "P" or im.mode == "PA":
        return im.convert("RGBA") if "transparency" in im.info or im.mode == "PA" else im.convert("RGB")
    if im.mode in ("RGB", "RGBA", "L", "LA"):
        return im
    return im.convert("RGBA" if has_alpha(im) else "RGB")


def has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def flatten(im: Image.Image) -> Image.Image:
    """Composite onto white (what a browser shows)."""
    rgba = im.convert("RGBA")
    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(bg, rgba).convert("RGB")


def png_with_text(data: bytes, key: str, value: str) -> bytes:
    """The same PNG with a tEXt chunk after IHDR."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    body = key.encode("latin-1") + b"\x00" + value.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return data[:33] + chunk + data[33:]


def jpeg_with_comment(data: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment right after SOI (no re-encoding)."""
    assert data[:2] == b"\xff\xd8"
    body = text.encode("ascii")
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + data[2:]


def gif_with_comment(data: bytes, text: str) -> bytes:
    """The same GIF with a comment extension after the global colour table."""
    flags = data[10]
    offset = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    body = text.encode("ascii")[:255]
    return data[:offset] + b"\x21\xfe" + bytes([len(body)]) + body + b"\x00" + data[offset:]


def same_pixels(a: bytes, b: bytes) -> bool:
    x, y = Image.open(io.BytesIO(a)), Image.open(io.BytesIO(b))
    return np.array_equal(np.asarray(x.convert("RGBA")), np.asarray(y.convert("RGBA")))


def save_like(im: Image.Image, fmt: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """Save an edited picture the way its source was stored (GIF edits are saved as PNG)."""
    if fmt == "JPEG":
        return encode(im, "JPEG", quality=int(rng.integers(85, 93))), "JPEG"
    if fmt == "WEBP":
        return encode(im, "WEBP", quality=int(rng.integers(80, 91))), "WEBP"
    return encode(im, "PNG", optimize=False), "PNG"


def enhance(im: Image.Image, kind: Any, factor: float) -> Image.Image:
    """Apply an ImageEnhance to the colour channels only; alpha is kept."""
    if im.mode in ("RGBA", "LA"):
        colour_part, alpha = im.convert("RGB" if im.mode == "RGBA" else "L"), im.getchannel("A")
        out = kind(colour_part).enhance(factor)
        out.putalpha(alpha)
        return out
    return kind(im).enhance(factor)


def applicable(src: Source) -> list[str]:
    """The transforms that make sense for a source."""
    out = ["copy", "metadata", "webp", "resize50", "crop", "brightness", "contrast", "mirror", "rot90"]
    out.append("alpha_to_jpeg" if src.transparent else "jpeg")
    if max(src.size) > 200:
        out.append("thumb")
    if not src.grey:
        out.append("grey")
    if src.category == "package":  # matplotlib's back and forward icons are mirror images of each other
        out = [t for t in out if t not in HARD]
    im = decode(src.data)
    if "mirror" in out and looks_the_same(im, ImageOps.mirror(im)):
        out.remove("mirror")  # a symmetric picture: its mirror image is the same picture
    if "rot90" in out and looks_the_same(im, im.transpose(Image.Transpose.ROTATE_90)):
        out.remove("rot90")
    return [t for t in TRANSFORMS if t in out]


def looks_the_same(a: Image.Image, b: Image.Image) -> bool:
    """Nearly the same picture: 64x64 grey thumbnails (on white) differ by less than 4 levels on average."""

    def small(im: Image.Image) -> np.ndarray:
        return np.asarray(flatten(im).convert("L").resize((64, 64), Image.Resampling.BOX), dtype=np.float32)

    return float(np.abs(small(a) - small(b)).mean()) < 4


def make_variant(src: Source, transform: str, rng: np.random.Generator) -> tuple[bytes, str, str]:
    """(bytes, format, detail) of one variant of ``src``."""
    im = decode(src.data)
    fmt = src.fmt
    if transform == "copy":
        return src.data, fmt, "same bytes"
    if transform == "metadata":
        note = f"edited {int(rng.integers(2000, 2025))}-{int(rng.integers(1, 13)):02d} id {int(rng.integers(1e9))}"
        if fmt == "JPEG":
            data = jpeg_with_comment(src.data, note)
        elif fmt == "PNG":
            data = png_with_text(src.data, "Comment", note)
        elif fmt == "GIF":
            data = gif_with_comment(src.data, note)
        else:
            raise ValueError(f"no metadata edit for {fmt}")
        assert data != src.data and same_pixels(data, src.data), (src.id, fmt)
        return data, fmt, f"{fmt} comment added"
    if transform == "jpeg":
        q = int(rng.integers(60, 86))
        return encode(im, "JPEG", quality=q), "JPEG", f"quality {q}"
    if transform == "webp":
        q = int(rng.integers(70, 91))
        return encode(im, "WEBP", quality=q), "WEBP", f"quality {q}"
    if transform == "alpha_to_jpeg":
        q = int(rng.integers(75, 91))
        return encode(flatten(im), "JPEG", quality=q), "JPEG", f"on white, quality {q}"
    if transform == "resize50":
        w, h = im.size
        out = im.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS)
        data, fmt = save_like(out, fmt, rng)
        return data, fmt, f"{w}x{h} -> {out.width}x{out.height}"
    if transform == "thumb":
        side = int(rng.integers(100, 201))
        out = im.copy()
        out.thumbnail((side, side), Image.Resampling.LANCZOS)
        if src.transparent:
            return encode(out, "PNG"), "PNG", f"{out.width}x{out.height}"
        return encode(out, "JPEG", quality=80), "JPEG", f"{out.width}x{out.height}"
    if transform == "crop":
        w, h = im.size
        f = [float(rng.uniform(0.02, 0.05)) for _ in range(4)]
        box = (round(w * f[0]), round(h * f[1]), w - round(w * f[2]), h - round(h * f[3]))
        data, fmt = save_like(im.crop(box), fmt, rng)
        return data, fmt, "cropped " + "/".join(f"{x:.1%}" for x in f) + " (left/top/right/bottom)"
    if transform in ("brightness", "contrast"):
        factor = 1.15 if rng.random() < 0.5 else 0.85
        kind = ImageEnhance.Brightness if transform == "brightness" else ImageEnhance.Contrast
        data, fmt = save_like(enhance(im, kind, factor), fmt, rng)
        return data, fmt, f"x{factor}"
    if transform == "grey":
        out = im.convert("LA" if src.transparent else "L")
        data, fmt = save_like(out, fmt, rng)
        return data, fmt, "greyscale"
    if transform == "mirror":
        data, fmt = save_like(ImageOps.mirror(im), fmt, rng)
        return data, fmt, "left-right"
    if transform == "rot90":
        turn = Image.Transpose.ROTATE_90 if rng.random() < 0.5 else Image.Transpose.ROTATE_270
        data, fmt = save_like(im.transpose(turn), fmt, rng)
        return data, fmt, "90 degrees " + ("counter-clockwise" if turn == Image.Transpose.ROTATE_90 else "clockwise")
    raise ValueError(transform)


# ---------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------


@dataclass
class Source:
    id: str
    category: str
    data: bytes
    fmt: str
    size: tuple[int, int]
    transparent: bool
    grey: bool
    detail: str = ""
    hidden: str | None = None  # the RGB under alpha 0, for transparent sources


@dataclass
class Corpus:
    root: Path
    seed: int
    files: list[dict[str, Any]] = field(default_factory=list)
    used_urls: set[str] = field(default_factory=set)
    used_rels: set[str] = field(default_factory=set)
    mtime: int = 1_600_000_000

    def add(self, rng: np.random.Generator, data: bytes, fmt: str, **label: Any) -> str:
        rel = self._place(rng, fmt)
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.mtime += 60
        os.utime(path, (self.mtime, self.mtime))
        im = Image.open(io.BytesIO(data))
        self.files.append(
            {"path": rel, **label, "format": fmt, "width": im.width, "height": im.height, "bytes": len(data)}
        )
        return rel

    def _place(self, rng: np.random.Generator, fmt: str) -> str:
        ext = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp"}[fmt]
        while True:
            host = HOSTS[int(rng.integers(0, len(HOSTS)))]
            folder = str(
                rng.choice(
                    [
                        "img",
                        "images",
                        "media",
                        "uploads/2023/04",
                        "static",
                        "wp-content/uploads",
                        "assets",
                        "cache",
                        "files",
                        "thumbs",
                    ]
                )
            )
            word = WORDS[int(rng.integers(0, len(WORDS)))]
            n = int(rng.integers(1, 100_000))
            style = rng.random()
            if style < 0.3:
                name = f"{word}-{n}{ext}"
            elif style < 0.55:
                name = f"{int(rng.integers(0, 2**48)):012x}"
            elif style < 0.7:
                name = str(rng.choice([f"image.php?id={n}", f"thumb.php?img={n}&w=200", f"get?file={word}{n}"]))
            elif style < 0.8:
                name = f"{word}{n}" + str(rng.choice([".html", ".php", ".jpg", ".png", ".aspx"]))
            elif style < 0.9:
                name = f"IMG_{n:05d}"
            else:
                name = f"{word}_{n}{ext.upper()}"
            url = f"{host}/{folder}/{name}"
            digest = hashlib.md5(url.encode()).hexdigest()
            rel = f"{digest[:2]}/{digest[2:4]}/{name}"
            if url not in self.used_urls and rel not in self.used_rels:
                self.used_urls.add(url)
                self.used_rels.add(rel)
                return rel


def package_images() -> list[tuple[str, Path]]:
    """Sample images shipped inside installed packages: (label, path). Nothing is downloaded."""
    found: list[tuple[str, Path]] = []

    def package_dir(name: str) -> Path | None:
        spec = importlib.util.find_spec(name)
        return Path(spec.origin).parent if spec and spec.origin else None

    if (mpl := package_dir("matplotlib")) is not None:
        sample = mpl / "mpl-data" / "sample_data"
        for name in ("grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png"):
            found.append((f"matplotlib/{name}", sample / name))
        found += [(f"matplotlib/{p.name}", p) for p in sorted((mpl / "mpl-data" / "images").glob("*_large.png"))]
    if (sk := package_dir("sklearn")) is not None:
        found += [(f"sklearn/{n}", sk / "datasets" / "images" / n) for n in ("china.jpg", "flower.jpg")]
    if (sp := package_dir("scipy")) is not None:
        found.append(("scipy/dots.png", sp / "ndimage" / "tests" / "dots.png"))
    if (ski := package_dir("skimage")) is not None:
        found += [(f"skimage/{p.name}", p) for p in sorted((ski / "data").glob("*")) if p.suffix in (".png", ".jpg")]
    found.append(("imagehash/imagehash.png", Path(sys.prefix) / "images" / "imagehash.png"))
    out = []
    for label, path in found:
        try:
            Image.open(path).verify()
        except (OSError, SyntaxError):
            continue
        out.append((label, path))
    return out


#: Category -> share of the procedural sources.
CATEGORIES = {
    "photo": 0.28,
    "photo_grey": 0.06,
    "texture": 0.06,
    "banner": 0.09,
    "caption": 0.06,
    "text_page": 0.05,
    "lineart": 0.10,
    "clipart": 0.13,
    "icon": 0.09,
    "logo": 0.08,
}


def photo_size(rng: np.random.Generator) -> tuple[int, int]:
    r = rng.random()
    side = (
        int(rng.integers(1000, 2001))
        if r < 0.3
        else int(rng.integers(300, 1000))
        if r < 0.75
        else int(rng.integers(64, 301))
    )
    aspect = float(rng.choice([4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3]))
    return (side, max(16, round(side / aspect))) if aspect >= 1 else (max(16, round(side * aspect)), side)


def make_source(rng: np.random.Generator, sid: str, category: str) -> Source:
    """A procedural source picture, encoded the way such pictures are found on the web."""
    transparent = grey = False
    hidden = None
    if category in ("photo", "photo_grey", "caption", "texture"):
        w, h = photo_size(rng)
        if category == "texture":
            w, h = min(w, 1200), min(h, 1200)
        im = {"photo": photo, "photo_grey": photo, "caption": caption, "texture": texture}[category](rng, w, h)
        if category == "photo_grey":
            im, grey = im.convert("L"), True
        fmt = str(rng.choice(["JPEG", "PNG"], p=[0.85, 0.15]))
        detail = f"{w}x{h}"
    elif category == "banner":
        w, h = STYLE["banner_sizes"][int(rng.integers(0, len(BANNER_SIZES)))]
        im = banner(rng, w, h)
        fmt = str(rng.choice(["PNG", "JPEG", "GIF"], p=[0.4, 0.4, 0.2]))
        detail = f"{w}x{h}"
    elif category == "text_page":
        w = int(rng.integers(500, 1400))
        h = int(w * rng.uniform(0.6, 1.5))
        im = text_page(rng, w, h)
        if rng.random() < 0.3:
            im, grey = im.convert("L"), True
        fmt = str(rng.choice(["PNG", "JPEG"], p=[0.7, 0.3]))
        detail = f"{w}x{h}"
    elif category == "lineart":
        w = int(rng.integers(150, 1500))
        h = int(w * rng.uniform(0.6, 1.4))
        transparent = bool(rng.random() < 0.5)
        im = lineart(rng, w, h, transparent)
        if transparent:
            hidden = str(rng.choice(["black", "white", "colour"], p=[0.6, 0.2, 0.2]))
            im = hidden_rgb(rng, im, hidden)
        else:
            im, grey = im.convert("L"), True
        fmt = "PNG" if transparent else str(rng.choice(["PNG", "GIF", "JPEG"], p=[0.6, 0.2, 0.2]))
        detail = f"{w}x{h}"
    elif category in ("clipart", "icon", "logo"):
        if category == "clipart":
            w = int(rng.integers(150, 1000))
            h = int(w * rng.uniform(0.7, 1.3))
            im = clipart(rng, w, h)
        elif category == "icon":
            w = h = int(rng.choice(STYLE["icon_sizes"]))
            im = icon(rng, w)
        else:
            h = int(rng.integers(60, 240))
            w = int(h * rng.uniform(2.5, 5))
            im = logo(rng, w, h)
        transparent = True
        hidden = pick_hidden(rng)
        im = hidden_rgb(rng, im, hidden)
        fmt = "GIF" if category == "icon" and rng.random() < 0.2 else "PNG"
        if fmt == "GIF":
            hidden = "palette"
        detail = f"{w}x{h}"
    else:
        raise ValueError(category)
    opts: dict[str, Any] = {"quality": int(rng.integers(80, 96))} if fmt == "JPEG" else {}
    data = encode(im, fmt, **opts)
    size = Image.open(io.BytesIO(data)).size
    return Source(sid, category, data, fmt, size, transparent, grey, detail, hidden)


def package_source(sid: str, label: str, path: Path) -> Source:
    data = path.read_bytes()
    im = Image.open(io.BytesIO(data))
    fmt = im.format or "PNG"
    transparent = has_alpha(im)
    grey = im.mode in ("L", "LA", "1", "I", "I;16")
    if not grey and not transparent:
        arr = np.asarray(im.convert("RGB"), dtype=np.int16)
        grey = bool(np.abs(arr - arr.mean(axis=2, keepdims=True)).max() <= 2)
    return Source(sid, "package", data, fmt, im.size, transparent, grey, label)


def build(
    out: Path,
    n_sources: int,
    seed: int,
    variant_share: float,
    distractor_scale: float,
    log: Callable[[str], None] = print,
    part: str = "round1",
) -> dict[str, Any]:
    """Write the corpus under ``out/dump`` and its labels to ``out/labels.json``; return the labels.

    ``part``: ``round1`` (the first corpus), ``tuning`` (the same plus template families and
    moderate edits) or ``heldout`` (all of it drawn with other fonts, sizes, glyphs, symbols,
    palettes and words; give it another seed too)."""
    STYLE.clear()
    STYLE.update(STYLES[part])
    out = out.resolve()
    dump = out / "dump"
    if out.exists() and any(out.iterdir()) and not (out / "labels.json").exists():
        raise SystemExit(f"{out} is not empty and holds no labels.json: refusing to write there")
    if dump.exists():
        shutil.rmtree(dump)
    (out / "labels.json").unlink(missing_ok=True)
    dump.mkdir(parents=True)
    start = time.perf_counter()
    corpus = Corpus(dump, seed)
    place_rng = np.random.default_rng([seed, 0])

    # Sources: the packages' sample images first, then procedural ones by category share.
    sources: list[Source] = []
    for label, path in package_images()[:n_sources]:
        sources.append(package_source(f"s{len(sources):04d}", label, path))
    remaining = n_sources - len(sources)
    counts = {c: math.floor(remaining * share) for c, share in CATEGORIES.items()}
    for c in list(CATEGORIES)[: remaining - sum(counts.values())]:
        counts[c] += 1
    plan = [c for c, k in counts.items() for _ in range(k)]
    np.random.default_rng([seed, 1]).shuffle(plan)
    for category in plan:
        sid = f"s{len(sources):04d}"
        sources.append(make_source(np.random.default_rng([seed, 2, len(sources)]), sid, category))
        if len(sources) % 50 == 0:
            log(f"  {len(sources)}/{n_sources} sources drawn")

    # Which sources get variants, and which transforms each.
    pick_rng = np.random.default_rng([seed, 3])
    planted_ids = set(pick_rng.permutation(len(sources))[: round(len(sources) * variant_share)].tolist())
    family_paths: dict[str, list[tuple[str, str]]] = {}

    def add_variant(src: Source, transform: str, data: bytes, fmt: str, detail: str) -> None:
        """A variant (or moderate edit) of a source, labelled with the source's traits."""
        vrel = corpus.add(
            place_rng,
            data,
            fmt,
            source=src.id,
            transform=transform,
            category=src.category,
            transparent=src.transparent,
            grey=src.grey,
            hidden_rgb=src.hidden,
            detail=detail,
        )
        family_paths[src.id].append((vrel, transform))

    for i, src in enumerate(sources):
        rel = corpus.add(
            place_rng,
            src.data,
            src.fmt,
            source=src.id,
            transform="source",
            category=src.category,
            transparent=src.transparent,
            grey=src.grey,
            hidden_rgb=src.hidden,
            detail=src.detail,
        )
        family_paths[src.id] = [(rel, "source")]
        if i not in planted_ids:
            continue
        rng = np.random.default_rng([seed, 4, i])
        options = applicable(src)
        k = min(len(options), int(rng.integers(4, 8)))
        chosen = set(rng.choice(options, size=k, replace=False).tolist())
        if src.transparent:
            chosen.add("alpha_to_jpeg")  # the commonest edit of a transparent picture on the web
        for transform in [t for t in TRANSFORMS if t in chosen]:
            add_variant(src, transform, *make_variant(src, transform, rng))
    log(f"  {len(sources)} sources, {len(corpus.files) - len(sources)} variants written")

    # Distractors.
    d_rng = np.random.default_rng([seed, 5])
    n_distractors = 0
    for kind, (templates, members) in DISTRACTORS.items():
        for t in range(max(1, round(templates * distractor_scale))):
            group = f"{kind}-{t:02d}"
            for data, fmt, detail in distractor_set(d_rng, kind, members):
                did = f"d{n_distractors:04d}"
                corpus.add(
                    place_rng,
                    data,
                    fmt,
                    source=did,
                    transform=f"distractor:{kind}",
                    category=f"distractor:{kind}",
                    template=group if members > 1 else None,
                    detail=detail,
                )
                family_paths[did] = []
                n_distractors += 1
    log(f"  {n_distractors} distractors written")

    if part != "round1":
        # Moderate edits of the sources that have variants (a stream of their own, after
        # everything of round 1, so the round-1 files stay the same bytes at the same paths).
        n_moderate = 0
        for i, src in enumerate(sources):
            if i not in planted_ids:
                continue
            rng = np.random.default_rng([seed, 6, i])
            options = moderate_applicable(src)
            chosen = set(rng.choice(options, size=min(len(options), MODERATE_PER_SOURCE), replace=False).tolist())
            for edit in [t for t in MODERATE if t in chosen]:
                add_variant(src, edit, *make_moderate(src, edit, rng))
                n_moderate += 1
        log(f"  {n_moderate} moderate edits written")

        # Template families: different pictures on one template; some members get variants.
        fs = FAMILY_STYLES[part]
        f_rng = np.random.default_rng([seed, 7])
        n_members = n_family_variants = 0
        for kind, (templates, members) in FAMILIES.items():
            taken: list[tuple[tuple[int, int, int], str]] = []
            for t in range(max(1, round(templates * distractor_scale))):
                group = f"{kind}-{t:02d}"
                for im, what in family_set(f_rng, kind, members, fs, t, taken):
                    src = family_source(f"f{n_members:04d}", kind, im, f_rng, what)
                    n_members += 1
                    rel = corpus.add(
                        place_rng,
                        src.data,
                        src.fmt,
                        source=src.id,
                        transform="source",
                        category=src.category,
                        template=group,
                        transparent=src.transparent,
                        grey=False,
                        detail=what,
                    )
                    family_paths[src.id] = [(rel, "source")]
                    if f_rng.random() >= FAMILY_VARIANT_SHARE:
                        continue
                    options = [x for x in applicable(src) if x in FAMILY_TRANSFORMS]
                    chosen = set(
                        f_rng.choice(options, size=min(len(options), int(f_rng.integers(1, 3))), replace=False)
                    )
                    for transform in [x for x in TRANSFORMS if x in chosen]:
                        data, fmt, detail = make_variant(src, transform, f_rng)
                        vrel = corpus.add(
                            place_rng,
                            data,
                            fmt,
                            source=src.id,
                            transform=transform,
                            category=src.category,
                            template=group,
                            transparent=src.transparent,
                            grey=False,
                            detail=f"{what}: {detail}",
                        )
                        family_paths[src.id].append((vrel, transform))
                        n_family_variants += 1
        log(f"  {n_members} template-family members, {n_family_variants} variants of them written")

    labels = labels_document(corpus, family_paths, sources, n_sources, seed, variant_share, distractor_scale, part)
    labels["build_seconds"] = round(time.perf_counter() - start, 2)
    tmp = out / "labels.json.tmp"
    tmp.write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / "labels.json")
    return labels


def distractor_set(rng: np.random.Generator, kind: str, members: int) -> list[tuple[bytes, str, str]]:
    """One template's worth of distractors: ``members`` pictures sharing a layout, different content."""
    out: list[tuple[bytes, str, str]] = []
    if kind == "banner_template":
        w, h = STYLE["banner_sizes"][int(rng.integers(0, 5))]
        layout = banner_layout(rng, w, h)
        fmt = str(rng.choice(["PNG", "JPEG"]))
        for _ in range(members):
            out.append(
                (
                    encode(banner(rng, w, h, layout), fmt, **({"quality": 85} if fmt == "JPEG" else {})),
                    fmt,
                    f"{w}x{h}, other text",
                )
            )
    elif kind == "flag":
        w = int(rng.choice([300, 450, 600, 900]))
        layout = {
            "size": (w, w * 2 // 3),
            "stripes": int(rng.integers(2, 4)),
            "vertical": bool(rng.random() < 0.5),
            "emblem": str(rng.choice(["none", "none", "circle", "triangle", "cross"])),
        }
        names = list(FLAG_COLOURS)
        seen: set[tuple[str, ...]] = set()
        while len(out) < members:
            pick = tuple(str(c) for c in rng.choice(names, size=layout["stripes"] + 1, replace=False))
            if pick in seen:
                continue
            seen.add(pick)
            im = flag(layout, [FLAG_COLOURS[c] for c in pick])
            out.append((encode(im, "PNG"), "PNG", "-".join(pick)))
    elif kind == "icon_tint":
        size = int(rng.choice([48, 64, 128, 256]))
        glyph, plate = str(rng.choice(ICON_GLYPHS[:-2])), str(rng.choice(["none", "circle", "square"]))
        glyph_rng_seed = int(rng.integers(2**31))
        for _ in range(members):
            tint = colour(rng)
            im = icon(np.random.default_rng(glyph_rng_seed), size, glyph, tint, plate)
            out.append((encode(hidden_rgb(rng, im, "black"), "PNG"), "PNG", f"{glyph} on {plate}, tint {tint}"))
    elif kind == "chart":
        layout = {
            "size": (int(rng.choice([400, 640, 800])), int(rng.choice([300, 400, 480]))),
            "bars": int(rng.integers(4, 13)),
            "fill": colour(rng, 0, 200),
            "title": words(rng, 3).title(),
        }
        for _ in range(members):
            out.append((encode(chart(rng, layout), "PNG"), "PNG", "other data"))
    elif kind == "text_page":
        w = int(rng.integers(600, 1000))
        h = int(w * rng.uniform(0.7, 1.4))
        layout = text_layout(rng, w, h)
        for _ in range(members):
            out.append((encode(text_page(rng, w, h, layout), "PNG"), "PNG", "other text"))
    elif kind == "near_blank":
        w, h = int(rng.integers(100, 900)), int(rng.integers(100, 900))
        fmt = str(rng.choice(["PNG", "JPEG", "GIF"]))
        out.append((encode(near_blank(rng, w, h), fmt, **({"quality": 90} if fmt == "JPEG" else {})), fmt, f"{w}x{h}"))
    elif kind == "solid":
        w, h = int(rng.integers(16, 800)), int(rng.integers(16, 800))
        c = colour(rng) if rng.random() < 0.7 else (255, 255, 255) if rng.random() < 0.5 else (0, 0, 0)
        fmt = str(rng.choice(["PNG", "JPEG", "GIF"]))
        im = Image.new("RGB", (w, h), c)
        out.append((encode(im, fmt, **({"quality": 90} if fmt == "JPEG" else {})), fmt, f"{w}x{h} {c}"))
    else:
        raise ValueError(kind)
    return out


def labels_document(
    corpus: Corpus,
    family_paths: dict[str, list[tuple[str, str]]],
    sources: list[Source],
    n_sources: int,
    seed: int,
    variant_share: float,
    distractor_scale: float,
    part: str = "round1",
) -> dict[str, Any]:
    planted = []
    pairs = []
    for family, paths in family_paths.items():
        if len(paths) < 2:
            continue
        source_path = paths[0][0]
        planted += [
            {"source": source_path, "variant": p, "transform": t, "class": pair_class(family, t)} for p, t in paths[1:]
        ]
        for a in range(len(paths)):
            for b in range(a + 1, len(paths)):
                (pa, ta), (pb, tb) = paths[a], paths[b]
                classes = {pair_class(family, ta), pair_class(family, tb)} - {"source"}
                cls = next(c for c in ("family", "moderate", "hard", "standard") if c in classes)
                pairs.append({"a": pa, "b": pb, "transforms": [ta, tb], "hard": ta in HARD or tb in HARD, "class": cls})
    transforms = Counter(f["transform"] for f in corpus.files)
    return {
        "version": LABELS_VERSION,
        "build": CORPUS_BUILD,
        "root": "dump",
        "options": {
            "part": part,
            "sources": n_sources,
            "seed": seed,
            "variant_share": variant_share,
            "distractor_scale": distractor_scale,
        },
        "transforms": TRANSFORMS,
        "hard_transforms": list(HARD),
        "standard_transforms": list(STANDARD),
        "moderate_transforms": MODERATE if part != "round1" else {},
        "template_families": {k: {"templates": t, "members": m} for k, (t, m) in FAMILIES.items()}
        if part != "round1"
        else {},
        "package_images": [s.detail for s in sources if s.category == "package"],
        "counts": {
            "files": len(corpus.files),
            "sources": len(sources),
            "planted_pairs": len(planted),
            "family_pairs": len(pairs),
            "by_transform": dict(sorted(transforms.items())),
        },
        "files": corpus.files,
        "planted": planted,
        "pairs": pairs,
    }


def pair_class(family: str, transform: str) -> str:
    """The class a planted pair is scored in: ``family`` (a variant of a template-family
    member), ``moderate``, ``hard`` or ``standard`` (``source`` for the source itself)."""
    if transform == "source":
        return "source"
    if family.startswith("f"):
        return "family"
    return "moderate" if transform in MODERATE else "hard" if transform in HARD else "standard"


def options_match(
    labels_path: Path,
    n_sources: int,
    seed: int,
    variant_share: float,
    distractor_scale: float,
    part: str = "round1",
) -> bool:
    """Does the corpus at ``labels_path`` exist, built with these options?"""
    try:
        labels = json.loads(labels_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = {
        "part": part,
        "sources": n_sources,
        "seed": seed,
        "variant_share": variant_share,
        "distractor_scale": distractor_scale,
    }
    return bool(
        labels.get("version") == LABELS_VERSION
        and labels.get("build", 1) == CORPUS_BUILD
        and labels.get("options") == wanted
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--sources", type=int, default=DEFAULT_SOURCES, help="source pictures (default 300)")
    parser.add_argument("--seed", type=int, help="default 1 (2 for the held-out part)")
    parser.add_argument(
        "--part",
        choices=PARTS,
        default="round1",
        help="round1: the first corpus; tuning: it plus template families and moderate edits;"
        " heldout: the same classes drawn with other fonts, sizes, glyphs and palettes",
    )
    parser.add_argument("--variant-share", type=float, default=0.6, help="share of sources given variants")
    parser.add_argument("--distractor-scale", type=float, default=1.0, help="multiplies the number of distractors")


def default_seed(args: argparse.Namespace) -> int:
    """``--seed``, or 1 (2 for the held-out part: never the tuning part's seed by default)."""
    if args.seed is not None:
        return int(args.seed)
    return HELDOUT_SEED if args.part == "heldout" else DEFAULT_SEED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    seed = default_seed(args)
    labels = build(args.out, args.sources, seed, args.variant_share, args.distractor_scale, part=args.part)
    c = labels["counts"]
    print(
        f"{c['files']} files ({c['sources']} sources, {c['planted_pairs']} planted pairs, {c['family_pairs']}"
        f" family pairs) in {args.out / 'dump'} - {time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
