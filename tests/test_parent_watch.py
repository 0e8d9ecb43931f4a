"""A worker process ends with the process that started it (a run's pool, ingest's readers): killed with
``kill -9``, the parent leaves no worker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.processes import alive, wait_for

# A parent that starts one worker (with or without the watch), gives it a minute of work, writes its pid, and is
# killed as the out-of-memory killer would. Nothing is read from pipes the worker inherits: it would hold them.
PARENT = """
import os, signal, sys, time
from concurrent.futures import ProcessPoolExecutor
from panopipe.parent_watch import exit_with_parent
pool = ProcessPoolExecutor(1, initializer=exit_with_parent if sys.argv[1] == "watched" else None)
open(sys.argv[2], "w").write(str(pool.submit(os.getpid).result()))
pool.submit(time.sleep, 60)
time.sleep(0.2)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _worker_after_parent_killed(kind: str, folder: Path) -> int:
    pid, errors = folder / f"{kind}.pid", folder / f"{kind}.err"
    with errors.open("w") as stderr:
        parent = subprocess.run(
            [sys.executable, "-c", PARENT, kind, str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            check=False,
        )
    assert parent.returncode == -signal.SIGKILL, errors.read_text()
    return int(pid.read_text())


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_watched_worker_exits_once_its_parent_is_killed_and_an_unwatched_one_stays(tmp_path: Path):
    watched = _worker_after_parent_killed("watched", tmp_path)
    unwatched = _worker_after_parent_killed("unwatched", tmp_path)
    try:
        wait_for(lambda: not alive({watched}), timeout=5)
        assert alive({unwatched})  # what ingest's readers did: sleeping on, for nobody
    finally:
        if alive({unwatched}):
            os.kill(unwatched, signal.SIGKILL)
