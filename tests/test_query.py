"""imgindex query: look files up in the index without adding them."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import ImageEnhance
from typer.testing import CliRunner

from imgindex.cli import app
from imgindex.storage import open_index

from .conftest import encode, picture, run_scan, write


def test_query_finds_exact_and_near_copies_without_adding_anything(tmp_path: Path, tree: Path, db_path: Path) -> None:
    source = picture(3, (200, 150))
    write(tree / "a" / "photo.png", encode(source, "PNG"))
    write(tree / "b" / "photo-bright", encode(ImageEnhance.Brightness(source).enhance(1.2), "JPEG", quality=85))
    write(tree / "c" / "other.png", encode(picture(4, (200, 150)), "PNG"))
    with open_index(db_path) as idx:
        run_scan(idx, tree)
        files_before = idx.catalog.status_counts()

    outside = tmp_path / "incoming"
    exact = write(outside / "same.png", encode(source, "PNG"))
    near = write(outside / "new.jpg", encode(source.resize((100, 75)), "JPEG", quality=70))
    unrelated = write(outside / "unrelated.png", encode(picture(9, (120, 90)), "PNG"))
    broken = write(outside / "broken.jpg", encode(source, "JPEG")[:300])
    notimage = write(outside / "notes.txt", b"hello")

    files = [str(p) for p in (exact, near, unrelated, broken, notimage)]
    result = CliRunner().invoke(app, ["query", "--db", str(db_path), "--json", *files])
    assert result.exit_code == 3, result.output  # some files could not be hashed
    data = json.loads(result.stdout)
    assert data["threshold"] == 10
    by_name = {Path(q["path"]).name: q for q in data["queries"]}

    same = by_name["same.png"]["matches"]
    assert same[0]["exact"] and same[0]["distance"] == 0 and same[0]["path"].endswith("a/photo.png")
    assert {Path(m["path"]).name for m in same} == {"photo.png", "photo-bright"}
    assert not any(m["path"].endswith("other.png") for m in same)

    resized = by_name["new.jpg"]["matches"]
    assert {Path(m["path"]).name for m in resized} == {"photo.png", "photo-bright"}
    assert not any(m["exact"] for m in resized)
    assert [m["distance"] for m in resized] == sorted(m["distance"] for m in resized)

    assert by_name["unrelated.png"]["matches"] == []
    assert by_name["broken.jpg"]["status"] == "truncated"
    assert by_name["notes.txt"]["status"] == "not_image"

    with open_index(db_path) as idx:
        assert idx.catalog.status_counts() == files_before  # nothing was added

    text = CliRunner().invoke(app, ["query", "--db", str(db_path), "--threshold", "0", str(exact), str(unrelated)])
    assert text.exit_code == 0, text.output
    assert "same.png: " in text.output and "exact" in text.output
    assert "unrelated.png: no match" in text.output


def test_query_without_an_index_is_a_clear_error(tmp_path: Path) -> None:
    image = write(tmp_path / "x.png", encode(picture(1), "PNG"))
    result = CliRunner().invoke(app, ["query", "--db", str(tmp_path / "none.db"), str(image)])
    assert result.exit_code == 1
    assert "no index" in result.output


def test_query_with_rotations_finds_a_mirrored_copy(tmp_path: Path, tree: Path, db_path: Path) -> None:
    from PIL import Image

    source = picture(21, (200, 150))
    write(tree / "photo.png", encode(source, "PNG"))
    write(tree / "other.png", encode(picture(22, (200, 150)), "PNG"))
    with open_index(db_path) as idx:
        run_scan(idx, tree)
    mirrored = write(tmp_path / "mirrored.jpg", encode(source.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG"))

    def names(*options: str) -> set[str]:
        result = CliRunner().invoke(app, ["query", "--db", str(db_path), "--json", *options, str(mirrored)])
        assert result.exit_code == 0, result.output
        return {Path(m["path"]).name for m in json.loads(result.stdout)["queries"][0]["matches"]}

    assert names() == set()
    assert names("--rotations") == {"photo.png"}


def test_an_unknown_output_format_is_one_clear_error(db_path: Path, tree: Path) -> None:
    write(tree / "a.png", encode(picture(1), "PNG"))
    with open_index(db_path) as idx:
        run_scan(idx, tree)
    result = CliRunner().invoke(app, ["report", "--near", "--db", str(db_path), "--format", "xml"])
    assert result.exit_code == 1
    assert "--format must be json or csv" in result.output
