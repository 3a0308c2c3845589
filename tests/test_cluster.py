"""Hashing on a real Dask LocalCluster (2 worker processes): the same index as the local pool's,
and nothing lost when a worker is killed mid-scan."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from distributed import WorkerPlugin

from imgindex import cluster
from imgindex.cluster import dask_workers
from imgindex.errors import ClusterError
from imgindex.scan import ScanOptions, ScanProgress, scan
from imgindex.storage import open_index

from .conftest import encode, picture, write
from .test_archives import Capture, jpeg, warc_bytes
from .test_report import invoke


def a_tree(tree: Path, n: int) -> None:
    for i in range(n):
        write(tree / f"d{i % 7}" / f"{i}.jpg", encode(picture(i % 40, (160, 120)), "JPEG", quality=80 + i % 15))
    write(tree / "d0" / "page.html", b"<html></html>")
    write(tree / "d1" / "cut.png", encode(picture(3), "PNG")[:200])
    data, _ = warc_bytes([Capture(f"http://example.com/{i}.jpg", jpeg(200 + i)) for i in range(5)])
    write(tree / "c.warc.gz", data)


def rows(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT p.path, p.status, p.error, p.sha256, p.phash, p.trim_hash, p.width, p.height, p.url,"
            " d.picture, d.trimmed FROM file_paths p LEFT JOIN descriptors d ON d.file_id = p.id ORDER BY p.path"
        ).fetchall()


def test_a_scan_on_a_cluster_gives_the_local_index_row_for_row(tree: Path, tmp_path: Path) -> None:
    a_tree(tree, 60)
    assert invoke("scan", tree, "--db", tmp_path / "local.db", "-q", "-j", "2")[0] == 3  # the cut PNG
    code, _, err = invoke("scan", tree, "--db", tmp_path / "dask.db", "-q", "--dask", "local:2")
    assert code == 3, err
    assert rows(tmp_path / "dask.db") == rows(tmp_path / "local.db") and len(rows(tmp_path / "local.db")) == 67


def test_a_worker_killed_mid_scan_loses_no_item(tree: Path, tmp_path: Path) -> None:
    a_tree(tree, 240)
    invoke("scan", tree, "--db", tmp_path / "local.db", "-q", "-j", "2")
    killed: list[int] = []

    def kill_a_worker(progress: ScanProgress) -> None:
        if progress.hashed >= 30 and not killed:
            # The cluster's worker processes: spawned by its nannies (not multiprocessing's tracker).
            workers = [
                p
                for p in psutil.Process().children(recursive=True)
                if "spawn_main" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline())
            ]
            if workers:
                killed.append(workers[-1].pid)
                os.kill(workers[-1].pid, signal.SIGKILL)

    options = ScanOptions(chunk_size=4, batch_size=10)
    with dask_workers("local:2") as workers, open_index(tmp_path / "dask.db") as index:
        summary = scan(index, [tree], options, executor=workers, progress=kill_a_worker, stop=threading.Event())
    assert killed, "no worker process was found to kill"
    assert summary.hashed >= 247
    assert rows(tmp_path / "dask.db") == rows(tmp_path / "local.db")


def test_an_unreachable_scheduler_is_one_error(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1)
    write(tree / "a.jpg", jpeg(1))
    code, _, err = invoke("scan", tree, "--db", tmp_path / "x.db", "--dask", "tcp://127.0.0.1:9")
    assert code == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err


class _OtherPipeline(WorkerPlugin):
    """A worker plugin that makes its worker hash as another version would."""

    def setup(self, worker: object) -> None:
        import imgindex.hashing

        imgindex.hashing.PIPELINE_VERSION = "another"


def test_workers_that_would_hash_differently_are_refused() -> None:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as local,
        Client(local) as client,
    ):
        cluster._check_versions(client)  # the same versions: accepted
        client.register_plugin(_OtherPipeline())
        with pytest.raises(ClusterError, match="other library versions"):
            cluster._check_versions(client)


def test_a_worker_that_joins_after_connect_and_would_hash_differently_writes_nothing(
    tree: Path, tmp_path: Path
) -> None:
    """The check at connect sees no worker at all (a cluster that scales from nothing); the one
    that joins once the scan has sent its work hashes as another pipeline version would (a real
    ``dask worker`` process with a preload): each chunk refuses there, and the scan ends with an
    error that says why, having written no row."""
    from distributed import LocalCluster

    a_tree(tree, 12)
    preload = Path(__file__).with_name("dask_other_pipeline.py")
    with LocalCluster(n_workers=0, processes=True, dashboard_address=None) as local:
        address = local.scheduler_address
        late: list[subprocess.Popen[bytes]] = []

        def join_once_work_is_waiting() -> None:
            deadline = time.monotonic() + 60
            while not local.scheduler.tasks and time.monotonic() < deadline:
                time.sleep(0.05)
            worker = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1"]
            worker += ["--no-nanny", "--no-dashboard", "--preload", str(preload)]
            late.append(subprocess.Popen(worker, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        joiner = threading.Thread(target=join_once_work_is_waiting)
        joiner.start()
        try:
            code, _, err = invoke("scan", tree, "--db", tmp_path / "x.db", "-q", "--dask", address)
        finally:
            joiner.join()
            for process in late:
                process.terminate()
                process.wait(30)
    assert code == 1, err
    assert "would hash with other library versions" in err and "pipeline 99 here, 4 there" in err
    with sqlite3.connect(tmp_path / "x.db") as conn:
        assert conn.execute("SELECT count(*) FROM files").fetchone() == (0,)
