"""Trees behind fsspec URLs: ``file://`` (fsspec's local file system) and ``s3://`` (s3fs against a
real S3 endpoint served by moto on this machine) give the rows a scan of the same tree on disk gives,
and the scan's rules hold: a rescan with no change reads nothing, a deleted object is removed, a
listing that fails removes nothing."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from imgindex.errors import UsageError
from imgindex.scan import ScanProgress, scan
from imgindex.sources import is_url, source_for
from imgindex.sources.urls import UrlSource
from imgindex.storage import open_index

from .conftest import QUICK
from .test_cluster import a_tree
from .test_report import invoke


def rows(db: Path, root: str) -> list[tuple[object, ...]]:
    """Each file's row, its path relative to ``root``."""
    with sqlite3.connect(db) as conn:
        found = conn.execute(
            "SELECT p.path, p.status, p.error, p.sha256, p.phash, p.trim_hash, p.width, p.height, p.url,"
            " d.picture, d.trimmed FROM file_paths p LEFT JOIN descriptors d ON d.file_id = p.id ORDER BY p.path"
        ).fetchall()
    prefix = os.fsencode(root).rstrip(b"/") + b"/"
    assert all(bytes(r[0]).startswith(prefix) for r in found)
    return [(bytes(r[0])[len(prefix) :], *r[1:]) for r in found]


def assert_rows_of_the_disk(tree: Path, url: str, tmp_path: Path, *options: str) -> Path:
    """Scan ``tree`` on disk and ``url`` (the same tree) with ``options``: the same rows. The index of the URL."""
    assert invoke("scan", tree, "--db", tmp_path / "disk.db", "-q", "-j", "1")[0] == 3  # the cut PNG
    code, _, err = invoke("scan", url, "--db", tmp_path / "url.db", "-q", *options)
    assert code == 3, err
    assert rows(tmp_path / "url.db", url.rstrip("/")) == rows(tmp_path / "disk.db", str(tree))
    return tmp_path / "url.db"


def test_urls_are_told_from_paths() -> None:
    assert is_url(b"s3://bucket/crawl") and is_url(b"file:///mnt") and is_url(b"hdfs://nn:8020/x")
    assert not is_url(b"/mnt/crawl") and not is_url(b"./s3://x") and not is_url(b"crawl")
    with pytest.raises(UsageError, match="separate runs"):
        source_for([b"/mnt", b"s3://bucket"])
    with pytest.raises(UsageError, match="--follow-symlinks"):
        source_for([b"s3://bucket"], follow_symlinks=True)


def test_a_tree_through_file_urls_gives_the_rows_of_the_tree_on_disk(tree: Path, tmp_path: Path) -> None:
    a_tree(tree, 30)
    (tree / "d2" / "loop").symlink_to(tree)  # never followed, as on disk
    url = f"file://{tree}"
    assert len(rows(assert_rows_of_the_disk(tree, url + "/", tmp_path, "-j", "2"), url)) == 37

    # The rules of a rescan: nothing read when nothing changed, a deleted file removed.
    with open_index(tmp_path / "url.db") as index:
        again = scan(index, [url], QUICK)
        assert (again.hashed, again.removed, again.unchanged) == (0, 0, 37)
        (tree / "d3" / "3.jpg").unlink()
        shutil.copy(tree / "d4" / "4.jpg", tree / "d3" / "new.jpg")
        changed = scan(index, [url], QUICK)
        assert (changed.hashed, changed.removed, changed.new) == (1, 1, 1)

    # Reports name the URLs, and take --root as one.
    code, out, err = invoke("report", "--exact", "--db", tmp_path / "url.db", "--root", url, "-f", "csv")
    assert code == 0, err and f"{url}/d4/4.jpg" in out and f"{url}/d3/new.jpg" in out


def test_export_fetches_the_kept_objects_of_a_url_root(tree: Path, tmp_path: Path) -> None:
    a_tree(tree, 10)
    url = f"file://{tree}"
    invoke("scan", url, "--db", tmp_path / "url.db", "-q", "-j", "1")
    code, _, err = invoke("export", tmp_path / "out", "--exact", "--db", tmp_path / "url.db", "--link", "symlink")
    assert code == 0, err
    out = tmp_path / "out"
    assert (out / "d0" / "0.jpg").read_bytes() == (tree / "d0" / "0.jpg").read_bytes()
    assert not (out / "d0" / "0.jpg").is_symlink()  # fetched: there is no file to link to


def test_watch_refuses_a_url(tmp_path: Path) -> None:
    code, _, err = invoke("watch", "s3://bucket/crawl", "--db", tmp_path / "x.db")
    assert code == 1 and "cannot watch s3://bucket/crawl" in err


def test_a_url_that_is_no_directory_is_one_error(tree: Path, tmp_path: Path) -> None:
    (tree / "a.jpg").write_bytes(b"x")
    code, _, err = invoke("scan", f"file://{tree}/a.jpg", "--db", tmp_path / "x.db")
    assert code == 1 and "not a directory" in err
    code, _, err = invoke("scan", f"file://{tree}/gone", "--db", tmp_path / "x.db")
    assert code == 1 and "not found" in err
    code, _, err = invoke("scan", "nosuchprotocol://x", "--db", tmp_path / "x.db")
    assert code == 1 and "cannot read nosuchprotocol://x" in err


# -- a real S3 endpoint (moto's server, in a thread of this process) -------------------------


@contextmanager
def moto_server() -> Iterator[Any]:
    """A real S3 endpoint on this machine (moto's server, in a thread of this process)."""
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def endpoint_of(server: Any) -> str:
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A local S3 endpoint that s3fs reaches through the standard AWS variables, here and in
    Dask workers started meanwhile (they inherit them)."""
    with moto_server() as server:
        import s3fs

        endpoint = endpoint_of(server)
        saved = {k: os.environ.get(k) for k in _AWS}
        os.environ.update(_AWS, AWS_ENDPOINT_URL=endpoint)
        s3fs.S3FileSystem.clear_instance_cache()
        try:
            yield endpoint
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ENDPOINT_URL": "",
}


def upload(tree: Path, bucket: str, **storage_options: Any) -> str:
    """The tree's files as objects of a new bucket; its URL."""
    import s3fs

    fs = s3fs.S3FileSystem(**storage_options)
    fs.mkdir(bucket)
    for path in sorted(tree.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{bucket}/crawl/{path.relative_to(tree)}", path.read_bytes())
    return f"s3://{bucket}/crawl"


def test_a_tree_in_s3_gives_the_rows_of_the_tree_on_disk(s3_endpoint: str, tree: Path, tmp_path: Path) -> None:
    import s3fs

    a_tree(tree, 30)
    url = upload(tree, "rows")
    # One job: a fork server started by an earlier test would not have the AWS variables (Dask's
    # workers, started afresh, read through s3fs below).
    db = assert_rows_of_the_disk(tree, url, tmp_path, "-j", "1")

    fs = s3fs.S3FileSystem()
    with open_index(db) as index:
        again = scan(index, [url], QUICK)  # LastModified is seconds: the racy window would read all again
        assert (again.hashed, again.removed, again.unchanged) == (0, 0, 37)
        fs.rm_file("rows/crawl/d3/3.jpg")
        fs.pipe_file("rows/crawl/d4/4.jpg", (tree / "d5" / "5.jpg").read_bytes())  # replaced: another ETag
        changed = scan(index, [url], QUICK)
        assert (changed.hashed, changed.removed, changed.changed) == (1, 1, 1)
    assert len(rows(db, url)) == 36


def test_a_store_that_stops_answering_mid_walk_removes_nothing(s3_endpoint: str, tree: Path, tmp_path: Path) -> None:
    a_tree(tree, 20)
    with moto_server() as server:  # a store of its own, to stop
        # Its endpoint, and few retries: the store is gone, not slow.
        storage: dict[str, Any] = {"client_kwargs": {"endpoint_url": endpoint_of(server)}}
        storage["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 2}
        url = upload(tree, "outage", **storage)
        source = UrlSource(storage_options=storage)
        options = replace(QUICK, update_pairs=False)
        with open_index(tmp_path / "s3.db") as index:
            scan(index, [url], options, source=source)
            before = rows(tmp_path / "s3.db", url)
            listed: list[bytes] = []

            def go_dark(progress: ScanProgress) -> None:
                listed.append(progress.last_path or b"")
                if len(listed) == 2:  # the root and one directory listed: the others cannot be
                    server.stop()

            summary = scan(index, [url], options, source=source, progress=go_dark)
    assert len(summary.walk_errors) >= 5 and summary.removed == 0, summary.walk_errors
    assert rows(tmp_path / "s3.db", url) == before


def test_a_scan_of_s3_on_a_dask_cluster(s3_endpoint: str, tree: Path, tmp_path: Path) -> None:
    a_tree(tree, 20)
    assert_rows_of_the_disk(tree, upload(tree, "dask"), tmp_path, "--dask", "local:2")
