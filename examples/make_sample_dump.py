"""Generate ``examples/sample-dump/``: a small, fake web-crawl dump for imgindex.

The layout mimics the output of Apache Nutch's ``bin/nutch dump``: every
fetched URL is written to ``<md5(url)[0:2]>/<md5(url)[2:4]>/<name>``, where
``<name>`` is the last segment of the URL (query string included). So names
are what a crawler sees: missing or wrong extensions, ``page.php?id=3``,
spaces, and some non-image junk.

Contents: 33 small procedural images (JPEG, PNG with transparency, GIF,
WebP, BMP, TIFF), with planted exact copies (same bytes, other URL) and near
duplicates (re-encoded, resized, alpha flattened onto white, brightened), plus
8 non-image files. ``examples/sample-dump.MANIFEST.json`` says what each
file is.

Run it from anywhere; it (re)writes the outputs next to this script:

    python examples/make_sample_dump.py

The output is deterministic: fixed seeds, no timestamps, so two runs give
byte-identical files (with the same Pillow / libjpeg / libwebp build).
Needs Pillow and numpy only.
"""

import gzip
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

HERE = Path(__file__).resolve().parent
DUMP = HERE / "sample-dump"
MANIFEST = HERE / "sample-dump.MANIFEST.json"


# --- procedural pictures ---------------------------------------------------


def rand_color(rng):
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def scene(seed, w, h):
    """A 'photo-like' RGB picture: sky gradient, hills, a sun, some noise."""
    rng = np.random.default_rng(seed)
    top, bottom = rng.integers(0, 256, (2, 3))
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    sky = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3))
    img = Image.fromarray(sky.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    r = int(rng.integers(h // 10, h // 4))
    cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h // 2))
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rand_color(rng))
    for layer in range(int(rng.integers(2, 4))):
        base = h * (0.5 + 0.15 * layer)
        xs = np.linspace(0, w, 6)
        ys = base + rng.normal(0, h * 0.12, xs.size)
        draw.polygon([(0, h), *zip(xs.tolist(), ys.tolist(), strict=True), (w, h)], fill=rand_color(rng))
    for _ in range(int(rng.integers(1, 4))):  # a few boxy "objects"
        x, y = int(rng.integers(0, w - 8)), int(rng.integers(h // 2, h - 8))
        draw.rectangle([x, y, x + int(rng.integers(6, w // 3)), y + int(rng.integers(6, h // 3))], fill=rand_color(rng))
    img = img.filter(ImageFilter.GaussianBlur(1))
    noisy = np.asarray(img, float) + rng.normal(0, 5, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def clipart(seed, size):
    """Line-art RGBA: thick-outlined flat shapes on a transparent background."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    ink = (20, 20, 20, 255)
    for _ in range(int(rng.integers(3, 6))):
        x0, y0 = (int(v) for v in rng.integers(2, size * 2 // 3, 2))
        w, h = (int(v) for v in rng.integers(size // 5, size // 2, 2))
        box = [x0, y0, min(x0 + w, size - 3), min(y0 + h, size - 3)]
        fill = (*rand_color(rng), 255)
        kind = int(rng.integers(4))
        if kind == 0:
            draw.ellipse(box, fill=fill, outline=ink, width=3)
        elif kind == 1:
            draw.rounded_rectangle(box, 5, fill=fill, outline=ink, width=3)
        elif kind == 2:
            draw.polygon(
                [(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), (box[2], box[3])], fill=fill, outline=ink, width=3
            )
        else:
            draw.line(box, fill=ink, width=4)
    return img


# --- encoders --------------------------------------------------------------


def encode(img, fmt, **opts):
    buf = io.BytesIO()
    img.save(buf, fmt, **opts)
    return buf.getvalue()


def decode(data):
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def on_white(img):
    bg = Image.new("RGB", img.size, (255, 255, 255))
    bg.paste(img, mask=img.getchannel("A"))
    return bg


def jpeg(img, quality=85):
    return encode(img.convert("RGB"), "JPEG", quality=quality)


def png(img):
    return encode(img, "PNG", optimize=True)


# --- the dump --------------------------------------------------------------

files = {}  # relative path -> bytes
manifest = []  # one entry per file, in creation order
by_url = {}  # url -> relative path


def add(url, data, what, kind, of=None, transform=None):
    digest = hashlib.md5(url.encode()).hexdigest()
    name = url.rsplit("/", 1)[1]
    rel = f"{digest[:2]}/{digest[2:4]}/{name}"
    assert rel not in files, rel
    files[rel] = data
    by_url[url] = rel
    entry = {"path": rel, "url": url, "what": what, "kind": kind}
    if of:
        entry["of"] = of
    if transform:
        entry["transform"] = transform
    manifest.append(entry)
    return rel


def original(url, data):
    return add(url, data, "original", "original")


def exact_copy(url, src_url):
    src = by_url[src_url]
    rel = add(url, files[src], f"exact copy of {src}", "exact", of=src)
    assert rel.split("/")[:2] != src.split("/")[:2], "copy must be in another folder"


def near_dup(url, src_url, transform, make):
    src = by_url[src_url]
    add(url, make(decode(files[src])), f"near duplicate of {src} ({transform})", "near", of=src, transform=transform)


def not_image(url, data, what="not an image", kind="not-image", of=None):
    add(url, data, what, kind, of=of)


A = "http://www.example.com"
B = "https://shop.example.net"
C = "http://blog.example.org"


def build():
    """Fill `files` and `manifest`."""
    # Originals: photo-like scenes in various formats, under crawl-style names.
    original(f"{A}/img/sunset.jpg", jpeg(scene(1, 128, 96)))
    original(f"{A}/img/beach.jpg", jpeg(scene(2, 120, 80), 90))
    original(f"{A}/img/mountains.jpg", jpeg(scene(3, 96, 96)))
    original(f"{B}/media/IMG_2041", jpeg(scene(4, 128, 128)))
    original(f"{C}/uploads/photo 1.jpg", jpeg(scene(5, 100, 75)))
    original(f"{B}/page.php?id=3", jpeg(scene(6, 80, 80)))
    original(f"{C}/gallery.html", jpeg(scene(7, 112, 84)))
    original(f"{A}/thumbs/thumb_8.jpg", jpeg(scene(8, 64, 64), 75))
    original(f"{C}/assets/header.jpeg", jpeg(scene(9, 128, 64)))
    original(f"{B}/banner.webp", encode(scene(10, 128, 64), "WEBP", quality=80))
    original(f"{A}/old/legacy.bmp", encode(scene(11, 64, 48), "BMP"))
    original(f"{C}/scans/scan.tif", encode(scene(12, 96, 72), "TIFF", compression="tiff_deflate"))
    original(f"{A}/img/field.png", png(scene(13, 64, 64)))

    # Originals: line art / clip art with transparency, and a palette GIF.
    original(f"{A}/static/logo.png", png(clipart(101, 96)))
    original(f"{B}/icons/icon-home.png", png(clipart(102, 64)))
    original(f"{C}/static/star.png", png(clipart(103, 80)))
    original(f"{B}/static/badge", png(clipart(104, 72)))
    original(f"{C}/icons/arrow.png", png(clipart(105, 48)))
    spinner = clipart(106, 64).convert("RGB").quantize(16)  # background becomes black
    original(f"{A}/static/spinner.gif", encode(spinner, "GIF", transparency=spinner.getpixel((0, 0))))

    # Exact copies: same bytes under another URL (hence another folder).
    exact_copy("http://mirror.example.com/img/sunset.jpg", f"{A}/img/sunset.jpg")
    exact_copy(f"{C}/wp-content/image", f"{A}/img/mountains.jpg")
    exact_copy(f"{A}/static/logo.png?v=2", f"{A}/static/logo.png")
    exact_copy(f"{B}/static/loading.gif", f"{A}/static/spinner.gif")
    exact_copy(f"{C}/photos/IMG_2041.JPG", f"{B}/media/IMG_2041")
    exact_copy(f"{A}/cache/banner.webp", f"{B}/banner.webp")

    # Near duplicates.
    near_dup(f"{B}/img/beach_q40.jpg", f"{A}/img/beach.jpg", "JPEG re-encode at quality 40", lambda im: jpeg(im, 40))
    near_dup(f"{C}/thumb_8 (1).jpg", f"{A}/thumbs/thumb_8.jpg", "JPEG re-encode at quality 95", lambda im: jpeg(im, 95))
    near_dup(f"{A}/thumbs/sunset_small.jpg", f"{A}/img/sunset.jpg", "resized to 50%", lambda im: jpeg(im.reduce(2)))
    near_dup(
        f"{C}/media/IMG_2041_s", f"{B}/media/IMG_2041", "resized to 50%, saved as PNG", lambda im: png(im.reduce(2))
    )
    near_dup(
        f"{B}/img/logo.jpg",
        f"{A}/static/logo.png",
        "PNG to JPEG, alpha flattened onto white",
        lambda im: jpeg(on_white(im), 90),
    )
    near_dup(
        f"{A}/img/star.jpg",
        f"{C}/static/star.png",
        "PNG to JPEG, alpha flattened onto white",
        lambda im: jpeg(on_white(im), 90),
    )
    near_dup(
        f"{C}/img/mountains-bright.jpg",
        f"{A}/img/mountains.jpg",
        "brightness +8%",
        lambda im: jpeg(ImageEnhance.Brightness(im).enhance(1.08)),
    )
    near_dup(
        f"{B}/photo-1-edit.jpg",
        f"{C}/uploads/photo 1.jpg",
        "brightness -6%",
        lambda im: jpeg(ImageEnhance.Brightness(im).enhance(0.94)),
    )

    # Things that are not (valid) images.
    header = by_url[f"{C}/assets/header.jpeg"]
    not_image(
        f"{A}/index.html",
        b"<!DOCTYPE html>\n<html><head><title>Example</title></head>\n"
        b'<body><img src="img/sunset.jpg"><img src="static/logo.png"></body></html>\n',
    )
    not_image(
        f"{B}/api/items.json", json.dumps({"items": [{"id": 3, "image": "/page.php?id=3"}]}, indent=2).encode() + b"\n"
    )
    not_image(f"{A}/robots.txt", b"User-agent: *\nDisallow: /cache/\n")
    not_image(f"{C}/static/site.css", b"body { margin: 0; }\nimg { max-width: 100%; }\n")
    not_image(f"{B}/export.gz", gzip.compress(b"id,name\n1,sunset\n2,beach\n" * 20, mtime=0))
    not_image(f"{A}/favicon.ico", b"")
    not_image(f"{C}/img/missing.jpg", b"<html><body><h1>404 Not Found</h1></body></html>\n")
    not_image(
        f"{B}/img/broken.jpg",
        files[header][: len(files[header]) // 2],
        what=f"truncated (first half of {header})",
        kind="truncated",
        of=header,
    )


def main():
    build()
    if DUMP.exists():
        shutil.rmtree(DUMP)
    for rel, data in files.items():
        path = DUMP / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    doc = {"root": DUMP.name, "files": manifest}
    MANIFEST.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    total = sum(len(d) for d in files.values())
    print(f"wrote {len(files)} files ({total} bytes) to {DUMP}")


if __name__ == "__main__":
    main()
