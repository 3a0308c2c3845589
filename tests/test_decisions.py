"""Review decisions in reports: kept by content, apart by content, undone, surviving rescans."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from imgindex import decisions
from imgindex.cli import app
from imgindex.hashing import sha256
from imgindex.report import Report, ReportOptions, build_report
from imgindex.storage import Index

from .conftest import run_scan

NEAR = ReportOptions(mode="near")


def groups(report: Report) -> dict[bytes, set[bytes]]:
    """Kept path -> its duplicates' paths, for groups with duplicates."""
    return {g.kept.path: {d.path for d, _ in g.duplicates} for g in report.groups() if g.duplicates}


def together(report: Report, a: Path, b: Path) -> bool:
    """Are ``a`` and ``b`` in one group?"""
    return any({bytes(a), bytes(b)} <= {kept, *dups} for kept, dups in groups(report).items())


def digest(path: Path) -> bytes:
    return sha256(path.read_bytes())


def test_keep_decision_chooses_the_kept_image(index: Index, tree: Path, corpus: dict[str, Path]) -> None:
    run_scan(index, tree)
    before = build_report(index, NEAR)
    assert bytes(corpus["a_half"]) not in groups(before)
    index.decisions.record("keep", decisions.keep(digest(corpus["a_half"])))
    after = build_report(index, NEAR)
    found = groups(after)
    assert found[bytes(corpus["a_half"])] == {bytes(corpus[k]) for k in ("a", "a_copy", "a_q60")}
    assert after.kept_by_decision == 1 and after.apart_by_decision == 0
    assert after.final_image_count == before.final_image_count
    # Not honoured when asked not to.
    ignored = build_report(index, ReportOptions(mode="near", decisions=False))
    assert groups(ignored) == groups(before) and ignored.decisions_applied == 0


def test_keep_decision_names_one_of_identical_copies(index: Index, tree: Path, corpus: dict[str, Path]) -> None:
    run_scan(index, tree)
    exact = ReportOptions(mode="exact")
    assert groups(build_report(index, exact)) == {bytes(corpus["a_copy"]): {bytes(corpus["a"])}}  # the older
    index.decisions.record("keep", decisions.keep(digest(corpus["a"]), bytes(corpus["a"])))
    report = build_report(index, exact)
    assert groups(report) == {bytes(corpus["a"]): {bytes(corpus["a_copy"])}}
    assert report.kept_by_decision == 1


def test_apart_survives_rename_and_rescan_and_undo_restores(index: Index, tree: Path, corpus: dict[str, Path]) -> None:
    run_scan(index, tree)
    b, b_meta = digest(corpus["b"]), digest(corpus["b_meta"])
    assert together(build_report(index, NEAR), corpus["b"], corpus["b_meta"])
    batch = index.decisions.record("not a duplicate", decisions.apart(b_meta, [b]))
    report = build_report(index, NEAR)
    assert not together(report, corpus["b"], corpus["b_meta"]) and report.apart_by_decision == 1

    moved = tree / "moved" / "renamed.png"
    moved.parent.mkdir()
    os.rename(corpus["b_meta"], moved)
    run_scan(index, tree)
    report = build_report(index, NEAR)
    assert not together(report, corpus["b"], moved) and report.apart_by_decision == 1

    undone = index.decisions.undo()
    assert undone is not None and undone.id == batch and undone.undone_at is not None
    assert together(build_report(index, NEAR), corpus["b"], moved)
    assert index.decisions.undo(batch) is None  # once


def test_later_decision_overrides_and_undo_brings_back_the_earlier(
    index: Index, tree: Path, corpus: dict[str, Path]
) -> None:
    run_scan(index, tree)
    b, b_meta = digest(corpus["b"]), digest(corpus["b_meta"])
    index.decisions.record("not a duplicate", decisions.apart(b, [b_meta]))
    index.decisions.record("accept", decisions.same(b, [b_meta]))
    decided = decisions.in_force(index.decisions.in_force())
    assert decided.verdict(b_meta, b) == "same"
    assert together(build_report(index, NEAR), corpus["b"], corpus["b_meta"])
    index.decisions.undo()
    assert decisions.in_force(index.decisions.in_force()).verdict(b, b_meta) == "apart"
    assert not together(build_report(index, NEAR), corpus["b"], corpus["b_meta"])


def test_decisions_about_files_gone_are_harmless(index: Index, tree: Path, corpus: dict[str, Path]) -> None:
    run_scan(index, tree)
    index.decisions.record("keep", decisions.keep(digest(corpus["a_half"])))
    index.decisions.record("apart", decisions.all_apart([digest(corpus["b"]), digest(corpus["b_meta"])]))
    corpus["a_half"].unlink()
    corpus["b_meta"].unlink()
    run_scan(index, tree)
    report = build_report(index, NEAR)
    assert report.decisions_applied == 0
    assert groups(report) == {bytes(corpus["a_copy"]): {bytes(corpus["a"]), bytes(corpus["a_q60"])}}


def test_report_command_says_how_many_decisions_it_applied(
    index: Index, tree: Path, corpus: dict[str, Path], db_path: Path
) -> None:
    run_scan(index, tree)
    index.decisions.record("keep", decisions.keep(digest(corpus["a_half"])))
    index.decisions.record("apart", decisions.apart(digest(corpus["b"]), [digest(corpus["b_meta"])]))
    runner = CliRunner()
    result = runner.invoke(app, ["report", "--near", "--db", str(db_path)], catch_exceptions=False)
    assert result.exit_code == 0
    assert "review decisions applied: 2 (1 kept as decided, 1 matches decided apart" in result.stderr
    kept = {e["path"] for e in json.loads(result.stdout)["images"] if e["duplicates"]}
    assert kept == {str(corpus["a_half"])}
    stats = runner.invoke(app, ["stats", "--json", "--db", str(db_path)])
    assert json.loads(stats.stdout)["review_decisions"] == 2
    assert "review decisions in force: 2" in runner.invoke(app, ["stats", "--db", str(db_path)]).stdout
    plain = runner.invoke(app, ["report", "--near", "--ignore-decisions", "--db", str(db_path)])
    assert "review decisions" not in plain.stderr
    assert {e["path"] for e in json.loads(plain.stdout)["images"] if e["duplicates"]} == {
        str(corpus["a_copy"]),
        str(corpus["b_meta"]),
    }


def test_regrouping_a_report_equals_building_it_again(index: Index, tree: Path, corpus: dict[str, Path]) -> None:
    run_scan(index, tree)
    report = build_report(index, NEAR)
    index.decisions.record("keep", decisions.keep(digest(corpus["a_q60"])))
    index.decisions.record("apart", decisions.apart(digest(corpus["b"]), [digest(corpus["b_meta"])]))
    fresh = build_report(index, NEAR)
    again = report.regrouped(decisions.in_force(index.decisions.in_force()))
    assert groups(again) == groups(fresh) != groups(report)
    assert (
        (again.kept_by_decision, again.apart_by_decision) == (fresh.kept_by_decision, fresh.apart_by_decision) == (1, 1)
    )
    assert [list(a) for a in again.layout()] == [list(f) for f in fresh.layout()]


def test_export_keeps_what_was_decided(index: Index, tree: Path, corpus: dict[str, Path], db_path: Path) -> None:
    run_scan(index, tree)
    index.decisions.record("keep", decisions.keep(digest(corpus["a_half"])))
    out = tree.parent / "kept"
    result = CliRunner().invoke(app, ["export", str(out), "--near", "--db", str(db_path)], catch_exceptions=False)
    assert result.exit_code == 0 and "review decisions applied: 1 (1 kept as decided" in result.stdout
    exported = {p.name for p in out.rglob("*") if p.is_file()}
    assert corpus["a_half"].name in exported
    assert not exported & {corpus[k].name for k in ("a", "a_copy", "a_q60")}
