"""Faults from outside: the process killed outright leaves nothing running behind it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import encode, picture, write


def session_processes(sid: int) -> list[int]:
    """The processes of a session, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != b"Z":  # state, ppid, pgrp, session; zombies are gone
            found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process table from /proc")
@pytest.mark.parametrize("command", ["scan", "watch"])
def test_killed_outright_it_leaves_no_helper_process_behind(tmp_path: Path, command: str) -> None:
    blobs = [encode(picture(i, (800, 600)), "JPEG") for i in range(10)]
    for n in range(300):
        write(tmp_path / "dump" / f"{n % 10}" / f"{n}.jpg", blobs[n % 10] + bytes([n % 256]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgindex", command, str(tmp_path / "dump"), "--db", str(tmp_path / "i.db"), "-j", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own session: its helpers are found by it
    )
    try:
        deadline = time.monotonic() + 60
        while len(session_processes(proc.pid)) < 4 and time.monotonic() < deadline:  # workers are reading
            time.sleep(0.05)
        assert len(session_processes(proc.pid)) >= 4, "the worker processes did not start"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert session_processes(proc.pid) == [], "helper processes outlived their parent"
    finally:
        for pid in session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)
