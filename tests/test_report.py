"""Reports, export and dedup, end to end through the command line on generated trees."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgindex.cli import app
from imgindex.report import ReportOptions, build_report
from imgindex.storage import open_index

from .conftest import QUICK, encode, picture, run_module, run_scan, write


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def scanned(tree: Path, db: Path) -> None:
    code, _, stderr = invoke("scan", tree, "--db", db, "-q", "-j", "1")
    assert code == 3, stderr  # the corpus has one truncated download


def report(db: Path, *args: str | Path) -> dict[str, object]:
    code, out, stderr = invoke("report", "--db", db, *args)
    assert code == 0, stderr
    return json.loads(out)  # type: ignore[no-any-return]


def groups(data: dict[str, object], files: dict[str, Path]) -> dict[str, set[str]]:
    """kept name -> duplicate names, for groups with duplicates."""
    names = {str(p): k for k, p in files.items()}
    return {
        names[entry["path"]]: {names[d["path"]] for d in entry["duplicates"]}
        for entry in data["images"]  # type: ignore[attr-defined]
        if entry["duplicates"]
    }


def test_exact_report(corpus: dict[str, Path], db_path: Path) -> None:
    scanned(corpus["a"].parents[2], db_path)
    data = report(db_path, "--exact")
    assert data["mode"] == "exact" and data["threshold"] is None and data["hash"] == "dhash"
    # 10 files recognised as images (the truncated one included), one exact copy.
    assert (data["initial_image_count"], data["final_image_count"]) == (10, 9)
    assert (data["group_count"], data["duplicate_count"]) == (1, 1)
    assert groups(data, corpus) == {"a_copy": {"a"}}  # same size and resolution: the older is kept
    assert len(data["images"]) == data["final_image_count"]  # type: ignore[arg-type]
    (entry,) = [e for e in data["images"] if e["duplicates"]]  # type: ignore[attr-defined]
    assert set(entry) == {"path", "sha256", "phash", "width", "height", "size", "duplicates"}
    assert (entry["width"], entry["height"]) == (256, 192)
    assert set(entry["duplicates"][0]) == {"path", "sha256", "phash"}
    assert entry["duplicates"][0]["sha256"] == entry["sha256"]
    cut = [e for e in data["images"] if e["path"].endswith("cut.jpg")]  # type: ignore[attr-defined]
    assert cut[0]["phash"] is None  # failed to decode, still counted


def test_near_report(corpus: dict[str, Path], db_path: Path) -> None:
    scanned(corpus["a"].parents[2], db_path)
    data = report(db_path, "--near")
    assert data["mode"] == "near" and data["threshold"] == 10
    # b_meta is kept over b: same pixels, and the larger file (its text chunk) wins.
    assert groups(data, corpus) == {"a_copy": {"a", "a_q60", "a_half"}, "b_meta": {"b"}}
    assert data["final_image_count"] == data["initial_image_count"] - data["duplicate_count"]  # type: ignore[operator]
    assert (data["initial_image_count"], data["final_image_count"], data["group_count"]) == (10, 6, 2)
    for entry in data["images"]:  # type: ignore[attr-defined]
        for dup in entry["duplicates"]:
            assert 0 <= dup["distance"] <= 10
            if dup["sha256"] == entry["sha256"]:
                assert dup["distance"] == 0
    only = report(db_path, "--near", "--duplicates-only")
    assert len(only["images"]) == 2  # type: ignore[arg-type]
    assert only["final_image_count"] == 6
    strict = report(db_path, "--near", "--threshold", "0")
    assert groups(strict, corpus)["b_meta"] == {"b"}  # metadata-only change: same pixels


def test_keep_rules_and_prefer(corpus: dict[str, Path], db_path: Path, tree: Path) -> None:
    scanned(tree, db_path)
    assert "a_copy" in groups(report(db_path, "--near"), corpus)
    # Newest first: a_half is the newest of the family; rules named first win.
    assert "a_half" in groups(report(db_path, "--near", "--keep", "newest"), corpus)
    # Shortest path first: "11/aa/photo.jpg" is the shortest of the family.
    assert "a" in groups(report(db_path, "--near", "--keep", "shortest"), corpus)
    # --prefer wins over every rule.
    assert "a_q60" in groups(report(db_path, "--near", "--prefer", tree / "33"), corpus)
    code, _, stderr = invoke("report", "--db", db_path, "--near", "--keep", "prettiest")
    assert code == 1 and "unknown --keep rule" in stderr


def test_csv_report(corpus: dict[str, Path], db_path: Path, tmp_path: Path) -> None:
    scanned(corpus["a"].parents[2], db_path)
    out = tmp_path / "near.csv"
    code, stdout, _ = invoke("report", "--db", db_path, "--near", "--format", "csv", "-o", out)
    assert code == 0
    assert "initial image count: 10" in stdout and "final image count: 6" in stdout
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["group", "kept_path", "duplicate_path", "distance", "kept_url", "duplicate_url"]
    assert len(rows) == 1 + 4
    assert {r[0] for r in rows[1:]} == {"1", "2"}
    assert all(r[3].isdigit() for r in rows[1:])


def test_report_file_is_written_atomically(corpus: dict[str, Path], db_path: Path, tmp_path: Path) -> None:
    scanned(corpus["a"].parents[2], db_path)
    out = tmp_path / "exact.json"
    out.write_text("previous report")
    code, _, _ = invoke("report", "--db", db_path, "--exact", "-o", out)
    assert code == 0
    assert json.loads(out.read_text())["mode"] == "exact"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".exact.json")] == []
    code, _, stderr = invoke("report", "--db", db_path, "--exact", "-o", tmp_path / "no" / "such" / "dir.json")
    assert code == 1 and "cannot write" in stderr


def test_report_needs_exactly_one_mode(db_path: Path, tree: Path) -> None:
    run_scan(open_index(db_path), tree)
    for args in ([], ["--exact", "--near"]):
        code, _, stderr = invoke("report", "--db", db_path, *args)
        assert code == 1 and "--exact" in stderr
    code, _, stderr = invoke("report", "--db", db_path, "--exact", "--threshold", "3")
    assert code == 1 and "--near" in stderr


def test_usage_errors_exit_1(tmp_path: Path) -> None:
    result = run_module("report", "--no-such-option")
    assert result.returncode == 1
    assert "No such option" in result.stderr


def test_report_is_the_same_whatever_the_scan_order(corpus: dict[str, Path], tmp_path: Path, tree: Path) -> None:
    with open_index(tmp_path / "one.db") as one:
        run_scan(one, tree)
    with open_index(tmp_path / "two.db") as two:
        for sub in sorted(tree.iterdir(), reverse=True):
            run_scan(two, sub, options=QUICK)
        run_scan(two, tree)
    for mode in ("--exact", "--near"):
        a = invoke("report", "--db", tmp_path / "one.db", mode)[1]
        b = invoke("report", "--db", tmp_path / "two.db", mode)[1]
        assert a == b


def test_report_never_reads_images(corpus: dict[str, Path], db_path: Path, tree: Path) -> None:
    scanned(tree, db_path)
    before = report(db_path, "--near")
    for path in corpus.values():
        path.write_bytes(b"overwritten")
    assert report(db_path, "--near") == before


def test_non_utf8_names_round_trip_in_json_and_csv(db_path: Path, tree: Path, tmp_path: Path) -> None:
    raw_dir = os.fsencode(tree)
    names = [b"caf\xe9.jpg", b"copy-\xff\xfe"]
    data = encode(picture(8), "JPEG")
    for name in names:
        with open(os.path.join(raw_dir, name), "wb") as f:
            f.write(data)
    with open_index(db_path) as idx:
        run_scan(idx, tree)
    result = report(db_path, "--exact")
    (entry,) = result["images"]  # type: ignore[misc]
    paths = [entry, *entry["duplicates"]]
    assert sorted(os.fsencode(p["path"]) for p in paths) == sorted(os.path.join(raw_dir, n) for n in names)
    assert sorted(base64.b64decode(p["path_b64"]) for p in paths) == sorted(os.path.join(raw_dir, n) for n in names)
    out = tmp_path / "dups.csv"
    assert invoke("report", "--db", db_path, "--exact", "-f", "csv", "-o", out)[0] == 0
    line = out.read_bytes().splitlines()[1]
    assert all(os.path.join(raw_dir, n) in line for n in names)


def test_library_report_counts(corpus: dict[str, Path], db_path: Path, tree: Path) -> None:
    with open_index(db_path) as idx:
        run_scan(idx, tree)
        rep = build_report(idx, ReportOptions(mode="near"))
        listed = list(rep.groups())
        assert len(listed) == rep.final_image_count
        assert sum(len(g.duplicates) for g in listed) == rep.duplicate_count
        kept_paths = [g.kept.path for g in listed]
        assert kept_paths == sorted(kept_paths, key=lambda p: (os.path.dirname(p), os.path.basename(p)))


# -- export ----------------------------------------------------------------------------


def test_export_copies_kept_images_in_their_layout(corpus: dict[str, Path], db_path: Path, tmp_path: Path) -> None:
    tree = corpus["a"].parents[2]
    scanned(tree, db_path)
    out, dups = tmp_path / "out", tmp_path / "dups"
    code, stdout, stderr = invoke("export", out, "--near", "--duplicates-dir", dups, "--db", db_path)
    assert code == 0, stderr
    exported = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    expected = sorted(str(corpus[k].relative_to(tree)) for k in ("a_copy", "b_meta", "c1", "c2", "c3", "cut"))
    assert exported == expected
    assert (out / "22" / "bb" / "copy-of-photo").read_bytes() == corpus["a_copy"].read_bytes()
    assert "exported 6 kept images" in stdout
    folders = sorted(p.name for p in dups.iterdir())
    assert folders == ["00001-copy-of-photo.jpg", "00002-drawing-meta.png"]
    first = sorted(p.name for p in (dups / folders[0]).iterdir())
    assert first[0] == "0-kept-copy-of-photo.jpg"
    assert [n.split("-")[0] for n in first[1:4]] == ["1", "2", "3"]
    assert "group.txt" in first
    assert str(corpus["a_half"]) in (dups / folders[0] / "group.txt").read_text()


def test_export_never_overwrites(corpus: dict[str, Path], db_path: Path, tmp_path: Path) -> None:
    scanned(corpus["a"].parents[2], db_path)
    out = tmp_path / "out"
    write(out / "22" / "bb" / "copy-of-photo", b"mine")
    code, _, stderr = invoke("export", out, "--exact", "--db", db_path)
    assert code == 1 and "not empty" in stderr and "--force" in stderr
    code, stdout, _ = invoke("export", out, "--exact", "--db", db_path, "--force")
    assert code == 0
    assert (out / "22" / "bb" / "copy-of-photo").read_bytes() == b"mine"
    assert "left 1 existing files alone" in stdout


@pytest.mark.parametrize("link", ["hardlink", "symlink"])
def test_export_links(corpus: dict[str, Path], db_path: Path, tmp_path: Path, link: str) -> None:
    scanned(corpus["a"].parents[2], db_path)
    out = tmp_path / "out"
    assert invoke("export", out, "--exact", "--link", link, "--db", db_path)[0] == 0
    target = out / "55" / "ee" / "drawing.png"
    if link == "hardlink":
        assert target.stat().st_ino == corpus["b"].stat().st_ino
    else:
        assert target.is_symlink() and target.resolve() == corpus["b"].resolve()


def test_export_hardlink_across_filesystems_is_refused(corpus: dict[str, Path], db_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == corpus["a"].stat().st_dev:
        pytest.fail("this test needs /dev/shm on another filesystem than the temp dir")
    scanned(corpus["a"].parents[2], db_path)
    out = shm / f"imgindex-test-{os.getpid()}"
    try:
        code, _, stderr = invoke("export", out, "--exact", "--link", "hardlink", "--db", db_path)
        assert code == 1
        assert "different filesystems" in stderr and "--link copy" in stderr
        assert list(out.iterdir()) == []  # refused before anything was placed
    finally:
        if out.exists():
            out.rmdir()


def test_export_keeps_roots_apart(tmp_path: Path, db_path: Path) -> None:
    for root in ("siteA", "siteB"):
        write(tmp_path / root / "same" / "name.jpg", encode(picture(1 if root == "siteA" else 2), "JPEG"))
    with open_index(db_path) as idx:
        run_scan(idx, tmp_path / "siteA", tmp_path / "siteB")
    assert invoke("export", tmp_path / "out", "--exact", "--db", db_path)[0] == 0
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.jpg")) == [
        "siteA/same/name.jpg",
        "siteB/same/name.jpg",
    ]


# -- dedup: the original tool's interface -------------------------------------------------


def test_dedup_exact_by_default(corpus: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    tree = corpus["a"].parents[2]
    code, stdout, _ = invoke("dedup", tree, "-j", "1")
    assert code == 3  # the truncated download
    assert "initial image count: 10" in stdout and "final image count: 9" in stdout
    data = json.loads((tmp_path / "image_locations.json").read_text())
    assert data["mode"] == "exact"
    assert (tmp_path / "imgindex.db").exists()


def test_dedup_near_with_output_dir_and_duplicates(corpus: dict[str, Path], tmp_path: Path) -> None:
    tree = corpus["a"].parents[2]
    out_json, out_dir, db = tmp_path / "near.json", tmp_path / "unique", tmp_path / "i.db"
    code, stdout, _ = invoke("dedup", tree, "-n", "-o", out_json, "-d", out_dir, "-s", "--db", db, "-j", "1")
    assert code == 3
    assert "final image count: 6" in stdout
    assert json.loads(out_json.read_text())["final_image_count"] == 6
    kept = [p for p in out_dir.rglob("*") if p.is_file() and "_duplicates" not in p.parts]
    assert len(kept) == 6
    assert len(list((out_dir / "_duplicates").iterdir())) == 2
    # Running it again after the dump grew reads only the new file.
    write(tree / "88" / "new.png", encode(picture(40), "PNG"))
    result = run_module("dedup", str(tree), "-n", "-o", str(out_json), "--db", str(db))
    assert result.returncode == 3
    assert "(1 new, 0 changed)" in result.stdout
    assert json.loads(out_json.read_text())["final_image_count"] == 7


def test_dedup_flags_conflict(tree: Path, tmp_path: Path) -> None:
    code, _, stderr = invoke("dedup", tree, "-e", "-n", "--db", tmp_path / "x.db")
    assert code == 1 and "choose one" in stderr


def test_export_refuses_a_directory_inside_an_indexed_root(corpus: dict[str, Path], db_path: Path, tree: Path) -> None:
    scanned(tree, db_path)
    code, _, stderr = invoke("export", tree / "unique", "--exact", "--db", db_path)
    assert code == 1 and "inside the indexed directory" in stderr
    assert not (tree / "unique").exists()


def test_dedup_report_to_stdout_is_pure_json(corpus: dict[str, Path], tmp_path: Path) -> None:
    result = run_module("dedup", str(corpus["a"].parents[2]), "-o", "-", "--db", str(tmp_path / "i.db"))
    assert result.returncode == 3
    assert json.loads(result.stdout)["mode"] == "exact"
    assert "final image count: 9" in result.stderr


def test_the_report_table_has_every_column_of_every_image_as_stored(tree: Path, db_path: Path) -> None:
    framed = picture(3, (90, 60))
    border = framed.crop((0, 0, 90, 60)).resize((130, 100))
    border.paste((255, 255, 255), (0, 0, 130, 100))
    border.paste(framed, (20, 20))
    write(tree / "a" / "plain.png", encode(picture(1, (80, 60)), "PNG"))
    write(tree / "a" / "framed.png", encode(border, "PNG"))
    write(tree / "b" / "broken.jpg", encode(picture(2), "JPEG")[:300])  # an image without hashes
    with open_index(db_path) as index:
        run_scan(index, tree)
        # A stranger's header may claim any size a 32-bit field holds (kept for a too_large file).
        index.db.execute("UPDATE files SET width = 4294967295, height = 2147483648 WHERE name = ?", (b"broken.jpg",))
        # Formats outside the common ones (an older version's, another decoder's) and none at all.
        index.db.execute("UPDATE files SET format = 'QOI', width = 2147483646 WHERE name = ?", (b"plain.png",))
        index.db.execute("UPDATE files SET format = NULL, height = 0 WHERE name = ?", (b"framed.png",))
        table = index.images.table()
        stored = {
            bytes(path): row
            for path, *row in index.db.execute(
                "SELECT path, id, phash, trim_hash, width, height, size, mtime_ns, format, params_id"
                " FROM file_paths WHERE sha256 IS NOT NULL"
            )
        }
    assert len(table) == len(stored) == 3
    assert table.has_trim.sum() == 1 and table.has_hash.sum() == 2
    for row in range(len(table)):
        file_id, phash, trim, width, height, size, mtime, fmt, params = stored[table.path(row)]
        assert table.id[row] == file_id and table.size[row] == size and table.mtime_ns[row] == mtime
        assert (bool(table.has_hash[row]), int(table.phash[row])) == (phash is not None, phash or 0)
        assert (bool(table.has_trim[row]), int(table.trim_hash[row])) == (trim is not None, trim or 0)
        assert (table.width[row], table.height[row]) == (
            width if width is not None else -1,
            height if height is not None else -1,
        )
        assert table.format[row] == fmt and table.params_id[row] == (params if params is not None else -1)
        assert table.path_length[row] == len(table.path(row))
    assert sorted(map(str, table.format)) == ["JPEG", "None", "QOI"]
    assert sorted(table.width.tolist()) == [130, 2147483646, 4294967295]


def test_a_sha256_of_another_length_is_an_error_not_padded(tree: Path, db_path: Path) -> None:
    from imgindex.errors import ImgindexError

    write(tree / "a.png", encode(picture(1), "PNG"))
    write(tree / "b.png", encode(picture(2), "PNG"))
    with open_index(db_path) as index:
        run_scan(index, tree)
        assert len(index.images.table()) == 2
        index.db.execute("UPDATE files SET sha256 = substr(sha256, 1, 31) WHERE name = ?", (b"b.png",))
        with pytest.raises(ImgindexError, match="not 32 bytes"):
            index.images.table()


def test_units_of_equals_unique_rows_even_when_64_bits_collide() -> None:
    import numpy as np

    from imgindex.report import units_of

    rng = np.random.default_rng(3)
    for trial in range(200):
        n = int(rng.integers(1, 60))
        base = rng.integers(0, 256, (max(1, n // 3), 32), dtype=np.uint8)
        if trial % 3 == 0 and len(base) > 1:
            base[1, :8] = base[0, :8]  # two pictures whose SHA-256 share their first 64 bits
        sha = base[rng.integers(0, len(base), n)]
        units, unit_of_row = units_of(sha)
        expected, inverse = np.unique(sha.view(np.dtype((np.void, 32))).reshape(n), return_inverse=True)
        assert (units == expected.view(np.uint8).reshape(-1, 32)).all()
        assert (unit_of_row == inverse.reshape(-1)).all()
