"""What a near report matches: hashes of the picture and of its inside, checked on thumbnails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, PngImagePlugin
from typer.testing import CliRunner

from imgindex import hashing
from imgindex.cli import app
from imgindex.kinds import to_unsigned
from imgindex.match.verify import COLOUR_DIFFERENCE, LOW_DETAIL, colour_residual, thumbnails
from imgindex.query import query
from imgindex.report import ReportOptions, build_report
from imgindex.storage import Index

from .conftest import encode, picture, run_scan, write


def info(data: bytes) -> hashing.ImageInfo:
    return hashing.image_info(data, hashing.sniff_format(data[: hashing.SNIFF_BYTES]), hashing.HashSettings())


def distance(a: int, b: int) -> int:
    return (to_unsigned(a) ^ to_unsigned(b)).bit_count()


def near_groups(index: Index, **options: object) -> set[frozenset[str]]:
    """The groups with duplicates, as sets of file names."""
    with index.snapshot():
        report = build_report(index, ReportOptions(mode="near", **options))  # type: ignore[arg-type]
        return {
            frozenset(Path(i.path.decode()).name for i in [group.kept, *(d for d, _ in group.duplicates)])
            for group in report.groups()
            if group.duplicates
        }


def padded(image: Image.Image, canvas: tuple[int, int], scale: float) -> Image.Image:
    """A smaller copy of ``image`` in the middle of a white canvas (a padded thumbnail)."""
    small = image.resize((int(image.width * scale), int(image.height * scale)))
    out = Image.new("RGB", canvas, (255, 255, 255))
    out.paste(small, ((canvas[0] - small.width) // 2, (canvas[1] - small.height) // 2))
    return out


def stripes(top: tuple[int, int, int], bottom: tuple[int, int, int], size: tuple[int, int] = (180, 120)) -> Image.Image:
    image = Image.new("RGB", size, top)
    ImageDraw.Draw(image).rectangle([0, size[1] // 2, size[0], size[1]], fill=bottom)
    return image


def test_a_padded_thumbnail_matches_its_picture_by_what_is_inside_its_border(tree: Path, index: Index) -> None:
    source = picture(7, (240, 180))
    original = encode(source, "PNG")
    thumb = encode(padded(source, (200, 200), 0.5), "JPEG", quality=85)
    a, b = info(original), info(thumb)
    assert distance(a.phash, b.phash) > 10  # the whole pictures are far apart
    assert a.trim_hash is None and b.trim_hash is not None
    assert distance(a.phash, b.trim_hash) <= 10  # the original is its own inside
    write(tree / "a" / "original.png", original)
    write(tree / "b" / "thumb.jpg", thumb)
    write(tree / "c" / "other.png", encode(padded(picture(8, (240, 180)), (200, 200), 0.5), "PNG"))
    run_scan(index, tree)
    assert near_groups(index) == {frozenset({"original.png", "thumb.jpg"})}
    [result] = query(index, [str(tree / "b" / "thumb.jpg").encode()], 10)
    assert {Path(m.path.decode()).name for m in result.matches} == {"original.png", "thumb.jpg"}


def test_the_same_layout_in_other_colours_is_not_a_duplicate(tree: Path, index: Index) -> None:
    red = stripes((255, 255, 255), (220, 30, 30))
    blue = stripes((255, 255, 255), (30, 30, 220))
    assert distance(info(encode(red, "PNG")).phash, info(encode(blue, "PNG")).phash) <= 10
    write(tree / "flags" / "red.png", encode(red, "PNG"))
    write(tree / "flags" / "red.jpg", encode(red, "JPEG", quality=80))
    write(tree / "flags" / "blue.png", encode(blue, "PNG"))
    # One-colour pictures have nothing to compare but their colour: they group by their bytes only.
    write(tree / "flat" / "white.png", encode(Image.new("RGB", (50, 50), (255, 255, 255)), "PNG"))
    write(tree / "flat" / "white.gif", encode(Image.new("RGB", (50, 50), (255, 255, 255)), "GIF"))
    write(tree / "flat" / "grey.png", encode(Image.new("RGB", (50, 50), (128, 128, 128)), "PNG"))
    run_scan(index, tree)
    assert near_groups(index) == {frozenset({"red.png", "red.jpg"})}
    [result] = query(index, [str(tree / "flags" / "blue.png").encode()], 10)
    assert [Path(m.path.decode()).name for m in result.matches] == ["blue.png"]


def icon(colour: tuple[int, int, int], size: int = 64) -> Image.Image:
    """A house in ``colour`` on a transparent background (drawn large, then reduced)."""
    s = size * 4
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.polygon([(s * 0.2, s * 0.5), (s * 0.5, s * 0.2), (s * 0.8, s * 0.5)], fill=(*colour, 255))
    draw.rectangle([s * 0.3, s * 0.5, s * 0.7, s * 0.8], fill=(*colour, 255))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def test_a_grey_copy_joins_its_source_not_an_icon_tinted_another_shade(tree: Path, index: Index) -> None:
    # A grey copy has its source's luminance; the other icon the same shape at another contrast,
    # and more pixels: ranked first, it took the grey copy when correlation alone decided.
    write(tree / "a-other.png", encode(icon((230, 200, 40), 128), "PNG"))
    write(tree / "b-source.png", encode(icon((40, 60, 200)), "PNG"))
    write(tree / "c-grey.png", encode(icon((40, 60, 200)).convert("LA"), "PNG"))
    run_scan(index, tree)
    assert near_groups(index) == {frozenset({"b-source.png", "c-grey.png"})}


def test_a_tinted_copy_of_a_grey_icon_is_not_its_grey_copy(tree: Path, index: Index) -> None:
    # The same shape at other grey levels: the thumbnails correlate fully, the contrast differs.
    grey, tinted = encode(icon((100, 100, 100)), "PNG"), encode(icon((230, 200, 40)), "PNG")
    assert distance(info(grey).phash, info(tinted).phash) <= 10
    write(tree / "grey.png", grey)
    write(tree / "tinted.png", tinted)
    write(tree / "tinted.webp", encode(icon((230, 200, 40)), "WEBP", quality=90))
    run_scan(index, tree)
    assert near_groups(index) == {frozenset({"tinted.png", "tinted.webp"})}


def plus(colour: tuple[int, int, int], size: int = 64) -> Image.Image:
    """A thin plus in ``colour`` on a transparent background: it fills a third of its own box."""
    s = size * 4
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    c, r, w = s / 2, s * 0.3, s * 0.09
    draw.rectangle([c - w / 2, c - r, c + w / 2, c + r], fill=(*colour, 255))
    draw.rectangle([c - r, c - w / 2, c + r, c + w / 2], fill=(*colour, 255))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def test_an_icon_in_another_tint_is_not_a_copy_however_little_of_its_box_it_fills(tree: Path, index: Index) -> None:
    # A pink and a tan plus: the white around the strokes, in both, fills most of the colour
    # thumbnails, and over all of them their colours differ as little as a copy's may. Darker
    # copies of a saturated yellow house differ more where it is drawn, but by one factor.
    pink, tan, yellow = plus((230, 130, 160)), plus((200, 130, 90)), icon((250, 220, 20))

    def darkened(factor: float) -> Image.Image:
        out = ImageEnhance.Brightness(yellow.convert("RGB")).enhance(factor).convert("RGBA")
        out.putalpha(yellow.getchannel("A"))
        return out

    write(tree / "pink.png", encode(pink, "PNG"))
    write(tree / "pink.webp", encode(pink, "WEBP", quality=90))
    write(tree / "tan.png", encode(tan, "PNG"))
    write(tree / "yellow.png", encode(yellow, "PNG"))
    write(tree / "yellow-darker.png", encode(darkened(0.85), "PNG"))
    run_scan(index, tree)
    assert near_groups(index) == {frozenset({"pink.png", "pink.webp"}), frozenset({"yellow.png", "yellow-darker.png"})}

    # Their insides (what the check of insides compares; the strokes are thin in the wholes):
    made = [info(encode(i, "PNG")).trim_descriptor for i in (pink, tan, yellow, darkened(0.8))]
    rows = hashing.descriptor_rows([d for d in made if d is not None])
    assert len(rows) == 4
    pictures = thumbnails(rows)
    a, b = pictures.rows(np.array([0, 2])), pictures.rows(np.array([1, 3]))
    x, y = a.chroma.astype(np.float32).reshape(2, -1, 2), b.chroma.astype(np.float32).reshape(2, -1, 2)
    plain = np.sqrt(((y - x) ** 2).sum(axis=2).mean(axis=1))
    weight = np.maximum(np.hypot(x[..., 0], x[..., 1]), np.hypot(y[..., 0], y[..., 1]))
    where_drawn = np.sqrt((weight * ((y - x) ** 2).sum(axis=2)).sum(axis=1) / weight.sum(axis=1))
    assert plain[0] <= COLOUR_DIFFERENCE  # over the whole box the two pluses differ as a copy may
    assert (where_drawn > COLOUR_DIFFERENCE).all()  # where drawn, both pairs differ more; scaled:
    assert list(colour_residual(a, b) <= COLOUR_DIFFERENCE) == [False, True]


def test_mirrored_and_turned_copies_match_only_with_rotations(tree: Path, index: Index) -> None:
    source = picture(11, (240, 160))
    write(tree / "a" / "source.png", encode(source, "PNG"))
    write(tree / "a" / "mirror.jpg", encode(source.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG", quality=85))
    write(tree / "a" / "turned.jpg", encode(source.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=85))
    write(tree / "b" / "other.png", encode(picture(12, (240, 160)), "PNG"))
    write(tree / "b" / "other-turned.png", encode(picture(13, (240, 160)).transpose(Image.Transpose.ROTATE_90), "PNG"))
    run_scan(index, tree)
    assert near_groups(index) == set()
    assert near_groups(index, rotations=True) == {frozenset({"source.png", "mirror.jpg", "turned.jpg"})}
    # Searched in memory, the report says how to keep them in the index; kept, it reads them.
    report = ["report", "--near", "--rotations", "--db", index.path, "-o", str(tree / "near.json")]
    searched = CliRunner().invoke(app, report)
    assert searched.exit_code == 0 and "imgindex pairs --rotations" in searched.stderr
    assert CliRunner().invoke(app, ["pairs", "--rotations", "--db", index.path]).exit_code == 0
    kept = CliRunner().invoke(app, report)
    assert kept.exit_code == 0 and "pairs --rotations" not in kept.stderr
    assert near_groups(index, rotations=True) == {frozenset({"source.png", "mirror.jpg", "turned.jpg"})}


def test_orientation_hashes_follow_the_thumbnails() -> None:
    data = encode(picture(14, (200, 120)), "PNG")
    upright = hashing.orientation_hashes(hashing.orient_descriptors(_row(info(data).descriptor), 0))
    for k in range(hashing.ORIENTATIONS):
        turned = hashing.orient_descriptors(_row(info(data).descriptor), k)
        # Orientation k of a picture's thumbnails hashes as the picture's k-th hash ...
        assert hashing.orientation_hashes(turned)[0, 0] == upright[0, k]
    mirrored = encode(picture(14, (200, 120)).transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG")
    # ... and a mirrored copy's own thumbnails are close to the mirror orientation's.
    copy = hashing.orientation_hashes(_row(info(mirrored).descriptor))
    assert (int(copy[0, 0]) ^ int(upright[0, 1])).bit_count() <= 4


def _row(descriptor: bytes) -> np.ndarray:
    return np.frombuffer(descriptor, dtype=np.uint8)[None]


def test_descriptors_follow_their_files(tree: Path, index: Index) -> None:
    write(tree / "plain.png", encode(picture(15), "PNG"))
    write(tree / "framed.png", encode(padded(picture(16), (140, 140), 0.8), "PNG"))
    write(tree / "gone.png", encode(picture(17), "PNG"))
    run_scan(index, tree)

    def stored() -> dict[str, tuple[bool, bool]]:
        rows = index.db.conn.execute(
            "SELECT file_paths.path, d.picture IS NOT NULL, d.trimmed IS NOT NULL, file_paths.trim_hash IS NOT NULL"
            " FROM descriptors d JOIN file_paths ON file_paths.id = d.file_id"
        )
        result = {}
        for path, picture_, trimmed, trim_hash in rows:
            assert trimmed == trim_hash  # a trimmed descriptor exactly when there is a trimmed hash
            result[Path(bytes(path).decode()).name] = (bool(picture_), bool(trimmed))
        return result

    assert stored() == {"plain.png": (True, False), "framed.png": (True, True), "gone.png": (True, False)}
    write(tree / "plain.png", b"<html>not an image any more</html>")
    (tree / "gone.png").unlink()
    run_scan(index, tree)
    assert stored() == {"framed.png": (True, True)}


def test_different_pictures_padded_onto_one_canvas_are_not_duplicates(tree: Path, index: Index) -> None:
    # Product shots on a white canvas, small on a large one or large on a smaller one: the
    # shared canvas makes the whole thumbnails agree.
    kinds = {"small": ((400, 400), 0.4), "large": ((320, 320), 0.7)}
    for n in range(24):
        kind = "small" if n % 2 else "large"
        image = padded(picture(20 + n, (200, 150)), *kinds[kind])
        write(tree / f"{kind}{n}.png", encode(image, "PNG"))
        write(tree / f"{kind}{n}.jpg", encode(image, "JPEG", quality=80))
    run_scan(index, tree)
    expected = {frozenset({f"{k}{n}.png", f"{k}{n}.jpg"}) for n in range(24) for k in ["small" if n % 2 else "large"]}
    assert near_groups(index) == expected
    assert near_groups(index, rotations=True) == expected
    [result] = query(index, [str(tree / "small1.jpg").encode()], 10)
    assert {Path(m.path.decode()).name for m in result.matches} == {"small1.png", "small1.jpg"}


def test_copies_of_a_one_colour_product_on_a_canvas_still_match(tree: Path, index: Index) -> None:
    # Faint shading only: inside its border the picture has no structure to compare.
    yy, xx = np.mgrid[0:150, 0:200]
    for name, (r, g, b) in (("tan", (1.0, 0.9, 0.7)), ("blue", (0.4, 0.5, 1.0))):
        shade = 120 + 2 * np.sin(xx / 25.0) * np.cos(yy / 30.0)
        product = Image.fromarray(np.stack([shade * r, shade * g, shade * b], -1).clip(0, 255).astype(np.uint8))
        canvas = Image.new("RGB", (400, 400), (255, 255, 255))
        canvas.paste(product, (100, 125))
        write(tree / f"{name}.png", encode(canvas, "PNG"))
        write(tree / f"{name}-q60.jpg", encode(canvas, "JPEG", quality=60))
        write(tree / f"{name}.webp", encode(canvas, "WEBP", quality=80))
    run_scan(index, tree)
    assert near_groups(index) == {
        frozenset({"tan.png", "tan-q60.jpg", "tan.webp"}),
        frozenset({"blue.png", "blue-q60.jpg", "blue.webp"}),
    }


def test_rotations_keep_to_a_lower_threshold(tree: Path, index: Index) -> None:
    # (A source whose regions do not meet the mirror's orientations: with seed 31, the middle
    # region meets the mirror at 1 bit, at a moved cut, and that is the distance reported.)
    source = picture(32, (240, 160))
    write(tree / "source.png", encode(source, "PNG"))
    mirror = source.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((120, 80))
    write(tree / "mirror.jpg", encode(mirror, "JPEG", quality=50))  # 3 bits from the source's mirror hash
    run_scan(index, tree)
    with index.snapshot():
        found = {}
        for threshold in (0, 2, 10):
            report = build_report(index, ReportOptions(mode="near", threshold=threshold, rotations=True))
            found[threshold] = [d for group in report.groups() for _, d in group.duplicates]
    assert found == {0: [], 2: [], 10: [3]}


def test_near_blank_pictures_match_by_their_bytes_only_in_reports_and_queries(tree: Path, index: Index) -> None:
    faint = Image.new("RGB", (200, 200), (250, 250, 250))
    ImageDraw.Draw(faint).rectangle([101, 101, 103, 103], fill=(200, 200, 200))  # a speck: next to no detail
    detail = thumbnails(np.frombuffer(info(encode(faint, "PNG")).descriptor, np.uint8)[None]).detail[0]
    assert 0 < detail < LOW_DETAIL  # the speck is seen, but too faint to confirm anything
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "same pixels, other bytes")
    write(tree / "faint.png", encode(faint, "PNG"))
    write(tree / "faint-text.png", encode(faint, "PNG", pnginfo=text))
    write(tree / "faint-copy.png", encode(faint, "PNG"))  # the same bytes as faint.png
    run_scan(index, tree)
    assert near_groups(index) == {frozenset({"faint.png", "faint-copy.png"})}
    [result] = query(index, [str(tree / "faint-text.png").encode()], 10)
    assert [Path(m.path.decode()).name for m in result.matches] == ["faint-text.png"]


def test_pictures_without_descriptors_match_each_other_by_hash_only(tree: Path, index: Index) -> None:
    source = picture(41, (200, 150))
    for name, quality in (("a.jpg", 90), ("b.jpg", 80), ("c.jpg", 70), ("d.jpg", 60)):
        write(tree / name, encode(source, "JPEG", quality=quality))
    run_scan(index, tree)
    assert near_groups(index) == {frozenset({"a.jpg", "b.jpg", "c.jpg", "d.jpg"})}
    # As if a and b (the best, so leaders) had been indexed by an older version, whose hashes
    # may be of another kind: they match each other by hash, and nothing else. (Their hash
    # settings are another version's, so the matches the index stored for them do not count.)
    older = "(SELECT id FROM files WHERE name IN (X'612e6a7067', X'622e6a7067'))"
    index.db.conn.execute(f"DELETE FROM descriptors WHERE file_id IN {older}")
    index.db.conn.execute("INSERT INTO hash_params (key, created_at) VALUES ('an older version', 0)")
    index.db.conn.execute(
        f"UPDATE files SET params_id = (SELECT id FROM hash_params WHERE key = 'an older version') WHERE id IN {older}"
    )
    assert near_groups(index) == {frozenset({"a.jpg", "b.jpg"}), frozenset({"c.jpg", "d.jpg"})}
    with index.snapshot():
        assert build_report(index, ReportOptions(mode="near")).unconfirmed_count == 2
        assert build_report(index, ReportOptions(mode="exact")).unconfirmed_count == 0
    result = CliRunner().invoke(app, ["report", "--near", "--db", index.path, "-o", str(tree / "near.json")])
    assert result.exit_code == 0
    assert "2 distinct images have no thumbnails yet" in result.stderr and "imgindex scan" in result.stderr
    [found] = query(index, [str(tree / "c.jpg").encode()], 10)
    assert {Path(m.path.decode()).name for m in found.matches} == {"c.jpg", "d.jpg"}
    assert found.unconfirmed == 2  # a and b: near by hash, but not matched
    [itself] = query(index, [str(tree / "a.jpg").encode()], 10)  # read afresh, so with thumbnails
    assert {(Path(m.path.decode()).name, m.exact) for m in itself.matches} == {
        ("a.jpg", True),
        ("c.jpg", False),
        ("d.jpg", False),
    }
    assert itself.unconfirmed == 1  # b; a is matched by its bytes
    result = CliRunner().invoke(app, ["query", "--db", index.path, str(tree / "c.jpg")])
    assert "2 indexed images near by hash have no thumbnails" in result.stderr
